// The plain reading of span attention: per query, float dot products with every
// visible key, a max-subtracted softmax with normalizer and weighted sum kept in
// double. It is also the kernel of the Reference ISA and of heads wider than the
// vector kernels take, so it writes partials of split keys as they do.
#include <algorithm>
#include <cmath>
#include <vector>

#include "attention_impl.h"

namespace roost::attention_impl {

namespace {

template <typename T>
void tile(const SpanAttentionTask& t, int64_t D, float* partial) {
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
        const T* k = kv_rows<T>(sp.k) + r * sp.stride + t.head * D;  // key row r of the span, this head
        float dot = 0;
        for (int64_t d = 0; d < D; d++) dot += q[d] * kv_to_float(k[d]);
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
        const T* v = kv_rows<T>(sp.v) + r * sp.stride + t.head * D;
        for (int64_t d = 0; d < D; d++) acc[d] += p * kv_to_float(v[d]);
      }
    }
    if (partial) {
      const RowSink sink = row_sink(t, D, partial, i, mx, (float)sum);
      for (int64_t d = 0; d < D; d++) sink.dst[d] = (float)acc[d];
    } else {
      float* out = t.out + i * t.out_stride + t.head * D;
      for (int64_t d = 0; d < D; d++) out[d] = sum > 0 ? (float)(acc[d] / sum) : 0.f;
    }
  }
}

}  // namespace

void tile_reference(const SpanAttentionTask& t, int64_t D, float* partial) {
  if (t.kv == KvType::F16) tile<uint16_t>(t, D, partial);
  else tile<float>(t, D, partial);
}

}  // namespace roost::attention_impl

namespace roost {

void attention_spans_reference(const std::vector<SpanAttentionTask>& tasks, int64_t D) {
  for (const SpanAttentionTask& t : tasks) attention_impl::tile_reference(t, D, nullptr);
}

}  // namespace roost
