// The softmax / log_softmax variants behind ops.h.
#pragma once

#include <cstdint>

namespace roost::softmax_impl {
void softmax_avx2(float* x, int64_t n);
void softmax_avx512(float* x, int64_t n);
void log_softmax_avx2(float* y, const float* x, int64_t n);
void log_softmax_avx512(float* y, const float* x, int64_t n);
}  // namespace roost::softmax_impl
