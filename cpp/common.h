// Shared basics of the engine: the error type that crosses into JavaScript,
// aligned buffers, and the dimension names used everywhere.
//
// Dimensions (as in llm.c): B sequences in a step, T tokens, C = n_embd,
// H = n_head, D = C / H head size, V vocabulary, K/N the in/out sizes of a matrix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace roost {

// Error codes crossing into JS (err.code there).
//   E_CHECKPOINT  a checkpoint file is missing, truncated or lies about itself
//   E_CONFIG      config.json is missing a field or has a bad value
//   E_ARGUMENT    a caller passed something out of range (token id, sequence id)
//   E_STATE       the call is not allowed now (step already running, ...)
//   E_INTERNAL    a broken invariant: a bug
class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// 64-byte aligned float/byte storage (AVX-512 loads, cache lines).
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes) { resize(bytes); }
  void resize(size_t bytes) {
    // Buffers of 2 MiB and more (weights, KV slabs) start on a 2 MiB boundary and
    // ask for transparent huge pages: decode streams gigabytes of weights, and with
    // 4 KiB pages every 4 KiB of the stream costs a TLB miss.
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t align = bytes >= kHuge ? kHuge : 64;
    size_t rounded = (bytes + align - 1) / align * align;
    void* p = rounded ? std::aligned_alloc(align, rounded) : nullptr;
#if defined(__linux__)
    if (p && align == kHuge) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    if (rounded && !p) throw Error("E_INTERNAL", "out of memory allocating " + std::to_string(bytes) + " bytes");
    if (p) std::memset(p, 0, rounded);
    ptr_.reset(p);
    bytes_ = bytes;
  }
  size_t bytes() const { return bytes_; }
  void* data() { return ptr_.get(); }
  const void* data() const { return ptr_.get(); }
  template <typename T> T* as() { return static_cast<T*>(ptr_.get()); }
  template <typename T> const T* as() const { return static_cast<const T*>(ptr_.get()); }

 private:
  std::unique_ptr<void, AlignedFree> ptr_;
  size_t bytes_ = 0;
};

}  // namespace roost
