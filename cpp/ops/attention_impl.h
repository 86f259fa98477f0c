// Shared between attention.cpp (tiling, key splits, scheduling, merge) and the
// one kernel family it runs: a tile of queries of one head against a list of key
// spans (attention_spans.h), per ISA in attention_<isa>.cpp (few queries: decode)
// and attention_tile_<isa>.cpp (a GEMM-shaped tile: prefill), and the plain loop
// of attention_spans_ref.cpp. Dense causal attention is one span per sequence.
#pragma once

#include "attention_spans.h"

namespace roost::attention_impl {

// A tile of queries walks the keys in blocks, and every query of the tile uses a
// block while it is in L1: K/V traffic drops by the tile size in prefill.
constexpr int64_t kQueryTile = 64;
constexpr int64_t kKeyBlock = 64;
constexpr int64_t kMaxFastD = 128;  // larger heads take the plain loop

// From this many queries on, a tile packs each key block once and runs the
// GEMM-shaped kernel; fewer (decode) read the cache rows directly.
constexpr int64_t kMinTileQueries = 4;

// Rows of span s a query at qpos sees: 0 .. visible-1.
inline int64_t visible(const KeySpan& s, int64_t qpos) {
  const int64_t v = qpos - s.pos0 + 1;
  return v < 0 ? 0 : v > s.n ? s.n : v;
}

// The GEMM-shaped tiles walk a task's keys in runs: consecutive spans that
// continue one another's positions (each masked, span s+1 starting where s
// ends) count as one span, cut into 64-key blocks from the run's start. So a
// query's keys fall in the same blocks however they were split into spans,
// e.g. a block_recurrent pass's own rows after the ring's earlier ones, split
// where the pass starts (docs/design.md, "Batch invariance").
inline int64_t run_end(const KeySpan* spans, int64_t n_spans, int64_t si) {
  int64_t e = si + 1;
  while (e < n_spans && spans[e - 1].pos0 != kSpanNoMask && spans[e].pos0 == spans[e - 1].pos0 + spans[e - 1].n) e++;
  return e;
}
// Spans [si, se) as one span for visible(): positions and row count.
inline KeySpan run_span(const KeySpan* spans, int64_t si, int64_t se) {
  KeySpan run = spans[si];
  for (int64_t s = si + 1; s < se; s++) run.n += spans[s].n;
  return run;
}
// K/V elements as the kernels read them: float, or uint16_t holding IEEE half
// (KvType::F16). Each kernel is one template over T; its entry picks T from t.kv.
template <typename T> inline const T* kv_rows(const void* p) { return static_cast<const T*>(p); }

// Reads a run's rows in order: take() hands the K and V row pointers (head
// column offset added) of the next `rows` rows.
template <typename T>
struct RunCursor {
  const KeySpan* span;
  int64_t row = 0;
  void take(int64_t rows, int64_t off, const T** k, const T** v) {
    for (int64_t j = 0; j < rows; j++, row++) {
      while (row == span->n) span++, row = 0;
      k[j] = kv_rows<T>(span->k) + row * span->stride + off;
      v[j] = kv_rows<T>(span->v) + row * span->stride + off;
    }
  }
};

// How a decode tile prefetches a span's rows (attention_avx512.cpp says why):
// kShort when the whole tile reads few keys (all named up front, each value row
// beside its key row); kAhead, streaming kPrefetchRows ahead, for a span longer
// than that which is the tile's only keys (a dense sequence, a split part) or
// longer than twice that among others; kNone for the shorter spans of a tile
// with several (a BigBird block, a Perceiver ring half): there prefetching ahead
// mostly fetches past the span's end, and measured slower than none.
enum class Prefetch { kNone, kAhead, kShort };
constexpr int64_t kPrefetchRows = 2 * kKeyBlock;
inline Prefetch prefetch_mode(int64_t tile_keys, int64_t span_rows) {
  if (tile_keys <= kPrefetchRows) return Prefetch::kShort;
  const bool alone = span_rows == tile_keys;
  return span_rows > (alone ? kPrefetchRows : 2 * kPrefetchRows) ? Prefetch::kAhead : Prefetch::kNone;
}

// A kernel runs one tile (t.nq <= kQueryTile). With partial == nullptr it writes
// t.out (zeros for a query that sees no key); otherwise the tile's keys are one
// part of a split and query b leaves (max, sum, acc[D]) unnormalized at
// partial + b * (D + 2) for attention.cpp to merge.
using TileKernel = void (*)(const SpanAttentionTask& t, int64_t D, float* partial);
void tile_reference(const SpanAttentionTask& t, int64_t D, float* partial);
void tile_avx2(const SpanAttentionTask& t, int64_t D, float* partial);
void tile_avx512(const SpanAttentionTask& t, int64_t D, float* partial);
// The GEMM-shaped tiles (attention_tile_<isa>.cpp), for t.nq >= kMinTileQueries.
void gemm_tile_avx2(const SpanAttentionTask& t, int64_t D, float* partial);
void gemm_tile_avx512(const SpanAttentionTask& t, int64_t D, float* partial);

// Where query b's result goes: its output row, scaled by 1/sum (zeros when it
// saw no key), or its partial after (max, sum), unscaled.
struct RowSink {
  float* dst;  // [D]
  float mul;
};
inline RowSink row_sink(const SpanAttentionTask& t, int64_t D, float* partial, int64_t b, float m, float l) {
  if (partial) {
    float* p = partial + b * (D + 2);
    p[0] = m;
    p[1] = l;
    return {p + 2, 1.f};
  }
  return {t.out + b * t.out_stride + t.head * D, l > 0 ? 1.f / l : 0.f};
}

}  // namespace roost::attention_impl
