#include "bigbird_pattern.h"

#include <algorithm>
#include <utility>

namespace roost {

uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t bigbird_key(uint64_t seed, uint64_t l, uint64_t h, uint64_t i, uint64_t j) {
  uint64_t x = seed;
  for (uint64_t v : {l, h, i, j}) x = splitmix64(x ^ v);
  return x;
}

std::vector<int64_t> bigbird_blocks(const AttentionConfig& a, int64_t l, int64_t h, int64_t i) {
  const int64_t w = a.window_blocks, g = a.global_blocks, r = a.random_blocks;
  std::vector<int64_t> blocks;
  for (int64_t j = 0; j < std::min(g, i + 1); j++) blocks.push_back(j);  // global
  for (int64_t j = std::max<int64_t>(0, i - w + 1); j <= i; j++) blocks.push_back(j);  // window
  // Random: among candidates g <= j <= i-w, the r with the smallest key.
  const int64_t lo = g, hi = i - w;
  if (hi >= lo && r > 0) {
    if (hi - lo + 1 <= r) {
      for (int64_t j = lo; j <= hi; j++) blocks.push_back(j);
    } else {
      std::vector<std::pair<uint64_t, int64_t>> cand;
      cand.reserve(hi - lo + 1);
      for (int64_t j = lo; j <= hi; j++) cand.push_back({bigbird_key(a.seed, l, h, i, j), j});
      std::partial_sort(cand.begin(), cand.begin() + r, cand.end());  // (key, j): ties -> smaller j
      for (int64_t k = 0; k < r; k++) blocks.push_back(cand[k].second);
    }
  }
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  return blocks;
}

}  // namespace roost
