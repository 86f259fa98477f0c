// The add_inplace variants behind ops.h (ops.h has no public reference for it).
#pragma once

#include <cstdint>

namespace roost::elementwise_impl {
void add_inplace_reference(float* y, const float* x, int64_t n);
void add_inplace_avx2(float* y, const float* x, int64_t n);
void add_inplace_avx512(float* y, const float* x, int64_t n);
}  // namespace roost::elementwise_impl
