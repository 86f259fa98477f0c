// Causal attention, one query at a time: float dot products, then a
// max-subtracted softmax whose normalizer and weighted sum are kept in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "attention_spans.h"

namespace roost {

namespace {

template <typename T>
void causal(const AttentionSeq& s, int64_t H, int64_t D) {
  const float scale = 1.f / std::sqrt((float)D);
  std::vector<float> scores;
  std::vector<double> acc(D);
  {
    for (int64_t h = 0; h < H; h++) {
      for (int64_t i = 0; i < s.Tq; i++) {
        const float* q = s.q + i * s.q_stride + h * D;  // [D]
        const int64_t n_keys = s.pos0 + i + 1;
        scores.resize(n_keys);
        float mx = -INFINITY;
        for (int64_t j = 0; j < n_keys; j++) {
          const T* k = static_cast<const T*>(s.k) + j * s.kv_stride + h * D;  // key row j, head h
          float dot = 0;
          for (int64_t d = 0; d < D; d++) dot += q[d] * kv_to_float(k[d]);
          scores[j] = dot * scale;
          mx = std::max(mx, scores[j]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < n_keys; j++) {
          double p = std::exp((double)scores[j] - mx);
          sum += p;
          const T* v = static_cast<const T*>(s.v) + j * s.kv_stride + h * D;
          for (int64_t d = 0; d < D; d++) acc[d] += p * kv_to_float(v[d]);
        }
        float* out = s.out + i * s.out_stride + h * D;
        for (int64_t d = 0; d < D; d++) out[d] = (float)(acc[d] / sum);
      }
    }
  }
}

}  // namespace

// Every sequence's rows in one element type (the cache's).
void attention_causal_reference(const std::vector<AttentionSeq>& seqs, int64_t H, int64_t D) {
  for (const AttentionSeq& s : seqs) {
    if (s.kv == KvType::F16) causal<uint16_t>(s, H, D);
    else causal<float>(s, H, D);
  }
}

}  // namespace roost
