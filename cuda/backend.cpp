#include "backend.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "../cpp/common.h"

namespace roost::cuda {

// The interface's argument structs are uploaded as they are and read by the
// kernels as cuda/ops.h's: same fields, same layout.
static_assert(sizeof(roost::RowMove) == sizeof(RowMove) && offsetof(roost::RowMove, src) == offsetof(RowMove, src) &&
              offsetof(roost::RowMove, dst) == offsetof(RowMove, dst) &&
              offsetof(roost::RowMove, dst_layer_stride) == offsetof(RowMove, dst_layer_stride) &&
              offsetof(roost::RowMove, src_layer_stride) == offsetof(RowMove, src_layer_stride));
static_assert((int)roost::Epilogue::Store == (int)Epilogue::Store && (int)roost::Epilogue::Add == (int)Epilogue::Add &&
              (int)roost::Epilogue::Gelu == (int)Epilogue::Gelu && (int)roost::Epilogue::Relu == (int)Epilogue::Relu &&
              (int)roost::Epilogue::GeluErf == (int)Epilogue::GeluErf);

namespace {

class CudaBuffer : public Buffer {
 public:
  explicit CudaBuffer(DeviceBuffer b) : b_(std::move(b)) {}
  void* data() const override { return b_.data(); }
  size_t bytes() const override { return b_.bytes(); }

 private:
  DeviceBuffer b_;
};

class CudaScratch : public roost::Scratch {
 public:
  explicit CudaScratch(std::shared_ptr<const DeviceContext> ctx) : s_(std::move(ctx)) {}
  void* get(size_t bytes) override { return s_.get(bytes); }

 private:
  cuda::Scratch s_;
};

const DevMatrix& dev(const roost::Matrix& m) { return static_cast<const CudaMatrix&>(m).dev; }

}  // namespace

CudaBackend::CudaBackend(int device, WType weight_type)
    : ctx_(std::make_shared<DeviceContext>(device)), weights_(ctx_, weight_type), up_(ctx_), ws_(ctx_) {}

std::string CudaBackend::unsupported(Op op, const ModelConfig& cfg) const {
  if (op == Op::GemmQ8)
    return "there is no Q8_0 kernel on CUDA yet: 8-bit weights (--quantize q8_0, a Q8_0 GGUF file) run on the CPU backend";
  if (op == Op::RelativeBias || op == Op::GeluMul)
    return "T5's relative position bias and gated GELU have no CUDA kernels yet (docs/t5.md)";
  if (op == Op::Attention && cfg.head_dim() > kMaxHeadDim)
    return "the CUDA attention kernels take head sizes up to " + std::to_string(kMaxHeadDim) + " (n_embd / n_head = " +
           std::to_string(cfg.head_dim()) + ")";
  return "";
}

const roost::Matrix* CudaBackend::matrix(const TensorView& t, int64_t K, int64_t N, bool src_is_nk) {
  auto m = std::make_unique<CudaMatrix>();
  m->K = K;
  m->N = N;
  m->dev = weights_.matrix(m->storage, t, K, N, src_is_nk != t.transposed);  // a GGUF matrix is stored transposed
  matrices_.push_back(std::move(m));
  return matrices_.back().get();
}

const float* CudaBackend::floats(const std::vector<float>& v) {
  constants_.push_back(weights_.floats(v));
  return constants_.back().as<float>();
}

std::unique_ptr<Buffer> CudaBackend::alloc(size_t bytes) {
  return std::make_unique<CudaBuffer>(DeviceBuffer(ctx_, bytes));
}

std::unique_ptr<roost::Scratch> CudaBackend::scratch() { return std::make_unique<CudaScratch>(ctx_); }

std::unique_ptr<roost::AttentionPlan> CudaBackend::attention_plan() {
  return std::make_unique<CudaAttentionPlan>(shared_from_this());
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes) ROOST_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_->stream()));
}

void CudaBackend::copy_2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) {
  if (width && height)
    ROOST_CUDA_CHECK(
        cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice, ctx_->stream()));
}

void CudaBackend::begin_step(ThreadPool&) {
  ctx_->make_current();
  ctx_->sync();  // normally idle already (the last step ended with a sync); not so after a step that threw
  up_.reset();
  positions_.clear();
}

const void* CudaBackend::upload(const void* data, size_t bytes) { return up_.push(data, bytes); }

const Positions* CudaBackend::positions(const std::vector<int64_t>& pos, const std::vector<double>& inv_freq) {
  auto p = std::make_unique<CudaPositions>();
  p->count = (int64_t)pos.size();
  p->pos = up_.push(pos);
  p->rotary_dim = 2 * (int64_t)inv_freq.size();
  if (!inv_freq.empty()) p->inv_freq = up_.push(inv_freq);  // in double, as cpp/models/rotary.cpp
  positions_.push_back(std::move(p));
  return positions_.back().get();
}

void CudaBackend::read_rows(const std::vector<float*>& dest, const float* x, int64_t width) {
  const int64_t R = (int64_t)dest.size();
  if (R == 0) return finish();
  float* host = host_rows_.get<float>(R * width);
  ROOST_CUDA_CHECK(cudaMemcpyAsync(host, x, R * width * sizeof(float), cudaMemcpyDeviceToHost, ctx_->stream()));
  ctx_->sync();
  for (int64_t r = 0; r < R; r++) std::memcpy(dest[r], host + r * width, width * sizeof(float));
}

void CudaBackend::finish() { ctx_->sync(); }

void CudaBackend::embed(float* x, const roost::Matrix& wte, const float* wpe, const int32_t* tok, const Positions& pos,
                        int64_t M, int64_t C) {
  const DevMatrix& w = dev(wte);
  cuda::embed(x, w.data, w.type, wpe, tok, static_cast<const CudaPositions&>(pos).pos, M, C, ctx_->stream());
}

void CudaBackend::layernorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w,
                            const float* b, int64_t M, int64_t C, float eps) {
  cuda::layernorm(y, ldy, x, ldx, rows, w, b, M, C, eps, ctx_->stream());
}

void CudaBackend::gemm(float* y, int64_t ldy, const float* x, int64_t ldx, const roost::Matrix& W, const float* bias,
                       int64_t M, roost::Epilogue epi) {
  cuda::gemm(y, ldy, x, ldx, dev(W), bias, M, static_cast<Epilogue>(epi), ws_, *ctx_);
}

void CudaBackend::rotary(float* x, int64_t ld, int64_t M, int64_t H, int64_t D, int parts, const Positions& pos) {
  const auto& p = static_cast<const CudaPositions&>(pos);
  if (p.rotary_dim > 0) cuda::rotary(x, ld, M, H, D, p.rotary_dim, parts, p.pos, p.inv_freq, ctx_->stream());
}

void CudaBackend::move_rows(const roost::RowMove* moves, int64_t count, int64_t C, int64_t layer, bool to_kv) {
  cuda::move_rows(reinterpret_cast<const RowMove*>(moves), count, C, layer, to_kv, ctx_->stream());
}

void CudaBackend::to_kv(void* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t C) {
  cuda::to_half(static_cast<uint16_t*>(y), ldy, x, ldx, M, C, ctx_->stream());
}

void CudaBackend::gate_update(float* const* s, int64_t layer_stride, int64_t layer, const float* y, const float* keep,
                              int64_t count, int64_t S, int64_t C) {
  cuda::gate_update(s, layer_stride, layer, y, keep, count, S, C, ctx_->stream());
}

void CudaBackend::rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w,
                          int64_t M, int64_t C, float eps) {
  cuda::rmsnorm(y, ldy, x, ldx, rows, w, M, C, eps, ctx_->stream());
}

void CudaBackend::silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F) {
  cuda::silu_mul(y, ldy, x, ldx, M, F, ctx_->stream());
}

void CudaBackend::scale_columns(float* x, int64_t ld, int64_t M, int64_t cols, const float* scale) {
  cuda::scale_columns(x, ld, M, cols, scale, ctx_->stream());
}

std::shared_ptr<CudaBackend> make_cuda_backend(int device, const Checkpoint& ckpt) {
  return std::make_shared<CudaBackend>(device, weight_type_for(ckpt));
}

}  // namespace roost::cuda

namespace roost {

void register_cuda_backend() {
  register_backend(BackendProvider{
      "cuda",
      [](std::string* why) { return cuda::device_count(why); },
      [](int device) { return cuda::device_name(device); },
      [](int device, const Checkpoint& ckpt) -> std::shared_ptr<Backend> { return cuda::make_cuda_backend(device, ckpt); },
  });
}

}  // namespace roost
