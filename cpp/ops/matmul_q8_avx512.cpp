// Q8_0 matmul, AVX-512BW (vpmaddubsw), for AVX-512 CPUs without VNNI
// (matmul_q8_avx512vnni.cpp has the vpdpbusd kernel).
//
// Per 16-column panel and block of 32 k, each row's 32 int8 activations meet the
// block's 512 weight bytes in 8 steps of 4 k (one 64-byte load, 4 activation bytes
// broadcast): 16 int32 lanes, one per column, hold the exact block dot products. Then
// y_col = fma(float(dot), d_w[col] * d_x, y_col), block by block in k order, as
// matmul_reference does, so both agree bit for bit.

#include <immintrin.h>

#include <cstring>

#include "matmul_impl.h"

namespace roost::matmul_impl {
namespace {

constexpr int kQ8MaxMr = 8;
// As in matmul_avx512.cpp: about a DRAM latency of a core's streaming bandwidth.
constexpr int64_t kQ8PrefetchBytes = 4096;

inline __m512i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// y[MR rows, the panel's 16 columns] for one panel of nb blocks. xq rows are Kq apart,
// xd rows nb apart.
template <int MR>
void q8_tile(float* y, int64_t ldy, const int8_t* xq, const float* xd, const uint8_t* w, const float* bias, int64_t nb,
             int64_t col, int64_t N, bool prefetch) {
  const int64_t Kq = nb * kQ8Block;
  __m512 acc[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) acc[r] = _mm512_setzero_ps();
  const __m512i ones16 = _mm512_set1_epi16(1);
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = w + b * kQ8PanelBlockBytes;
    if (prefetch)
#pragma GCC unroll 9
      for (int l = 0; l < 9; l++) _mm_prefetch((const char*)blk + kQ8PrefetchBytes + 64 * l, _MM_HINT_T0);
    __m512i dot[MR][2];  // two chains per row: even and odd steps
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) dot[r][0] = dot[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int s = 0; s < 8; s++) {
      const __m512i wv = _mm512_loadu_si512((const void*)(blk + 64 * s));
      // vpmaddubsw wants one unsigned operand: |w| (128 for -128 is right as unsigned)
      // against x with w's sign; pairs reach at most 2 * 128 * 127, short of saturating.
      const __m512i aw = _mm512_abs_epi8(wv);
      const __mmask64 neg = _mm512_movepi8_mask(wv);
#pragma GCC unroll 8
      for (int r = 0; r < MR; r++) {
        const __m512i xb = broadcast4(xq + r * Kq + b * kQ8Block + 4 * s);
        const __m512i xs = _mm512_mask_sub_epi8(xb, neg, _mm512_setzero_si512(), xb);
        dot[r][s & 1] = _mm512_add_epi32(dot[r][s & 1], _mm512_madd_epi16(_mm512_maddubs_epi16(aw, xs), ones16));
      }
    }
    // maskz forms: GCC 12 warns of its own _mm512_undefined_ps inside the plain ones here.
    const __m512 dw = _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256((const __m256i*)(blk + kPanel * kQ8Block)));
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      const __m512i d = _mm512_add_epi32(dot[r][0], dot[r][1]);
      acc[r] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xffff, d), _mm512_mul_ps(dw, _mm512_set1_ps(xd[r * nb + b])), acc[r]);
    }
  }
  const int64_t valid = std::min<int64_t>(kPanel, N - col);
  const __mmask16 mask = (__mmask16)((1u << valid) - 1);
  const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + col) : _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) _mm512_mask_storeu_ps(y + r * ldy + col, mask, _mm512_add_ps(acc[r], bv));
}

using Q8TileFn = void (*)(float*, int64_t, const int8_t*, const float*, const uint8_t*, const float*, int64_t, int64_t,
                          int64_t, bool);
constexpr Q8TileFn kQ8Tiles[kQ8MaxMr + 1] = {nullptr,        &q8_tile<1>, &q8_tile<2>, &q8_tile<3>, &q8_tile<4>,
                                             &q8_tile<5>,    &q8_tile<6>, &q8_tile<7>, &q8_tile<8>};

}  // namespace

// Panels [p0, p1) for all M rows: each panel streams from memory once (the first row
// block prefetches it) and the later row blocks find it in L2.
void panels_q8_avx512bw(const Params& p, int64_t p0, int64_t p1) {
  const int64_t nb = q8_blocks(p.K), Kq = nb * kQ8Block;
  const auto* w = static_cast<const uint8_t*>(p.w);
  for (int64_t pn = p0; pn < p1; pn++)
    for (int64_t m0 = 0; m0 < p.M; m0 += kQ8MaxMr) {
      const int rows = (int)std::min<int64_t>(kQ8MaxMr, p.M - m0);
      kQ8Tiles[rows](p.y + m0 * p.N, p.N, p.xq + m0 * Kq, p.xd + m0 * nb, w + pn * nb * kQ8PanelBlockBytes, p.bias, nb,
                     pn * kPanel, p.N, m0 == 0);
    }
}

}  // namespace roost::matmul_impl
