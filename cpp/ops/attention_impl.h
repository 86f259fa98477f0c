// Shared between attention.cpp (work split, combine) and its ISA kernels.
#pragma once

#include "ops.h"

namespace roost::attention_impl {

// A tile of queries walks the keys in blocks, and every query of the tile uses a
// block while it is in L1: K/V traffic drops by the tile size in prefill.
constexpr int64_t kQueryTile = 64;
constexpr int64_t kKeyBlock = 64;
constexpr int64_t kMaxFastD = 128;  // larger heads take the plain loop

// One unit of parallel work: queries i0..i1-1 of sequence `seq`, head `head`,
// against keys j0..j1-1 (clipped per query by causality). When the keys are
// split across items, `partial` receives per query (max, sum, acc[D]) unnormalized
// ([i1-i0][D+2] floats) for attention.cpp to combine; otherwise the item writes
// the output rows directly.
struct Item {
  int64_t seq, head;
  int64_t i0, i1;
  int64_t j0, j1;
  float* partial;
};

// From this many queries on, an item packs each key block once and runs the
// GEMM-shaped tile kernel; fewer (decode) read the cache rows directly.
constexpr int64_t kMinTileQueries = 4;

void item_avx2(const AttentionSeq& s, int64_t D, const Item& it);
void item_avx512(const AttentionSeq& s, int64_t D, const Item& it);
void tile_avx2(const AttentionSeq& s, int64_t D, const Item& it);
void tile_avx512(const AttentionSeq& s, int64_t D, const Item& it);

}  // namespace roost::attention_impl
