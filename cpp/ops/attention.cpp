// The attention entry: cuts the work into (sequence, head, query tile, key range)
// items of similar cost, runs them over the pool largest first, and merges the
// partial softmaxes of items that split one query tile's keys.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "attention_impl.h"
#include "ops.h"

namespace roost {

using namespace attention_impl;

namespace {

// Keys per split item at least: below this the merge costs more than it balances.
constexpr int64_t kMinSplitKeys = 512;

// Heads wider than the vector kernels handle: the same item contract, plain loops.
void item_plain(const AttentionSeq& s, int64_t D, const Item& it) {
  const double scale = 1.0 / std::sqrt((double)D);
  std::vector<double> scores, acc(D);
  for (int64_t i = it.i0; i < it.i1; i++) {
    const float* q = s.q + i * s.q_stride + it.head * D;  // [D]
    const int64_t j1 = std::min(it.j1, s.pos0 + i + 1);
    double mx = -INFINITY, sum = 0;
    scores.assign(std::max<int64_t>(0, j1 - it.j0), 0.0);
    for (int64_t j = it.j0; j < j1; j++) {
      const float* k = s.k + j * s.kv_stride + it.head * D;
      double dot = 0;
      for (int64_t d = 0; d < D; d++) dot += q[d] * k[d];
      scores[j - it.j0] = dot * scale;
      mx = std::max(mx, dot * scale);
    }
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t j = it.j0; j < j1; j++) {
      double p = std::exp(scores[j - it.j0] - mx);
      sum += p;
      const float* v = s.v + j * s.kv_stride + it.head * D;
      for (int64_t d = 0; d < D; d++) acc[d] += p * v[d];
    }
    if (it.partial) {
      float* part = it.partial + (i - it.i0) * (D + 2);  // (max, sum, acc[D])
      part[0] = (float)mx;
      part[1] = (float)sum;
      for (int64_t d = 0; d < D; d++) part[2 + d] = (float)acc[d];
    } else {
      float* out = s.out + i * s.out_stride + it.head * D;
      for (int64_t d = 0; d < D; d++) out[d] = (float)(acc[d] / sum);
    }
  }
}

// Query-key pairs an item visits: its work.
int64_t item_cost(const AttentionSeq& s, const Item& it) {
  int64_t cost = 0;
  for (int64_t i = it.i0; i < it.i1; i++) cost += std::max<int64_t>(0, std::min(it.j1, s.pos0 + i + 1) - it.j0);
  return cost;
}

// A query tile whose keys were split over `splits` items with consecutive partials.
struct SplitGroup {
  const AttentionSeq* s;
  int64_t head, i0, i1;
  float* partial;
  int64_t splits;
};

void merge(const SplitGroup& g, int64_t D) {
  const int64_t nq = g.i1 - g.i0, stride = nq * (D + 2);  // floats between splits
  for (int64_t b = 0; b < nq; b++) {
    float mx = -INFINITY;
    for (int64_t t = 0; t < g.splits; t++) mx = std::max(mx, g.partial[t * stride + b * (D + 2)]);
    float* out = g.s->out + (g.i0 + b) * g.s->out_stride + g.head * D;
    double sum = 0;
    std::vector<double> acc(D, 0.0);
    for (int64_t t = 0; t < g.splits; t++) {
      const float* part = g.partial + t * stride + b * (D + 2);
      if (part[1] == 0) continue;  // a split wholly after this query's last key
      double w = std::exp((double)part[0] - mx);
      sum += w * part[1];
      for (int64_t d = 0; d < D; d++) acc[d] += w * part[2 + d];
    }
    for (int64_t d = 0; d < D; d++) out[d] = (float)(acc[d] / sum);
  }
}

}  // namespace

void attention_causal(const std::vector<AttentionSeq>& seqs, int64_t H, int64_t D, ThreadPool& pool) {
  const Isa isa = active_isa();
  if (isa == Isa::Reference) {
    attention_causal_reference(seqs, H, D);
    return;
  }
  auto* kernel = D > kMaxFastD ? &item_plain : isa == Isa::Avx512 ? &item_avx512 : &item_avx2;

  std::vector<Item> items;
  for (int64_t si = 0; si < (int64_t)seqs.size(); si++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i0 = 0; i0 < seqs[si].Tq; i0 += kQueryTile)
        items.push_back({si, h, i0, std::min(seqs[si].Tq, i0 + kQueryTile), 0, seqs[si].pos0 + std::min(seqs[si].Tq, i0 + kQueryTile), nullptr});

  // An item worth more than its share of the work (decode of few sequences over a
  // long context: too few heads for the threads, or one long sequence among short
  // ones) has its keys split too, in whole key blocks, and the parts merged after.
  std::vector<float> partials;
  std::vector<SplitGroup> groups;
  if (pool.size() > 1) {
    int64_t total = 0;
    for (const Item& it : items) total += item_cost(seqs[it.seq], it);
    const int64_t share = std::max<int64_t>(1, total / (4 * (int64_t)pool.size()));
    std::vector<Item> split;
    std::vector<std::pair<size_t, int64_t>> offsets;  // (first split item, floats per split)
    size_t floats = 0;
    for (const Item& it : items) {
      const int64_t keys = it.j1, nq = it.i1 - it.i0;
      const int64_t S = std::min((item_cost(seqs[it.seq], it) + share - 1) / share, keys / kMinSplitKeys);
      if (S <= 1) {
        split.push_back(it);
        continue;
      }
      const int64_t blocks = (keys + kKeyBlock - 1) / kKeyBlock;
      offsets.push_back({split.size(), nq * (D + 2)});
      for (int64_t t = 0; t < S; t++) {
        Item part = it;
        part.j0 = std::min(keys, blocks * t / S * kKeyBlock);
        part.j1 = std::min(keys, blocks * (t + 1) / S * kKeyBlock);
        split.push_back(part);
      }
      groups.push_back({&seqs[it.seq], it.head, it.i0, it.i1, nullptr, S});
      floats += (size_t)(S * nq * (D + 2));
    }
    partials.resize(floats);
    size_t at = 0;
    for (size_t g = 0; g < groups.size(); g++) {
      groups[g].partial = partials.data() + at;
      for (int64_t t = 0; t < groups[g].splits; t++) split[offsets[g].first + t].partial = partials.data() + at + t * offsets[g].second;
      at += (size_t)(groups[g].splits * offsets[g].second);
    }
    items.swap(split);
  }

  // Largest first, then threads take the next item: the tail is the smallest items.
  std::vector<int64_t> cost(items.size());
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < items.size(); i++) {
    cost[i] = item_cost(seqs[items[i].seq], items[i]);
    order[i] = i;
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::atomic<size_t> next{0};
  auto work = [&](int, int) {
    for (size_t n; (n = next.fetch_add(1, std::memory_order_relaxed)) < order.size();) {
      const Item& it = items[order[n]];
      kernel(seqs[it.seq], D, it);
    }
  };
  int64_t pairs = 0;
  for (int64_t c : cost) pairs += c;
  if (items.size() == 1 || serial_is_cheaper(2.0 * 2.0 * (double)pairs * (double)D, 2.0 * sizeof(float) * (double)pairs * (double)D)) work(0, 1);
  else pool.run(work);
  for (const SplitGroup& g : groups) merge(g, D);
}

}  // namespace roost
