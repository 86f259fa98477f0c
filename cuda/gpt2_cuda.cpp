// The `gpt2` architecture on the GPU (learned or rotary positions, dense or
// BigBird attention): cpp/models/gpt2.cpp step for step, with the KV cache of
// each sequence in device memory (F16, one allocation [layer][K|V][cap][C]).
#include <algorithm>
#include <cstring>

#include "../cpp/models/bigbird_attention.h"
#include "../cpp/models/weights.h"
#include "model_base.h"
#include "models_cuda.h"

namespace roost::cuda {

namespace {

class CudaGpt2State : public SequenceState {
 public:
  CudaGpt2State(std::shared_ptr<const DeviceContext> ctx, int64_t n_layer, int64_t C)
      : ctx_(std::move(ctx)), L_(n_layer), C_(C) {}
  ~CudaGpt2State() override { ctx_->free(kv_); }
  int64_t length() const override { return len; }
  size_t bytes() const override { return (size_t)cap_ * C_ * 2 * 2 * L_ + bigbird.bytes(); }

  void reserve(int64_t need, int64_t limit) {
    if (need <= cap_) return;
    int64_t cap = std::max<int64_t>({need, cap_ * 2, 64});
    cap = (cap + 63) / 64 * 64;
    if (limit > 0) cap = std::min(cap, std::max(limit, need));
    uint16_t* bigger = static_cast<uint16_t*>(ctx_->alloc((size_t)cap * C_ * 2 * 2 * L_));
    if (len > 0)  // every (layer, K|V) block: rows 0..len-1
      ROOST_CUDA_CHECK(cudaMemcpy2DAsync(bigger, (size_t)cap * C_ * 2, kv_, (size_t)cap_ * C_ * 2, (size_t)len * C_ * 2,
                                         (size_t)(2 * L_), cudaMemcpyDeviceToDevice, ctx_->stream()));
    ctx_->free(kv_);
    kv_ = bigger;
    cap_ = cap;
  }
  // Layer l: K rows at k(l), V rows at k(l) + cap*C; layer stride 2*cap*C.
  uint16_t* k0() const { return kv_; }
  int64_t cap() const { return cap_; }

  int64_t len = 0;
  BigBirdBlocks bigbird;

 private:
  std::shared_ptr<const DeviceContext> ctx_;
  int64_t L_, C_;
  int64_t cap_ = 0;
  uint16_t* kv_ = nullptr;
};

class CudaGpt2Model : public CudaModelBase {
 public:
  CudaGpt2Model(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx);
  std::unique_ptr<SequenceState> new_state() const override {
    return std::make_unique<CudaGpt2State>(ctx_, cfg_.n_layer, cfg_.n_embd);
  }
  void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) override;

 private:
  struct Layer {
    DevLayerNorm ln_1;
    DevLinear c_attn, attn_proj;
    Mlp mlp;
  };
  std::vector<Layer> layers_;
  DeviceBuffer wpe_;  // [n_positions, C] float, learned positions only
  std::vector<AttentionPlan> plans_;  // dense: one for every layer; bigbird: one per layer
  Scratch s_x_, s_qkv_, s_att_;
};

CudaGpt2Model::CudaGpt2Model(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx)
    : CudaModelBase(cfg, ckpt, std::move(ctx)), s_x_(ctx_), s_qkv_(ctx_), s_att_(ctx_) {
  const int64_t C = cfg_.n_embd;
  if (cfg_.position_embedding == "learned") {
    std::vector<float> wpe = tensor_to_f32(ckpt.get("wpe.weight", {cfg_.n_positions, C}));
    wpe_ = weights_.floats(wpe);
  } else {
    init_rotary();
  }
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer L;
    L.ln_1 = weights_.layernorm(ckpt, p + "ln_1", C);
    L.c_attn = weights_.linear(ckpt, p + "attn.c_attn", C, 3 * C);
    L.attn_proj = weights_.linear(ckpt, p + "attn.c_proj", C, C);
    L.mlp = load_mlp(ckpt, p);
    layers_.push_back(std::move(L));
  }
  plans_.resize(cfg_.attention.kind == "bigbird" ? cfg_.n_layer : 1);
}

void CudaGpt2Model::forward(const std::vector<ForwardItem>& items, ThreadPool&) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, L = cfg_.n_layer;
  const cudaStream_t st = ctx_->stream();
  begin_step();

  std::vector<int64_t> row0(items.size());
  int64_t N = 0;
  for (size_t i = 0; i < items.size(); i++) {
    row0[i] = N;
    N += items[i].n;
    auto* s = static_cast<CudaGpt2State*>(items[i].state);
    s->reserve(s->len + items[i].n, max_context());
  }
  float* x = s_x_.get<float>(N * C);
  float* qkv = s_qkv_.get<float>(N * 3 * C);
  float* att = s_att_.get<float>(N * C);
  float* h = s_h_.get<float>(N * C);

  // Per-row metadata: token, position, and where its K/V rows go in the cache.
  std::vector<int32_t> tok(N);
  std::vector<int64_t> pos(N);
  std::vector<RowMove> moves(2 * N);
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<CudaGpt2State*>(items[i].state);
    const int64_t lstride = 2 * s->cap() * C;
    for (int64_t j = 0; j < items[i].n; j++) {
      const int64_t r = row0[i] + j, p = s->len + j;
      tok[r] = items[i].tokens[j];
      pos[r] = p;
      moves[2 * r] = RowMove{qkv + r * 3 * C + C, s->k0() + p * C, lstride};
      moves[2 * r + 1] = RowMove{qkv + r * 3 * C + 2 * C, s->k0() + s->cap() * C + p * C, lstride};
    }
  }
  const int32_t* d_tok = up_.push(tok);
  const int64_t* d_pos = up_.push(pos);
  const RowMove* d_moves = up_.push(moves);
  embed(x, wte_.data, wte_.type, wpe_.as<float>(), d_tok, d_pos, N, C, st);

  // Attention tasks: one per (item, head) for dense (the same list serves every
  // layer through the cache's layer stride), per (item, query block, head) and
  // layer for BigBird (the blocks differ by layer and head).
  const bool bigbird = cfg_.attention.kind == "bigbird";
  const int64_t b = cfg_.attention.block_size;
  for (AttentionPlan& p : plans_) p.clear();
  if (!bigbird) {
    AttentionPlan& plan = plans_[0];
    for (size_t i = 0; i < items.size(); i++) {
      auto* s = static_cast<CudaGpt2State*>(items[i].state);
      const int64_t past = s->len, n = items[i].n;
      plan.add_span(AttnSpan{s->k0(), s->k0() + s->cap() * C, C, past + n, 0, 2 * s->cap() * C});
      AttnTask t{att + row0[i] * C, C, qkv + row0[i] * 3 * C, 3 * C, n, past, 0, 0, 0, 0};
      plan.add_task(t);
      for (t.head = 1; t.head < H; t.head++) plan.add_task_again(t);
    }
    plan.prepare(D, up_, *ctx_);
  } else {
    for (size_t i = 0; i < items.size(); i++) {
      auto* s = static_cast<CudaGpt2State*>(items[i].state);
      const int64_t past = s->len;
      bigbird_prepare(s->bigbird, cfg_.attention, L, H, past / b, (past + items[i].n - 1) / b + 1);
    }
    for (int64_t l = 0; l < L; l++) {
      AttentionPlan& plan = plans_[l];
      for (size_t i = 0; i < items.size(); i++) {
        auto* s = static_cast<CudaGpt2State*>(items[i].state);
        const BigBirdBlocks& bb = s->bigbird;
        const int64_t past = s->len, end = past + items[i].n;
        const uint16_t* kl = s->k0() + 2 * l * s->cap() * C;
        const uint16_t* vl = kl + s->cap() * C;
        for (int64_t qi = past / b; qi * b < end; qi++) {
          const int64_t p0 = std::max(past, qi * b), p1 = std::min(end, (qi + 1) * b);
          const int64_t r = row0[i] + p0 - past;
          for (int64_t hh = 0; hh < H; hh++) {
            const int64_t list = ((qi - bb.i0) * L + l) * H + hh;
            for (int64_t o = bb.offset[list]; o < bb.offset[list + 1]; o++) {
              const int64_t j = bb.block[o];
              plan.add_span(AttnSpan{kl + j * b * C, vl + j * b * C, C, std::min(b, end - j * b), j * b, 0});
            }
            plan.add_task(AttnTask{att + r * C, C, qkv + r * 3 * C, 3 * C, p1 - p0, p0, (int32_t)hh, 0, 0, 0});
          }
        }
      }
      plan.prepare(D, up_, *ctx_);
    }
  }

  for (int64_t l = 0; l < L; l++) {
    const Layer& Ly = layers_[l];
    layernorm(h, C, x, C, nullptr, Ly.ln_1.weight(), Ly.ln_1.bias(), N, C, cfg_.layer_norm_epsilon, st);
    gemm(qkv, 3 * C, h, C, Ly.c_attn.W, Ly.c_attn.bias(), N, Epilogue::Store, ws_, *ctx_);  // Q | K | V
    if (cfg_.rotary_dim > 0)
      rotary(qkv, 3 * C, N, H, D, cfg_.rotary_dim, 2, d_pos, inv_freq_.as<double>(), st);  // Q and K
    move_rows(d_moves, 2 * N, C, l, /*to_half=*/true, st);  // K, V into the cache (F16)
    if (bigbird) plans_[l].launch(0, ws_, *ctx_);
    else plans_[0].launch(l, ws_, *ctx_);
    gemm(x, C, att, C, Ly.attn_proj.W, Ly.attn_proj.bias(), N, Epilogue::Add, ws_, *ctx_);
    mlp(Ly.mlp, x, N);
  }
  for (const auto& it : items) {
    auto* s = static_cast<CudaGpt2State*>(it.state);
    s->len += it.n;
    if (bigbird) bigbird_keep_last(s->bigbird, L, H);
  }

  std::vector<int32_t> rows;
  std::vector<float*> dest;
  const int64_t V = cfg_.vocab_size;
  for (size_t i = 0; i < items.size(); i++) {
    const int64_t first = items[i].all_logits ? 0 : items[i].n - 1;
    for (int64_t j = first; j < items[i].n; j++) {
      rows.push_back((int32_t)(row0[i] + j));
      dest.push_back(items[i].logits + (j - first) * V);
    }
  }
  head_logits(x, rows, dest);
}

}  // namespace

std::unique_ptr<Model> make_gpt2(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx) {
  return std::make_unique<CudaGpt2Model>(cfg, ckpt, std::move(ctx));
}

}  // namespace roost::cuda
