#include "runtime.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace roost::cuda {

void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so later calls do not see it again
  const char* base = std::strrchr(file, '/');
  throw Error("E_INTERNAL", std::string("CUDA error in ") + what + " at " + (base ? base + 1 : file) + ":" +
                                std::to_string(line) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (why) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device is visible";
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return p.name;
}

DeviceContext::DeviceContext(int device) : device_(device) {
  ROOST_CUDA_CHECK(cudaSetDevice(device_));
  ROOST_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device_));
  int pools = 0;
  if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device_) != cudaSuccess) {
    (void)cudaGetLastError();
    pools = 0;
  }
  pools_ = pools != 0;
  if (pools_) {
    // Keep freed blocks in the pool (per-sequence caches come and go with requests).
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess) {
      uint64_t threshold = UINT64_MAX;
      (void)cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
    }
    (void)cudaGetLastError();
  }
  ROOST_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

DeviceContext::~DeviceContext() {
  if (stream_) {
    (void)cudaSetDevice(device_);
    (void)cudaStreamSynchronize(stream_);
    (void)cudaStreamDestroy(stream_);
    (void)cudaGetLastError();
  }
}

void DeviceContext::make_current() const { ROOST_CUDA_CHECK(cudaSetDevice(device_)); }

void DeviceContext::sync() const { ROOST_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

void* DeviceContext::alloc(size_t bytes) const {
  if (bytes == 0) return nullptr;
  make_current();  // new_state() may run on any thread
  void* p = nullptr;
  cudaError_t e = pools_ ? cudaMallocAsync(&p, bytes, stream_) : cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw Error("E_INTERNAL", "CUDA: out of device memory allocating " + std::to_string(bytes) + " bytes");
  }
  check(e, "device allocation", __FILE__, __LINE__);
  return p;
}

void DeviceContext::free(void* p) const noexcept {
  if (!p) return;
  (void)cudaSetDevice(device_);
  if (pools_) {
    (void)cudaFreeAsync(p, stream_);
  } else {
    (void)cudaStreamSynchronize(stream_);
    (void)cudaFree(p);
  }
  (void)cudaGetLastError();
}

DeviceBuffer::DeviceBuffer(std::shared_ptr<const DeviceContext> ctx, size_t bytes) : ctx_(std::move(ctx)) {
  ptr_ = ctx_->alloc(bytes);
  bytes_ = bytes;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ctx_ = std::move(o.ctx_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::reset() noexcept {
  if (ptr_ && ctx_) ctx_->free(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

void* Scratch::get(size_t bytes) {
  if (bytes > buf_.bytes() || !buf_.data()) {
    const size_t want = std::max<size_t>({bytes, buf_.bytes() + buf_.bytes() / 2, 256});
    buf_ = DeviceBuffer();  // stream-ordered free of the old block
    buf_ = DeviceBuffer(ctx_, (want + 255) / 256 * 256);
  }
  return buf_.data();
}

StepUpload::~StepUpload() {
  for (Chunk& c : chunks_) release(c);
}

void StepUpload::release(Chunk& c) noexcept {
  if (c.host) (void)cudaFreeHost(c.host);
  if (c.dev) ctx_->free(c.dev);
  (void)cudaGetLastError();
  c = Chunk{};
}

void StepUpload::reset() {
  if (chunks_.size() > 1) {  // merge: next step fits in one chunk
    for (Chunk& c : chunks_) release(c);
    chunks_.clear();
    Chunk c;
    c.size = (total_ + total_ / 4 + 4095) / 4096 * 4096;
    ROOST_CUDA_CHECK(cudaMallocHost(&c.host, c.size));
    c.dev = ctx_->alloc(c.size);
    chunks_.push_back(c);
  }
  for (Chunk& c : chunks_) c.used = 0;
  total_ = 0;
}

void* StepUpload::push(const void* data, size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t need = (bytes + 255) / 256 * 256;  // keep every block 256-byte aligned
  if (chunks_.empty() || chunks_.back().used + need > chunks_.back().size) {
    Chunk c;
    c.size = std::max<size_t>({need, chunks_.empty() ? 0 : chunks_.back().size * 2, 1 << 16});
    ROOST_CUDA_CHECK(cudaMallocHost(&c.host, c.size));
    c.dev = ctx_->alloc(c.size);
    chunks_.push_back(c);
  }
  Chunk& c = chunks_.back();
  char* h = static_cast<char*>(c.host) + c.used;
  char* d = static_cast<char*>(c.dev) + c.used;
  std::memcpy(h, data, bytes);
  ROOST_CUDA_CHECK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, ctx_->stream()));
  c.used += need;
  total_ += need;
  return d;
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_) (void)cudaFreeHost(ptr_);
}

void* PinnedBuffer::get(size_t bytes) {
  if (bytes > bytes_ || !ptr_) {
    if (ptr_) ROOST_CUDA_CHECK(cudaFreeHost(ptr_));
    ptr_ = nullptr;
    const size_t want = std::max<size_t>({bytes, bytes_ + bytes_ / 2, 4096});
    ROOST_CUDA_CHECK(cudaMallocHost(&ptr_, want));
    bytes_ = want;
  }
  return ptr_;
}

}  // namespace roost::cuda
