// Shared between quantize.cpp (the entry, the scalar rows) and its AVX-512 variant.
#pragma once

#include <algorithm>
#include <cstdint>

namespace roost::quantize_impl {

// Where quantize_rows_q8_0 puts row m's block b (ops.h): rows go in tiles of `tile`
// rows (the last may have fewer), tile t from row m0 = t * tile keeping row m0's place
// (bytes from m0 * Kq, scales and sums from m0 * nb) and holding its blocks in order,
// each as [8 quads of k][rows of the tile][4 k], then the scales and sums as [b][rows].
// With tile = 1 that is plain row order.
struct Q8Place {
  int64_t bytes;        // offset of block 0's first quad of the row
  int64_t quad_stride;  // bytes between a block's quads: 4 * the tile's rows
  int64_t block_bytes;  // bytes between blocks: 32 * the tile's rows
  int64_t scale;        // index of block 0's scale and sum
  int64_t scale_stride; // the tile's rows
};
inline Q8Place q8_place(int64_t m, int64_t M, int64_t nb, int64_t tile) {
  const int64_t r = m % tile, m0 = m - r, rows = std::min(tile, M - m0);
  return {m0 * nb * 32 + r * 4, 4 * rows, 32 * rows, m0 * nb + r, rows};
}

// Rows [m0, m1) of quantize_rows_q8_0 (same arguments), the scalar rule block by block.
void rows_q8_0_reference(int8_t* q, float* d, int32_t* sums, const float* x, int64_t m0, int64_t m1, int64_t M,
                         int64_t K, int64_t tile);
// The same rows with AVX-512: the same rounding step by step, so equal byte for byte.
void rows_q8_0_avx512(int8_t* q, float* d, int32_t* sums, const float* x, int64_t m0, int64_t m1, int64_t M,
                      int64_t K, int64_t tile);

}  // namespace roost::quantize_impl
