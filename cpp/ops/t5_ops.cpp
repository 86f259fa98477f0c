#include "t5_ops.h"

#include <algorithm>
#include <cmath>

#include "ops.h"

namespace roost {

namespace {

template <typename T>
void biased_query(const BiasedAttentionTask& bt, int64_t i, int64_t D, std::vector<float>& scores,
                  std::vector<double>& acc) {
  const SpanAttentionTask& t = bt.t;
  const float scale = 1.f / std::sqrt((float)D);
  const float* q = t.q + i * t.q_stride + t.head * D;
  const int64_t qpos = t.qpos0 + i;
  auto visible = [&](const KeySpan& sp) {
    if (bt.unmasked) return sp.n;
    return std::clamp<int64_t>(qpos - sp.pos0 + 1, 0, sp.n);
  };
  auto bias = [&](int64_t kpos) { return bt.bias[std::clamp(kpos - qpos, -bt.bias_max, bt.bias_max) + bt.bias_max]; };
  scores.clear();
  float mx = -INFINITY;
  for (int64_t s = 0; s < t.n_spans; s++) {
    const KeySpan& sp = t.spans[s];
    for (int64_t r = 0, n = visible(sp); r < n; r++) {
      const T* k = static_cast<const T*>(sp.k) + r * sp.stride + t.head * D;
      float dot = 0;
      for (int64_t d = 0; d < D; d++) dot += q[d] * kv_to_float(k[d]);
      const float sc = dot * scale + bias(sp.pos0 + r);
      scores.push_back(sc);
      mx = std::max(mx, sc);
    }
  }
  double sum = 0;
  std::fill(acc.begin(), acc.end(), 0.0);
  size_t j = 0;
  for (int64_t s = 0; s < t.n_spans; s++) {
    const KeySpan& sp = t.spans[s];
    for (int64_t r = 0, n = visible(sp); r < n; r++, j++) {
      const double p = std::exp((double)scores[j] - mx);
      sum += p;
      const T* v = static_cast<const T*>(sp.v) + r * sp.stride + t.head * D;
      for (int64_t d = 0; d < D; d++) acc[d] += p * kv_to_float(v[d]);
    }
  }
  float* out = t.out + i * t.out_stride + t.head * D;
  for (int64_t d = 0; d < D; d++) out[d] = sum > 0 ? (float)(acc[d] / sum) : 0.f;
}

}  // namespace

void attention_biased(const std::vector<BiasedAttentionTask>& tasks, int64_t D, ThreadPool& pool) {
  std::vector<std::pair<int32_t, int64_t>> work;  // (task, query)
  for (size_t k = 0; k < tasks.size(); k++)
    for (int64_t i = 0; i < tasks[k].t.nq; i++) work.push_back({(int32_t)k, i});
  pool.parallel_for((int64_t)work.size(), [&](int64_t a, int64_t b) {
    std::vector<float> scores;
    std::vector<double> acc(D);
    for (int64_t w = a; w < b; w++) {
      const BiasedAttentionTask& bt = tasks[work[w].first];
      if (bt.t.kv == KvType::F16) biased_query<uint16_t>(bt, work[w].second, D, scores, acc);
      else biased_query<float>(bt, work[w].second, D, scores, acc);
    }
  }, 4);
}

void gelu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F, ThreadPool& pool) {
  pool.parallel_for(M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) {
      float* yr = y + m * ldy;
      gelu(yr, x + m * ldx, F);  // the engine's one gelu_new
      const float* up = x + m * ldx + F;
      for (int64_t f = 0; f < F; f++) yr[f] *= up[f];
    }
  }, 4);
}

}  // namespace roost
