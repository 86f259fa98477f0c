// T5 (docs/t5.md), the encoder-decoder model, on any backend with
// Op::RelativeBias (and Op::GeluMul for v1.1), from HuggingFace's tensor names.
// A sequence's tokens are its encoder input and then its decoder tokens: the
// input collects until the item that ends it (ForwardItem::input_ends), then
// the encoder runs once over it, each decoder layer's cross-attention K/V are
// kept in the sequence's state, and decoder_start_token_id runs; its logits
// are that item's. Every later token is one decoder position, batched with
// every other sequence's. Logits of input tokens are NaN rows (no decoder
// prediction exists for them).
#pragma once

#include <memory>
#include <vector>

#include "model_base.h"

namespace roost {

class T5State;

class T5Model : public Model {
 public:
  T5Model(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> be);
  const ModelConfig& config() const override { return cfg_; }
  int64_t max_context() const override { return 0; }  // relative positions: memory bounds it
  size_t weight_bytes() const override { return be_->weight_bytes(); }
  KvType kv_type() const override { return be_->kv_type(); }
  std::unique_ptr<SequenceState> new_state() const override;
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;
  void set_pass_tokens(int64_t n) override { pass_rows_ = n; }

 private:
  // Projections keep the checkpoint's dtype (F16/BF16 run through the backend's
  // matmul as gpt2's do), except q: it is scaled by sqrt(D) at load (the
  // attention op divides by it) and a scaled F16 value is not exact, so q is
  // float32.
  struct Attn {
    const Matrix* q;    // [C] -> [W], float32, times sqrt(D)
    const Matrix* kv;   // k | v: [C] -> [2W]
    const Matrix* o;    // [W] -> [C]
  };
  struct Ff {
    const Matrix* wi;   // wi [C] -> [F], or wi_0 | wi_1 [C] -> [2F] (gated)
    const Matrix* wo;   // [F] -> [C]
  };
  struct Layer {
    const float* ln_self;
    Attn self;
    const float* ln_cross = nullptr;  // decoder only
    const Matrix* cross_q = nullptr;  // [C] -> [W], float32 and scaled as self's q
    const Matrix* cross_kv = nullptr; // [C] -> [2W], run once on the encoder output
    const Matrix* cross_o = nullptr;
    const float* ln_ff;
    Ff ff;
  };
  // Encoder over the inputs of `states` (their collected tokens), cross K/V into each;
  // every layer in pieces of pass_rows_ rows (encoder_pass below).
  void encode(const std::vector<T5State*>& states);
  void feed_forward(const Ff& ff, const float* ln, float* x, int64_t M);
  // The per-head bias tables over n = key - query in [-R, R] (R = max_distance).
  const float* bias_table(const Checkpoint& ckpt, const std::string& name, bool bidirectional);

  ModelConfig cfg_;
  std::shared_ptr<Backend> be_;
  const Matrix* shared_ = nullptr;  // [V, C]
  const Matrix* head_ = nullptr;    // shared_ or lm_head
  const float* enc_norm_ = nullptr;
  const float* dec_norm_ = nullptr;  // times d_model^-0.5 when the head is tied
  const float* enc_bias_ = nullptr;  // [H][2R+1]
  const float* dec_bias_ = nullptr;
  std::vector<Layer> enc_, dec_;
  int64_t pass_rows_ = 512;  // the engine's max_step_tokens (set_pass_tokens)
  std::vector<std::unique_ptr<AttentionPlan>> plan_enc_;  // one per encoder piece
  std::unique_ptr<AttentionPlan> plan_self_, plan_cross_;
  std::unique_ptr<Scratch> s_x_, s_h_, s_qkv_, s_att_, s_ff_, s_gu_, s_kv_, s_q_, s_logits_;
};

}  // namespace roost
