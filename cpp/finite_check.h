// Non-finite weights (NaN, +-inf) in a checkpoint tensor. A model with one
// such weight only ever produces NaN logits, so the loader refuses it at load
// naming the tensor, instead of serving garbage (sampled as token 0).
#pragma once

#include <cstdint>

#include "safetensors.h"

namespace roost {

// Index of the first NaN or infinite element of `t`, or -1 if all are finite.
int64_t first_non_finite(const TensorView& t);

}  // namespace roost
