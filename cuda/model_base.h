// What every CUDA model shares: the device context, the weights uploader,
// token embedding + ln_f + head, the MLP block, the per-step upload arena and
// the scratch buffers, and the one device -> host copy of each step (the
// logits rows the engine asked for).
#pragma once

#include <memory>
#include <vector>

#include "../cpp/models/model.h"
#include "../cpp/safetensors.h"
#include "ops.h"
#include "runtime.h"
#include "weights_cuda.h"

namespace roost::cuda {

class CudaModelBase : public Model {
 public:
  CudaModelBase(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx);
  const ModelConfig& config() const override { return cfg_; }
  int64_t max_context() const override { return cfg_.n_positions; }
  size_t weight_bytes() const override { return weights_.bytes(); }
  const DeviceContext& context() const { return *ctx_; }

 protected:
  struct Mlp {
    DevLayerNorm ln_2;
    DevLinear c_fc, proj;
  };
  Mlp load_mlp(const Checkpoint& ckpt, const std::string& p);
  // x [M, C] += proj(gelu_new(c_fc(ln_2(x))))
  void mlp(const Mlp& m, float* x, int64_t M);
  // Starts a step: current device, upload arena reset (the previous step ended with a sync).
  void begin_step();
  // Logits of x's rows `rows` (row stride C) into the host rows `dest` (V floats each):
  // gather + ln_f + head GEMM, one device -> host copy, stream sync, scatter.
  void head_logits(const float* x, const std::vector<int32_t>& rows, const std::vector<float*>& dest);
  // Rotary inverse frequencies (double, as cpp/models/rotary.cpp) on the device.
  void init_rotary();

  ModelConfig cfg_;
  std::shared_ptr<DeviceContext> ctx_;
  DeviceWeights weights_;
  DeviceBuffer wte_buf_, lm_head_buf_;
  DevMatrix wte_;         // [V][C]: embedding rows and the tied head
  DevMatrix head_;        // wte_ or lm_head
  DevLayerNorm ln_f_;
  DeviceBuffer inv_freq_; // [rotary_dim / 2] double
  StepUpload up_;
  Scratch ws_;            // GEMM split-K and attention partials
  Scratch s_h_, s_ff_, s_hin_, s_logits_;
  PinnedBuffer host_logits_;
};

}  // namespace roost::cuda
