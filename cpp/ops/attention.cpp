// The attention entries. attention_spans cuts its tasks into query tiles of
// similar cost, splits the keys of a tile worth more than its share of the work
// over several parts (merged after), and runs them over the pool costliest first.
// attention_causal is the same work with one span per sequence: its cache rows
// 0 .. pos0+Tq-1, clipped per query by causality.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "attention_impl.h"
#include "ops.h"

namespace roost {

using namespace attention_impl;

namespace {

// Keys per split part at least: below this the merge costs more than it balances.
constexpr int64_t kMinSplitKeys = 512;

// Query-key pairs a tile visits: its work.
int64_t tile_cost(const SpanAttentionTask& t) {
  int64_t cost = 0;
  for (int64_t s = 0; s < t.n_spans; s++)
    for (int64_t i = 0; i < t.nq; i++) cost += visible(t.spans[s], t.qpos0 + i);
  return cost;
}

// A tile whose keys were split over `parts` tiles with consecutive partials.
struct SplitGroup {
  SpanAttentionTask tile;  // its queries and output
  float* partial;  // [parts][nq][D + 2]
  int64_t parts;
};

void merge(const SplitGroup& g, int64_t D) {
  const SpanAttentionTask& t = g.tile;
  const int64_t stride = t.nq * (D + 2);  // floats between parts
  std::vector<double> acc(D);
  for (int64_t b = 0; b < t.nq; b++) {
    float mx = -INFINITY;
    for (int64_t p = 0; p < g.parts; p++) mx = std::max(mx, g.partial[p * stride + b * (D + 2)]);
    double sum = 0;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t p = 0; p < g.parts; p++) {
      const float* part = g.partial + p * stride + b * (D + 2);
      if (part[1] == 0) continue;  // a part wholly after this query's last key
      const double w = std::exp((double)part[0] - mx);
      sum += w * part[1];
      for (int64_t d = 0; d < D; d++) acc[d] += w * part[2 + d];
    }
    float* out = t.out + b * t.out_stride + t.head * D;
    for (int64_t d = 0; d < D; d++) out[d] = sum > 0 ? (float)(acc[d] / sum) : 0.f;
  }
}

// The rows [a, b) of span s (elements kv) as a span of their own.
KeySpan sub_span(const KeySpan& s, int64_t a, int64_t b, KvType kv) {
  return {kv_advance(s.k, a * s.stride, kv), kv_advance(s.v, a * s.stride, kv), s.stride, b - a, s.pos0 + a};
}

// The storage of split tiles: the parts' spans and partials, and what to merge.
struct Splits {
  std::vector<SplitGroup> groups;
  std::vector<KeySpan> spans;
  std::vector<float> partials;
};

// A tile worth more than its share of the work (decode of few sequences over a
// long context: too few heads for the threads, or one long sequence among short
// ones) has its keys, up to its last query's, split in whole key blocks into
// parts that run as tiles of their own (appended to tiles, cost, partial); the
// parts are merged after.
void split_costly_tiles(Splits& out, std::vector<SpanAttentionTask>& tiles, std::vector<int64_t>& cost,
                        std::vector<float*>& partial, int64_t total, int64_t D, int threads) {
  const int64_t share = std::max<int64_t>(1, total / (4 * (int64_t)threads));
  struct Cut { size_t tile; int64_t parts; };
  std::vector<Cut> cuts;
  std::vector<size_t> part_span_count;  // per new tile: its spans in out.spans
  const size_t n_tiles = tiles.size();
  size_t floats = 0;
  for (size_t ti = 0; ti < n_tiles; ti++) {
    const SpanAttentionTask t = tiles[ti];
    if (t.pass_cut) continue;  // its parts would follow the cut (attention_spans.h)
    const int64_t last = t.qpos0 + t.nq - 1;
    int64_t keys = 0;
    for (int64_t s = 0; s < t.n_spans; s++) keys += visible(t.spans[s], last);
    const int64_t parts = std::min((cost[ti] + share - 1) / share, keys / kMinSplitKeys);
    if (parts <= 1) continue;
    cuts.push_back({ti, parts});
    const int64_t blocks = (keys + kKeyBlock - 1) / kKeyBlock;
    for (int64_t p = 0; p < parts; p++) {
      // Keys [k0, k1) of the tile's spans laid end to end.
      const int64_t k0 = std::min(keys, blocks * p / parts * kKeyBlock), k1 = std::min(keys, blocks * (p + 1) / parts * kKeyBlock);
      size_t n = 0;
      for (int64_t s = 0, at = 0; s < t.n_spans && at < k1; s++) {
        const int64_t rows = visible(t.spans[s], last);
        const int64_t a = std::max(k0, at), b = std::min(k1, at + rows);
        if (a < b) out.spans.push_back(sub_span(t.spans[s], a - at, b - at, t.kv)), n++;
        at += rows;
      }
      part_span_count.push_back(n);
      if (p > 0) tiles.push_back(t), cost.push_back(0), partial.push_back(nullptr);
    }
    floats += (size_t)(parts * t.nq * (D + 2));
  }
  // Point the parts at their spans and partials now that the vectors are final.
  out.partials.resize(floats);
  size_t at = 0, span_at = 0, next_tile = n_tiles, count_at = 0;
  for (const Cut& c : cuts) {
    const int64_t nq = tiles[c.tile].nq;
    out.groups.push_back({tiles[c.tile], out.partials.data() + at, c.parts});
    for (int64_t p = 0; p < c.parts; p++) {
      const size_t ti = p == 0 ? c.tile : next_tile++;
      tiles[ti].spans = out.spans.data() + span_at;
      tiles[ti].n_spans = (int64_t)part_span_count[count_at];
      span_at += part_span_count[count_at++];
      partial[ti] = out.partials.data() + at + p * nq * (D + 2);
      cost[ti] = tile_cost(tiles[ti]);
    }
    at += (size_t)(c.parts * nq * (D + 2));
  }
}

}  // namespace

void attention_spans(const std::vector<SpanAttentionTask>& tasks, int64_t D, ThreadPool& pool) {
  const Isa isa = active_isa();
  const TileKernel kernel = isa == Isa::Reference || D > kMaxFastD ? &tile_reference
                            : isa == Isa::Avx512                    ? &tile_avx512
                                                                    : &tile_avx2;
  std::vector<SpanAttentionTask> tiles;
  std::vector<int64_t> cost;
  int64_t total = 0;
  for (const SpanAttentionTask& t : tasks)
    for (int64_t i0 = 0; i0 < t.nq; i0 += kQueryTile) {
      SpanAttentionTask tile = t;
      tile.nq = std::min(kQueryTile, t.nq - i0);
      tile.q = t.q + i0 * t.q_stride;
      tile.out = t.out + i0 * t.out_stride;
      tile.qpos0 = t.qpos0 + i0;
      tiles.push_back(tile);
      cost.push_back(tile_cost(tile));
      total += cost.back();
    }
  std::vector<float*> partial(tiles.size(), nullptr);

  Splits splits;
  if (pool.size() > 1) split_costly_tiles(splits, tiles, cost, partial, total, D, pool.size());

  // Costliest first, then threads take the next tile: the tail is the cheapest.
  std::vector<size_t> order(tiles.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  // Decode tiles (a few queries each, memory-bound) are claimed in runs of consecutive
  // tiles, a quarter of a thread's share: they come sequence by sequence, head after
  // head, so a thread walks whole cache rows of its sequences instead of every other
  // head's slice of each row, and the hardware prefetchers follow it (batch-32 Q8_0
  // decode of GPT-2 124M, 2 threads: about 1 ms a step less). GEMM-shaped tiles are
  // compute-bound and uneven: one at a time keeps the threads finishing together
  // (runs slowed Block-Recurrent's 4k prefill by about a quarter).
  bool decode = true;
  for (const SpanAttentionTask& t : tiles) decode = decode && t.nq < kMinTileQueries && !t.pass_cut;
  const size_t run = decode ? std::max<size_t>(1, order.size() / (4 * (size_t)pool.size())) : 1;
  std::atomic<size_t> next{0};
  auto work = [&](int, int) {
    for (size_t n; (n = next.fetch_add(run, std::memory_order_relaxed)) < order.size();)
      for (size_t e = std::min(order.size(), n + run); n < e; n++) kernel(tiles[order[n]], D, partial[order[n]]);
  };
  const double pairs = (double)total;
  const double kv_bytes = tasks.empty() ? 4.0 : (double)kv_type_size(tasks[0].kv);
  if (tiles.size() <= 1 || pool.size() == 1 || serial_is_cheaper(2.0 * 2.0 * pairs * (double)D, 2.0 * kv_bytes * pairs * (double)D))
    work(0, 1);
  else
    pool.run(work);
  for (const SplitGroup& g : splits.groups) merge(g, D);
}

void attention_causal(const std::vector<AttentionSeq>& seqs, int64_t H, int64_t D, ThreadPool& pool) {
  std::vector<KeySpan> spans;  // one per sequence: every cache row, causal from position 0
  spans.reserve(seqs.size());
  std::vector<SpanAttentionTask> tasks;
  tasks.reserve(seqs.size() * H);
  for (const AttentionSeq& s : seqs) {
    spans.push_back({s.k, s.v, s.kv_stride, s.pos0 + s.Tq, 0});
    for (int64_t h = 0; h < H; h++)
      tasks.push_back({s.out, s.out_stride, s.q, s.q_stride, s.Tq, s.pos0, h, &spans.back(), 1, s.pass_cut, s.kv});
  }
  attention_spans(tasks, D, pool);
}

}  // namespace roost
