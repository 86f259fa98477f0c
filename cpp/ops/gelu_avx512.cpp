#include "gelu_impl.h"
#include "simd_avx512_impl.h"

namespace roost::gelu_impl {

void gelu_avx512(float* y, const float* x, int64_t n) {
  const __m512 a = _mm512_set1_ps(kMinus2SqrtTwoOverPi), b = _mm512_set1_ps(kMinus2SqrtTwoOverPiCubic);
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = simd512::head_mask(n - i);
    __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    __m512 t = _mm512_mul_ps(v, _mm512_fmadd_ps(b, _mm512_mul_ps(v, v), a));  // -2u
    _mm512_mask_storeu_ps(y + i, k, _mm512_div_ps(v, _mm512_add_ps(one, simd512::exp(t))));
  }
}

}  // namespace roost::gelu_impl
