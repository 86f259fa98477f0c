// The `perceiver_ar` architecture on the GPU: cpp/models/perceiver_ar.cpp step
// for step. Per sequence, in device memory: the layer-0 K/V of every position
// (F16, [K|V][cap][C]), a ring of the last N layer-0 outputs (float [N][C]) and,
// per layer >= 1, a ring of the last N latent K/V (F16 [layer-1][K|V][N][C]).
#include <algorithm>
#include <cstring>
#include <limits>

#include "../cpp/models/step_rows.h"
#include "model_base.h"
#include "models_cuda.h"

namespace roost::cuda {

namespace {

class CudaPerceiverState : public SequenceState {
 public:
  CudaPerceiverState(std::shared_ptr<const DeviceContext> ctx, int64_t n_layer, int64_t C, int64_t N)
      : ctx_(std::move(ctx)), L_(n_layer), C_(C), N_(N) {
    z_ = static_cast<float*>(ctx_->alloc((size_t)N * C * sizeof(float)));
    if (L_ > 1) lat_ = static_cast<uint16_t*>(ctx_->alloc((size_t)(L_ - 1) * 2 * N * C * 2));
  }
  ~CudaPerceiverState() override {
    ctx_->free(kv0_);
    ctx_->free(z_);
    ctx_->free(lat_);
  }
  int64_t length() const override { return len; }
  size_t bytes() const override {
    return (size_t)cap_ * C_ * 2 * 2 + (size_t)N_ * C_ * sizeof(float) + (size_t)std::max<int64_t>(0, L_ - 1) * 2 * N_ * C_ * 2;
  }
  void reserve(int64_t need, int64_t limit) {
    if (need <= cap_) return;
    int64_t cap = std::max<int64_t>({need, cap_ * 2, 64});
    cap = (cap + 63) / 64 * 64;
    if (limit > 0) cap = std::min(cap, std::max(limit, need));
    uint16_t* bigger = static_cast<uint16_t*>(ctx_->alloc((size_t)cap * C_ * 2 * 2));
    if (len > 0)
      ROOST_CUDA_CHECK(cudaMemcpy2DAsync(bigger, (size_t)cap * C_ * 2, kv0_, (size_t)cap_ * C_ * 2, (size_t)len * C_ * 2, 2,
                                         cudaMemcpyDeviceToDevice, ctx_->stream()));
    ctx_->free(kv0_);
    kv0_ = bigger;
    cap_ = cap;
  }
  uint16_t* k0() const { return kv0_; }  // V at k0() + cap() * C
  int64_t cap() const { return cap_; }
  float* z(int64_t pos) const { return z_ + (pos % N_) * C_; }
  // Latent ring of layer 1 (layer l at + (l-1) * 2*N*C): K slot s at + s*C, V at + N*C + s*C.
  uint16_t* lat() const { return lat_; }

  int64_t len = 0, lat0 = 0;

 private:
  std::shared_ptr<const DeviceContext> ctx_;
  int64_t L_, C_, N_, cap_ = 0;
  uint16_t* kv0_ = nullptr;
  float* z_ = nullptr;
  uint16_t* lat_ = nullptr;
};

class CudaPerceiverModel : public CudaModelBase {
 public:
  CudaPerceiverModel(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx);
  std::unique_ptr<SequenceState> new_state() const override {
    return std::make_unique<CudaPerceiverState>(ctx_, cfg_.n_layer, cfg_.n_embd, cfg_.num_latents);
  }
  bool prompt_logprobs_need_one_pass() const override { return true; }
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;

 private:
  struct Layer {  // layer 0: ln_q, ln_kv, q_attn, kv_attn; others: ln_1, c_attn
    DevLayerNorm ln_q, ln_kv, ln_1;
    DevLinear q_attn, kv_attn, c_attn, attn_proj;
    Mlp mlp;
  };
  using Rows = PerceiverRows;  // cpp/models/step_rows.h, as the CPU model
  std::vector<Layer> layers_;
  AttentionPlan plan0_, plan_;
  Scratch s_x_, s_kv_, s_z_, s_q_, s_y_, s_qkv_, s_kvh_, s_att_;
};

CudaPerceiverModel::CudaPerceiverModel(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx)
    : CudaModelBase(cfg, ckpt, std::move(ctx)),
      s_x_(ctx_), s_kv_(ctx_), s_z_(ctx_), s_q_(ctx_), s_y_(ctx_), s_qkv_(ctx_), s_kvh_(ctx_), s_att_(ctx_) {
  const int64_t C = cfg_.n_embd;
  init_rotary();
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer L;
    if (l == 0) {
      L.ln_q = weights_.layernorm(ckpt, p + "ln_q", C);
      L.ln_kv = weights_.layernorm(ckpt, p + "ln_kv", C);
      L.q_attn = weights_.linear(ckpt, p + "attn.q_attn", C, C);
      L.kv_attn = weights_.linear(ckpt, p + "attn.kv_attn", C, 2 * C);
    } else {
      L.ln_1 = weights_.layernorm(ckpt, p + "ln_1", C);
      L.c_attn = weights_.linear(ckpt, p + "attn.c_attn", C, 3 * C);
    }
    L.attn_proj = weights_.linear(ckpt, p + "attn.c_proj", C, C);
    L.mlp = load_mlp(ckpt, p);
    layers_.push_back(std::move(L));
  }
}

void CudaPerceiverModel::forward(const std::vector<ForwardItem>& items, ThreadPool&) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, N = cfg_.num_latents, V = cfg_.vocab_size;
  const float eps = cfg_.layer_norm_epsilon;
  const cudaStream_t st = ctx_->stream();
  begin_step();

  PerceiverPlan plan = plan_perceiver_rows(items, N);
  std::vector<Rows>& rows = plan.rows;
  const int64_t R = plan.x_rows, Z = plan.z_rows, Y = plan.y_rows;
  for (size_t i = 0; i < items.size(); i++) static_cast<CudaPerceiverState*>(items[i].state)->reserve(rows[i].end, max_context());
  const bool deep = cfg_.n_layer > 1;
  float* x = s_x_.get<float>(R * C);
  float* kv = s_kv_.get<float>(R * 2 * C);
  float* z = s_z_.get<float>(Z * C);
  float* q = s_q_.get<float>(Z * C);
  float* y = deep ? s_y_.get<float>(Y * C) : nullptr;
  float* qkv = deep ? s_qkv_.get<float>(Y * 3 * C) : nullptr;
  uint16_t* kvh = deep ? s_kvh_.get<uint16_t>(Y * 2 * C) : nullptr;
  float* att = s_att_.get<float>(std::max(Z, Y) * C);
  float* h = s_h_.get<float>(std::max({R, Z, Y}) * C);

  // Host metadata for the whole step.
  std::vector<int32_t> tok(R);
  std::vector<int64_t> pos_x(R), pos_z(Z), pos_y(Y);
  std::vector<RowMove> kv_moves, z_in, z_out, y_in, lat_moves;
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<CudaPerceiverState*>(items[i].state);
    const Rows& r = rows[i];
    for (int64_t j = 0; j < r.n; j++) {
      const int64_t row = r.x0 + j, p = r.past + j;
      tok[row] = items[i].tokens[j];
      pos_x[row] = p;
      kv_moves.push_back({kv + row * 2 * C, s->k0() + p * C, 0});
      kv_moves.push_back({kv + row * 2 * C + C, s->k0() + s->cap() * C + p * C, 0});
    }
    for (int64_t p = r.zp; p < r.end; p++) {
      pos_z[r.z0 + p - r.zp] = p;
      z_in.push_back({x + (r.x0 + p - r.past) * C, z + (r.z0 + p - r.zp) * C, 0});
      z_out.push_back({z + (r.z0 + p - r.zp) * C, s->z(p), 0});
    }
    if (!deep) continue;
    for (int64_t p = r.yp; p < r.end; p++) {
      pos_y[r.y0 + p - r.yp] = p;
      y_in.push_back({s->z(p), y + (r.y0 + p - r.yp) * C, 0});
    }
    const int64_t cnt = r.end - r.yp;  // latent K/V rows this step; the ring keeps the last N
    for (int64_t t = std::max<int64_t>(0, cnt - N); t < cnt; t++) {
      const int64_t slot = (r.yp + t) % N;
      lat_moves.push_back({qkv + (r.y0 + t) * 3 * C + C, s->lat() + slot * C, 2 * N * C});
      lat_moves.push_back({qkv + (r.y0 + t) * 3 * C + 2 * C, s->lat() + N * C + slot * C, 2 * N * C});
    }
  }
  const int32_t* d_tok = up_.push(tok);
  const int64_t* d_pos_x = up_.push(pos_x);
  const int64_t* d_pos_z = up_.push(pos_z);
  const RowMove* d_kv_moves = up_.push(kv_moves);
  const RowMove* d_z_in = up_.push(z_in);
  const RowMove* d_z_out = up_.push(z_out);

  // Attention lists: layer 0 (window queries over the cache of every position),
  // layers >= 1 (the same list for every layer through the ring's layer stride).
  plan0_.clear();
  plan_.clear();
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<CudaPerceiverState*>(items[i].state);
    const Rows& r = rows[i];
    plan0_.add_span(AttnSpan{s->k0(), s->k0() + s->cap() * C, C, r.end, 0, 0});
    AttnTask t0{att + r.z0 * C, C, q + r.z0 * C, C, r.end - r.zp, r.zp, 0, 0, 0, 0};
    plan0_.add_task(t0);
    for (t0.head = 1; t0.head < H; t0.head++) plan0_.add_task_again(t0);
    if (!deep) continue;
    const uint16_t* kr = kvh + r.y0 * 2 * C;  // this step's latent K | V rows (F16)
    if (r.rebuild) {  // window row t sees window rows 0..t
      plan_.add_span(AttnSpan{kr, kr + C, 2 * C, r.end - r.yp, r.yp, 0});
    } else {  // position past sees the cached latents [max(lat0, past-N+1), past) and itself
      for (int64_t a = std::max(s->lat0, r.past - N + 1), b = r.past; a < b;) {
        const int64_t slot = a % N, n = std::min(b - a, N - slot);
        plan_.add_span(AttnSpan{s->lat() + slot * C, s->lat() + N * C + slot * C, C, n, kNoMaskPos, 2 * N * C});
        a += n;
      }
      plan_.add_span(AttnSpan{kr, kr + C, 2 * C, 1, kNoMaskPos, 0});
    }
    AttnTask t{att + r.y0 * C, C, qkv + r.y0 * 3 * C, 3 * C, r.end - r.yp, r.yp, 0, 0, 0, 0};
    plan_.add_task(t);
    for (t.head = 1; t.head < H; t.head++) plan_.add_task_again(t);
  }
  plan0_.prepare(D, up_, *ctx_);

  // Layer 0: K/V of every new token into the cache, then the window's queries.
  const Layer& L0 = layers_[0];
  embed(x, wte_.data, wte_.type, nullptr, d_tok, d_pos_x, R, C, st);
  layernorm(h, C, x, C, nullptr, L0.ln_kv.weight(), L0.ln_kv.bias(), R, C, eps, st);
  gemm(kv, 2 * C, h, C, L0.kv_attn.W, L0.kv_attn.bias(), R, Epilogue::Store, ws_, *ctx_);  // K | V
  rotary(kv, 2 * C, R, H, D, cfg_.rotary_dim, 1, d_pos_x, inv_freq_.as<double>(), st);     // K only
  move_rows(d_kv_moves, (int64_t)kv_moves.size(), C, 0, /*to_half=*/true, st);
  move_rows(d_z_in, Z, C, 0, false, st);
  layernorm(h, C, z, C, nullptr, L0.ln_q.weight(), L0.ln_q.bias(), Z, C, eps, st);
  gemm(q, C, h, C, L0.q_attn.W, L0.q_attn.bias(), Z, Epilogue::Store, ws_, *ctx_);
  rotary(q, C, Z, H, D, cfg_.rotary_dim, 1, d_pos_z, inv_freq_.as<double>(), st);
  plan0_.launch(0, ws_, *ctx_);
  gemm(z, C, att, C, L0.attn_proj.W, L0.attn_proj.bias(), Z, Epilogue::Add, ws_, *ctx_);
  mlp(L0.mlp, z, Z);
  move_rows(d_z_out, Z, C, 0, false, st);

  if (deep) {
    const int64_t* d_pos_y = up_.push(pos_y);
    const RowMove* d_y_in = up_.push(y_in);
    const RowMove* d_lat = up_.push(lat_moves);
    plan_.prepare(D, up_, *ctx_);
    move_rows(d_y_in, Y, C, 0, false, st);
    for (int64_t l = 1; l < cfg_.n_layer; l++) {
      const Layer& Ly = layers_[l];
      layernorm(h, C, y, C, nullptr, Ly.ln_1.weight(), Ly.ln_1.bias(), Y, C, eps, st);
      gemm(qkv, 3 * C, h, C, Ly.c_attn.W, Ly.c_attn.bias(), Y, Epilogue::Store, ws_, *ctx_);
      rotary(qkv, 3 * C, Y, H, D, cfg_.rotary_dim, 2, d_pos_y, inv_freq_.as<double>(), st);
      to_half(kvh, 2 * C, qkv + C, 3 * C, Y, 2 * C, st);
      plan_.launch(l - 1, ws_, *ctx_);
      move_rows(d_lat, (int64_t)lat_moves.size(), C, l - 1, true, st);  // after every read of this layer
      gemm(y, C, att, C, Ly.attn_proj.W, Ly.attn_proj.bias(), Y, Epilogue::Add, ws_, *ctx_);
      mlp(Ly.mlp, y, Y);
    }
  }
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<CudaPerceiverState*>(items[i].state);
    s->len = rows[i].end;
    s->lat0 = rows[i].rebuild ? rows[i].win : std::max(s->lat0, rows[i].end - N);
  }

  // Logits for the wanted rows inside the window; rows before it get NaN.
  std::vector<int32_t> out_rows;
  std::vector<float*> dest;
  for (size_t i = 0; i < items.size(); i++) {
    const Rows& r = rows[i];
    const int64_t first = r.end - (items[i].all_logits ? r.n : 1);
    const int64_t f0 = deep ? r.y0 - r.yp : r.z0 - r.zp;  // row of position p in the final rows: f0 + p
    for (int64_t p = first; p < r.end; p++) {
      float* out = items[i].logits + (p - first) * V;
      if (p < r.win) {
        std::fill(out, out + V, std::numeric_limits<float>::quiet_NaN());
      } else {
        out_rows.push_back((int32_t)(f0 + p));
        dest.push_back(out);
      }
    }
  }
  head_logits(deep ? y : z, out_rows, dest);
}

}  // namespace

std::unique_ptr<Model> make_perceiver_ar(const ModelConfig& cfg, const Checkpoint& ckpt,
                                         std::shared_ptr<DeviceContext> ctx) {
  return std::make_unique<CudaPerceiverModel>(cfg, ckpt, std::move(ctx));
}

}  // namespace roost::cuda
