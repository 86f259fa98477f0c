#include "state_cache.h"

#include <cstring>

namespace roost {

bool StateCache::contains(uint64_t key, uint64_t root, const int32_t* ids, int64_t n) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return false;
  const Entry& e = *it->second;
  return e.root == root && (int64_t)e.ids.size() == n && std::memcmp(e.ids.data(), ids, (size_t)n * sizeof(int32_t)) == 0;
}

const SequenceState* StateCache::find(uint64_t key, uint64_t root, const int32_t* ids, int64_t n) {
  if (!contains(key, root, ids, n)) return nullptr;
  auto it = by_key_.find(key);
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->state.get();
}

bool StateCache::has(uint64_t key) const { return by_key_.count(key) > 0; }

void StateCache::put(uint64_t key, uint64_t root, const int32_t* ids, int64_t n, std::unique_ptr<SequenceState> state) {
  if (!state || by_key_.count(key)) return;
  const size_t bytes = state->bytes() + (size_t)n * sizeof(int32_t);
  if (bytes > max_bytes_) return;
  while (bytes_ + bytes > max_bytes_) {
    by_key_.erase(lru_.back().key);
    bytes_ -= lru_.back().bytes;
    lru_.pop_back();
  }
  lru_.push_front(Entry{key, root, std::vector<int32_t>(ids, ids + n), std::move(state), bytes});
  by_key_.emplace(key, lru_.begin());
  bytes_ += bytes;
}

}  // namespace roost
