// Token selection inside the engine, one Sampler per sequence. The stages, in
// vLLM's order (docs/api.md "Sampling"), each skipped at its neutral value so
// a sequence without them pays nothing:
//   1. logit_bias                    added to the raw logits
//   2. min_tokens                    stop_token_ids masked to -inf until min_tokens are sampled
//   3. penalties                     repetition (prompt + output tokens), then frequency and
//                                    presence (output tokens), from this sequence's own history
//   4. temperature                   0 = greedy: argmax here, nothing below applies
//   5. min_p, top_k, top_p           filters of the tempered distribution
// Stages 1-3 rewrite the logits (process_logits); a further per-sequence logit
// transform belongs there. The log-prob of the chosen token and of the top
// alternatives come from the model's raw distribution (log_softmax of the
// logits before every stage, as vLLM and OpenAI report them).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace roost {

struct SamplingParams {
  double temperature = 1.0;   // 0 = greedy (argmax of the processed logits)
  int64_t top_k = 0;          // 0 = off
  double top_p = 1.0;         // 1 = off
  double min_p = 0.0;         // 0 = off: drop tokens with p < min_p * p_max (p after temperature)
  // OpenAI: logit[j] -= frequency_penalty * count[j] + presence_penalty * (count[j] > 0),
  // count over the tokens this sequence sampled so far.
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  // HF / vLLM: every token id in the prompt or the output so far gets
  // logit > 0 ? logit / r : logit * r. 1 = off.
  double repetition_penalty = 1.0;
  // While fewer than min_tokens tokens are sampled, stop_token_ids (the ids
  // that would end the sequence: eos unless ignored, and the request's
  // stop_token_ids) cannot be sampled.
  int64_t min_tokens = 0;
  std::vector<int32_t> stop_token_ids;
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

  // Tokens appended to the sequence. Before its first sample they are the
  // prompt (repetition_penalty's history); after it they are the sampled
  // tokens fed back, which sample() has already recorded, so they are skipped.
  void observe_input(const int32_t* tokens, int64_t n);
  // One token of the output (sample() records its own choice; tests set up a history).
  void record_output(int32_t token);
  int64_t generated() const { return generated_; }

  // logits [V] of the position to sample; scratch is reused between calls.
  SampledToken sample(const float* logits, int64_t V);
  // The distribution sample() would draw from at these logits, normalized over
  // all V tokens (greedy: one-hot at the argmax). Consumes no randomness.
  std::vector<double> distribution(const float* logits, int64_t V);

 private:
  bool penalizes_output() const { return params_.presence_penalty != 0.0 || params_.frequency_penalty != 0.0; }
  bool penalizes_repeats() const { return params_.repetition_penalty != 1.0; }
  void process_logits(const float* logits, int64_t V);  // stages 1-3 into work_
  static int32_t argmax(const float* x, int64_t V);      // first index of the maximum
  // Stages 1-3 leave the logits as they are (no bias, no pending min_tokens, no penalty).
  bool keeps_logits() const;
  int64_t filter(int64_t V);                             // stages 4-5 into probs_ (and order_)
  int32_t draw(int64_t V, int64_t n);

  SamplingParams params_;
  Rng rng_;
  int64_t generated_ = 0;
  std::unordered_map<int32_t, int32_t> output_counts_;  // kept only with presence / frequency penalties
  std::unordered_set<int32_t> seen_;                    // prompt and output ids, only with repetition_penalty
  std::vector<float> logprobs_, work_;
  std::vector<int32_t> order_;
  std::vector<double> probs_;
  bool ranked_ = false;  // filter() left the candidates in order_[0, n) (else: every token with probs_ > 0)
};

}  // namespace roost
