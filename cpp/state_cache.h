// The prefix cache of models whose state is not paged KV but a fixed-size
// summary of the prefix (block_recurrent: a ring of the last 2W K/V rows per
// layer and the recurrent state): a copy of the state after each full
// 64-position block, keyed by the same hash chain as the paged blocks
// (kv_block_hash), least recently used first out when the copies pass their
// byte budget (docs/design.md, "Paged KV memory and prefix caching").
//
// An entry keeps every id from the sequence's start, so a 64-bit collision of
// the chain never gives a false hit.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "models/model.h"

namespace roost {

class StateCache {
 public:
  explicit StateCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  // The state after ids[0 .. n) from the root `root`, published under `key`; null if none.
  const SequenceState* find(uint64_t key, uint64_t root, const int32_t* ids, int64_t n);
  // Keeps `state` (the state after ids[0 .. n)) under key, evicting the least
  // recently used copies past the budget; a key already present keeps its copy.
  void put(uint64_t key, uint64_t root, const int32_t* ids, int64_t n, std::unique_ptr<SequenceState> state);
  bool has(uint64_t key) const;
  // Whether find would give a state (the order of use unchanged).
  bool contains(uint64_t key, uint64_t root, const int32_t* ids, int64_t n) const;
  size_t bytes() const { return bytes_; }
  int64_t entries() const { return (int64_t)by_key_.size(); }

 private:
  struct Entry {
    uint64_t key, root;
    std::vector<int32_t> ids;
    std::unique_ptr<SequenceState> state;
    size_t bytes;
  };
  size_t max_bytes_, bytes_ = 0;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<uint64_t, std::list<Entry>::iterator> by_key_;
};

}  // namespace roost
