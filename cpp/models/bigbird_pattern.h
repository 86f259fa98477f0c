// The causal BigBird block pattern of docs/spec.md: which key blocks a
// query in block i of layer l, head h may attend to (window + global + random).
#pragma once

#include <cstdint>
#include <vector>

#include "../config.h"

namespace roost {

uint64_t splitmix64(uint64_t z);

// key(l, h, i, j) = splitmix64 chained over (l, h, i, j) starting from the seed.
uint64_t bigbird_key(uint64_t seed, uint64_t l, uint64_t h, uint64_t i, uint64_t j);

// Sorted, distinct key blocks for query block i (every block 0..i when the
// three sets cover them).
std::vector<int64_t> bigbird_blocks(const AttentionConfig& a, int64_t l, int64_t h, int64_t i);

}  // namespace roost
