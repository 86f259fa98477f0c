// The softmax / log_softmax variants behind ops.h.
#pragma once

#include <cstdint>

namespace roost::softmax_impl {
void softmax_avx2(float* x, int64_t n);
void softmax_avx512(float* x, int64_t n);
void log_softmax_avx2(float* y, const float* x, int64_t n);
void log_softmax_avx512(float* y, const float* x, int64_t n);
float log_softmax_at_avx2(const float* x, int64_t n, int64_t i);
float log_softmax_at_avx512(const float* x, int64_t n, int64_t i);
}  // namespace roost::softmax_impl
