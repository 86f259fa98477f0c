// The `perceiver_ar` architecture of shared/spec/models.md: a cross-attend
// layer 0 (latent queries over every position's keys) and self-attention among
// the last N (latent) positions only. Decode is the spec's cached sliding
// decode: per sequence the layer-0 K/V of every position plus rings of the
// last N layer-0 outputs and latent K/V (O(T*C) + O(n_layer*N*C)).
#pragma once

#include <memory>
#include <vector>

#include "../ops/attention_spans.h"
#include "../safetensors.h"
#include "model.h"
#include "rotary.h"
#include "step_rows.h"
#include "token_head.h"
#include "weights.h"

namespace roost {

class PerceiverArModel : public Model {
 public:
  PerceiverArModel(const ModelConfig& config, const Checkpoint& ckpt);
  const ModelConfig& config() const override { return cfg_; }
  std::unique_ptr<SequenceState> new_state() const override;
  int64_t max_context() const override { return cfg_.n_positions; }
  bool prompt_logprobs_need_one_pass() const override { return true; }
  // n >= 2 new tokens: the state becomes the exact prefill of the whole
  // sequence (latent window recomputed); n = 1: one sliding decode step.
  // Rows of positions outside the latent window get NaN logits.
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;
  size_t weight_bytes() const override { return weight_bytes_; }

 private:
  struct Layer {  // layer 0 uses ln_q/ln_kv/q_attn/kv_attn, the others ln_1/c_attn
    LayerNormWeights ln_q, ln_kv, ln_1, ln_2;
    Linear q_attn, kv_attn, c_attn, attn_proj, c_fc, mlp_proj;
  };
  using Rows = PerceiverRows;  // one item's rows in this step's buffers (step_rows.h)

  void layer0(const std::vector<ForwardItem>& items, std::vector<Rows>& rows, ThreadPool& pool);
  void latent_layers(const std::vector<ForwardItem>& items, std::vector<Rows>& rows, ThreadPool& pool);
  void mlp(const Layer& L, float* x, int64_t M, ThreadPool& pool);

  ModelConfig cfg_;
  TokenHead head_;
  std::vector<Layer> layers_;
  Rotary rotary_;
  size_t weight_bytes_ = 0;

  // Scratch reused across steps (the engine never runs forward concurrently).
  std::vector<float> x_, z_, y_, h_, kv_, qkv_, att_, tmp_, ff_, cos_, sin_, head_in_, logits_;
  std::vector<int64_t> pos_;
  SpanBatch spans_;
};

}  // namespace roost
