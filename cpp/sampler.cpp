#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common.h"
#include "ops/ops.h"

namespace roost {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
}

uint64_t Rng::next() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return (double)(next() >> 11) * 0x1.0p-53; }

std::vector<TokenLogprob> top_logprobs(const float* logprobs, int64_t V, int64_t n) {
  const int64_t k = std::clamp<int64_t>(n, 0, V);
  std::vector<TokenLogprob> top;
  if (k == 0) return top;
  std::vector<int32_t> idx(V);
  for (int64_t i = 0; i < V; i++) idx[i] = (int32_t)i;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return logprobs[a] > logprobs[b] || (logprobs[a] == logprobs[b] && a < b); });
  top.reserve(k);
  for (int64_t i = 0; i < k; i++) top.push_back({idx[i], logprobs[idx[i]]});
  return top;
}

Sampler::Sampler(SamplingParams params) : params_(std::move(params)), rng_(params_.seed) {}

SampledToken Sampler::sample(const float* logits, int64_t V) {
  // Raw log-probs (what is reported): the vectorized op of ops/softmax, the
  // same one prompt log-probs use, so both report identical numbers.
  logprobs_.resize(V);
  log_softmax(logprobs_.data(), logits, V);

  // Processed logits: bias, then temperature, top-k, top-p.
  work_.assign(logits, logits + V);
  for (const auto& [tok, bias] : params_.logit_bias) {
    if (tok >= 0 && tok < V) work_[tok] += bias;
  }

  int32_t chosen = 0;
  if (params_.temperature <= 0.0) {
    // Greedy: first index of the maximum, so ties break the same way everywhere.
    for (int64_t i = 1; i < V; i++)
      if (work_[i] > work_[chosen]) chosen = (int32_t)i;
  } else {
    chosen = sample_processed(V);
  }

  SampledToken out;
  out.token = chosen;
  out.logprob = logprobs_[chosen];
  out.top = top_logprobs(logprobs_.data(), V, params_.n_logprobs);
  return out;
}

int32_t Sampler::sample_processed(int64_t V) {
  // Probabilities at temperature T relative to the best logit (double normalizer).
  const double inv_t = 1.0 / params_.temperature;
  float best = work_[0];
  for (int64_t i = 1; i < V; i++) best = std::max(best, work_[i]);
  probs_.resize(V);
  for (int64_t i = 0; i < V; i++) {
    double l = work_[i];
    probs_[i] = std::isfinite(l) ? std::exp((l - best) * inv_t) : 0.0;
  }
  const bool use_k = params_.top_k > 0 && params_.top_k < V;
  const bool use_p = params_.top_p < 1.0;
  if (!use_k && !use_p) {
    double z = 0;
    for (int64_t i = 0; i < V; i++) z += probs_[i];
    double u = rng_.uniform() * z;
    for (int64_t i = 0; i < V; i++) {
      u -= probs_[i];
      if (u < 0) return (int32_t)i;
    }
    for (int64_t i = V - 1; i >= 0; i--)
      if (probs_[i] > 0) return (int32_t)i;
    return 0;
  }
  // Candidates in descending order (ties: smaller id first). Sorting all of a
  // 50k vocabulary costs milliseconds per token, so sort a growing prefix until
  // it holds the nucleus: exact, and usually 64 candidates suffice.
  order_.resize(V);
  for (int64_t i = 0; i < V; i++) order_[i] = (int32_t)i;
  auto better = [&](int32_t a, int32_t b) { return probs_[a] > probs_[b] || (probs_[a] == probs_[b] && a < b); };
  const int64_t m = use_k ? params_.top_k : V;
  double z = 0;  // mass of the m best
  if (use_k) {
    std::nth_element(order_.begin(), order_.begin() + (m - 1), order_.end(), better);
    for (int64_t i = 0; i < m; i++) z += probs_[order_[i]];
  } else {
    for (int64_t i = 0; i < V; i++) z += probs_[i];
  }
  int64_t n = m;  // candidates kept
  for (int64_t c = std::min<int64_t>(m, 64);; c = std::min<int64_t>(m, c * 4)) {
    std::partial_sort(order_.begin(), order_.begin() + c, order_.begin() + m, better);
    if (!use_p) { n = m; break; }
    double cum = 0;
    int64_t keep = -1;
    for (int64_t i = 0; i < c; i++) {
      cum += probs_[order_[i]];
      if (cum >= params_.top_p * z) { keep = i + 1; break; }
    }
    if (keep > 0) { n = keep; break; }
    if (c == m) { n = m; break; }
  }
  double zn = 0;
  for (int64_t i = 0; i < n; i++) zn += probs_[order_[i]];
  double u = rng_.uniform() * zn;
  for (int64_t i = 0; i < n; i++) {
    u -= probs_[order_[i]];
    if (u < 0) return order_[i];
  }
  return order_[n - 1];
}

}  // namespace roost
