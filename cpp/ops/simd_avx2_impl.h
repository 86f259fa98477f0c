// Vector math for the *_avx2.cpp kernels only (needs their compile flags).
// Static for the reason given in simd_avx512_impl.h.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace roost::simd256 {

// exp(x), about 2 ulp (Cephes expf polynomial); exp(x < -87.3) = 0, exp(+large) = inf, NaN stays NaN.
static inline __m256 exp(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3365447f), hi = _mm256_set1_ps(88.7228391f);
  __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));  // NaN passes through
  __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  // 2^n built in the exponent field; n in [-126, 128], and n = 128 only at the clamp,
  // where `over` replaces the result anyway. Split as 2^(n/2) twice keeps n = -126..-127 finite.
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i h = _mm256_srai_epi32(ni, 1);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  y = _mm256_andnot_ps(under, y);
  return _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
}

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lanes i < n (0..8) set, for maskload/maskstore.
static inline __m256i head_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Halves p[0..n) as floats in lanes 0..n-1, 0 above (n < 8). AVX2 has no 16-bit
// masked load and the row may end at the end of the cache, so nothing past p[n-1]
// is read; inserts rather than a copy through memory, which would stall the
// 16-byte load on the narrow stores before it.
static inline __m256 load_f16_head(const uint16_t* p, int64_t n) {
  __m128i h = _mm_setzero_si128();
  switch (n) {
    case 7: h = _mm_insert_epi16(h, p[6], 6); [[fallthrough]];
    case 6: h = _mm_insert_epi16(h, p[5], 5); [[fallthrough]];
    case 5: h = _mm_insert_epi16(h, p[4], 4); [[fallthrough]];
    case 4: h = _mm_insert_epi16(h, p[3], 3); [[fallthrough]];
    case 3: h = _mm_insert_epi16(h, p[2], 2); [[fallthrough]];
    case 2: h = _mm_insert_epi16(h, p[1], 1); [[fallthrough]];
    case 1: h = _mm_insert_epi16(h, p[0], 0);
  }
  return _mm256_cvtph_ps(h);
}

}  // namespace roost::simd256
