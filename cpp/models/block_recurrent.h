// The `block_recurrent` architecture of docs/models.md on any backend:
// block-windowed token attention (previous + current block of W) in every
// layer; recurrent layers add cross-attention to a per-sequence state of S
// vectors, which a completed block updates through a fixed gate. Per sequence:
// a ring of the last 2W K/V rows per layer plus the states, whatever the
// stream's length. Any chunking of the input (decode included) gives the same
// numbers.
#pragma once

#include <memory>
#include <vector>

#include "model_base.h"

namespace roost {

class BlockRecurrentModel : public ModelBase {
 public:
  BlockRecurrentModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> be);
  std::unique_ptr<SequenceState> new_state() const override;
  // The whole state is a function of the prefix (ring, states, length): copied as is.
  std::unique_ptr<SequenceState> copy_state(const SequenceState& state) const override;
  bool copies_state() const override { return true; }
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;

 private:
  struct Layer {
    bool rec = false;  // a recurrent layer
    Norm ln_1, ln_s;
    Dense c_attn, attn_proj, q_state, kv_state, state_q, state_proj;
    const float* keep = nullptr;  // sigmoid(gate_bias) [C]
    Mlp mlp;
  };
  // One round of the state cross-attention (the k-th block segment of every
  // item) and the state updates of the blocks it completes.
  struct Round {
    std::unique_ptr<AttentionPlan> read;    // a_cross of the round's tokens
    std::unique_ptr<AttentionPlan> update;  // state queries over [state K/V ; block K/V]
    int64_t done = 0;                       // states updated after it
    const RowMove* s_rows = nullptr;        // s rows of the done items -> su
    const RowMove* kv_rows = nullptr;       // kv_state rows -> the items' state K/V
    float* const* s_ptrs = nullptr;         // the done items' s (layer 0)
  };

  std::vector<Layer> layers_;
  std::unique_ptr<Buffer> init_s_;  // s_0 per layer [L][S][C] float (zeros in ordinary layers)
  KvRows init_kv_;                  // kv_state(ln_s(s_0)): S rows per layer
  std::unique_ptr<AttentionPlan> self_[2];    // a_self with output stride C (ordinary) and 2C (recurrent)
  std::vector<Round> rounds_;
  std::unique_ptr<Scratch> s_x_, s_qkv_, s_kvh_, s_qs_, s_att_, s_su_, s_sq_, s_sa_, s_sy_, s_skv_;
};

}  // namespace roost
