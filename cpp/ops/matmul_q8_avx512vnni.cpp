// Q8_0 matmul, AVX-512 VNNI (vpdpbusd), for Zen 4 and Ice Lake on.
//
// vpdpbusd multiplies unsigned bytes by signed bytes, 4 k at a time into 16 int32 lanes.
// The weights take the unsigned side, offset by +128 (w ^ 0x80 = w + 128 for int8):
// one xor per 64-byte load, shared by every row of the tile, while each row's 4
// activation bytes stay signed and come straight from memory as the instruction's
// broadcast operand ({1to16}), with no shuffle or xor of their own. The offset adds
// 128 * sum(x) to each block's dot product; quantize_rows_q8_0 hands over
// -128 * sum(x) per row and block, and each block's int32 accumulators start from it.
// Per row, block and step that leaves one vpdpbusd; per row and block, one convert,
// one multiply of the scales and one fused multiply-add:
//   y_col = fma(float(dot), d_w[col] * d_x, y_col), block by block in k order,
// as matmul_reference does, so both agree bit for bit.
#include <immintrin.h>

#include <cstring>

#include "matmul_impl.h"

namespace roost::matmul_impl {
namespace {

// Rows per tile (kQ8VnniRows, matmul_impl.h). A batch of 32 runs as tiles of 12, 12
// and 8 rows: each panel is read from L1 three times instead of four, and each weight
// load's xor is shared by 12 rows (cold weights, M = 32, one thread: about 4% faster
// than tiles of 8).
constexpr int kMaxMr = (int)kQ8VnniRows;
// Prefetching the weights. One row tile (M <= 12: the decode GEMV, small batches)
// streams each panel once: its loads run kStreamPrefetchBytes ahead (as in
// matmul_avx512.cpp, about a DRAM latency of a core's streaming bandwidth). With more
// row tiles, the first used to stream the panel while the others computed on it from
// L1 with nothing in flight: there every tile fetches a share of the next panel (tile
// t the blocks b with b % tiles == t, each one panel ahead), so the stream goes on
// through the whole panel's work (cold weights, M = 32, one thread: 0.88-0.94x the
// time of prefetching from the first tile only).
constexpr int64_t kStreamPrefetchBytes = 4096;

// acc += w (unsigned) . the 4 signed bytes at x, broadcast to every lane by the
// instruction's own memory operand ({1to16}): GCC 12 loads them with a separate
// vpbroadcastd instead, one more instruction per row and step.
inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const int8_t* x) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t*)x));
  return acc;
}

// y[MR rows, the panel's 16 columns] for one panel of nb blocks, the rows' activations
// in the tile layout of quantize_rows_q8_0 (tile = kMaxMr): block b's bytes at xq + b * 32 * MR, laid
// out [8 quads of k][MR rows][4 k], and its scales and sums at xd, xs + b * MR. Every
// operand of a block is then a constant displacement from one pointer: with a pointer
// per row (rows Kq apart) the 12-row tile ran out of registers and GCC reloaded the
// row addresses from the stack (and from xmm registers, on the FP pipes) every block.
template <int MR, bool kSpread>
void tile(float* y, int64_t ldy, const int8_t* xq, const float* xd, const int32_t* xs, const uint8_t* w,
          const float* bias, int64_t nb, int64_t col, int64_t N, int64_t pf_step, int64_t pf_phase) {
  const __m512i k128 = _mm512_set1_epi8((char)0x80);
  __m512 acc[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) acc[r] = _mm512_setzero_ps();
  int64_t pf_next = pf_phase;
  for (int64_t b = 0; b < nb; b++, xq += kQ8Block * MR, xd += MR, xs += MR) {
    const uint8_t* blk = w + b * kQ8PanelBlockBytes;
    if (!kSpread) {
#pragma GCC unroll 9
      for (int l = 0; l < 9; l++) _mm_prefetch((const char*)blk + kStreamPrefetchBytes + 64 * l, _MM_HINT_T0);
    } else if (b == pf_next) {  // b % pf_step == pf_phase, without a division per block
#pragma GCC unroll 9
      for (int l = 0; l < 9; l++) _mm_prefetch((const char*)blk + nb * kQ8PanelBlockBytes + 64 * l, _MM_HINT_T0);
      pf_next += pf_step;
    }
    __m512i dot[MR];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) dot[r] = _mm512_set1_epi32(xs[r]);
#pragma GCC unroll 8
    for (int s = 0; s < 8; s++) {
      const __m512i wu = _mm512_xor_si512(_mm512_loadu_si512((const void*)(blk + 64 * s)), k128);
#pragma GCC unroll 12
      for (int r = 0; r < MR; r++) dot[r] = dpbusd_bcast(dot[r], wu, xq + 4 * (s * MR + r));
    }
    // maskz forms: GCC 12 warns of its own _mm512_undefined_ps inside the plain ones here.
    const __m512 dw = _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256((const __m256i*)(blk + kPanel * kQ8Block)));
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
      acc[r] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xffff, dot[r]), _mm512_mul_ps(dw, _mm512_set1_ps(xd[r])), acc[r]);
  }
  const int64_t valid = std::min<int64_t>(kPanel, N - col);
  const __mmask16 mask = (__mmask16)((1u << valid) - 1);
  const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + col) : _mm512_setzero_ps();
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) _mm512_mask_storeu_ps(y + r * ldy + col, mask, _mm512_add_ps(acc[r], bv));
}

using TileFn = void (*)(float*, int64_t, const int8_t*, const float*, const int32_t*, const uint8_t*, const float*, int64_t,
                        int64_t, int64_t, int64_t, int64_t);
template <bool kSpread>
constexpr TileFn kTiles[kMaxMr + 1] = {nullptr,
                                       &tile<1, kSpread>,
                                       &tile<2, kSpread>,
                                       &tile<3, kSpread>,
                                       &tile<4, kSpread>,
                                       &tile<5, kSpread>,
                                       &tile<6, kSpread>,
                                       &tile<7, kSpread>,
                                       &tile<8, kSpread>,
                                       &tile<9, kSpread>,
                                       &tile<10, kSpread>,
                                       &tile<11, kSpread>,
                                       &tile<12, kSpread>};

}  // namespace

// Panels [p0, p1) for all M rows: each panel streams from memory once and the row
// tiles after the first find it in L1 or L2.
void panels_q8_avx512vnni(const Params& p, int64_t p0, int64_t p1) {
  const int64_t nb = q8_blocks(p.K), Kq = nb * kQ8Block;
  const auto* w = static_cast<const uint8_t*>(p.w);
  const int64_t tiles = (p.M + kMaxMr - 1) / kMaxMr;
  const TileFn* fns = tiles == 1 ? kTiles<false> : kTiles<true>;
  for (int64_t pn = p0; pn < p1; pn++)
    for (int64_t m0 = 0; m0 < p.M; m0 += kMaxMr) {
      const int rows = (int)std::min<int64_t>(kMaxMr, p.M - m0);
      // Tile layout: the tile's rows start where row m0 would in row order.
      fns[rows](p.y + m0 * p.N, p.N, p.xq + m0 * Kq, p.xd + m0 * nb, p.xs + m0 * nb, w + pn * nb * kQ8PanelBlockBytes,
                   p.bias, nb, pn * kPanel, p.N,
                   tiles, m0 / kMaxMr);
    }
}

}  // namespace roost::matmul_impl
