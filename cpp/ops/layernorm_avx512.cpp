#include <algorithm>
#include <cmath>

#include "layernorm_impl.h"
#include "simd_avx512_impl.h"

namespace roost::layernorm_impl {

using namespace simd512;

void layernorm_avx512(float* y, const float* x, const float* weight, const float* bias, int64_t M, int64_t C,
                      float eps) {
  for (int64_t m = 0; m < M; m++) {
    const float* xr = x + m * C;  // [C]
    float* yr = y + m * C;
    // Two passes (mean, then deviations): one-pass E[x^2] - mean^2 cancels badly on
    // the residual stream's large-offset rows. The second pass also sums the
    // deviations, which corrects the float mean (the corrected two-pass algorithm).
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 32 <= C; c += 32) {
      s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xr + c));
      s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xr + c + 16));
    }
    for (; c < C; c += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(head_mask(C - c), xr + c));
    const float mean = hsum(_mm512_add_ps(s0, s1)) / (float)C;
    const __m512 vmean = _mm512_set1_ps(mean);
    __m512 q0 = _mm512_setzero_ps(), q1 = _mm512_setzero_ps();
    s0 = _mm512_setzero_ps();
    s1 = _mm512_setzero_ps();
    for (c = 0; c + 32 <= C; c += 32) {
      __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(xr + c), vmean), d1 = _mm512_sub_ps(_mm512_loadu_ps(xr + c + 16), vmean);
      s0 = _mm512_add_ps(s0, d0);
      s1 = _mm512_add_ps(s1, d1);
      q0 = _mm512_fmadd_ps(d0, d0, q0);
      q1 = _mm512_fmadd_ps(d1, d1, q1);
    }
    for (; c < C; c += 16) {
      __mmask16 k = head_mask(C - c);
      __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, xr + c), vmean);
      s0 = _mm512_add_ps(s0, d);
      q0 = _mm512_fmadd_ps(d, d, q0);
    }
    const float dsum = hsum(_mm512_add_ps(s0, s1)) / (float)C;
    const float var = std::max(0.f, hsum(_mm512_add_ps(q0, q1)) / (float)C - dsum * dsum);
    const __m512 vdsum = _mm512_set1_ps(dsum);  // not folded into mean: mean + dsum would round it away
    const __m512 rstd = _mm512_set1_ps(1.f / std::sqrt(var + eps));
    for (c = 0; c < C; c += 16) {
      __mmask16 k = head_mask(C - c);
      __m512 n = _mm512_mul_ps(_mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), vmean), vdsum), rstd);
      __m512 r = _mm512_fmadd_ps(n, _mm512_maskz_loadu_ps(k, weight + c), _mm512_maskz_loadu_ps(k, bias + c));
      _mm512_mask_storeu_ps(yr + c, k, r);
    }
  }
}

}  // namespace roost::layernorm_impl
