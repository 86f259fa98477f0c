// The paged KV pool (cpp/kv_pool.h): refcounts, the free list, LRU eviction
// of cached blocks, the hash chain of the prefix cache, slab addressing and
// the spans a block table gives the attention plan.
#include <cstring>
#include <memory>
#include <vector>

#include "backend.h"
#include "common.h"
#include "doctest.h"
#include "kv_pool.h"

using namespace roost;

namespace {

std::vector<int32_t> ids_from(int32_t first, int64_t n) {
  std::vector<int32_t> v(n);
  for (int64_t i = 0; i < n; i++) v[i] = first + (int32_t)i;
  return v;
}

struct Plan : AttentionPlan {  // records spans only
  void prepare(int64_t) override {}
  void run(int64_t) override {}
};

}  // namespace

TEST_CASE("kv pool: allocate, refcount, release and E_KV_FULL") {
  auto be = make_cpu_backend();
  KvPool pool(*be, 2, 8, 4, 3);
  const int32_t a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  CHECK(a == 0);
  CHECK(b == 1);
  CHECK(c == 2);
  CHECK(pool.stats().used == 3);
  CHECK(pool.stats().free == 0);
  CHECK(pool.available() == 0);
  try {
    pool.allocate();
    FAIL("a full pool allocated");
  } catch (const Error& e) {
    CHECK(e.code() == "E_KV_FULL");
  }
  pool.retain(b);
  CHECK(pool.refcount(b) == 2);
  pool.release(b);
  CHECK(pool.stats().used == 3);
  pool.release(b);  // unpublished: straight back to the free list
  CHECK(pool.stats().used == 2);
  CHECK(pool.stats().free == 1);
  CHECK(pool.allocate() == b);
  try {
    pool.release(a), pool.release(a);
    FAIL("a double release passed");
  } catch (const Error& e) {
    CHECK(e.code() == "E_INTERNAL");
  }
}

TEST_CASE("kv pool: hash chain lookup, collision check and LRU eviction order") {
  auto be = make_cpu_backend();
  const int64_t B = 4;
  KvPool pool(*be, 1, 2, B, 3);
  const uint64_t root = kv_block_hash(0, nullptr, 0);
  const std::vector<int32_t> x = ids_from(10, B), y = ids_from(20, B), z = ids_from(30, B);
  const uint64_t kx = kv_block_hash(root, x.data(), B), ky = kv_block_hash(kx, y.data(), B);
  CHECK(kx != ky);
  CHECK(kv_block_hash(root, y.data(), B) != ky);  // the same ids after another parent: another key

  const int32_t bx = pool.allocate(), by = pool.allocate();
  pool.publish(bx, kx, root, x.data());
  pool.publish(by, ky, kx, y.data());
  CHECK(pool.lookup(kx, root, x.data()) == bx);  // still used: refcount 2
  CHECK(pool.refcount(bx) == 2);
  pool.release(bx);
  CHECK(pool.lookup(ky, root, y.data()) == -1);  // right key, wrong parent: no false hit
  CHECK(pool.lookup(ky, kx, z.data()) == -1);    // right key, wrong ids
  CHECK(pool.lookup(kv_block_hash(kx, z.data(), B), kx, z.data()) == -1);

  pool.release(by);  // released first: evicted first
  pool.release(bx);
  CHECK(pool.stats().cached == 2);
  CHECK(pool.stats().used == 0);
  CHECK(pool.available() == 3);
  const int32_t c = pool.allocate();  // the one never-used block goes before any cached one
  CHECK(c == 2);
  CHECK(pool.allocate() == by);  // then the least recently released
  CHECK(pool.stats().cached == 1);
  CHECK(pool.lookup(ky, kx, y.data()) == -1);  // evicted: no longer in the cache
  CHECK(pool.lookup(kx, root, x.data()) == bx);  // a cached block comes back into use
  CHECK(pool.stats().cached == 0);
  CHECK(pool.stats().used == 3);

  pool.set_caching(false);  // --no-prefix-cache: nothing found, released blocks are free
  CHECK(pool.lookup(kx, root, x.data()) == -1);
  pool.release(bx);
  CHECK(pool.stats().cached == 0);
  CHECK(pool.stats().free == 1);
}

TEST_CASE("kv pool: a publish under a key already present keeps the first block") {
  auto be = make_cpu_backend();
  KvPool pool(*be, 1, 2, 2, 4);
  const std::vector<int32_t> x = ids_from(1, 2);
  const uint64_t k = kv_block_hash(7, x.data(), 2);
  const int32_t a = pool.allocate(), b = pool.allocate();
  pool.publish(a, k, 7, x.data());
  pool.publish(b, k, 7, x.data());
  pool.release(b);
  CHECK(pool.stats().free == 3);  // b was never cached
  CHECK(pool.lookup(k, 7, x.data()) == a);
}

TEST_CASE("paged kv: rows land in their block; adjacent blocks make one span, others one each") {
  auto be = make_cpu_backend();
  const int64_t L = 3, W = 5, B = 4;
  KvPool pool(*be, L, W, B, 64);
  PagedKv seq(&pool);
  seq.reserve(10);  // 3 blocks, adjacent in the first slab
  CHECK(seq.table() == std::vector<int32_t>{0, 1, 2});
  // Every (layer, position) K row distinct; read back through spans.
  for (int64_t l = 0; l < L; l++)
    for (int64_t p = 0; p < 10; p++) {
      float* k = static_cast<float*>(seq.k(p)) + l * seq.layer_stride(p);
      float* v = static_cast<float*>(seq.v(p)) + l * seq.layer_stride(p);
      for (int64_t c = 0; c < W; c++) k[c] = (float)(1000 * l + 10 * p + c), v[c] = -k[c];
    }
  Plan plan;
  seq.add_spans(plan, 0, 10, /*per_layer=*/true);
  REQUIRE(plan.spans().size() == 1);
  const AttnSpan s = plan.spans()[0];
  CHECK(s.n == 10);
  CHECK(s.pos0 == 0);
  CHECK(s.stride == W);
  for (int64_t l = 0; l < L; l++)
    for (int64_t r = 0; r < 10; r++) {
      const float* k = static_cast<const float*>(s.k) + l * s.layer_stride + r * s.stride;
      CHECK(k[2] == (float)(1000 * l + 10 * r + 2));
      CHECK(static_cast<const float*>(s.v)[l * s.layer_stride + r * s.stride + 2] == -k[2]);
    }

  PagedKv other(&pool);
  other.reserve(4);  // seq holds blocks 3.. (its run's growth): other starts after them
  CHECK(other.table() == std::vector<int32_t>{6});
  seq.reserve(14);
  REQUIRE(seq.table().size() == 4);
  CHECK(seq.table()[3] == 3);
  Plan one;
  seq.add_spans(one, 0, 14, /*per_layer=*/true);
  CHECK(one.spans().size() == 1);
  seq.clear();
  other.clear();

  // A pool with no room to grow: a block another sequence holds is taken
  // (the last resort before the cache), and the holder's run is split.
  KvPool tight(*be, L, W, B, 5);
  PagedKv a(&tight), c(&tight);
  a.reserve(10);  // blocks 0-2, holding 3 and 4 (the slab's last)
  for (int64_t l = 0; l < L; l++)
    for (int64_t p = 0; p < 10; p++) {
      float* k = static_cast<float*>(a.k(p)) + l * a.layer_stride(p);
      for (int64_t col = 0; col < W; col++) k[col] = (float)(1000 * l + 10 * p + col);
    }
  c.reserve(4);  // takes held block 3 (no free one, no room to grow) and holds 4
  CHECK(c.table() == std::vector<int32_t>{3});
  a.reserve(14);
  REQUIRE(a.table().size() == 4);
  CHECK(a.table()[3] == 4);  // the held block c's run would have grown into
  CHECK(!tight.adjacent(a.table()[2], a.table()[3]));
  Plan split;
  a.add_spans(split, 2, 14, /*per_layer=*/false, /*layer=*/1);
  REQUIRE(split.spans().size() == 2);
  CHECK(split.spans()[0].n == 10);  // positions 2..11: blocks 0-2
  CHECK(split.spans()[0].pos0 == 2);
  CHECK(split.spans()[0].layer_stride == 0);
  CHECK(static_cast<const float*>(split.spans()[0].k)[0] == 1000.0f + 20.0f);
  CHECK(split.spans()[1].n == 2);
  CHECK(split.spans()[1].pos0 == 12);
  CHECK(split.spans()[1].k == tight.k(a.table()[3], 0, 1));

  const int64_t used = tight.stats().used;
  a.clear();
  CHECK(tight.stats().used == used - 4);
}

TEST_CASE("paged kv: sequences that grow in turn (a batch decoding) keep one run each") {
  auto be = make_cpu_backend();
  const int64_t B = 4;
  KvPool pool(*be, 2, 3, B, 1 << 20);
  std::vector<std::unique_ptr<PagedKv>> seqs;
  for (int i = 0; i < 32; i++) {  // prompts of one block, prefilled together
    seqs.push_back(std::make_unique<PagedKv>(&pool));
    seqs.back()->reserve(B);
  }
  for (int64_t rows = B + 1; rows <= 3 * B; rows++)  // then decode: each grows one position a step
    for (auto& s : seqs) s->reserve(rows);
  for (auto& s : seqs) {
    Plan plan;
    s->add_spans(plan, 0, 3 * B, /*per_layer=*/true);
    CHECK(plan.spans().size() == 1);
  }
}

TEST_CASE("paged kv: a cleared sequence's held blocks go back to everyone") {
  auto be = make_cpu_backend();
  KvPool pool(*be, 1, 2, 2, 8);  // one slab of 8 blocks
  PagedKv a(&pool);
  a.reserve(2);  // block 0, holding 1 and 2
  CHECK(pool.allocate() == 3);  // held blocks 1 and 2 are skipped while others are free
  a.clear();
  CHECK(pool.allocate() == 0);
  CHECK(pool.allocate() == 1);  // no longer held
}

TEST_CASE("kv pool: set_max_blocks bounds growth and cannot drop blocks already made") {
  auto be = make_cpu_backend();
  KvPool pool(*be, 1, 4, 4, 100);
  pool.set_max_blocks(2);
  pool.allocate();
  pool.allocate();
  CHECK(pool.stats().free == 0);
  CHECK(pool.stats().slab_bytes == 2 * pool.block_bytes());  // the first slab is cut to the budget
  try {
    pool.set_max_blocks(1);
    FAIL("shrank below the blocks made");
  } catch (const Error& e) {
    CHECK(e.code() == "E_STATE");
  }
}
