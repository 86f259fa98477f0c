// BigBird (causal block-sparse) attention of one gpt2 layer through the span
// kernel: each query block reads only its selected key blocks from the full
// KV cache, so per-token cost is at most (w + g + r) * b keys at any context.
#pragma once

#include <cstdint>
#include <vector>

#include "../config.h"
#include "../ops/attention_spans.h"
#include "../ops/ops.h"

namespace roost {

// Block lists of query blocks [i0, i1) for every (layer, head), kept per
// sequence: decode stays in one block for b tokens, and each list costs O(i)
// hashes to draw, so drawing it once per block keeps decode flat in context.
struct BigBirdBlocks {
  int64_t i0 = 0, i1 = 0;
  std::vector<int64_t> offset;  // [(i1 - i0) * L * H + 1]: list of (i, l, h) at index ((i - i0) * L + l) * H + h
  std::vector<int64_t> block;   // the lists, concatenated
  size_t bytes() const { return (offset.capacity() + block.capacity()) * sizeof(int64_t); }
};

// Makes `bb` hold query blocks [i0, i1) (no work when it already does).
void bigbird_prepare(BigBirdBlocks& bb, const AttentionConfig& a, int64_t L, int64_t H, int64_t i0, int64_t i1);
// Keeps only the last query block (the one decode continues in).
void bigbird_keep_last(BigBirdBlocks& bb, int64_t L, int64_t H);

// One attention task of BigBird layer l for one sequence: its new queries at
// positions p0 .. p1-1 (one query block; row r0 of the sequence's new rows),
// head `head`, over key blocks blocks[0 .. n_blocks) (block j: cache rows
// j*b .. min((j+1)*b, end)-1).
struct BigBirdTask {
  int64_t r0, p0, p1, head;
  const int64_t* blocks;
  int64_t n_blocks;
};
// Every task of layer l for a sequence whose new queries sit at positions
// pos0 .. pos0+Tq-1 (its cache holds rows 0 .. pos0+Tq-1): the one place the
// span lists of BigBird are laid out.
template <typename Fn>
void bigbird_each_task(const BigBirdBlocks& bb, int64_t b, int64_t l, int64_t L, int64_t H, int64_t pos0, int64_t Tq,
                       Fn&& fn) {
  const int64_t end = pos0 + Tq;
  for (int64_t i = pos0 / b; i * b < end; i++) {
    const int64_t p0 = pos0 > i * b ? pos0 : i * b, p1 = end < (i + 1) * b ? end : (i + 1) * b;
    for (int64_t h = 0; h < H; h++) {
      const int64_t list = ((i - bb.i0) * L + l) * H + h;
      const int64_t o0 = bb.offset[list], o1 = bb.offset[list + 1];
      fn(BigBirdTask{p0 - pos0, p0, p1, h, bb.block.data() + o0, o1 - o0});
    }
  }
}

// The tasks of layer l for one sequence's new queries on float caches (s as
// for attention_causal: key/value rows 0 .. pos0+Tq-1 of the cache).
void bigbird_tasks(SpanBatch& batch, const BigBirdBlocks& bb, const AttentionSeq& s, int64_t block_size, int64_t l,
                   int64_t L, int64_t H);

}  // namespace roost
