// The add_inplace and to_f16 variants behind ops.h.
#pragma once

#include <cstdint>

namespace roost::elementwise_impl {
void add_inplace_reference(float* y, const float* x, int64_t n);
void add_inplace_avx2(float* y, const float* x, int64_t n);
void add_inplace_avx512(float* y, const float* x, int64_t n);
void to_f16_avx2(uint16_t* y, const float* x, int64_t n);
void to_f16_avx512(uint16_t* y, const float* x, int64_t n);
}  // namespace roost::elementwise_impl
