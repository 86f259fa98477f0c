// AVX2 + FMA + F16C matmul kernels over the panel layout of matmul_impl.h.
// A 16-wide panel row is two ymm; 16 registers allow 12 accumulators.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "matmul_impl.h"

namespace roost::matmul_impl {
namespace {

// Widening loads of 8 elements.
struct LoadF32 {
  using T = float;
  static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
};
struct LoadF16 {
  using T = uint16_t;
  static __m256 load(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
};
struct LoadBF16 {
  using T = uint16_t;
  static __m256 load(const uint16_t* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
  }
};

constexpr int kMaxMr = 6;  // GEMM tile: 6 rows x 1 panel = 12 ymm accumulators
constexpr int kMaxNp = 1;

// y[MR, NP*16] = a[MR, K] @ b + bias; a packed [K][MR], b = NP panels of [K][16].
// Bytes ahead of the read position that the kernels prefetch (see matmul_avx512.cpp).
constexpr int64_t kPrefetchBytes = 4096;

// `ahead`: see ahead_of in matmul_impl.h.
template <class L, int MR, int NP>
void tile(float* y, int64_t ldy, const float* a, const typename L::T* b, const float* bias, int64_t K, int64_t n0,
          int64_t N, bool prefetch, const char* ahead, int64_t ahead_lines) {
  __m256 acc[MR][2 * NP];
#pragma GCC unroll 8
  for (int m = 0; m < MR; m++)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; j++) acc[m][j] = _mm256_setzero_ps();
  const int64_t ps = K * kPanel;  // elements between panels
  for (int64_t k = 0; k < K; k++) {
    __m256 bv[2 * NP];
    // The first row block streams the panels from memory; later ones find them in L2.
    if (prefetch)
#pragma GCC unroll 4
      for (int j = 0; j < NP; j++) _mm_prefetch((const char*)(b + j * ps + k * kPanel) + kPrefetchBytes, _MM_HINT_T0);
    else if (k < ahead_lines)
      _mm_prefetch(ahead + 64 * k, _MM_HINT_T1);
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NP; j++) bv[j] = L::load(b + (j / 2) * ps + k * kPanel + (j % 2) * 8);
#pragma GCC unroll 8
    for (int m = 0; m < MR; m++) {
      __m256 av = _mm256_broadcast_ss(a + k * MR + m);
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NP; j++) acc[m][j] = _mm256_fmadd_ps(av, bv[j], acc[m][j]);
    }
  }
  for (int j = 0; j < NP; j++) {
    int64_t col = n0 + j * kPanel;  // first column of panel j
    int64_t valid = std::min<int64_t>(kPanel, N - col);
    alignas(32) float bb[kPanel] = {};
    if (bias) std::memcpy(bb, bias + col, valid * sizeof(float));
    __m256 b0 = _mm256_load_ps(bb), b1 = _mm256_load_ps(bb + 8);
#pragma GCC unroll 8
    for (int m = 0; m < MR; m++) {
      __m256 r0 = _mm256_add_ps(acc[m][2 * j], b0), r1 = _mm256_add_ps(acc[m][2 * j + 1], b1);
      float* dst = y + m * ldy + col;
      if (valid == kPanel) {
        _mm256_storeu_ps(dst, r0);
        _mm256_storeu_ps(dst + 8, r1);
      } else {
        alignas(32) float tmp[kPanel];
        _mm256_store_ps(tmp, r0);
        _mm256_store_ps(tmp + 8, r1);
        std::memcpy(dst, tmp, valid * sizeof(float));
      }
    }
  }
}

// Small M (decode): each output column one FMA chain in k order with the bias added
// last, exactly as tile() computes it; one row of half-width weights reads two panels
// at once, more panels one at a time (matmul_avx512.cpp's gemv says why). x is
// [MR, K] row-major.
template <class L, int MR, int NPAR>
void gemv_panels(float* y, int64_t ldy, const float* x, const typename L::T* b, const float* bias, int64_t K,
                 int64_t col0, int64_t N) {
  using T = typename L::T;
  constexpr int kRowsPerLine = (int)(64 / (kPanel * sizeof(T)));  // panel rows per cache line: 1 (F32) or 2
  __m256 acc[NPAR][MR][2];
#pragma GCC unroll 2
  for (int j = 0; j < NPAR; j++)
#pragma GCC unroll 4
    for (int m = 0; m < MR; m++) acc[j][m][0] = acc[j][m][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k++) {
#pragma GCC unroll 2
    for (int j = 0; j < NPAR; j++) {
      const T* row = b + (j * K + k) * kPanel;  // panel j: [K][16]
      if (k % kRowsPerLine == 0) _mm_prefetch((const char*)row + kPrefetchBytes, _MM_HINT_T0);
      const __m256 b0 = L::load(row), b1 = L::load(row + 8);
#pragma GCC unroll 4
      for (int m = 0; m < MR; m++) {
        const __m256 xv = _mm256_broadcast_ss(x + m * K + k);
        acc[j][m][0] = _mm256_fmadd_ps(xv, b0, acc[j][m][0]);
        acc[j][m][1] = _mm256_fmadd_ps(xv, b1, acc[j][m][1]);
      }
    }
  }
#pragma GCC unroll 2
  for (int j = 0; j < NPAR; j++) {
    const int64_t col = col0 + j * kPanel;  // first column of panel j
    const int64_t valid = std::min<int64_t>(kPanel, N - col);
    alignas(32) float bb[kPanel] = {};
    if (bias) std::memcpy(bb, bias + col, valid * sizeof(float));
    const __m256 b0 = _mm256_load_ps(bb), b1 = _mm256_load_ps(bb + 8);
#pragma GCC unroll 4
    for (int m = 0; m < MR; m++) {
      alignas(32) float tmp[kPanel];
      _mm256_store_ps(tmp, _mm256_add_ps(acc[j][m][0], b0));
      _mm256_store_ps(tmp + 8, _mm256_add_ps(acc[j][m][1], b1));
      std::memcpy(y + m * ldy + col, tmp, valid * sizeof(float));
    }
  }
}

template <class L, int MR>
void gemv(float* y, int64_t ldy, const float* x, const typename L::T* w, const float* bias, int64_t K, int64_t n0,
          int64_t N, int64_t np) {
  constexpr int kPair = MR == 1 && sizeof(typename L::T) == 2 ? 2 : 1;
  int64_t q = 0;
  for (; q + kPair <= np; q += kPair) gemv_panels<L, MR, kPair>(y, ldy, x, w + q * K * kPanel, bias, K, n0 + q * kPanel, N);
  for (; q < np; q++) gemv_panels<L, MR, 1>(y, ldy, x, w + q * K * kPanel, bias, K, n0 + q * kPanel, N);
}

constexpr int kMaxGemvM = 3;

template <class L>
using TileFn = void (*)(float*, int64_t, const float*, const typename L::T*, const float*, int64_t, int64_t, int64_t, bool,
                        const char*, int64_t);

template <class L, int MR, int... NPs>
constexpr std::array<TileFn<L>, kMaxNp + 1> row_of(std::integer_sequence<int, NPs...>) {
  return {nullptr, &tile<L, MR, NPs + 1>...};
}
template <class L, int... MRs>
constexpr std::array<std::array<TileFn<L>, kMaxNp + 1>, kMaxMr + 1> table_of(std::integer_sequence<int, MRs...>) {
  return {std::array<TileFn<L>, kMaxNp + 1>{}, row_of<L, MRs + 1>(std::make_integer_sequence<int, kMaxNp>())...};
}
template <class L>
constexpr auto kTiles = table_of<L>(std::make_integer_sequence<int, kMaxMr>());

template <class L>
void panels(const Params& p, int64_t p0, int64_t p1) {
  const auto* w = static_cast<const typename L::T*>(p.w);
  if (p.M <= kMaxGemvM) {
    auto* fn = p.M == 1 ? &gemv<L, 1> : p.M == 2 ? &gemv<L, 2> : &gemv<L, 3>;
    fn(p.y, p.N, p.x, w + p0 * p.K * kPanel, p.bias, p.K, p0 * kPanel, p.N, p1 - p0);
    return;
  }
  const int NP = kMaxNp;
  const float* xa = p.xpack;
  const int64_t blocks = (p.M + p.mr - 1) / p.mr;
  for (int64_t g = p0; g < p1; g += NP) {
    int np = (int)std::min<int64_t>(NP, p1 - g);
    const Ahead next = next_group(p, g, np, p1, NP, (int64_t)sizeof(typename L::T));
    // Every row block reuses this group of panels from L2: weights leave memory once.
    for (int64_t b = 0; b < blocks; b++) {
      const int64_t m0 = b * p.mr;
      int rows = (int)std::min<int64_t>(p.mr, p.M - m0);
      const Ahead ahead = ahead_of(next, b, blocks);
      kTiles<L>[rows][np](p.y + m0 * p.N, p.N, xa + m0 * p.K, w + g * p.K * kPanel, p.bias, p.K, g * kPanel, p.N, b == 0,
                          ahead.line, ahead.lines);
    }
  }
}

}  // namespace

Plan plan_avx2(int64_t M) {
  Plan plan;
  plan.mr = kMaxMr;
  plan.grain = M <= kMaxGemvM ? 1 : kMaxNp;
  plan.pack_x = M > kMaxGemvM;
  return plan;
}

void panels_avx2(const Params& p, int64_t p0, int64_t p1) {
  switch (p.dtype) {
    case DType::F32: panels<LoadF32>(p, p0, p1); break;
    case DType::F16: panels<LoadF16>(p, p0, p1); break;
    case DType::BF16: panels<LoadBF16>(p, p0, p1); break;
    case DType::Q8_0: break;  // matmul() sends Q8_0 to panels_q8_*
  }
}

}  // namespace roost::matmul_impl
