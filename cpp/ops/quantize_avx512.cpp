// quantize_rows_q8_0 with AVX-512: each block of 32 as two vectors, rounded exactly as
// quantize_block_q8_0 does (max |x| / 127, x * (1 / d), halves away from zero), so the
// activations of a Q8_0 matmul come out byte for byte as the scalar rule gives them,
// in a fraction of the time (the scalar roundf loop took several ms of a batch-32
// decode step).
#include <algorithm>

#include "../dtype.h"
#include "quantize_impl.h"
#include "simd_avx512_impl.h"

namespace roost::quantize_impl {
namespace {

// roundf(v): truncate, then one step away from zero where the dropped part is >= 0.5
// (v - trunc(v) is exact in float).
inline __m512 round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)));
  const __m512 one = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(sign), _mm512_castps_si512(_mm512_set1_ps(1.f))));
  const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
  const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm512_mask_add_ps(t, up, t, one);
}

}  // namespace

void rows_q8_0_avx512(int8_t* q, float* d, int32_t* sums, const float* x, int64_t m0, int64_t m1, int64_t K) {
  const int64_t nb = (K + kQ8Block - 1) / kQ8Block, Kq = nb * kQ8Block;
  for (int64_t m = m0; m < m1; m++) {
    const float* row = x + m * K;
    for (int64_t b = 0; b < nb; b++) {
      const int64_t k0 = b * kQ8Block, n = std::min<int64_t>(kQ8Block, K - k0);
      // Loads past K read zeros (the block's padding).
      const __mmask16 lo = simd512::head_mask(n), hi = simd512::head_mask(std::max<int64_t>(0, n - 16));
      const __m512 a = _mm512_maskz_loadu_ps(lo, row + k0), c = _mm512_maskz_loadu_ps(hi, row + k0 + 16);
      const float amax = simd512::hmax(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(c)));
      const float dq = amax / 127.f;
      const float id = dq != 0.f ? 1.f / dq : 0.f;
      const __m512 vid = _mm512_set1_ps(id);
      const __m512i qa = _mm512_cvtps_epi32(round_half_away(_mm512_mul_ps(a, vid)));
      const __m512i qc = _mm512_cvtps_epi32(round_half_away(_mm512_mul_ps(c, vid)));
      int8_t* out = q + m * Kq + k0;
      _mm_storeu_si128((__m128i*)out, _mm512_cvtepi32_epi8(qa));
      _mm_storeu_si128((__m128i*)(out + 16), _mm512_cvtepi32_epi8(qc));
      d[m * nb + b] = f16_to_f32(f32_to_f16(dq));  // the dot product uses the scale the block stores
      if (sums) sums[m * nb + b] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qc));
    }
  }
}

}  // namespace roost::quantize_impl
