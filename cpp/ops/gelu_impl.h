// The gelu variants behind ops.h's gelu().
#pragma once

#include <cstdint>

namespace roost::gelu_impl {

// 0.5 x (1 + tanh(u)) = x * sigmoid(2u) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3):
// one exp and one divide, and it saturates cleanly at both ends.
constexpr float kMinus2SqrtTwoOverPi = -1.5957691216057308f;   // -2 sqrt(2/pi)
constexpr float kMinus2SqrtTwoOverPiCubic = -0.0713548162726f;  // -2 sqrt(2/pi) * 0.044715

void gelu_avx2(float* y, const float* x, int64_t n);
void gelu_avx512(float* y, const float* x, int64_t n);

}  // namespace roost::gelu_impl
