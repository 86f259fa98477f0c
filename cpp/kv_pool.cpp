#include "kv_pool.h"

#include <algorithm>
#include <cstring>

#include "common.h"

namespace roost {

namespace {
uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
// The first slab's blocks; each next slab doubles, up to kMaxSlabBlocks
// blocks or kMaxSlabBytes (at least one block): small models touch little
// memory, and a sequence finds long runs of adjacent blocks in later slabs.
constexpr int64_t kFirstSlabBlocks = 16;
constexpr int64_t kMaxSlabBlocks = 256;
constexpr size_t kMaxSlabBytes = size_t(256) << 20;
}  // namespace

uint64_t kv_block_hash(uint64_t parent, const int32_t* ids, int64_t n) {
  uint64_t h = mix64(parent + 0x9e3779b97f4a7c15ULL);
  for (int64_t i = 0; i < n; i++) h = mix64(h ^ (uint64_t)(uint32_t)ids[i]) + 0x9e3779b97f4a7c15ULL;
  return mix64(h ^ (uint64_t)n);
}

KvPool::KvPool(Backend& be, int64_t layers, int64_t width, int64_t block_rows, int64_t max_blocks)
    : be_(be), L_(layers), W_(width), B_(block_rows), max_blocks_(max_blocks) {
  if (B_ < 1 || max_blocks_ < 0) throw Error("E_ARGUMENT", "a KV pool needs block_rows >= 1 and max_blocks >= 0");
}

KvPool::~KvPool() = default;

void KvPool::set_max_blocks(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n < (int64_t)meta_.size())
    throw Error("E_STATE", "the KV pool already holds " + std::to_string(meta_.size()) + " blocks; cannot shrink it to " +
                               std::to_string(n));
  max_blocks_ = n;
}

KvPoolStats KvPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  KvPoolStats s;
  s.used = used_;
  s.cached = (int64_t)lru_.size();
  s.free = max_blocks_ - used_ - s.cached;
  for (const Slab& sl : slabs_) s.slab_bytes += sl.buf->bytes();
  return s;
}

void KvPool::grow() {
  const int64_t have = (int64_t)meta_.size();
  int64_t n = slabs_.empty() ? kFirstSlabBlocks : 2 * slabs_.back().count;
  n = std::min<int64_t>({n, kMaxSlabBlocks, std::max<int64_t>(1, (int64_t)(kMaxSlabBytes / block_bytes()))});
  n = std::max<int64_t>(1, std::min(n, max_blocks_ - have));
  Slab sl;
  sl.buf = be_.alloc((size_t)n * block_bytes());
  sl.first = have;
  sl.count = n;
  slabs_.push_back(std::move(sl));
  for (int64_t i = 0; i < n; i++) {
    Meta m;
    m.slab = (int32_t)slabs_.size() - 1;
    meta_.push_back(std::move(m));
    open_.insert((int32_t)(have + i));
  }
}

void KvPool::drop_from_cache(int32_t b) {
  Meta& m = meta_[b];
  auto it = by_key_.find(m.key);
  if (it != by_key_.end() && it->second == b) by_key_.erase(it);
  m.published = false;
  m.ids.clear();
}

void KvPool::take_free(int32_t b) {
  Meta& m = meta_[b];
  if (m.holder) {
    held_.erase(b);
    const void* owner = m.holder;
    m.holder = nullptr;
    if (b + 1 < (int64_t)meta_.size() && adjacent(b, b + 1)) unhold_from(b + 1, owner);  // the run is broken here
  } else {
    open_.erase(b);
  }
  m.ref = 1;
  used_++;
}

void KvPool::unhold_from(int32_t b, const void* owner) {
  for (; b < (int64_t)meta_.size() && meta_[b].holder == owner && meta_[b].ref == 0; b++) {
    meta_[b].holder = nullptr;
    held_.erase(b);
    open_.insert(b);
    if (b + 1 < (int64_t)meta_.size() && !adjacent(b, b + 1)) break;
  }
}

void KvPool::unhold_after(int32_t b, const void* owner) {
  std::lock_guard<std::mutex> lock(mu_);
  if (owner && b + 1 < (int64_t)meta_.size() && adjacent(b, b + 1)) unhold_from(b + 1, owner);
}

bool KvPool::open_run(int32_t b, int64_t n) const {
  for (int32_t c = b + 1; c <= b + n; c++)
    if (c >= (int64_t)meta_.size() || !adjacent(c - 1, c) || !open_.count(c)) return false;
  return true;
}

int32_t KvPool::allocate(int32_t prefer, const void* owner, int64_t hold) {
  std::lock_guard<std::mutex> lock(mu_);
  if (used_ >= max_blocks_)
    throw Error("E_KV_FULL", "the KV memory is full: all " + std::to_string(max_blocks_) + " blocks of " +
                                 std::to_string(B_) + " positions are in use (raise --kv-memory)");
  const bool can_grow = (int64_t)meta_.size() < max_blocks_;
  int32_t b = -1;
  if (prefer >= 0 && prefer < (int64_t)meta_.size() && (open_.count(prefer) || held_.count(prefer))) {
    b = prefer;
  } else if (owner && hold > 0) {  // a block with `hold` free blocks after it, else a new slab's first
    for (int32_t c : open_)
      if (open_run(c, hold)) {
        b = c;
        break;
      }
    if (b < 0 && can_grow) {
      grow();
      b = (int32_t)slabs_.back().first;
    }
  }
  if (b < 0) {
    if (open_.empty() && can_grow) grow();  // before taking held or cached blocks
    if (!open_.empty()) {
      b = *open_.begin();
    } else if (!held_.empty()) {
      b = *held_.begin();
    } else {  // evict the least recently released cached block
      auto it = lru_.begin();
      b = it->second;
      lru_.erase(it);
      drop_from_cache(b);
      meta_[b].ref = 1;
      used_++;
      return b;
    }
  }
  take_free(b);
  if (owner)  // hold the free blocks right after b for this owner
    for (int32_t c = b + 1; c <= b + hold && c < (int64_t)meta_.size() && adjacent(c - 1, c) && open_.count(c); c++) {
      open_.erase(c);
      held_.insert(c);
      meta_[c].holder = owner;
    }
  return b;
}

void KvPool::retain_locked(int32_t b) {
  Meta& m = meta_[b];
  if (m.ref == 0) {  // a cached block comes back into use
    lru_.erase(m.tick);
    used_++;
  }
  m.ref++;
}

void KvPool::release(int32_t b) {
  std::lock_guard<std::mutex> lock(mu_);
  Meta& m = meta_[b];
  if (m.ref <= 0) throw Error("E_INTERNAL", "KV block " + std::to_string(b) + " released more often than taken");
  if (--m.ref > 0) return;
  used_--;
  if (m.published && caching_) {
    m.tick = ++clock_;
    lru_.emplace(m.tick, b);
  } else {
    if (m.published) drop_from_cache(b);
    open_.insert(b);
  }
}

int32_t KvPool::lookup(uint64_t key, uint64_t parent, const int32_t* ids) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!caching_) return -1;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return -1;
  const Meta& m = meta_[it->second];
  if (m.parent != parent || std::memcmp(m.ids.data(), ids, (size_t)B_ * sizeof(int32_t)) != 0) return -1;
  retain_locked(it->second);
  return it->second;
}

bool KvPool::contains(uint64_t key, uint64_t parent, const int32_t* ids) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!caching_) return false;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return false;
  const Meta& m = meta_[it->second];
  return m.parent == parent && std::memcmp(m.ids.data(), ids, (size_t)B_ * sizeof(int32_t)) == 0;
}

void KvPool::publish(int32_t b, uint64_t key, uint64_t parent, const int32_t* ids) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!caching_ || by_key_.count(key) || meta_[b].published) return;
  Meta& m = meta_[b];
  m.published = true;
  m.key = key;
  m.parent = parent;
  m.ids.assign(ids, ids + B_);
  by_key_.emplace(key, b);
}

char* KvPool::row_at(int32_t b, int64_t row, int64_t layer, int kv) const {
  const Slab& sl = slabs_[meta_[b].slab];
  const int64_t rows = sl.count * B_;  // rows of one (layer, K|V) plane of the slab
  const int64_t r = (b - sl.first) * B_ + row;
  return sl.buf->as<char>() + (((2 * layer + kv) * rows + r) * W_) * (int64_t)be_.kv_size();
}

void* KvPool::k(int32_t b, int64_t row, int64_t layer) const { return row_at(b, row, layer, 0); }
void* KvPool::v(int32_t b, int64_t row, int64_t layer) const { return row_at(b, row, layer, 1); }

int64_t KvPool::layer_stride(int32_t b) const { return 2 * slabs_[meta_[b].slab].count * B_ * W_; }

void KvPool::copy_rows(int32_t dst, int32_t src, int64_t rows) {
  const size_t row = (size_t)W_ * be_.kv_size();  // each (layer, K|V) plane of a slab is its rows, one pitch apart
  be_.copy_2d(row_at(dst, 0, 0, 0), (size_t)slabs_[meta_[dst].slab].count * B_ * row, row_at(src, 0, 0, 0),
              (size_t)slabs_[meta_[src].slab].count * B_ * row, (size_t)rows * row, (size_t)(2 * L_));
}

bool KvPool::adjacent(int32_t b, int32_t c) const { return c == b + 1 && meta_[b].slab == meta_[c].slab; }

int64_t PagedKv::blocks_needed(int64_t rows) const {
  const int64_t B = pool_->block_rows();
  return std::max<int64_t>(0, (rows + B - 1) / B - (int64_t)table_.size());
}

void PagedKv::reserve(int64_t rows) {
  for (int64_t n = blocks_needed(rows); n > 0; n--)
    table_.push_back(pool_->allocate(table_.empty() ? -1 : table_.back() + 1, this,
                                     std::clamp<int64_t>((int64_t)table_.size() + 1, kKvMinHeldBlocks, kKvMaxHeldBlocks)));
}

void PagedKv::adopt(int64_t keep, const std::vector<int32_t>& blocks) {
  if (!table_.empty()) pool_->unhold_after(table_.back(), this);
  while ((int64_t)table_.size() > keep) {
    pool_->release(table_.back());
    table_.pop_back();
  }
  table_.insert(table_.end(), blocks.begin(), blocks.end());
}

void PagedKv::clear() {
  if (!table_.empty()) pool_->unhold_after(table_.back(), this);
  for (int32_t b : table_) pool_->release(b);
  table_.clear();
}

void PagedKv::add_spans(AttentionPlan& plan, int64_t a, int64_t b, bool per_layer, int64_t layer, bool unmasked) const {
  const int64_t B = pool_->block_rows();
  while (a < b) {
    int64_t j = a / B, e = std::min(b, (j + 1) * B);
    while (e < b && pool_->adjacent(table_[j], table_[j + 1])) e = std::min(b, (++j + 1) * B);
    const int32_t blk = table_[a / B];
    const int64_t row = a % B;
    plan.add_span(AttnSpan{pool_->k(blk, row, per_layer ? 0 : layer), pool_->v(blk, row, per_layer ? 0 : layer),
                           pool_->width(), e - a, unmasked ? kNoMaskPos : a, per_layer ? pool_->layer_stride(blk) : 0});
    a = e;
  }
}

}  // namespace roost
