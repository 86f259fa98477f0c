// Token embedding and output head shared by perceiver_ar and block_recurrent:
// wte [V, C] packed once, read by column for the embedding; the head is
// lm_head.weight when the checkpoint has it, else tied to wte (spec conventions).
#pragma once

#include <vector>

#include "../ops/ops.h"
#include "../safetensors.h"
#include "weights.h"

namespace roost {

class TokenHead {
 public:
  TokenHead() = default;
  TokenHead(const Checkpoint& ckpt, int64_t V, int64_t C);
  size_t bytes() const { return wte_.bytes() + lm_head_.bytes() + (ln_f_.weight.size() + ln_f_.bias.size()) * sizeof(float); }
  void embed(float* x, int32_t token) const { matrix_column(x, wte_, token); }  // x: [C]
  // logits[R, V] = head(ln_f(x)) for R rows of x ([R, C], overwritten by ln_f).
  void logits(float* logits, float* x, int64_t R, float eps, ThreadPool& pool) const;

 private:
  PackedMatrix wte_;      // [V, C] as W [K=C, N=V]
  PackedMatrix lm_head_;  // only when untied
  LayerNormWeights ln_f_;
  bool tied_ = true;
};

}  // namespace roost
