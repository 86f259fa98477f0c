// Checkpoint tensors widened to float32 on the host (LayerNorm parameters,
// biases, positions and adapter vectors before they go to a backend).
#pragma once

#include <vector>

#include "../safetensors.h"

namespace roost {

std::vector<float> tensor_to_f32(const TensorView& t);

}  // namespace roost
