#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "layernorm_impl.h"
#include "simd_avx2_impl.h"

namespace roost::layernorm_impl {

using namespace simd256;

void layernorm_avx2(float* y, const float* x, const float* weight, const float* bias, int64_t M, int64_t C,
                    float eps) {
  for (int64_t m = 0; m < M; m++) {
    const float* xr = x + m * C;  // [C]
    float* yr = y + m * C;
    // Corrected two-pass mean and variance, as in the AVX-512 variant.
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + c));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + c + 8));
    }
    for (; c < C; c += 8) s0 = _mm256_add_ps(s0, _mm256_maskload_ps(xr + c, head_mask(C - c)));
    const float mean = hsum(_mm256_add_ps(s0, s1)) / (float)C;
    const __m256 vmean = _mm256_set1_ps(mean);
    __m256 q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
    s0 = _mm256_setzero_ps();
    s1 = _mm256_setzero_ps();
    for (c = 0; c + 16 <= C; c += 16) {
      __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + c), vmean), d1 = _mm256_sub_ps(_mm256_loadu_ps(xr + c + 8), vmean);
      s0 = _mm256_add_ps(s0, d0);
      s1 = _mm256_add_ps(s1, d1);
      q0 = _mm256_fmadd_ps(d0, d0, q0);
      q1 = _mm256_fmadd_ps(d1, d1, q1);
    }
    for (; c < C; c += 8) {
      __m256i k = head_mask(C - c);
      __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + c, k), vmean), _mm256_castsi256_ps(k));
      s0 = _mm256_add_ps(s0, d);
      q0 = _mm256_fmadd_ps(d, d, q0);
    }
    const float dsum = hsum(_mm256_add_ps(s0, s1)) / (float)C;
    const float var = std::max(0.f, hsum(_mm256_add_ps(q0, q1)) / (float)C - dsum * dsum);
    const __m256 vdsum = _mm256_set1_ps(dsum);  // not folded into mean: mean + dsum would round it away
    const __m256 rstd = _mm256_set1_ps(1.f / std::sqrt(var + eps));
    for (c = 0; c < C; c += 8) {
      __m256i k = head_mask(C - c);
      __m256 n = _mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + c, k), vmean), vdsum), rstd);
      __m256 r = _mm256_fmadd_ps(n, _mm256_maskload_ps(weight + c, k), _mm256_maskload_ps(bias + c, k));
      _mm256_maskstore_ps(yr + c, k, r);
    }
  }
}

}  // namespace roost::layernorm_impl
