#include <immintrin.h>

#include "../dtype.h"
#include "elementwise_impl.h"
#include "simd_avx2_impl.h"

namespace roost::elementwise_impl {

void add_inplace_avx2(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  if (i < n) {
    __m256i k = simd256::head_mask(n - i);
    _mm256_maskstore_ps(y + i, k, _mm256_add_ps(_mm256_maskload_ps(y + i, k), _mm256_maskload_ps(x + i, k)));
  }
}

void to_f16_avx2(uint16_t* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i*)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; i++) y[i] = f32_to_f16(x[i]);  // the same rounding, one at a time
}

}  // namespace roost::elementwise_impl
