// Shared between matmul.cpp (packing, dispatch, threading) and its ISA kernels.
//
// Packed layout: column panels of 16 outputs. Panel p holds columns 16p..16p+15 for
// every k, so W(k, n) sits at ((n / 16) * K + k) * 16 + n % 16 in elements of the
// stored dtype; N is padded to a whole panel with zeros. One panel row is one 64-byte
// line in F32 (half a line in F16/BF16), and a thread's contiguous panel range is a
// single forward stream: the decode GEMV reads it once at memory speed.
//
// Q8_0 panels: panel p holds columns 16p..16p+15 as Kq / 32 blocks (Kq = K rounded up to
// 32, zero padded) of kQ8PanelBlockBytes each: 512 bytes of int8 laid out
// [8 quads of k][16 columns][4 consecutive k], so one 64-byte load is 4 k of all 16
// columns (the operand of one vpdpbusd against 4 broadcast activation bytes), then the
// 16 columns' F16 scales. 544 bytes per 512 weights: the bytes of GGUF's Q8_0.
#pragma once

#include <algorithm>

#include "ops.h"

namespace roost::matmul_impl {

constexpr int64_t kPanel = 16;
inline int64_t panel_count(int64_t N) { return (N + kPanel - 1) / kPanel; }
inline size_t packed_index(int64_t K, int64_t k, int64_t n) { return (size_t)(((n / kPanel) * K + k) * kPanel + n % kPanel); }

// The VNNI kernel's rows per tile: 12 float accumulators and 12 int32 dot products take
// 24 of the 32 zmm. Its activations come in tiles of this many rows (quantize_rows_q8_0).
constexpr int64_t kQ8VnniRows = 12;
constexpr int64_t kQ8PanelBlockBytes = kPanel * kQ8Block + kPanel * 2;
inline int64_t q8_blocks(int64_t K) { return (K + kQ8Block - 1) / kQ8Block; }
inline size_t q8_weight_offset(int64_t K, int64_t k, int64_t n) {
  const int64_t kk = k % kQ8Block;
  return (size_t)(((n / kPanel) * q8_blocks(K) + k / kQ8Block) * kQ8PanelBlockBytes + (kk / 4) * 64 + (n % kPanel) * 4 + kk % 4);
}
inline size_t q8_scale_offset(int64_t K, int64_t b, int64_t n) {
  return (size_t)(((n / kPanel) * q8_blocks(K) + b) * kQ8PanelBlockBytes + kPanel * kQ8Block + (n % kPanel) * 2);
}

struct Params {
  float* y;            // [M, N]
  const float* x;      // [M, K]
  const float* xpack;  // x regrouped by `mr` rows: block b is [K][rows of the block]; null if not packed
  int mr;              // rows per xpack block
  const void* w;       // packed panels [P][K][16]
  DType dtype;
  const float* bias;   // [N] or null
  int64_t M, K, N;
  const int8_t* xq = nullptr;  // Q8_0 only: x quantized [M, q8_blocks(K) * 32] (quantize_rows_q8_0)
  const float* xd = nullptr;   //   and its scales [M, q8_blocks(K)]
  const int32_t* xs = nullptr; //   and, for the VNNI kernel, -128 * each block's sum of x [M, q8_blocks(K)]
                               // (the VNNI kernel takes all three in tiles of kQ8VnniRows rows)
};

// How a variant wants the work cut: panels go to threads in multiples of `grain`,
// and x is packed in blocks of `mr` rows when pack_x.
struct Plan {
  int mr = 1;
  int64_t grain = 1;
  bool pack_x = false;
};

// The lines of the next panel group that row block b (of `blocks`) prefetches into L2
// while it computes: the blocks after the first share them out, so the stream from
// memory goes on through the compute-bound blocks and the next group's first block
// finds its panels in L2 (the tile kernels' `ahead`). static: each ISA's file keeps
// its own copy, compiled with its own flags.
struct Ahead {
  const char* line;  // first 64-byte line
  int64_t lines;
};
// The group after panels [g, g + np) of a thread's range [g, p1), at most NP panels of elem-byte
// weights (none past p1: the rest of the matrix belongs to other threads).
static inline Ahead next_group(const Params& p, int64_t g, int64_t np, int64_t p1, int64_t NP, int64_t elem) {
  const int64_t panel_bytes = p.K * kPanel * elem;
  return {static_cast<const char*>(p.w) + (g + np) * panel_bytes, std::min(NP, p1 - g - np) * panel_bytes / 64};
}
static inline Ahead ahead_of(const Ahead& next, int64_t b, int64_t blocks) {
  if (b == 0) return {nullptr, 0};
  const int64_t share = (next.lines + blocks - 2) / (blocks - 1);
  const int64_t first = std::min(next.lines, (b - 1) * share);
  return {next.line + 64 * first, std::min(next.lines - first, share)};
}

// Each variant computes y[:, 16*p0 .. 16*p1) (clipped to N) for all M rows.
Plan plan_avx2(int64_t M);
void panels_avx2(const Params& p, int64_t p0, int64_t p1);
Plan plan_avx512(int64_t M);
void panels_avx512(const Params& p, int64_t p0, int64_t p1);
// The Q8_0 kernels (matmul_q8_*.cpp): same contract, weights in the Q8_0 panels above.
void panels_q8_avx2(const Params& p, int64_t p0, int64_t p1);
void panels_q8_avx512bw(const Params& p, int64_t p0, int64_t p1);
void panels_q8_avx512vnni(const Params& p, int64_t p0, int64_t p1);

}  // namespace roost::matmul_impl
