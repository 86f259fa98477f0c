// The `block_recurrent` architecture on the GPU: cpp/models/block_recurrent.cpp
// step for step. Per sequence, in device memory: per layer a ring of the last
// 2W token K/V rows (F16 [layer][K|V][2W][C]) and, per recurrent layer, the
// state s (float [S][C]) with its keys/values kv_state(ln_s(s)) (F16 [S][2C]);
// the state blocks are laid out per layer (unused in ordinary layers) so one
// task list serves every layer through its layer stride.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../cpp/models/weights.h"
#include "../cpp/ops/ops.h"
#include "../cpp/models/step_rows.h"
#include "model_base.h"
#include "models_cuda.h"

namespace roost::cuda {

namespace {

class CudaRecurrentState : public SequenceState {
 public:
  CudaRecurrentState(std::shared_ptr<const DeviceContext> ctx, int64_t L, int64_t C, int64_t W, int64_t S)
      : ctx_(std::move(ctx)), L_(L), C_(C), W2_(2 * W), S_(S) {
    ring_ = static_cast<uint16_t*>(ctx_->alloc(ring_bytes()));
    s_ = static_cast<float*>(ctx_->alloc((size_t)L * S * C * sizeof(float)));
    skv_ = static_cast<uint16_t*>(ctx_->alloc((size_t)L * S * 2 * C * 2));
  }
  ~CudaRecurrentState() override {
    ctx_->free(ring_);
    ctx_->free(s_);
    ctx_->free(skv_);
  }
  int64_t length() const override { return len; }
  size_t bytes() const override { return ring_bytes() + (size_t)L_ * S_ * C_ * (sizeof(float) + 4); }

  // Ring of layer l: K slot q at ring() + l*ring_stride() + q*C, V at + 2W*C.
  uint16_t* ring() const { return ring_; }
  int64_t ring_stride() const { return 2 * W2_ * C_; }
  float* s() const { return s_; }           // layer l at + l*S*C
  uint16_t* skv() const { return skv_; }    // layer l at + l*S*2C (K | V rows of 2C)

  int64_t len = 0;

 private:
  size_t ring_bytes() const { return (size_t)L_ * 2 * W2_ * C_ * 2; }
  std::shared_ptr<const DeviceContext> ctx_;
  int64_t L_, C_, W2_, S_;
  uint16_t* ring_ = nullptr;
  float* s_ = nullptr;
  uint16_t* skv_ = nullptr;
};

class CudaRecurrentModel : public CudaModelBase {
 public:
  CudaRecurrentModel(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx);
  std::unique_ptr<SequenceState> new_state() const override;
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;

 private:
  struct Layer {
    bool rec = false;
    DevLayerNorm ln_1, ln_s;
    DevLinear c_attn, attn_proj, q_state, kv_state, state_q, state_proj;
    DeviceBuffer keep;  // sigmoid(gate_bias) [C]
    Mlp mlp;
  };
  using Rows = BlockRows;  // cpp/models/step_rows.h, as the CPU model
  // One round of the state cross-attention (the k-th block segment of every
  // item) and the state updates of the blocks it completes.
  struct Round {
    AttentionPlan read;     // a_cross of the round's tokens
    int64_t done = 0;       // states updated after it
    AttentionPlan update;   // state queries over [state K/V ; block K/V]
    const RowMove* d_s_rows = nullptr;   // s rows of the done items -> su
    const RowMove* d_kv_rows = nullptr;  // kv rows -> the items' F16 state K/V
    float* const* d_s_ptrs = nullptr;    // the done items' s (layer 0)
  };

  std::vector<Layer> layers_;
  DeviceBuffer init_s_, init_kv_;  // per layer [S][C] float, [S][2C] F16 (state_init and its K/V)
  AttentionPlan self_[2];          // a_self with output stride C (ordinary) and 2C (recurrent)
  std::vector<Round> rounds_;
  Scratch s_x_, s_qkv_, s_kvh_, s_qs_, s_att_, s_su_, s_sq_, s_sa_, s_sy_, s_skv_;
};

CudaRecurrentModel::CudaRecurrentModel(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx)
    : CudaModelBase(cfg, ckpt, std::move(ctx)),
      s_x_(ctx_), s_qkv_(ctx_), s_kvh_(ctx_), s_qs_(ctx_), s_att_(ctx_), s_su_(ctx_), s_sq_(ctx_), s_sa_(ctx_),
      s_sy_(ctx_), s_skv_(ctx_) {
  const int64_t C = cfg_.n_embd, S = cfg_.num_states, L = cfg_.n_layer;
  init_rotary();
  std::vector<float> init_s((size_t)L * S * C, 0.f);
  std::vector<uint16_t> init_kv((size_t)L * S * 2 * C, 0);
  ThreadPool one(1);
  for (int64_t l = 0; l < L; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer Ly;
    const auto& rl = cfg_.recurrent_layers;
    Ly.rec = std::find(rl.begin(), rl.end(), l) != rl.end();
    Ly.ln_1 = weights_.layernorm(ckpt, p + "ln_1", C);
    Ly.c_attn = weights_.linear(ckpt, p + "attn.c_attn", C, 3 * C);
    Ly.attn_proj = weights_.linear(ckpt, p + "attn.c_proj", Ly.rec ? 2 * C : C, C);  // input [a_self ; a_cross]
    Ly.mlp = load_mlp(ckpt, p);
    if (Ly.rec) {
      Ly.q_state = weights_.linear(ckpt, p + "attn.q_state", C, C);
      Ly.kv_state = weights_.linear(ckpt, p + "attn.kv_state", C, 2 * C);
      Ly.ln_s = weights_.layernorm(ckpt, p + "ln_s", C);
      Ly.state_q = weights_.linear(ckpt, p + "state.q_attn", C, C);
      Ly.state_proj = weights_.linear(ckpt, p + "state.c_proj", C, C);
      std::vector<float> keep;
      for (float g : tensor_to_f32(ckpt.get(p + "state.gate_bias", {C}))) keep.push_back(1.f / (1.f + std::exp(-g)));
      Ly.keep = weights_.floats(keep);
      // s_0 and kv_state(ln_s(s_0)) on the CPU in float32, exactly as the CPU model does.
      const std::vector<float> s0 = tensor_to_f32(ckpt.get(p + "state_init", {S, C}));
      const LayerNormWeights ln = load_layernorm(ckpt, p + "ln_s", C);
      const Linear kv = load_linear(ckpt, p + "attn.kv_state", C, 2 * C);
      std::vector<float> u(S * C), kvf(S * 2 * C);
      roost::layernorm(u.data(), s0.data(), ln.weight.data(), ln.bias.data(), S, C, cfg_.layer_norm_epsilon);
      kv.apply(kvf.data(), u.data(), S, one);
      std::copy(s0.begin(), s0.end(), init_s.begin() + l * S * C);
      for (int64_t i = 0; i < S * 2 * C; i++) init_kv[l * S * 2 * C + i] = f32_to_f16(kvf[i]);
    }
    layers_.push_back(std::move(Ly));
  }
  init_s_ = weights_.floats(init_s);
  init_kv_ = weights_.upload(init_kv.data(), init_kv.size() * sizeof(uint16_t));
}

std::unique_ptr<SequenceState> CudaRecurrentModel::new_state() const {
  const int64_t C = cfg_.n_embd, S = cfg_.num_states, L = cfg_.n_layer;
  auto st = std::make_unique<CudaRecurrentState>(ctx_, L, C, cfg_.block_size, S);
  ROOST_CUDA_CHECK(cudaMemcpyAsync(st->s(), init_s_.data(), init_s_.bytes(), cudaMemcpyDeviceToDevice, ctx_->stream()));
  ROOST_CUDA_CHECK(
      cudaMemcpyAsync(st->skv(), init_kv_.data(), init_kv_.bytes(), cudaMemcpyDeviceToDevice, ctx_->stream()));
  return st;
}

void CudaRecurrentModel::forward(const std::vector<ForwardItem>& items, ThreadPool&) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, V = cfg_.vocab_size, W = cfg_.block_size;
  const int64_t S = cfg_.num_states, L = cfg_.n_layer, W2 = 2 * W;
  const float eps = cfg_.layer_norm_epsilon;
  const cudaStream_t st = ctx_->stream();
  begin_step();

  int64_t R = 0;
  const std::vector<Rows> rows = plan_block_rows(items, W, &R);
  size_t n_rounds = 0;
  for (const Rows& r : rows) n_rounds = std::max(n_rounds, r.segs.size());
  bool any_rec = false, any_plain = false;
  for (const Layer& Ly : layers_) (Ly.rec ? any_rec : any_plain) = true;

  float* x = s_x_.get<float>(R * C);
  float* h = s_h_.get<float>(R * C);
  float* qkv = s_qkv_.get<float>(R * 3 * C);
  uint16_t* kvh = s_kvh_.get<uint16_t>(R * 2 * C);  // this step's K | V rows, F16
  float* att = s_att_.get<float>(R * 2 * C);        // a_self (| a_cross)
  float* qs = any_rec ? s_qs_.get<float>(R * C) : nullptr;

  std::vector<int32_t> tok(R);
  std::vector<int64_t> pos(R);
  std::vector<RowMove> ring_moves;  // after each layer's reads: the new K/V rows into the ring (last 2W survive)
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<CudaRecurrentState*>(items[i].state);
    const Rows& r = rows[i];
    for (int64_t j = 0; j < r.n; j++) {
      tok[r.x0 + j] = items[i].tokens[j];
      pos[r.x0 + j] = r.past + j;
    }
    for (int64_t t = std::max<int64_t>(0, r.n - W2); t < r.n; t++) {
      const int64_t slot = (r.past + t) % W2, row = r.x0 + t;
      ring_moves.push_back({qkv + row * 3 * C + C, s->ring() + slot * C, s->ring_stride()});
      ring_moves.push_back({qkv + row * 3 * C + 2 * C, s->ring() + W2 * C + slot * C, s->ring_stride()});
    }
  }
  const int32_t* d_tok = up_.push(tok);
  const int64_t* d_pos = up_.push(pos);
  const RowMove* d_ring = up_.push(ring_moves);

  // Ring rows of positions [a, b) (b - a <= 2W) as spans, at their positions or unmasked.
  auto ring_spans = [&](AttentionPlan& plan, const CudaRecurrentState* s, int64_t a, int64_t b, bool unmasked) {
    while (a < b) {
      const int64_t slot = a % W2, n = std::min(b - a, W2 - slot);
      plan.add_span(AttnSpan{s->ring() + slot * C, s->ring() + W2 * C + slot * C, C, n, unmasked ? kNoMaskPos : a,
                             s->ring_stride()});
      a += n;
    }
  };

  // a_self: the query at p in block i sees keys max(0, (i-1)W) .. p; earlier
  // ones from the ring, the step's own from kvh.
  for (int k = 0; k < 2; k++) {
    AttentionPlan& plan = self_[k];
    plan.clear();
    if (!(k ? any_rec : any_plain)) continue;
    const int64_t a_stride = k ? 2 * C : C;
    for (size_t i = 0; i < items.size(); i++) {
      auto* s = static_cast<CudaRecurrentState*>(items[i].state);
      const Rows& r = rows[i];
      for (const auto& [p0, p1] : r.segs) {
        const int64_t ks = std::max<int64_t>(0, (p0 / W - 1) * W);
        if (ks < r.past) ring_spans(plan, s, ks, r.past, false);
        const int64_t cs = std::max(ks, r.past);
        const uint16_t* kr = kvh + r.row(cs) * 2 * C;
        plan.add_span(AttnSpan{kr, kr + C, 2 * C, p1 - cs, cs, 0});
        AttnTask t{att + r.row(p0) * a_stride, a_stride, qkv + r.row(p0) * 3 * C, 3 * C, p1 - p0, p0, 0, 0, 0, 0};
        plan.add_task(t);
        for (t.head = 1; t.head < H; t.head++) plan.add_task_again(t);
      }
    }
    plan.prepare(D, up_, *ctx_);
  }

  // a_cross and the state updates, round by round (the k-th segment of every
  // item). The update buffers are sized for the largest round first, so the
  // lists below can hold their addresses.
  rounds_.resize(any_rec ? n_rounds : 0);
  int64_t max_done = 0;
  for (size_t k = 0; k < rounds_.size(); k++) {
    int64_t done = 0;
    for (const Rows& r : rows) done += k < r.segs.size() && r.segs[k].second % W == 0;
    max_done = std::max(max_done, done);
  }
  const int64_t MM = std::max<int64_t>(1, max_done * S);
  float* su = s_su_.get<float>(MM * C);    // ln_s(s) rows of the round's updates
  float* sq = s_sq_.get<float>(MM * C);    // state queries
  float* sa = s_sa_.get<float>(MM * C);    // their attention
  float* sy = s_sy_.get<float>(MM * C);    // proj_h
  float* skvf = s_skv_.get<float>(MM * 2 * C);  // kv_state of the new states
  for (size_t k = 0; k < rounds_.size(); k++) {
    Round& rd = rounds_[k];
    rd.read.clear();
    rd.update.clear();
    std::vector<std::pair<size_t, int64_t>> done;  // (item, block)
    for (size_t i = 0; i < items.size(); i++) {
      if (k >= rows[i].segs.size()) continue;
      auto* s = static_cast<CudaRecurrentState*>(items[i].state);
      const auto [p0, p1] = rows[i].segs[k];
      rd.read.add_span(AttnSpan{s->skv(), s->skv() + C, 2 * C, S, kNoMaskPos, S * 2 * C});
      AttnTask t{att + rows[i].row(p0) * 2 * C + C, 2 * C, qs + rows[i].row(p0) * C, C, p1 - p0, p0, 0, 0, 0, 0};
      rd.read.add_task(t);
      for (t.head = 1; t.head < H; t.head++) rd.read.add_task_again(t);
      if (p1 % W == 0) done.push_back({i, p0 / W});
    }
    rd.read.prepare(D, up_, *ctx_);
    rd.done = (int64_t)done.size();
    if (done.empty()) continue;
    std::vector<RowMove> s_rows, kv_rows;
    std::vector<float*> s_ptrs;
    for (size_t d = 0; d < done.size(); d++) {
      const Rows& r = rows[done[d].first];
      auto* s = static_cast<CudaRecurrentState*>(items[done[d].first].state);
      s_ptrs.push_back(s->s());
      for (int64_t j = 0; j < S; j++) {
        s_rows.push_back({s->s() + j * C, su + (d * S + j) * C, 0, S * C});
        kv_rows.push_back({skvf + (d * S + j) * 2 * C, s->skv() + j * 2 * C, S * 2 * C, 0});
      }
      const int64_t b0 = done[d].second * W, b1 = b0 + W;
      rd.update.add_span(AttnSpan{s->skv(), s->skv() + C, 2 * C, S, kNoMaskPos, S * 2 * C});
      if (b0 < r.past) ring_spans(rd.update, s, b0, r.past, true);
      const int64_t cs = std::max(b0, r.past);
      const uint16_t* kr = kvh + r.row(cs) * 2 * C;
      rd.update.add_span(AttnSpan{kr, kr + C, 2 * C, b1 - cs, kNoMaskPos, 0});
      AttnTask t{sa + d * S * C, C, sq + d * S * C, C, S, 0, 0, 0, 0, 0};
      rd.update.add_task(t);
      for (t.head = 1; t.head < H; t.head++) rd.update.add_task_again(t);
    }
    rd.update.prepare(D, up_, *ctx_);
    rd.d_s_rows = up_.push(s_rows);
    rd.d_kv_rows = up_.push(kv_rows);
    rd.d_s_ptrs = up_.push(s_ptrs);
  }

  embed(x, wte_.data, wte_.type, nullptr, d_tok, d_pos, R, C, st);
  for (int64_t l = 0; l < L; l++) {
    const Layer& Ly = layers_[l];
    const int64_t a_stride = Ly.rec ? 2 * C : C;
    layernorm(h, C, x, C, nullptr, Ly.ln_1.weight(), Ly.ln_1.bias(), R, C, eps, st);
    gemm(qkv, 3 * C, h, C, Ly.c_attn.W, Ly.c_attn.bias(), R, Epilogue::Store, ws_, *ctx_);  // Q | K | V
    rotary(qkv, 3 * C, R, H, D, cfg_.rotary_dim, 2, d_pos, inv_freq_.as<double>(), st);
    to_half(kvh, 2 * C, qkv + C, 3 * C, R, 2 * C, st);
    self_[Ly.rec ? 1 : 0].launch(l, ws_, *ctx_);
    if (Ly.rec) {
      gemm(qs, C, h, C, Ly.q_state.W, Ly.q_state.bias(), R, Epilogue::Store, ws_, *ctx_);  // no rotary
      for (const Round& rd : rounds_) {
        rd.read.launch(l, ws_, *ctx_);
        if (rd.done == 0) continue;
        const int64_t M = rd.done * S;
        move_rows(rd.d_s_rows, M, C, l, false, st);  // su = s
        layernorm(su, C, su, C, nullptr, Ly.ln_s.weight(), Ly.ln_s.bias(), M, C, eps, st);
        gemm(sq, C, su, C, Ly.state_q.W, Ly.state_q.bias(), M, Epilogue::Store, ws_, *ctx_);
        rd.update.launch(l, ws_, *ctx_);
        gemm(sy, C, sa, C, Ly.state_proj.W, Ly.state_proj.bias(), M, Epilogue::Store, ws_, *ctx_);
        gate_update(rd.d_s_ptrs, S * C, l, sy, Ly.keep.as<float>(), rd.done, S, C, st);
        move_rows(rd.d_s_rows, M, C, l, false, st);  // su = the new s
        layernorm(su, C, su, C, nullptr, Ly.ln_s.weight(), Ly.ln_s.bias(), M, C, eps, st);
        gemm(skvf, 2 * C, su, C, Ly.kv_state.W, Ly.kv_state.bias(), M, Epilogue::Store, ws_, *ctx_);
        move_rows(rd.d_kv_rows, M, 2 * C, l, /*to_half=*/true, st);
      }
    }
    move_rows(d_ring, (int64_t)ring_moves.size(), C, l, true, st);  // every read of this layer is done
    gemm(x, C, att, a_stride, Ly.attn_proj.W, Ly.attn_proj.bias(), R, Epilogue::Add, ws_, *ctx_);
    mlp(Ly.mlp, x, R);
  }
  for (size_t i = 0; i < items.size(); i++) static_cast<CudaRecurrentState*>(items[i].state)->len = rows[i].end;

  std::vector<int32_t> out_rows;
  std::vector<float*> dest;
  for (size_t i = 0; i < items.size(); i++) {
    const int64_t first = items[i].all_logits ? 0 : items[i].n - 1;
    for (int64_t j = first; j < items[i].n; j++) {
      out_rows.push_back((int32_t)(rows[i].x0 + j));
      dest.push_back(items[i].logits + (j - first) * V);
    }
  }
  head_logits(x, out_rows, dest);
}

}  // namespace

std::unique_ptr<Model> make_block_recurrent(const ModelConfig& cfg, const Checkpoint& ckpt,
                                            std::shared_ptr<DeviceContext> ctx) {
  return std::make_unique<CudaRecurrentModel>(cfg, ckpt, std::move(ctx));
}

}  // namespace roost::cuda
