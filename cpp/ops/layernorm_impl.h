// The layernorm variants behind ops.h's layernorm().
#pragma once

#include <cstdint>

namespace roost::layernorm_impl {
void layernorm_avx2(float* y, const float* x, const float* weight, const float* bias, int64_t M, int64_t C, float eps);
void layernorm_avx512(float* y, const float* x, const float* weight, const float* bias, int64_t M, int64_t C, float eps);
}  // namespace roost::layernorm_impl
