// The span-attention entry: cuts tasks into query tiles, runs them over the
// pool costliest first (the tail is the cheapest tiles).
#include <algorithm>
#include <atomic>

#include "attention_spans_impl.h"

namespace roost {

using namespace attention_spans_impl;

void attention_spans(const std::vector<SpanAttentionTask>& tasks, int64_t D, ThreadPool& pool) {
  const Isa isa = active_isa();
  auto* kernel = isa == Isa::Reference || D > kMaxFastD ? &tile_reference
                 : isa == Isa::Avx512                    ? &tile_avx512
                                                         : &tile_avx2;
  std::vector<SpanAttentionTask> tiles;
  std::vector<int64_t> cost;
  for (const SpanAttentionTask& t : tasks) {
    for (int64_t i0 = 0; i0 < t.nq; i0 += kTile) {
      SpanAttentionTask tile = t;
      tile.nq = std::min(kTile, t.nq - i0);
      tile.q = t.q + i0 * t.q_stride;
      tile.out = t.out + i0 * t.out_stride;
      tile.qpos0 = t.qpos0 + i0;
      int64_t keys = 0;  // query-key pairs: the tile's work
      for (int64_t s = 0; s < t.n_spans; s++)
        for (int64_t i = 0; i < tile.nq; i++) keys += visible(t.spans[s], tile.qpos0 + i);
      tiles.push_back(tile);
      cost.push_back(keys);
    }
  }
  std::vector<size_t> order(tiles.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::atomic<size_t> next{0};
  auto work = [&](int, int) {
    for (size_t n; (n = next.fetch_add(1, std::memory_order_relaxed)) < order.size();) kernel(tiles[order[n]], D);
  };
  int64_t pairs = 0;
  for (int64_t c : cost) pairs += c;
  if (tiles.size() <= 1 || pool.size() == 1 || serial_is_cheaper(2.0 * 2.0 * (double)pairs * (double)D, 2.0 * sizeof(float) * (double)pairs * (double)D)) work(0, 1);
  else pool.run(work);
}

}  // namespace roost
