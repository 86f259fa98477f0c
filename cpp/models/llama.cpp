#include "llama.h"

#include <algorithm>

#include "../common.h"
#include "linear.h"
#include "rotary.h"

namespace roost {

namespace {

// The K/V rows of one sequence: G*D columns per row. Without a window, a block
// table over the model's KV pool (cpp/kv_pool.h); with Mistral's window W, a
// ring of at most W - 1 + (the largest step's rows) slots, position p in slot
// p % cap, outside the pool (its old positions are overwritten, so its blocks
// could be neither shared nor cached).
class LlamaState : public PagedState {
 public:
  LlamaState(int64_t n_layer, int64_t kv_width, KvPool* pool) : PagedState(pool), ring(n_layer, kv_width) {}
  size_t bytes() const override { return ring.bytes() + kv.bytes(); }
  PagedKv* paged() override { return kv_pool_set ? &kv : nullptr; }
  KvRows ring;
  bool kv_pool_set = false;  // no window: the paged cache
};

}  // namespace

LlamaModel::LlamaModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> backend)
    : BackendModel(config, std::move(backend)), inv_freq_(rotary_inv_freq(cfg_)) {
  require_ops(*be_, cfg_, {Op::Embed, Op::RmsNorm, Op::Gemm, Op::Rotary, Op::Attention, Op::MoveRows, Op::SiluMul});
  Backend& be = *be_;
  const int64_t C = cfg_.n_embd, V = cfg_.vocab_size, F = cfg_.n_inner, D = cfg_.head_dim();
  const int64_t Wq = cfg_.n_head * D, Wkv = cfg_.n_kv_head * D;
  embed_ = be.matrix(ckpt.get("model.embed_tokens.weight", {V, C}), C, V, /*src_is_nk=*/true);
  head_ = load_head(be, ckpt, cfg_, embed_, "model.embed_tokens.weight", C);
  norm_ = load_vector(be, ckpt, "model.norm.weight", C);
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::string a = p + "self_attn.", m = p + "mlp.";
    Layer Ly{};
    Ly.input_norm = load_vector(be, ckpt, p + "input_layernorm.weight", C);
    Ly.qkv = load_stacked_linear(be, ckpt, {{a + "q_proj.weight", Wq}, {a + "k_proj.weight", Wkv}, {a + "v_proj.weight", Wkv}}, C);
    if (cfg_.qkv_bias) {
      Ly.qkv_bias = load_stacked_vector(be, ckpt, {{a + "q_proj.bias", Wq}, {a + "k_proj.bias", Wkv}, {a + "v_proj.bias", Wkv}});
    }
    Ly.o = be.matrix(ckpt.get(a + "o_proj.weight", {C, Wq}), Wq, C, true);
    if (cfg_.o_bias) Ly.o_bias = load_vector(be, ckpt, a + "o_proj.bias", C);
    Ly.post_norm = load_vector(be, ckpt, p + "post_attention_layernorm.weight", C);
    Ly.gate_up = load_stacked_linear(be, ckpt, {{m + "gate_proj.weight", F}, {m + "up_proj.weight", F}}, C);
    Ly.down = be.matrix(ckpt.get(m + "down_proj.weight", {C, F}), F, C, true);
    layers_.push_back(Ly);
  }
  plan_ = be.attention_plan();
  for (auto* s : {&s_x_, &s_h_, &s_qkv_, &s_att_, &s_gu_, &s_ff_, &s_logits_}) *s = be.scratch();
  if (cfg_.sliding_window == 0) pool_ = make_kv_pool(be, cfg_, cfg_.n_kv_head * cfg_.head_dim());
}

std::unique_ptr<SequenceState> LlamaModel::new_state() const {
  auto s = std::make_unique<LlamaState>(cfg_.n_layer, cfg_.n_kv_head * cfg_.head_dim(), pool_.get());
  s->kv_pool_set = pool_ != nullptr;
  return s;
}

void LlamaModel::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, G = cfg_.n_kv_head, D = cfg_.head_dim(), L = cfg_.n_layer;
  const int64_t F = cfg_.n_inner, V = cfg_.vocab_size, Wq = H * D, Wkv = G * D, W3 = Wq + 2 * Wkv;
  const int64_t W = cfg_.sliding_window;  // 0: none
  const float eps = cfg_.layer_norm_epsilon;
  Backend& be = *be_;
  be.begin_step(pool);

  const StepRows step = step_rows(items);
  const std::vector<int64_t>& row0 = step.first_row;
  const int64_t N = step.n;
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<LlamaState*>(items[i].state);
    const int64_t end = s->len + items[i].n;
    if (W > 0) {  // the ring keeps the last W - 1 positions and takes this step's rows
      const int64_t need = std::min(end, W - 1 + items[i].n);
      if (need > s->ring.cap()) s->ring.grow_ring(be, (need + 63) / 64 * 64, std::max<int64_t>(0, s->len - (W - 1)), s->len);
    }
  }
  if (pool_) reserve_kv(*pool_, items);
  float* x = s_x_->get<float>(N * C);
  float* h = s_h_->get<float>(N * C);
  float* qkv = s_qkv_->get<float>(N * W3);
  float* att = s_att_->get<float>(N * Wq);
  float* gu = s_gu_->get<float>(N * 2 * F);
  float* ff = s_ff_->get<float>(N * F);

  KvSlotOf ring_slot;  // with a window, position p in ring slot p % cap
  if (W > 0)
    ring_slot = [](const ForwardItem& it, int64_t p) {
      const KvRows& ring = static_cast<LlamaState*>(it.state)->ring;
      return KvSlot{ring.k(0, p % ring.cap()), ring.v(0, p % ring.cap()), ring.layer_stride()};
    };
  const Positions& P = *be.positions(step.positions, inv_freq_);
  const RowMove* d_kv_moves = be.upload(kv_moves(items, step, qkv, W3, Wq, Wq + Wkv, ring_slot));
  be.embed(x, *embed_, nullptr, be.upload(step.tokens), P, N, C);

  // One task list for every layer (the cache's layer stride moves it). While a
  // sequence's queries all see back to position 0, one causal span serves them;
  // past the window each query gets its own span of the last W positions.
  AttentionPlan& plan = *plan_;
  plan.clear();
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<LlamaState*>(items[i].state);
    const int64_t past = s->len, n = items[i].n, end = past + n;
    if (W == 0 || end <= W) {  // in a ring, positions < W - 1 + n sit in their own slots
      if (W == 0) s->kv.add_spans(plan, 0, end, /*per_layer=*/true);
      else plan.add_span(s->ring.span(0, 0, end, 0, /*per_layer=*/true));
      plan.add_gqa_heads(item_rows(AttnTask{att + row0[i] * Wq, Wq, qkv + row0[i] * W3, W3, n, past}, items[i].decode), H, G, D);
      continue;
    }
    for (int64_t t = 0; t < n; t++) {
      const int64_t q = past + t, r = row0[i] + t;
      s->ring.ring_spans(plan, std::max<int64_t>(0, q - W + 1), q + 1, /*unmasked=*/false, /*per_layer=*/true);
      plan.add_gqa_heads(AttnTask{att + r * Wq, Wq, qkv + r * W3, W3, 1, q}, H, G, D);
    }
  }
  plan.prepare(D);

  for (int64_t l = 0; l < L; l++) {
    const Layer& Ly = layers_[l];
    be.rmsnorm(h, C, x, C, nullptr, Ly.input_norm, N, C, eps);
    be.gemm(qkv, W3, h, C, *Ly.qkv, Ly.qkv_bias, N, Epilogue::Store);  // Q | K | V
    be.rotary(qkv, W3, N, H + G, D, 1, P);  // Q and K: H + G adjacent heads of D, one op
    be.move_rows(d_kv_moves, 2 * N, Wkv, l, /*to_kv=*/true);
    plan.run(l);
    be.gemm(x, C, att, Wq, *Ly.o, Ly.o_bias, N, Epilogue::Add);
    be.rmsnorm(h, C, x, C, nullptr, Ly.post_norm, N, C, eps);
    be.gemm(gu, 2 * F, h, C, *Ly.gate_up, nullptr, N, Epilogue::Store);  // gate | up
    be.silu_mul(ff, F, gu, 2 * F, N, F);
    be.gemm(x, C, ff, F, *Ly.down, nullptr, N, Epilogue::Add);
  }
  for (const auto& it : items) static_cast<LlamaState*>(it.state)->len += it.n;

  // The final RMSNorm and head only for the rows whose logits are wanted.
  std::vector<int32_t> rows;
  std::vector<float*> dest;
  wanted_logits(items, row0, V, rows, dest);
  const int64_t R = (int64_t)rows.size();
  if (R == 0) return be.finish();
  float* logits = s_logits_->get<float>(R * V);
  be.rmsnorm(h, C, x, C, be.upload(rows), norm_, R, C, eps);  // h has N >= R rows
  be.gemm(logits, V, h, C, *head_, nullptr, R, Epilogue::Store);
  be.read_rows(dest, logits, V);
}

}  // namespace roost
