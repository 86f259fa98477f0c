#include <immintrin.h>

#include "gelu_impl.h"
#include "simd_avx2_impl.h"

namespace roost::gelu_impl {

void gelu_avx2(float* y, const float* x, int64_t n) {
  const __m256 a = _mm256_set1_ps(kMinus2SqrtTwoOverPi), b = _mm256_set1_ps(kMinus2SqrtTwoOverPiCubic);
  const __m256 one = _mm256_set1_ps(1.f);
  for (int64_t i = 0; i < n; i += 8) {
    __m256i k = simd256::head_mask(n - i);
    __m256 v = _mm256_maskload_ps(x + i, k);
    __m256 t = _mm256_mul_ps(v, _mm256_fmadd_ps(b, _mm256_mul_ps(v, v), a));  // -2u
    _mm256_maskstore_ps(y + i, k, _mm256_div_ps(v, _mm256_add_ps(one, simd256::exp(t))));
  }
}

}  // namespace roost::gelu_impl
