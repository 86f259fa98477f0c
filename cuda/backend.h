// The CUDA backend: cpp/backend.h's interface over the kernels of cuda/ops.h.
// Every op is queued on the device context's one stream; per-step metadata
// goes up through the pinned upload arena; the step's one device -> host copy
// is read_rows(). Weights are F16 (BF16 when the checkpoint's wte is BF16),
// K/V rows F16 (docs/cuda.md). register_cuda_backend() (cpp/backend.h) adds it
// to the registry under "cuda"; cpp/ never includes this header. Plain C++:
// tests and benches include it with the host compiler.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../cpp/backend.h"
#include "ops.h"
#include "runtime.h"
#include "weights_cuda.h"

namespace roost::cuda {

// A weight matrix on the device ([N][K], F16 or BF16) and its storage.
class CudaMatrix : public roost::Matrix {
 public:
  DevMatrix dev;
  DeviceBuffer storage;
};

class CudaBackend : public Backend, public std::enable_shared_from_this<CudaBackend> {
 public:
  CudaBackend(int device, WType weight_type);
  std::string name() const override { return "cuda"; }
  KvType kv_type() const override { return KvType::F16; }
  std::string unsupported(Op op, const ModelConfig& cfg) const override;

  const roost::Matrix* matrix(const TensorView& t, int64_t K, int64_t N, bool src_is_nk) override;
  const float* floats(const std::vector<float>& v) override;
  size_t weight_bytes() const override { return weights_.bytes(); }

  std::unique_ptr<Buffer> alloc(size_t bytes) override;
  std::unique_ptr<roost::Scratch> scratch() override;
  std::unique_ptr<roost::AttentionPlan> attention_plan() override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void copy_2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) override;

  void begin_step(ThreadPool& pool) override;
  const void* upload(const void* data, size_t bytes) override;
  const Positions* positions(const std::vector<int64_t>& pos, const std::vector<double>& inv_freq) override;
  void read_rows(const std::vector<float*>& dest, const float* x, int64_t width) override;
  void finish() override;

  void embed(float* x, const roost::Matrix& wte, const float* wpe, const int32_t* tok, const Positions& pos, int64_t M,
             int64_t C) override;
  void layernorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, const float* b,
                 int64_t M, int64_t C, float eps) override;
  void gemm(float* y, int64_t ldy, const float* x, int64_t ldx, const roost::Matrix& W, const float* bias, int64_t M,
            roost::Epilogue epi) override;
  void rotary(float* x, int64_t ld, int64_t M, int64_t H, int64_t D, int parts, const Positions& pos) override;
  void move_rows(const roost::RowMove* moves, int64_t count, int64_t C, int64_t layer, bool to_kv) override;
  void to_kv(void* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t C) override;
  void gate_update(float* const* s, int64_t layer_stride, int64_t layer, const float* y, const float* keep,
                   int64_t count, int64_t S, int64_t C) override;
  void scale_columns(float* x, int64_t ld, int64_t M, int64_t cols, const float* scale) override;
  void rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, int64_t M,
               int64_t C, float eps) override;
  void silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F) override;

  // For the attention plans, tests and benches.
  const DeviceContext& context() const { return *ctx_; }
  const std::shared_ptr<DeviceContext>& shared_context() const { return ctx_; }
  StepUpload& uploads() { return up_; }
  Scratch& workspace() { return ws_; }  // GEMM split-K and attention partials

 private:
  struct CudaPositions : Positions {
    const int64_t* pos = nullptr;      // device [count]
    const double* inv_freq = nullptr;  // device [rotary_dim / 2]
    int64_t rotary_dim = 0;
  };
  std::shared_ptr<DeviceContext> ctx_;
  DeviceWeights weights_;
  std::vector<std::unique_ptr<CudaMatrix>> matrices_;
  std::vector<DeviceBuffer> constants_;
  StepUpload up_;
  Scratch ws_;
  PinnedBuffer host_rows_;
  std::vector<std::unique_ptr<CudaPositions>> positions_;  // this step's
  std::vector<double> inv_freq_host_;                     // of the rotary table on the device
  DeviceBuffer inv_freq_;
};

// The backend for a checkpoint on `device` (the weight type follows its wte).
std::shared_ptr<CudaBackend> make_cuda_backend(int device, const Checkpoint& ckpt);

// The backend's attention plan (cuda/backend_attention.cpp): prepare() splits
// the tasks between the tensor-core flash kernel (tiles of up to `br` queries)
// and the SIMT split-K kernel (decode, odd shapes) and uploads the lists.
class CudaAttentionPlan : public roost::AttentionPlan {
 public:
  explicit CudaAttentionPlan(std::shared_ptr<CudaBackend> be) : be_(std::move(be)) {}
  void prepare(int64_t D) override;
  void run(int64_t layer) override;
  // 0 auto; 1 flash wherever the kernel can take a task; 2 SIMT only (tests).
  int force = 0;
  size_t flash_tasks() const { return flash_.size(); }  // after prepare (tests)
  size_t simt_tasks() const { return simt_.size(); }

 private:
  std::shared_ptr<CudaBackend> be_;
  int64_t D_ = 0;
  int flash_br_ = 0;  // 64 or 128; 0: no flash tasks
  bool vec_ = false;  // SIMT kernel may use 16-byte loads
  std::vector<AttnSpan> spans_dev_;
  std::vector<AttnTask> flash_, simt_;
  std::vector<AttnUnit> units_;
  std::vector<AttnWork> works_;
  const AttnTask* d_flash_ = nullptr;
  const AttnTask* d_simt_ = nullptr;
  const AttnSpan* d_spans_ = nullptr;
  const AttnUnit* d_units_ = nullptr;
  const AttnWork* d_works_ = nullptr;
};

}  // namespace roost::cuda
