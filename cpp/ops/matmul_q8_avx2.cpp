// Q8_0 matmul, AVX2: the AVX-512BW kernel's scheme (matmul_q8_avx512.cpp) in two
// 8-column halves per panel, with vpsignb/vpmaddubsw for the int8 dot products.
#include <immintrin.h>

#include <cstring>

#include "matmul_impl.h"

namespace roost::matmul_impl {
namespace {

constexpr int kQ8MaxMr = 4;
constexpr int64_t kQ8PrefetchBytes = 4096;

inline __m256i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <int MR>
void q8_tile(float* y, int64_t ldy, const int8_t* xq, const float* xd, const uint8_t* w, const float* bias, int64_t nb,
             int64_t col, int64_t N, bool prefetch) {
  const int64_t Kq = nb * kQ8Block;
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256 acc[MR][2];
#pragma GCC unroll 4
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t* blk = w + b * kQ8PanelBlockBytes;
    if (prefetch)
#pragma GCC unroll 9
      for (int l = 0; l < 9; l++) _mm_prefetch((const char*)blk + kQ8PrefetchBytes + 64 * l, _MM_HINT_T0);
    __m256i dot[MR][2];  // [row][half]
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++) dot[r][0] = dot[r][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int s = 0; s < 8; s++) {
#pragma GCC unroll 2
      for (int h = 0; h < 2; h++) {
        const __m256i wv = _mm256_loadu_si256((const __m256i*)(blk + 64 * s + 32 * h));
        // |w| unsigned against x with w's sign (vpsignb also zeroes x where w = 0, whose
        // |w| is 0 anyway); pairs reach at most 2 * 128 * 127, short of saturating.
        const __m256i aw = _mm256_abs_epi8(wv);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
          const __m256i xs = _mm256_sign_epi8(broadcast4(xq + r * Kq + b * kQ8Block + 4 * s), wv);
          dot[r][h] = _mm256_add_epi32(dot[r][h], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xs), ones16));
        }
      }
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(blk + kPanel * kQ8Block + 16 * h)));
#pragma GCC unroll 4
      for (int r = 0; r < MR; r++)
        acc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r][h]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[r * nb + b])),
                                    acc[r][h]);
    }
  }
  const int64_t valid = std::min<int64_t>(kPanel, N - col);
  for (int r = 0; r < MR; r++) {
    float out[kPanel];
    _mm256_storeu_ps(out, acc[r][0]);
    _mm256_storeu_ps(out + 8, acc[r][1]);
    for (int64_t j = 0; j < valid; j++) y[r * ldy + col + j] = out[j] + (bias ? bias[col + j] : 0.f);
  }
}

using Q8TileFn = void (*)(float*, int64_t, const int8_t*, const float*, const uint8_t*, const float*, int64_t, int64_t,
                          int64_t, bool);
constexpr Q8TileFn kQ8Tiles[kQ8MaxMr + 1] = {nullptr, &q8_tile<1>, &q8_tile<2>, &q8_tile<3>, &q8_tile<4>};

}  // namespace

void panels_q8_avx2(const Params& p, int64_t p0, int64_t p1) {
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
