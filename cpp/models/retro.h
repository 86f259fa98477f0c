// The `retro` architecture of docs/retro.md on any backend: a causal decoder
// (rotary self-attention, gpt2 blocks) whose CCA layers cross-attend to the
// encoded neighbours of the previous chunk (the paper's shift by m - 1), and a
// bidirectional neighbour encoder that cross-attends to its chunk's decoder
// activations. A chunk's neighbours are given per sequence
// (SequenceState::set_neighbours) and encoded once, by the pass that completes
// the chunk; the sequence keeps their K/V for every CCA layer.
#pragma once

#include <memory>
#include <vector>

#include "model_base.h"

namespace roost {

class RetroModel : public ModelBase {
 public:
  RetroModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> be);
  std::unique_ptr<SequenceState> new_state() const override;
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;
  KvPool* kv_pool() override { return nullptr; }  // per-sequence KvRows, not paged

 private:
  struct Attn {
    Norm ln;
    Dense q, kv, proj;  // cross-attention: q [C, C], kv [C, 2C], proj [C, C]
  };
  struct Layer {
    Norm ln_1;
    Dense c_attn, attn_proj;
    Mlp mlp;
    int64_t cca = -1;  // index among the CCA layers, -1: none
    Attn cross;        // h.l.ln_cca, h.l.cca.*
  };
  struct EncLayer {
    Norm ln_1;
    Dense c_attn, attn_proj;
    Attn ca;  // enc.h.s.ln_ca, enc.h.s.ca.*
    Mlp mlp;
  };
  std::vector<Layer> layers_;
  std::vector<EncLayer> enc_;
  Norm enc_ln_h_, enc_ln_f_;
  int64_t n_cca_ = 0;
  std::unique_ptr<AttentionPlan> self_, enc_self_, enc_ca_, cca_;
  std::unique_ptr<Scratch> s_x_, s_qkv_, s_att_, s_cq_, s_hc_, s_hn_, s_hkv_, s_hkv_kv_, s_e_, s_eh_, s_eqkv_,
      s_ekv_, s_eatt_, s_eq_, s_ckv_;
};

}  // namespace roost
