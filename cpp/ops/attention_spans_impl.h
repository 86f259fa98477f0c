// Shared between attention_spans.cpp (tiling, scheduling) and its ISA kernels.
#pragma once

#include "attention_spans.h"

namespace roost::attention_spans_impl {

// A tile of queries walks each span in key blocks that stay in L1 while every
// query of the tile folds them in (K/V traffic / kTile in prefill).
constexpr int64_t kTile = 32;
constexpr int64_t kKeyBlock = 64;
constexpr int64_t kMaxFastD = 128;  // wider heads take the reference loop

// Rows of span s a query at qpos sees: 0 .. visible-1.
inline int64_t visible(const KeySpan& s, int64_t qpos) {
  const int64_t v = qpos - s.pos0 + 1;
  return v < 0 ? 0 : v > s.n ? s.n : v;
}

// One tile (task.nq <= kTile). Kernels write task.out directly.
void tile_reference(const SpanAttentionTask& t, int64_t D);
void tile_avx2(const SpanAttentionTask& t, int64_t D);
void tile_avx512(const SpanAttentionTask& t, int64_t D);

}  // namespace roost::attention_spans_impl
