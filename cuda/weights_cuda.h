// Checkpoint tensors -> device memory. Matrices become [N][K] (K contiguous)
// in the model's weight type: F16 and BF16 tensors keep their dtype; F32
// tensors are rounded to F16 (tensor cores take F16/BF16; docs/cuda.md).
// float32 constants (LayerNorm parameters, biases, learned positions) are
// uploaded as they are.
#pragma once

#include <memory>
#include <vector>

#include "../cpp/safetensors.h"
#include "ops.h"
#include "runtime.h"

namespace roost::cuda {

// The weight type a checkpoint gets on the device: BF16 when its wte is BF16, else F16.
WType weight_type_for(const Checkpoint& ckpt);

class DeviceWeights {
 public:
  DeviceWeights() = default;
  DeviceWeights(std::shared_ptr<const DeviceContext> ctx, WType type) : ctx_(std::move(ctx)), type_(type) {}
  WType type() const { return type_; }
  size_t bytes() const { return bytes_; }

  // t is W [K, N] (Conv1D) or, with src_is_nk, [N, K] (wte [V, C], lm_head).
  DevMatrix matrix(DeviceBuffer& storage, const TensorView& t, int64_t K, int64_t N, bool src_is_nk);
  DeviceBuffer floats(const std::vector<float>& v);
  DeviceBuffer upload(const void* data, size_t bytes);  // synchronous

 private:
  std::shared_ptr<const DeviceContext> ctx_;
  WType type_ = WType::F16;
  size_t bytes_ = 0;
};

}  // namespace roost::cuda
