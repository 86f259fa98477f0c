// The `gpt2` architecture of docs/models.md on any backend: HF GPT-2 (learned
// positions) plus the rotary option and BigBird block-sparse attention, with a
// per-sequence KV cache in backend memory, soft prompts and (IA)^3 adapters.
#pragma once

#include <memory>
#include <vector>

#include "model_base.h"

namespace roost {

class Gpt2Model : public ModelBase {
 public:
  Gpt2Model(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> be);
  std::unique_ptr<SequenceState> new_state() const override;
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;
  bool supports_adapters() const override { return adapters_; }
  bool exposes_hidden() const override { return true; }

 private:
  struct Layer {
    Norm ln_1;
    Dense c_attn, attn_proj;
    Mlp mlp;
  };
  // The (IA)^3 vectors of one adapter in backend memory for this step: [L, C], [L, C], [L, F].
  struct Ia3 {
    const float *k, *v, *ff;
  };

  std::vector<Layer> layers_;
  const float* wpe_ = nullptr;  // [n_positions, C], learned positions only
  bool adapters_ = false;       // the backend scales columns: (IA)^3 runs
  std::vector<std::unique_ptr<AttentionPlan>> plans_;  // dense: one for every layer; bigbird: one per layer
  std::unique_ptr<Scratch> s_x_, s_qkv_, s_att_;
};

}  // namespace roost
