// The `perceiver_ar` architecture of docs/models.md on any backend: a
// cross-attend layer 0 (latent queries over every position's keys) and
// self-attention among the last N (latent) positions only. Decode is the
// spec's cached sliding decode: per sequence the layer-0 K/V of every position
// (in the model's paged pool, one layer: prefix-cached like gpt2's blocks)
// plus rings of the last N layer-0 outputs and latent K/V
// (O(T*C) + O(n_layer*N*C)).
#pragma once

#include <memory>
#include <vector>

#include "model_base.h"

namespace roost {

class PerceiverArModel : public ModelBase {
 public:
  PerceiverArModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> be);
  std::unique_ptr<SequenceState> new_state() const override;
  bool prompt_logprobs_need_one_pass() const override { return true; }
  bool decode_differs_from_prefill() const override { return true; }
  // n >= 2 new tokens: the state becomes the exact prefill of the whole
  // sequence (latent window recomputed); n = 1: one sliding decode step.
  // Rows of positions outside the latent window get NaN logits. An interim
  // item (more of the prompt follows in this step) appends only its layer-0
  // K/V: the window it would compute is rebuilt by the prompt's last pass, so
  // a 64k prompt in 8k passes attends the window over the keys once, not 8
  // times.
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;

 private:
  struct Layer {  // layer 0: ln_q, ln_kv, q_attn, kv_attn; others: ln_1, c_attn
    Norm ln_q, ln_kv, ln_1;
    Dense q_attn, kv_attn, c_attn, attn_proj;
    Mlp mlp;
  };

  std::vector<Layer> layers_;
  std::unique_ptr<AttentionPlan> plan0_, plan_;
  std::unique_ptr<Scratch> s_x_, s_kv_, s_z_, s_q_, s_y_, s_qkv_, s_kvh_, s_att_;
};

}  // namespace roost
