#include "token_head.h"

namespace roost {

TokenHead::TokenHead(const Checkpoint& ckpt, int64_t V, int64_t C) {
  const TensorView& wte = ckpt.get("wte.weight", {V, C});
  wte_ = pack_matrix(wte.data, wte.dtype, C, V, /*src_is_nk=*/true);
  if (const TensorView* lm = ckpt.find("lm_head.weight")) {
    ckpt.get("lm_head.weight", {V, C});  // shape check with a message naming it
    lm_head_ = pack_matrix(lm->data, lm->dtype, C, V, true);
    tied_ = false;
  }
  ln_f_ = load_layernorm(ckpt, "ln_f", C);
}

void TokenHead::logits(float* logits, float* x, int64_t R, float eps, ThreadPool& pool) const {
  if (R == 0) return;
  const int64_t C = wte_.K;
  layernorm(x, x, ln_f_.weight.data(), ln_f_.bias.data(), R, C, eps);
  matmul(logits, x, tied_ ? wte_ : lm_head_, nullptr, R, pool);  // [R, V]
}

}  // namespace roost
