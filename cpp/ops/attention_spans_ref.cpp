// The plain reading: per query, float dot products with every visible key, a
// max-subtracted softmax with normalizer and weighted sum kept in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "attention_spans_impl.h"

namespace roost {

namespace attention_spans_impl {

void tile_reference(const SpanAttentionTask& t, int64_t D) {
  const float scale = 1.f / std::sqrt((float)D);
  std::vector<float> scores;
  std::vector<double> acc(D);
  for (int64_t i = 0; i < t.nq; i++) {
    const float* q = t.q + i * t.q_stride + t.head * D;  // [D]
    const int64_t qpos = t.qpos0 + i;
    scores.clear();
    float mx = -INFINITY;
    for (int64_t s = 0; s < t.n_spans; s++) {
      const KeySpan& sp = t.spans[s];
      for (int64_t r = 0, n = visible(sp, qpos); r < n; r++) {
        const float* k = sp.k + r * sp.stride + t.head * D;  // key row r of the span, this head
        float dot = 0;
        for (int64_t d = 0; d < D; d++) dot += q[d] * k[d];
        scores.push_back(dot * scale);
        mx = std::max(mx, dot * scale);
      }
    }
    double sum = 0;
    std::fill(acc.begin(), acc.end(), 0.0);
    size_t j = 0;
    for (int64_t s = 0; s < t.n_spans; s++) {
      const KeySpan& sp = t.spans[s];
      for (int64_t r = 0, n = visible(sp, qpos); r < n; r++, j++) {
        const double p = std::exp((double)scores[j] - mx);
        sum += p;
        const float* v = sp.v + r * sp.stride + t.head * D;
        for (int64_t d = 0; d < D; d++) acc[d] += p * v[d];
      }
    }
    float* out = t.out + i * t.out_stride + t.head * D;
    for (int64_t d = 0; d < D; d++) out[d] = sum > 0 ? (float)(acc[d] / sum) : 0.f;
  }
}

}  // namespace attention_spans_impl

void attention_spans_reference(const std::vector<SpanAttentionTask>& tasks, int64_t D) {
  for (const SpanAttentionTask& t : tasks) attention_spans_impl::tile_reference(t, D);
}

}  // namespace roost
