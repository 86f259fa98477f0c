// Shared between quantize.cpp (the entry, the scalar rows) and its AVX-512 variant.
#pragma once

#include <cstdint>

namespace roost::quantize_impl {

// Rows [m0, m1) of quantize_rows_q8_0 (same arguments), the scalar rule block by block.
void rows_q8_0_reference(int8_t* q, float* d, int32_t* sums, const float* x, int64_t m0, int64_t m1, int64_t K);
// The same rows with AVX-512: the same rounding step by step, so equal byte for byte.
void rows_q8_0_avx512(int8_t* q, float* d, int32_t* sums, const float* x, int64_t m0, int64_t m1, int64_t K);

}  // namespace roost::quantize_impl
