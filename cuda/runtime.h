// Host side of the CUDA backend: error checks, the device context a model runs
// on (device, stream, SM count), owned device memory, grow-only scratch and the
// per-step upload arena (host metadata -> device through pinned memory).
// Plain C++ over the CUDA runtime API: compiled by the host compiler.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../cpp/common.h"

namespace roost::cuda {

// Throws Error("E_INTERNAL", "CUDA error in <what> at file:line: <message>").
void check(cudaError_t e, const char* what, const char* file, int line);
#define ROOST_CUDA_CHECK(x) ::roost::cuda::check((x), #x, __FILE__, __LINE__)
// After every kernel launch: catches bad launch configurations at once.
#define ROOST_CUDA_LAUNCH_CHECK() ::roost::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

// Devices this process may use (0 with the reason in *why when none: no
// driver, no GPU, driver too old for this runtime).
int device_count(std::string* why = nullptr);
std::string device_name(int device = 0);

// The device a model lives on and the stream all its work is queued on.
class DeviceContext {
 public:
  explicit DeviceContext(int device = 0);
  ~DeviceContext();
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  int sm_count() const { return sm_count_; }
  bool async_alloc() const { return pools_; }  // cudaMallocAsync / cudaFreeAsync usable
  void make_current() const;                   // cudaSetDevice (cheap; per calling thread)
  void sync() const;

  // Stream-ordered allocation when the device has memory pools (frees never
  // block), else plain cudaMalloc / cudaFree after a stream sync.
  void* alloc(size_t bytes) const;
  void free(void* p) const noexcept;

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  int sm_count_ = 1;
  bool pools_ = false;
};

// Device memory owned by a context; freed (stream-ordered) on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::shared_ptr<const DeviceContext> ctx, size_t bytes);
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void reset() noexcept;
  void* data() const { return ptr_; }
  template <typename T> T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  std::shared_ptr<const DeviceContext> ctx_;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Grow-only device scratch: get(n) returns at least n bytes; growing frees the
// old block stream-ordered, so work already queued on it stays valid.
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(std::shared_ptr<const DeviceContext> ctx) : ctx_(std::move(ctx)) {}
  void* get(size_t bytes);
  template <typename T> T* get(size_t count) { return static_cast<T*>(get(count * sizeof(T))); }
  size_t bytes() const { return buf_.bytes(); }

 private:
  std::shared_ptr<const DeviceContext> ctx_;
  DeviceBuffer buf_;
};

// Per-step host -> device metadata (token ids, positions, attention task
// lists). push() copies into pinned memory and queues an async copy to the
// device copy of the arena; the pointer it returns is valid on the stream from
// then until reset(). reset() only at the start of a step, after the previous
// step's final stream sync.
class StepUpload {
 public:
  StepUpload() = default;
  explicit StepUpload(std::shared_ptr<const DeviceContext> ctx) : ctx_(std::move(ctx)) {}
  ~StepUpload();
  StepUpload(const StepUpload&) = delete;
  StepUpload& operator=(const StepUpload&) = delete;
  void reset();
  void* push(const void* data, size_t bytes);
  template <typename T> T* push(const std::vector<T>& v) {
    return static_cast<T*>(push(v.data(), v.size() * sizeof(T)));
  }

 private:
  struct Chunk {
    void* host = nullptr;  // pinned
    void* dev = nullptr;
    size_t size = 0, used = 0;
  };
  void release(Chunk& c) noexcept;
  std::shared_ptr<const DeviceContext> ctx_;
  std::vector<Chunk> chunks_;  // the last one is being filled
  size_t total_ = 0;           // bytes pushed since reset (sizes the merged chunk)
};

// Pinned host buffer (the one device -> host copy of each step lands here).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* get(size_t bytes);  // grows (contents lost); only when no copy into it is pending
  template <typename T> T* get(size_t count) { return static_cast<T*>(get(count * sizeof(T))); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace roost::cuda
