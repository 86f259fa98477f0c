// Paged KV memory: one pool of fixed-size blocks per model, a block table per
// sequence, and the prefix cache over full blocks (docs/design.md, "Paged KV
// memory and prefix caching").
//
// A block holds `block_rows` positions of every layer's K and V rows
// (kv_type() elements, `width` columns each). Blocks live in slabs of backend
// memory allocated as the pool fills (never past max_blocks); a slab of S
// blocks is laid out [layer][K|V][S * block_rows][width], so blocks b and b + 1
// of one slab are contiguous rows of every layer and a run of them is ONE
// attention span (PagedKv::add_spans): a sequence whose blocks are adjacent is
// attended exactly as the old contiguous cache.
//
// Block states: used (refcount > 0), cached (refcount 0, holds a full block of
// the prefix cache: evicted least recently released first when the pool needs
// room), free. A full block is published under its hash-chain key
// (kv_block_hash: parent key and the block's ids); a later sequence whose
// input starts with the same ids takes it (refcount++) instead of computing it.
// The ids and parent key are kept with the block, so a 64-bit hash collision
// is never a false hit.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "backend.h"

namespace roost {

// The key of a block whose ids are ids[0..n) after the block keyed `parent`
// (the root key names the model's input space: adapter identity).
uint64_t kv_block_hash(uint64_t parent, const int32_t* ids, int64_t n);

struct KvPoolStats {
  int64_t used = 0, cached = 0, free = 0;  // free counts blocks not yet allocated from the backend
  size_t slab_bytes = 0;                   // backend memory the slabs take now
};

class KvPool {
 public:
  // layers x (K, V) x block_rows x width elements per block; at most
  // max_blocks blocks (set_max_blocks may change that before the first block).
  KvPool(Backend& be, int64_t layers, int64_t width, int64_t block_rows, int64_t max_blocks);
  ~KvPool();

  int64_t block_rows() const { return B_; }
  int64_t width() const { return W_; }
  size_t block_bytes() const { return (size_t)L_ * 2 * B_ * W_ * be_.kv_size(); }
  int64_t max_blocks() const { return max_blocks_; }
  void set_max_blocks(int64_t n);
  KvPoolStats stats() const;
  // Blocks an allocation may take now: free + cached.
  int64_t available() const {
    std::lock_guard<std::mutex> lock(mu_);
    return max_blocks_ - used_;
  }

  // A block with refcount 1: `prefer` when it is free (keeps a sequence's
  // blocks adjacent); else, with an owner, the lowest free block followed by
  // `hold` free unheld ones in its slab, or the first block of a new slab
  // (while max_blocks allows); else the lowest free block no sequence holds
  // (a new slab when there is none), else the lowest held free block (the
  // rest of its holder's run is let go), else the least recently released
  // cached block (dropped from the cache). Throws E_KV_FULL when every block
  // is used. With an owner, the up to `hold` free unheld blocks right after
  // the one taken (same slab) are then held for that owner: a soft
  // reservation that keeps a growing sequence's blocks one run (one attention
  // span) while other blocks are free; it takes no block from anyone.
  int32_t allocate(int32_t prefer = -1, const void* owner = nullptr, int64_t hold = 0);
  // Lets go of the blocks `owner` holds right after block b.
  void unhold_after(int32_t b, const void* owner);
  void retain(int32_t b) {
    std::lock_guard<std::mutex> lock(mu_);
    retain_locked(b);
  }
  // refcount--; at 0 a published block becomes cached, any other free.
  void release(int32_t b);

  // The block published under `key` with these parent and ids, retained; -1 if none.
  int32_t lookup(uint64_t key, uint64_t parent, const int32_t* ids);
  // Whether lookup would find such a block (nothing retained).
  bool contains(uint64_t key, uint64_t parent, const int32_t* ids) const;
  // Publishes used block b (full) under key; a key already present keeps its block.
  void publish(int32_t b, uint64_t key, uint64_t parent, const int32_t* ids);
  bool caching() const { return caching_; }
  void set_caching(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    caching_ = on;
  }

  // Rows 0 .. rows-1 of block src into block dst, every layer's K and V (queued).
  void copy_rows(int32_t dst, int32_t src, int64_t rows);
  // Layer-0 K / V row `row` of block b (layer l at + l * layer_stride(b)).
  void* k(int32_t b, int64_t row, int64_t layer = 0) const;
  void* v(int32_t b, int64_t row, int64_t layer = 0) const;
  int64_t layer_stride(int32_t b) const;  // elements
  // Block c's rows follow block b's in every layer.
  bool adjacent(int32_t b, int32_t c) const;
  int64_t refcount(int32_t b) const {
    std::lock_guard<std::mutex> lock(mu_);
    return meta_[b].ref;
  }

 private:
  struct Slab {
    std::unique_ptr<Buffer> buf;
    int64_t first = 0, count = 0;  // block ids first .. first + count - 1
  };
  struct Meta {
    int32_t slab = -1;
    int64_t ref = 0;
    bool published = false;
    const void* holder = nullptr;  // a free block held for the sequence whose run ends just before it
    uint64_t key = 0, parent = 0, tick = 0;
    std::vector<int32_t> ids;
  };
  void retain_locked(int32_t b);
  void grow();  // one more slab (twice the previous, within max_blocks)
  void drop_from_cache(int32_t b);
  void take_free(int32_t b);
  bool open_run(int32_t b, int64_t n) const;  // the n blocks after b are free, unheld and in b's slab
  void unhold_from(int32_t b, const void* owner);  // b and the held blocks after it
  char* row_at(int32_t b, int64_t row, int64_t layer, int kv) const;

  // Guards the bookkeeping: blocks are released by whoever frees a sequence
  // (the JS thread) while a step allocates on its worker. Addresses (k, v,
  // layer_stride) are read by the step alone, and only the step adds slabs.
  mutable std::mutex mu_;
  Backend& be_;
  int64_t L_, W_, B_, max_blocks_;
  int64_t used_ = 0;
  bool caching_ = true;
  uint64_t clock_ = 0;
  std::vector<Slab> slabs_;
  std::vector<Meta> meta_;               // one per block allocated from slabs
  std::set<int32_t> open_;               // free blocks no sequence holds (ordered: lowest first)
  std::set<int32_t> held_;               // free blocks held for a sequence (Meta::holder)
  std::map<uint64_t, int32_t> lru_;      // release tick -> cached block
  std::unordered_map<uint64_t, int32_t> by_key_;
};

// A sequence's block table over a pool: position p is row p % B of block
// table[p / B]. Releases its blocks when destroyed.
class PagedKv {
 public:
  explicit PagedKv(KvPool* pool) : pool_(pool) {}
  ~PagedKv() { clear(); }
  PagedKv(const PagedKv&) = delete;
  PagedKv& operator=(const PagedKv&) = delete;

  KvPool& pool() const { return *pool_; }
  const std::vector<int32_t>& table() const { return table_; }
  // Blocks to allocate for the table to cover `rows` positions.
  int64_t blocks_needed(int64_t rows) const;
  // Allocates blocks to cover positions 0 .. rows - 1 (E_KV_FULL when the pool has none).
  void reserve(int64_t rows);
  // A prefix-cache hit: keeps the first `keep` blocks (releasing the rest: a
  // partly filled last block whose rows the cached blocks hold too), then
  // appends blocks the caller retained.
  void adopt(int64_t keep, const std::vector<int32_t>& blocks);
  void clear();
  size_t bytes() const { return table_.empty() ? 0 : table_.size() * pool_->block_bytes(); }

  // Layer-0 K / V of position p; RowMove's layer stride is layer_stride(p).
  void* k(int64_t p) const { return pool_->k(table_[p / pool_->block_rows()], p % pool_->block_rows()); }
  void* v(int64_t p) const { return pool_->v(table_[p / pool_->block_rows()], p % pool_->block_rows()); }
  int64_t layer_stride(int64_t p) const { return pool_->layer_stride(table_[p / pool_->block_rows()]); }
  // Spans of positions [a, b), one per run of adjacent blocks: per_layer, the
  // spans carry the layer stride (one list for every layer); else they point
  // at layer `layer`'s rows. pos0 is each row's position (kNoMaskPos: unmasked).
  void add_spans(AttentionPlan& plan, int64_t a, int64_t b, bool per_layer, int64_t layer = 0, bool unmasked = false) const;

 private:
  KvPool* pool_;
  std::vector<int32_t> table_;
};

// Blocks a sequence holds after its last one: as many as it has (doubling
// runs, as a buddy allocator grows), at least kKvMinHeldBlocks (a new
// sequence has room for three blocks) and at most kKvMaxHeldBlocks. Slabs
// grow for holds, so the pool's memory is at most about three times the
// blocks in use (twice for long sequences, as the old contiguous caches grew
// geometrically), and never past --kv-memory.
constexpr int64_t kKvMinHeldBlocks = 2;
constexpr int64_t kKvMaxHeldBlocks = 16;

}  // namespace roost
