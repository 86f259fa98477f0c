// The state copies of the prefix cache (cpp/state_cache.h): found only under
// the same key, root and every id; least recently used out past the budget.
#include <memory>
#include <vector>

#include "doctest.h"
#include "kv_pool.h"
#include "state_cache.h"

using namespace roost;

namespace {

struct FakeState : SequenceState {
  explicit FakeState(int64_t n) : n(n) {}
  int64_t length() const override { return n; }
  size_t bytes() const override { return 100; }
  int64_t n;
};

std::unique_ptr<SequenceState> state(int64_t n) { return std::make_unique<FakeState>(n); }

}  // namespace

TEST_CASE("state cache: a hit needs the key, the root and every id") {
  StateCache cache(1000);
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6};
  const uint64_t k = kv_block_hash(7, ids.data(), 6);
  cache.put(k, 7, ids.data(), 6, state(6));
  REQUIRE(cache.find(k, 7, ids.data(), 6) != nullptr);
  CHECK(cache.find(k, 7, ids.data(), 6)->length() == 6);
  CHECK(cache.find(k, 8, ids.data(), 6) == nullptr);  // another root (adapter)
  std::vector<int32_t> other = ids;
  other[0] = 9;  // a collision of the chain would still differ in an id
  CHECK(cache.find(k, 7, other.data(), 6) == nullptr);
  CHECK(cache.find(k, 7, ids.data(), 5) == nullptr);
  CHECK(cache.find(k + 1, 7, ids.data(), 6) == nullptr);
  CHECK(cache.contains(k, 7, ids.data(), 6));
  cache.put(k, 7, ids.data(), 6, state(99));  // a key present keeps its copy
  CHECK(cache.find(k, 7, ids.data(), 6)->length() == 6);
  CHECK(cache.entries() == 1);
}

TEST_CASE("state cache: least recently used copies go first past the byte budget") {
  // Each entry: 100 bytes of state + 4 bytes per id (one id here).
  StateCache cache(3 * 104);
  int32_t id[4] = {10, 11, 12, 13};
  for (int i = 0; i < 3; i++) cache.put(100 + i, 0, &id[i], 1, state(i));
  CHECK(cache.entries() == 3);
  CHECK(cache.find(100, 0, &id[0], 1) != nullptr);  // used: 101 is now the least recent
  cache.put(103, 0, &id[3], 1, state(3));
  CHECK(cache.entries() == 3);
  CHECK(cache.bytes() == 3 * 104);
  CHECK(!cache.has(101));
  CHECK(cache.has(100));
  CHECK(cache.has(102));
  CHECK(cache.has(103));
  StateCache tiny(50);  // a copy larger than the whole budget is not kept
  tiny.put(1, 0, &id[0], 1, state(0));
  CHECK(tiny.entries() == 0);
}
