// Token selection inside the engine: logit_bias, temperature (0 = greedy),
// top-k, top-p, a seeded generator per sequence; the log-prob of the chosen
// token and of the top alternatives, taken from the model's raw distribution
// (log_softmax of the logits before bias and temperature, as vLLM reports them).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace roost {

struct SamplingParams {
  double temperature = 1.0;   // 0 = greedy (argmax of logits + bias)
  int64_t top_k = 0;          // 0 = off
  double top_p = 1.0;         // 1 = off
  uint64_t seed = 0;
  std::vector<std::pair<int32_t, float>> logit_bias;  // token -> added to its logit
  int64_t n_logprobs = 0;     // how many top alternatives to report (0 = none)
};

struct TokenLogprob {
  int32_t token;
  float logprob;
};

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.f;              // raw log p(token)
  std::vector<TokenLogprob> top;    // n_logprobs best by raw log-prob, best first
};

// The n (at most V) best of log-probs [V], best first; ties go to the smaller
// token id. The one ranking behind every top-log-probs list (sampled tokens and
// prompt tokens alike).
std::vector<TokenLogprob> top_logprobs(const float* logprobs, int64_t V, int64_t n);

// xoshiro256** seeded through splitmix64: the same seed gives the same stream on
// every platform (std:: distributions are implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits
 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  explicit Sampler(SamplingParams params);
  const SamplingParams& params() const { return params_; }
  // logits [V] of the position to sample; scratch is reused between calls.
  SampledToken sample(const float* logits, int64_t V);

 private:
  int32_t sample_processed(int64_t V);  // temperature > 0 over work_

  SamplingParams params_;
  Rng rng_;
  std::vector<float> logprobs_, work_;
  std::vector<int32_t> order_;
  std::vector<double> probs_;
};

}  // namespace roost
