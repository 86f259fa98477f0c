// cuda/runtime.h on host memory (the emulation: roost_cuda_emulated). Fresh allocations are
// filled with NaN bytes, so a kernel that reads memory nothing wrote shows up
// as NaN logits.
#include <cstdlib>
#include <cstring>

#include "../../../cuda/runtime.h"

namespace roost::cuda {

namespace {
void* nan_alloc(size_t bytes) {
  const size_t n = (bytes + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, n ? n : 256);
  if (!p) throw Error("E_INTERNAL", "emulation: out of memory");
  std::memset(p, 0xff, n ? n : 256);
  return p;
}
}  // namespace

void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess) throw Error("E_INTERNAL", std::string("emulated CUDA error in ") + what);
}
int device_count(std::string* why) { return 1; }
std::string device_name(int) { return "emulated (host memory)"; }

DeviceContext::DeviceContext(int device) : device_(device), sm_count_(132), pools_(true) {}
DeviceContext::~DeviceContext() = default;
void DeviceContext::make_current() const {}
void DeviceContext::sync() const {}
void* DeviceContext::alloc(size_t bytes) const { return bytes ? nan_alloc(bytes) : nullptr; }
void DeviceContext::free(void* p) const noexcept { std::free(p); }

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
    buf_ = DeviceBuffer();
    buf_ = DeviceBuffer(ctx_, bytes ? bytes : 256);
  }
  return buf_.data();
}

StepUpload::~StepUpload() {
  for (Chunk& c : chunks_) release(c);
}
void StepUpload::release(Chunk& c) noexcept {
  std::free(c.dev);
  c = Chunk{};
}
void StepUpload::reset() {  // every push is its own block here: freed at the next step
  for (Chunk& c : chunks_) release(c);
  chunks_.clear();
  total_ = 0;
}
void* StepUpload::push(const void* data, size_t bytes) {
  if (bytes == 0) return nullptr;
  Chunk c;
  c.dev = nan_alloc(bytes);
  c.size = c.used = bytes;
  std::memcpy(c.dev, data, bytes);
  chunks_.push_back(c);
  total_ += bytes;
  return c.dev;
}

PinnedBuffer::~PinnedBuffer() { std::free(ptr_); }
void* PinnedBuffer::get(size_t bytes) {
  if (bytes > bytes_ || !ptr_) {
    std::free(ptr_);
    ptr_ = nan_alloc(bytes);
    bytes_ = bytes;
  }
  return ptr_;
}

}  // namespace roost::cuda
