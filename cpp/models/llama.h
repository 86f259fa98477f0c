// The Llama family of docs/models.md (model_type llama, mistral, qwen2) on any
// backend, from HuggingFace's own tensor names: RMSNorm, rotary over the whole
// head (rope_theta, rope_scaling linear / llama3), grouped-query attention,
// SwiGLU MLP, optional q/k/v(/o) biases, tied or separate lm_head, and
// Mistral's sliding window with a ring KV cache.
#pragma once

#include <memory>
#include <vector>

#include "model_base.h"

namespace roost {

class LlamaModel : public BackendModel {
 public:
  LlamaModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> be);
  std::unique_ptr<SequenceState> new_state() const override;
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;

 private:
  struct Layer {
    const float* input_norm;  // input_layernorm.weight [C]
    const Matrix* qkv;        // q_proj | k_proj | v_proj stacked: x [C] -> Q [H*D] | K [G*D] | V [G*D]
    const float* qkv_bias;    // [H*D + 2*G*D] or null
    const Matrix* o;          // o_proj: [H*D] -> [C]
    const float* o_bias;      // or null
    const float* post_norm;   // post_attention_layernorm.weight [C]
    const Matrix* gate_up;    // gate_proj | up_proj stacked: [C] -> [2F]
    const Matrix* down;       // down_proj: [F] -> [C]
  };

  std::vector<double> inv_freq_;
  const Matrix* embed_ = nullptr;  // embed_tokens [V, C]
  const Matrix* head_ = nullptr;   // lm_head, or embed_ when tied
  const float* norm_ = nullptr;    // model.norm.weight
  std::vector<Layer> layers_;
  std::unique_ptr<AttentionPlan> plan_;
  std::unique_ptr<Scratch> s_x_, s_h_, s_qkv_, s_att_, s_gu_, s_ff_, s_logits_;
};

}  // namespace roost
