// OPT (and OPT-IML) and XGLM of docs/models.md on any backend, from
// HuggingFace's own tensor names: the fairseq decoder both come from, written
// once. LayerNorm before (OPT's do_layer_norm_before, XGLM) or after (opt-350m)
// each block, positions offset by 2 (OPT: a learned table; XGLM: fairseq's
// sinusoids, built here), ReLU or GELU MLP, optional project_in/out around an
// embedding narrower than the model (word_embed_proj_dim), XGLM's
// sqrt(d_model) embedding scale, tied or separate lm_head.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model_base.h"

namespace roost {

class OptModel : public BackendModel {
 public:
  OptModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> be);
  std::unique_ptr<SequenceState> new_state() const override;
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;

 private:
  struct Layer {
    Norm attn_norm;          // self_attn_layer_norm
    const Matrix* qkv;       // q_proj | k_proj | v_proj stacked: [C] -> [3C]
    const float* qkv_bias;   // [3C] or null (opt enable_bias false)
    const Matrix* out;       // out_proj
    const float* out_bias;
    Norm mlp_norm;           // final_layer_norm (of the layer)
    const Matrix* fc1;       // [C] -> [F]
    const float* fc1_bias;
    const Matrix* fc2;       // [F] -> [C]
    const float* fc2_bias;
  };

  Epilogue act_ = Epilogue::Relu;         // activation_function as a GEMM epilogue
  const Matrix* embed_ = nullptr;         // embed_tokens [V, P]
  const Matrix* head_ = nullptr;          // lm_head [V, P], or embed_ when tied
  const Matrix* project_in_ = nullptr;    // [P] -> [C], or null
  const Matrix* project_out_ = nullptr;   // [C] -> [P], or null
  const float* positions_ = nullptr;      // row p + 2 of the position table for position p: [n_positions, C]
  const float* embed_scale_ = nullptr;    // [P] of sqrt(d_model) (xglm scale_embedding), or null
  Norm final_norm_{};                     // the model-level LayerNorm, or nulls
  std::vector<Layer> layers_;
  std::unique_ptr<AttentionPlan> plan_;
  std::unique_ptr<Scratch> s_x_, s_e_, s_h_, s_qkv_, s_att_, s_ff_, s_out_, s_logits_;
};

// XGLM's position table (fairseq's sinusoids, HF XGLMSinusoidalPositionalEmbedding):
// rows r < `rows` of C columns, [sin(r f_0..f_{h-1}) | cos(r f_0..f_{h-1}) | 0 when C is odd],
// h = C / 2, f_i = exp(-i ln(10000) / (h - 1)), in float32 as torch computes it;
// row pad (if 0 <= pad < rows) zeroed.
std::vector<float> sinusoid_table(int64_t rows, int64_t C, int64_t pad);

}  // namespace roost
