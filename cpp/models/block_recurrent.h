// The `block_recurrent` architecture of shared/spec/models.md: block-windowed
// token attention (previous + current block of W) in every layer; recurrent
// layers add cross-attention to a per-sequence state of S vectors, which a
// completed block updates through a fixed gate. Per sequence: a ring of the
// last 2W K/V rows per layer plus the states, whatever the stream's length.
// Any chunking of the input (decode included) gives the same numbers.
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

class BlockRecurrentModel : public Model {
 public:
  BlockRecurrentModel(const ModelConfig& config, const Checkpoint& ckpt);
  const ModelConfig& config() const override { return cfg_; }
  std::unique_ptr<SequenceState> new_state() const override;
  int64_t max_context() const override { return cfg_.n_positions; }
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;
  size_t weight_bytes() const override { return weight_bytes_; }

 private:
  struct Layer {
    int64_t rec = -1;  // index among the recurrent layers, -1 for an ordinary layer
    LayerNormWeights ln_1, ln_2, ln_s;
    Linear c_attn, attn_proj, c_fc, mlp_proj;
    // recurrent layers only
    Linear q_state, kv_state, state_q, state_proj;
    std::vector<float> state_init;  // s_0 [S, C]
    std::vector<float> init_kv;     // kv_state(ln_s(s_0)) [S, 2C]: every sequence starts with it
    std::vector<float> keep;        // sigmoid(gate_bias) [C]
  };
  using Rows = BlockRows;  // one item's rows and block segments (step_rows.h)

  void self_attention(const std::vector<ForwardItem>& items, const std::vector<Rows>& rows, size_t l, int64_t a_stride,
                      ThreadPool& pool);
  void state_attention(const std::vector<ForwardItem>& items, const std::vector<Rows>& rows, size_t l, ThreadPool& pool);
  void update_states(const std::vector<ForwardItem>& items, const std::vector<Rows>& rows,
                     const std::vector<std::pair<size_t, int64_t>>& done, size_t l, ThreadPool& pool);
  void state_kv(const Layer& L, float* kv, const float* s, int64_t M, ThreadPool& pool);

  ModelConfig cfg_;
  TokenHead head_;
  std::vector<Layer> layers_;
  Rotary rotary_;
  size_t weight_bytes_ = 0;

  // Scratch reused across steps (the engine never runs forward concurrently).
  std::vector<float> x_, h_, qkv_, qs_, att_, tmp_, ff_, cos_, sin_, head_in_, logits_;
  std::vector<float> su_, sq_, sa_, sy_;  // state update: ln_s(s), queries, attention, projection
  std::vector<int64_t> pos_;
  SpanBatch spans_;
};

}  // namespace roost
