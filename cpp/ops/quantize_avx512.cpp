// quantize_rows_q8_0 with AVX-512: rounded exactly as quantize_block_q8_0 does
// (max |x| / 127, x * (1 / d), halves away from zero), so the activations of a Q8_0
// matmul come out byte for byte as the scalar rule gives them. Blocks go 16 at a time:
// their maxima, scales and sums are one vector each (a transposing reduction), where a
// horizontal reduction, a scalar F16 rounding and a scalar division per block took
// most of the time (the scalar roundf loop before them took several ms of a batch-32
// decode step).
#include <algorithm>
#include <cstring>
#include <vector>

#include "../dtype.h"
#include "quantize_impl.h"
#include "simd_avx512_impl.h"

namespace roost::quantize_impl {
namespace {

// (int)roundf(v), halves away from zero, for |v| <= 256 (a block's values scaled by
// 1 / d are at most 127 in magnitude): truncate v + copysign(0.5 - 2^-25, v). Adding
// 0.5 itself would carry 0.49999997 up to 1; this constant does not, and a half still
// reaches the next integer (0.5 + 0.49999997 rounds to 1.0). Checked against roundf on
// every float of magnitude up to 256 (docs/models.md, "8-bit weights").
inline __m512i round_half_away(__m512 v) {
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u));
  const __m512 c = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_castps_si512(_mm512_set1_ps(0.49999997f))));
  return _mm512_cvttps_epi32(_mm512_add_ps(v, c));
}

}  // namespace

void rows_q8_0_avx512(int8_t* q, float* d, int32_t* sums, const float* x, int64_t m0, int64_t m1, int64_t M,
                      int64_t K, int64_t tile) {
  const int64_t nb = (K + kQ8Block - 1) / kQ8Block;
  // A row whose K is not whole blocks is copied zero padded (the blocks' padding), so
  // every load below is a whole vector.
  thread_local std::vector<float> padded;
  if (K % kQ8Block) padded.assign(nb * kQ8Block, 0.f);
  for (int64_t m = m0; m < m1; m++) {
    const float* row = x + m * K;
    if (K % kQ8Block) row = static_cast<const float*>(std::memcpy(padded.data(), row, K * sizeof(float)));
    const Q8Place at = q8_place(m, M, nb, tile);
    for (int64_t g = 0; g < nb; g += 16) {
      const int nblk = (int)std::min<int64_t>(16, nb - g);
      const float* blk = row + g * kQ8Block;
      __m512 v[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; j++)
        v[j] = j < nblk ? _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(blk + 32 * j)), _mm512_abs_ps(_mm512_loadu_ps(blk + 32 * j + 16)))
                        : _mm512_setzero_ps();
      // The 16 blocks' maxima and, below, sums: exact whatever the order of the folds
      // (max; integer-valued sums far below 2^24).
      const __m512 dq = _mm512_div_ps(simd512::transpose_reduce16<true>(v), _mm512_set1_ps(127.f));  // as amax / 127.f
      const __m512 id = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(dq, _mm512_setzero_ps(), _CMP_NEQ_UQ), _mm512_set1_ps(1.f), dq);
      // The scale the block stores: dq rounded to F16 (to nearest even, as f32_to_f16).
      alignas(64) float scale[16];
      _mm512_store_ps(scale, _mm512_cvtph_ps(_mm512_cvtps_ph(dq, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
      int8_t* out = q + at.bytes + g * at.block_bytes;
#pragma GCC unroll 16
      for (int j = 0; j < 16; j++, out += at.block_bytes) {
        if (j >= nblk) break;  // v[j] stays zero from the first pass
        const __m512 vid = _mm512_permutexvar_ps(_mm512_set1_epi32(j), id);
        const __m512i qa = round_half_away(_mm512_mul_ps(_mm512_loadu_ps(blk + 32 * j), vid));
        const __m512i qc = round_half_away(_mm512_mul_ps(_mm512_loadu_ps(blk + 32 * j + 16), vid));
        const __m128i ba = _mm512_cvtepi32_epi8(qa), bc = _mm512_cvtepi32_epi8(qc);
        if (at.quad_stride == 4) {
          _mm_storeu_si128((__m128i*)out, ba);
          _mm_storeu_si128((__m128i*)(out + 16), bc);
        } else {  // a tile's quads: 4 bytes each, the tile's rows apart
          const int64_t qs = at.quad_stride;
          _mm_storeu_si32(out, ba);
          _mm_storeu_si32(out + qs, _mm_bsrli_si128(ba, 4));
          _mm_storeu_si32(out + 2 * qs, _mm_bsrli_si128(ba, 8));
          _mm_storeu_si32(out + 3 * qs, _mm_bsrli_si128(ba, 12));
          _mm_storeu_si32(out + 4 * qs, bc);
          _mm_storeu_si32(out + 5 * qs, _mm_bsrli_si128(bc, 4));
          _mm_storeu_si32(out + 6 * qs, _mm_bsrli_si128(bc, 8));
          _mm_storeu_si32(out + 7 * qs, _mm_bsrli_si128(bc, 12));
        }
        v[j] = _mm512_cvtepi32_ps(_mm512_add_epi32(qa, qc));
      }
      float* dd = d + at.scale + g * at.scale_stride;
      for (int j = 0; j < nblk; j++) dd[j * at.scale_stride] = scale[j];
      if (sums) {
        alignas(64) int32_t s[16];
        _mm512_store_si512(s, _mm512_cvtps_epi32(simd512::transpose_reduce16<false>(v)));
        int32_t* ss = sums + at.scale + g * at.scale_stride;
        for (int j = 0; j < nblk; j++) ss[j * at.scale_stride] = -128 * s[j];
      }
    }
  }
}

}  // namespace roost::quantize_impl
