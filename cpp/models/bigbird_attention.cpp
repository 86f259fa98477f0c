#include "bigbird_attention.h"

#include <algorithm>

#include "bigbird_pattern.h"

namespace roost {

void bigbird_prepare(BigBirdBlocks& bb, const AttentionConfig& a, int64_t L, int64_t H, int64_t i0, int64_t i1) {
  if (bb.i0 == i0 && bb.i1 == i1 && !bb.offset.empty()) return;
  bb.i0 = i0;
  bb.i1 = i1;
  bb.offset.assign(1, 0);
  bb.block.clear();
  for (int64_t i = i0; i < i1; i++)
    for (int64_t l = 0; l < L; l++)
      for (int64_t h = 0; h < H; h++) {
        for (int64_t j : bigbird_blocks(a, l, h, i)) bb.block.push_back(j);
        bb.offset.push_back((int64_t)bb.block.size());
      }
}

void bigbird_keep_last(BigBirdBlocks& bb, int64_t L, int64_t H) {
  if (bb.i1 - bb.i0 <= 1) return;
  const int64_t first = (bb.i1 - 1 - bb.i0) * L * H;  // the lists of block i1-1
  const int64_t base = bb.offset[first];
  std::vector<int64_t> offset(bb.offset.begin() + first, bb.offset.end());
  for (int64_t& o : offset) o -= base;
  std::vector<int64_t> block(bb.block.begin() + base, bb.block.end());
  bb.offset.swap(offset);
  bb.block.swap(block);
  bb.offset.shrink_to_fit();
  bb.block.shrink_to_fit();
  bb.i0 = bb.i1 - 1;
}

void bigbird_tasks(SpanBatch& batch, const BigBirdBlocks& bb, const AttentionSeq& s, int64_t b, int64_t l, int64_t L,
                   int64_t H) {
  const int64_t end = s.pos0 + s.Tq;
  bigbird_each_task(bb, b, l, L, H, s.pos0, s.Tq, [&](const BigBirdTask& t) {
    for (int64_t o = 0; o < t.n_blocks; o++) {
      const int64_t j = t.blocks[o];
      batch.add_span({kv_advance(s.k, j * b * s.kv_stride, s.kv), kv_advance(s.v, j * b * s.kv_stride, s.kv), s.kv_stride,
                      std::min(b, end - j * b), j * b});
    }
    batch.add_task({s.out + t.r0 * s.out_stride, s.out_stride, s.q + t.r0 * s.q_stride, s.q_stride, t.p1 - t.p0, t.p0,
                    t.head, nullptr, 0, false, s.kv});
  });
}

}  // namespace roost
