// Causal attention, one query at a time: float dot products, then a
// max-subtracted softmax whose normalizer and weighted sum are kept in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"

namespace roost {

void attention_causal_reference(const std::vector<AttentionSeq>& seqs, int64_t H, int64_t D) {
  const float scale = 1.f / std::sqrt((float)D);
  std::vector<float> scores;
  std::vector<double> acc(D);
  for (const AttentionSeq& s : seqs) {
    for (int64_t h = 0; h < H; h++) {
      for (int64_t i = 0; i < s.Tq; i++) {
        const float* q = s.q + i * s.q_stride + h * D;  // [D]
        const int64_t n_keys = s.pos0 + i + 1;
        scores.resize(n_keys);
        float mx = -INFINITY;
        for (int64_t j = 0; j < n_keys; j++) {
          const float* k = s.k + j * s.kv_stride + h * D;  // key row j, head h
          float dot = 0;
          for (int64_t d = 0; d < D; d++) dot += q[d] * k[d];
          scores[j] = dot * scale;
          mx = std::max(mx, scores[j]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < n_keys; j++) {
          double p = std::exp((double)scores[j] - mx);
          sum += p;
          const float* v = s.v + j * s.kv_stride + h * D;
          for (int64_t d = 0; d < D; d++) acc[d] += p * v[d];
        }
        float* out = s.out + i * s.out_stride + h * D;
        for (int64_t d = 0; d < D; d++) out[d] = (float)(acc[d] / sum);
      }
    }
  }
}

}  // namespace roost
