// Vector math for the *_avx512.cpp kernels only (needs their compile flags).
// Everything is static: the AVX2 twin in simd_avx2_impl.h defines the same names,
// and internal linkage keeps the linker from merging one ISA's copy into the other.
#pragma once

// GCC 12's avx512fintrin.h trips -Wmaybe-uninitialized on its own _mm512_undefined_*
// (GCC bug 105593, fixed in 13); the warning then lands in every including file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstdint>

namespace roost::simd512 {

// exp(x), about 2 ulp (Cephes expf polynomial); exp(-inf) = 0, exp(+large) = inf, NaN stays NaN.
static inline __m512 exp(__m512 x) {
  // Below -120 the result underflows past the smallest subnormal; the clamp also
  // turns -inf into an ordinary input. max(lo, x) returns x when x is NaN.
  x = _mm512_max_ps(_mm512_set1_ps(-120.f), x);
  x = _mm512_min_ps(_mm512_set1_ps(128.f), x);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 split for an exact n*ln2_hi
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 r2 = _mm512_mul_ps(r, r);
  p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);  // p * 2^n, saturating to 0 / inf
}

static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
static inline float hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

// Lane r of the result = the sum (kMax: the max) of the lanes of v[r], r = 0..15: the
// pairwise folds of a 16 x 16 transpose, one vector for 16 reductions.
template <bool kMax>
static inline __m512 fold16(__m512 a, __m512 b) { return kMax ? _mm512_max_ps(a, b) : _mm512_add_ps(a, b); }
template <bool kMax>
static inline __m512 transpose_reduce16(const __m512* v) {
  __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++)  // per 128-bit lane: [v0 0+2, v1 0+2, v0 1+3, v1 1+3]
    a[i] = fold16<kMax>(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; i++) {  // per 128-bit lane: one partial of each of 4 vectors
    __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = fold16<kMax>(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; i++)  // fold the 4 lanes pairwise
    c[i] = fold16<kMax>(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88), _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xdd));
  return fold16<kMax>(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xdd));
}

// Mask of the first `n` (0..16) lanes.
static inline __mmask16 head_mask(int64_t n) { return (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1); }

// Prefetches `rows` rows of `width` floats, `stride` floats apart, into L2: K/V
// rows of one head are short runs far apart, a pattern the hardware prefetchers
// follow poorly.
template <typename T>
static inline void prefetch_rows(const T* p, int64_t stride, int64_t rows, int64_t width) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < width; c += 64 / sizeof(T)) _mm_prefetch((const char*)(p + r * stride + c), _MM_HINT_T1);
}

// 16 K/V elements, lanes outside m zero: float, or IEEE half (uint16_t bits)
// converted exactly, so a kernel over half rows computes what its float twin
// computes over the converted rows.
static inline __m512 load_kv(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
static inline __m512 load_kv(__mmask16 m, const uint16_t* p) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }

}  // namespace roost::simd512
