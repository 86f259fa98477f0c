// The `gpt2` architecture of shared/spec/models.md: HF GPT-2 (learned
// positions) plus the rotary option and BigBird block-sparse attention, with a
// per-sequence KV cache.
#pragma once

#include <memory>
#include <vector>

#include "../ops/attention_spans.h"
#include "../safetensors.h"
#include "model.h"
#include "rotary.h"
#include "weights.h"

namespace roost {

class Gpt2Model : public Model {
 public:
  Gpt2Model(const ModelConfig& config, const Checkpoint& ckpt);
  const ModelConfig& config() const override { return cfg_; }
  std::unique_ptr<SequenceState> new_state() const override;
  int64_t max_context() const override { return cfg_.n_positions; }
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;
  size_t weight_bytes() const override { return weight_bytes_; }
  bool supports_adapters() const override { return true; }

 private:
  struct Layer {
    LayerNormWeights ln_1, ln_2;
    Linear c_attn, attn_proj, c_fc, mlp_proj;
  };

  ModelConfig cfg_;
  PackedMatrix wte_;      // [V, C] as W [K=C, N=V]: row v of wte = column v
  PackedMatrix lm_head_;  // only when the checkpoint has an untied head
  const PackedMatrix* head_ = nullptr;
  std::vector<float> wpe_;  // [n_positions, C], learned positions only
  std::vector<Layer> layers_;
  LayerNormWeights ln_f_;
  Rotary rotary_;
  size_t weight_bytes_ = 0;

  // Scratch reused across steps (forward is never concurrent: the engine steps one at a time).
  std::vector<float> x_, h_, qkv_, att_, tmp_, ff_, cos_, sin_, head_in_, logits_;
  std::vector<int64_t> pos_;
  SpanBatch span_batch_;  // bigbird: one layer's attention tasks
};

}  // namespace roost
