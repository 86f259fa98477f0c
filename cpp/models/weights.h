// Helpers that turn checkpoint tensors into what the kernels read.
#pragma once

#include <string>
#include <vector>

#include "../ops/ops.h"
#include "../safetensors.h"

namespace roost {

// A LayerNorm's weight and bias, widened to float.
struct LayerNormWeights {
  std::vector<float> weight, bias;
};

// A Conv1D projection y = x @ W + b with W [K, N] packed for the kernels.
struct Linear {
  PackedMatrix W;
  std::vector<float> bias;  // [N]
  void apply(float* y, const float* x, int64_t M, ThreadPool& pool) const {
    matmul(y, x, W, bias.empty() ? nullptr : bias.data(), M, pool);
  }
};

std::vector<float> tensor_to_f32(const TensorView& t);
LayerNormWeights load_layernorm(const Checkpoint& ckpt, const std::string& prefix, int64_t C);
// prefix.weight [K, N] and prefix.bias [N].
Linear load_linear(const Checkpoint& ckpt, const std::string& prefix, int64_t K, int64_t N);

}  // namespace roost
