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

void Sampler::observe_input(const int32_t* tokens, int64_t n) {
  if (generated_ > 0 || !penalizes_repeats()) return;
  for (int64_t i = 0; i < n; i++) seen_.insert(tokens[i]);
}

void Sampler::record_output(int32_t token) {
  generated_++;
  if (penalizes_output()) output_counts_[token]++;
  if (penalizes_repeats()) seen_.insert(token);
}

bool Sampler::keeps_logits() const {
  return params_.logit_bias.empty() && (generated_ >= params_.min_tokens || params_.stop_token_ids.empty()) &&
         !penalizes_repeats() && !penalizes_output();
}

SampledToken Sampler::sample(const float* logits, int64_t V) {
  SampledToken out;
  if (params_.temperature <= 0.0 && params_.n_logprobs == 0 && keeps_logits()) {
    // Plain greedy: the argmax of the raw logits and its log-prob alone, the same
    // numbers as below without writing V log-probs and copying V logits (a
    // batch-32 step spent about 5% of its time there).
    out.token = argmax(logits, V);
    out.logprob = log_softmax_at(logits, V, out.token);
    record_output(out.token);
    return out;
  }
  // Raw log-probs (what is reported): the vectorized op of ops/softmax, the
  // same one prompt log-probs use, so both report identical numbers.
  logprobs_.resize(V);
  log_softmax(logprobs_.data(), logits, V);

  process_logits(logits, V);
  // Greedy: first index of the maximum, so ties break the same way everywhere.
  const int32_t chosen = params_.temperature <= 0.0 ? argmax(work_.data(), V) : draw(V, filter(V));
  record_output(chosen);

  out.token = chosen;
  out.logprob = logprobs_[chosen];
  out.top = top_logprobs(logprobs_.data(), V, params_.n_logprobs);
  return out;
}

std::vector<double> Sampler::distribution(const float* logits, int64_t V) {
  process_logits(logits, V);
  std::vector<double> p(V, 0.0);
  if (params_.temperature <= 0.0) {
    p[argmax(work_.data(), V)] = 1.0;
    return p;
  }
  const int64_t n = filter(V);
  double z = 0;
  if (ranked_) {
    for (int64_t i = 0; i < n; i++) z += probs_[order_[i]];
    for (int64_t i = 0; i < n; i++) p[order_[i]] = probs_[order_[i]] / z;
  } else {
    for (int64_t i = 0; i < V; i++) z += probs_[i];
    for (int64_t i = 0; i < V; i++) p[i] = probs_[i] / z;
  }
  return p;
}

void Sampler::process_logits(const float* logits, int64_t V) {
  work_.assign(logits, logits + V);
  // 1. logit_bias.
  for (const auto& [tok, bias] : params_.logit_bias) {
    if (tok >= 0 && tok < V) work_[tok] += bias;
  }
  // 2. min_tokens: the ids that would end the sequence cannot come yet.
  if (generated_ < params_.min_tokens) {
    for (int32_t tok : params_.stop_token_ids)
      if (tok >= 0 && tok < V) work_[tok] = -std::numeric_limits<float>::infinity();
  }
  // 3. Penalties over this sequence's history: repetition, then frequency and presence (vLLM's order).
  if (penalizes_repeats()) {
    const float r = (float)params_.repetition_penalty;
    for (int32_t tok : seen_) {
      if (tok < 0 || tok >= V) continue;
      const float l = work_[tok];
      work_[tok] = l > 0.f ? l / r : l * r;
    }
  }
  if (penalizes_output()) {
    for (const auto& [tok, count] : output_counts_) {
      if (tok < 0 || tok >= V) continue;
      work_[tok] -= (float)(params_.frequency_penalty * count + params_.presence_penalty);
    }
  }
}

int32_t Sampler::argmax(const float* x, int64_t V) {
  // The maximum first, in 16 independent running maxima (the one-pass scan that
  // compared each logit with work_[best] took about 180 us over GPT-2's 50257, 16
  // sequences' worth of a batch-32 step's milliseconds; this takes about 20), then
  // the first index holding it, so ties go to the lowest id as before.
  // x > m ? x : m keeps m where x is NaN, as the one-pass scan skipped NaNs; a NaN
  // at index 0 is never beaten there, and matches nothing here: index 0 either way.
  constexpr int kLanes = 16;
  float m[kLanes];
  for (int l = 0; l < kLanes; l++) m[l] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= V; i += kLanes)
    for (int l = 0; l < kLanes; l++) m[l] = x[i + l] > m[l] ? x[i + l] : m[l];
  for (; i < V; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
  float best = m[0];
  for (int l = 1; l < kLanes; l++) best = m[l] > best ? m[l] : best;
  for (int64_t j = 0; j < V; j++)
    if (x[j] == best) return (int32_t)j;
  return 0;
}

int64_t Sampler::filter(int64_t V) {
  // 4. Probabilities at temperature T relative to the best logit: probs_[i] =
  // p_i / p_max (double, unnormalized).
  const double inv_t = 1.0 / params_.temperature;
  float best = work_[0];
  for (int64_t i = 1; i < V; i++) best = std::max(best, work_[i]);
  probs_.resize(V);
  for (int64_t i = 0; i < V; i++) {
    double l = work_[i];
    probs_[i] = std::isfinite(l) ? std::exp((l - best) * inv_t) : 0.0;
  }
  // 5. min_p: p_i < min_p * p_max is probs_[i] < min_p.
  if (params_.min_p > 0.0) {
    for (int64_t i = 0; i < V; i++)
      if (probs_[i] < params_.min_p) probs_[i] = 0.0;
  }
  const bool use_k = params_.top_k > 0 && params_.top_k < V;
  const bool use_p = params_.top_p < 1.0;
  ranked_ = use_k || use_p;
  if (!ranked_) return V;
  // Candidates in descending order (ties: smaller id first). Sorting all of a
  // 50k vocabulary costs milliseconds per token, so sort a growing prefix until
  // it holds the nucleus: exact, and usually 64 candidates suffice. top_p is
  // the share of the mass left by min_p and top_k (vLLM v1).
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
  for (int64_t c = std::min<int64_t>(m, 64);; c = std::min<int64_t>(m, c * 4)) {
    std::partial_sort(order_.begin(), order_.begin() + c, order_.begin() + m, better);
    if (!use_p) return m;
    double cum = 0;
    for (int64_t i = 0; i < c; i++) {
      cum += probs_[order_[i]];
      if (cum >= params_.top_p * z) return i + 1;
    }
    if (c == m) return m;
  }
}

int32_t Sampler::draw(int64_t V, int64_t n) {
  // A candidate list (ranked_) or every token; zero-probability tokens are never drawn.
  auto at = [&](int64_t i) { return ranked_ ? order_[i] : (int32_t)i; };
  const int64_t count = ranked_ ? n : V;
  double z = 0;
  for (int64_t i = 0; i < count; i++) z += probs_[at(i)];
  double u = rng_.uniform() * z;
  for (int64_t i = 0; i < count; i++) {
    u -= probs_[at(i)];
    if (u < 0) return at(i);
  }
  // Rounding left u >= 0: the last candidate with any mass.
  for (int64_t i = count - 1; i >= 0; i--)
    if (probs_[at(i)] > 0) return at(i);
  return at(0);
}

}  // namespace roost
