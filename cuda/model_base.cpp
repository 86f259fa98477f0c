#include "model_base.h"

#include <cmath>
#include <cstring>

namespace roost::cuda {

CudaModelBase::CudaModelBase(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx)
    : cfg_(cfg),
      ctx_(std::move(ctx)),
      weights_(ctx_, weight_type_for(ckpt)),
      up_(ctx_),
      ws_(ctx_),
      s_h_(ctx_),
      s_ff_(ctx_),
      s_hin_(ctx_),
      s_logits_(ctx_) {
  ctx_->make_current();
  if (cfg_.head_dim() > kMaxHeadDim)
    throw Error("E_CONFIG", cfg_.dir + "/config.json: the CUDA backend supports head sizes up to " +
                                std::to_string(kMaxHeadDim) + " (n_embd / n_head = " + std::to_string(cfg_.head_dim()) +
                                "); use --device cpu");
  const int64_t V = cfg_.vocab_size, C = cfg_.n_embd;
  wte_ = weights_.matrix(wte_buf_, ckpt.get("wte.weight", {V, C}), C, V, /*src_is_nk=*/true);
  head_ = wte_;
  if (ckpt.find("lm_head.weight")) head_ = weights_.matrix(lm_head_buf_, ckpt.get("lm_head.weight", {V, C}), C, V, true);
  ln_f_ = weights_.layernorm(ckpt, "ln_f", C);
}

CudaModelBase::Mlp CudaModelBase::load_mlp(const Checkpoint& ckpt, const std::string& p) {
  const int64_t C = cfg_.n_embd, F = cfg_.n_inner;
  Mlp m;
  m.ln_2 = weights_.layernorm(ckpt, p + "ln_2", C);
  m.c_fc = weights_.linear(ckpt, p + "mlp.c_fc", C, F);
  m.proj = weights_.linear(ckpt, p + "mlp.c_proj", F, C);
  return m;
}

void CudaModelBase::init_rotary() {
  const int64_t half = cfg_.rotary_dim / 2;
  if (half <= 0) return;
  std::vector<double> f;
  for (int64_t i = 0; i < half; i++) f.push_back(std::pow(cfg_.rotary_base, -2.0 * (double)i / (double)cfg_.rotary_dim));
  inv_freq_ = weights_.upload(f.data(), f.size() * sizeof(double));
}

void CudaModelBase::mlp(const Mlp& m, float* x, int64_t M) {
  const int64_t C = cfg_.n_embd, F = cfg_.n_inner;
  float* h = s_h_.get<float>(M * C);
  float* ff = s_ff_.get<float>(M * F);
  layernorm(h, C, x, C, nullptr, m.ln_2.weight(), m.ln_2.bias(), M, C, cfg_.layer_norm_epsilon, ctx_->stream());
  gemm(ff, F, h, C, m.c_fc.W, m.c_fc.bias(), M, Epilogue::Gelu, ws_, *ctx_);
  gemm(x, C, ff, F, m.proj.W, m.proj.bias(), M, Epilogue::Add, ws_, *ctx_);
}

void CudaModelBase::begin_step() {
  ctx_->make_current();
  ctx_->sync();  // normally idle already (the last step ended with a sync); not so after a step that threw
  up_.reset();
}

void CudaModelBase::head_logits(const float* x, const std::vector<int32_t>& rows, const std::vector<float*>& dest) {
  const int64_t R = (int64_t)rows.size(), C = cfg_.n_embd, V = cfg_.vocab_size;
  if (R > 0) {
    const int32_t* d_rows = up_.push(rows);
    float* hin = s_hin_.get<float>(R * C);
    float* logits = s_logits_.get<float>(R * V);
    layernorm(hin, C, x, C, d_rows, ln_f_.weight(), ln_f_.bias(), R, C, cfg_.layer_norm_epsilon, ctx_->stream());
    gemm(logits, V, hin, C, head_, nullptr, R, Epilogue::Store, ws_, *ctx_);
    float* host = host_logits_.get<float>(R * V);
    ROOST_CUDA_CHECK(cudaMemcpyAsync(host, logits, R * V * sizeof(float), cudaMemcpyDeviceToHost, ctx_->stream()));
    ctx_->sync();
    for (int64_t r = 0; r < R; r++) std::memcpy(dest[r], host + r * V, V * sizeof(float));
  } else {
    ctx_->sync();  // the step's work is done before forward returns, logits or not
  }
}

}  // namespace roost::cuda
