#include "block_recurrent.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../common.h"
#include "kv_ring.h"

namespace roost {

namespace {

// Per sequence: per layer a ring of the last 2W token K/V rows (a query in
// block i reads keys from blocks i-1 and i only: at most 2W-1 earlier rows);
// per recurrent layer the state s [S, C] and its keys/values kv_state(ln_s(s))
// [S, 2C] (K | V), which a_cross and the update both read.
class RecurrentState : public SequenceState {
 public:
  int64_t length() const override { return len; }
  size_t bytes() const override {
    size_t b = 0;
    for (const KvRing& r : kv) b += r.bytes();
    for (size_t i = 0; i < s.size(); i++) b += (s[i].capacity() + skv[i].capacity()) * sizeof(float);
    return b;
  }
  int64_t len = 0;
  std::vector<KvRing> kv;                  // [n_layer]
  std::vector<std::vector<float>> s, skv;  // [recurrent layers]
};

}  // namespace

// One item's share of the step: new positions past .. end-1 at rows x0 .. of
// the step's buffers, cut at block boundaries into segments [p0, p1).
BlockRecurrentModel::BlockRecurrentModel(const ModelConfig& config, const Checkpoint& ckpt)
    : cfg_(config), head_(ckpt, config.vocab_size, config.n_embd), rotary_(config.rotary_dim, config.rotary_base) {
  const int64_t C = cfg_.n_embd, F = cfg_.n_inner, S = cfg_.num_states;
  weight_bytes_ += head_.bytes();
  ThreadPool one(1);  // for the initial state keys, computed once here
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer L;
    const auto& rl = cfg_.recurrent_layers;
    if (std::find(rl.begin(), rl.end(), l) != rl.end()) L.rec = std::find(rl.begin(), rl.end(), l) - rl.begin();
    L.ln_1 = load_layernorm(ckpt, p + "ln_1", C);
    L.c_attn = load_linear(ckpt, p + "attn.c_attn", C, 3 * C);
    L.attn_proj = load_linear(ckpt, p + "attn.c_proj", L.rec >= 0 ? 2 * C : C, C);  // input [a_self ; a_cross]
    L.ln_2 = load_layernorm(ckpt, p + "ln_2", C);
    L.c_fc = load_linear(ckpt, p + "mlp.c_fc", C, F);
    L.mlp_proj = load_linear(ckpt, p + "mlp.c_proj", F, C);
    if (L.rec >= 0) {
      L.q_state = load_linear(ckpt, p + "attn.q_state", C, C);
      L.kv_state = load_linear(ckpt, p + "attn.kv_state", C, 2 * C);
      L.ln_s = load_layernorm(ckpt, p + "ln_s", C);
      L.state_init = tensor_to_f32(ckpt.get(p + "state_init", {S, C}));
      L.state_q = load_linear(ckpt, p + "state.q_attn", C, C);
      L.state_proj = load_linear(ckpt, p + "state.c_proj", C, C);
      for (float g : tensor_to_f32(ckpt.get(p + "state.gate_bias", {C}))) L.keep.push_back(1.f / (1.f + std::exp(-g)));
      L.init_kv.resize(S * 2 * C);
      state_kv(L, L.init_kv.data(), L.state_init.data(), S, one);
      weight_bytes_ += (L.state_init.size() + L.init_kv.size() + L.keep.size()) * sizeof(float);
    }
    for (const Linear* lin : {&L.c_attn, &L.attn_proj, &L.c_fc, &L.mlp_proj, &L.q_state, &L.kv_state, &L.state_q, &L.state_proj})
      weight_bytes_ += lin->W.bytes() + lin->bias.size() * sizeof(float);
    for (const LayerNormWeights* ln : {&L.ln_1, &L.ln_2, &L.ln_s})
      weight_bytes_ += (ln->weight.size() + ln->bias.size()) * sizeof(float);
    layers_.push_back(std::move(L));
  }
}

std::unique_ptr<SequenceState> BlockRecurrentModel::new_state() const {
  auto st = std::make_unique<RecurrentState>();
  for (const Layer& L : layers_) {
    st->kv.emplace_back(2 * cfg_.block_size, cfg_.n_embd);
    if (L.rec >= 0) {
      st->s.push_back(L.state_init);
      st->skv.push_back(L.init_kv);
    }
  }
  return st;
}

// kv [M, 2C] = kv_state(ln_s(s)), s: [M, C] (K | V of the state rows).
void BlockRecurrentModel::state_kv(const Layer& L, float* kv, const float* s, int64_t M, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd;
  std::vector<float> u(M * C);
  layernorm(u.data(), s, L.ln_s.weight.data(), L.ln_s.bias.data(), M, C, cfg_.layer_norm_epsilon);
  L.kv_state.apply(kv, u.data(), M, pool);
}

// a_self into att_ columns 0..C-1 (row stride a_stride): the query at p in
// block i sees keys max(0, (i-1)W) .. p, earlier ones from the ring, the step's
// own from qkv_.
void BlockRecurrentModel::self_attention(const std::vector<ForwardItem>& items, const std::vector<Rows>& rows, size_t l,
                                         int64_t a_stride, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, W = cfg_.block_size;
  spans_.clear();
  for (size_t i = 0; i < items.size(); i++) {
    const Rows& r = rows[i];
    const KvRing& ring = static_cast<RecurrentState*>(items[i].state)->kv[l];
    for (const auto& [p0, p1] : r.segs) {
      const int64_t ks = std::max<int64_t>(0, (p0 / W - 1) * W);  // first key position of the window
      if (ks < r.past) ring.spans(spans_, ks, r.past);
      const int64_t cs = std::max(ks, r.past);  // first key from this step: rows of qkv_ [R, 3C]
      const float* kr = qkv_.data() + r.row(cs) * 3 * C;
      spans_.add_span({kr + C, kr + 2 * C, 3 * C, p1 - cs, cs});
      SpanAttentionTask t{att_.data() + r.row(p0) * a_stride, a_stride, qkv_.data() + r.row(p0) * 3 * C, 3 * C, p1 - p0, p0, 0,
                          nullptr, 0};
      spans_.add_task(t);
      for (t.head = 1; t.head < H; t.head++) spans_.add_task_again(t);
    }
  }
  attention_spans(spans_.tasks(), D, pool);
}

// a_cross into att_ columns C..2C-1 (stride 2C), block by block in order:
// tokens of block i read state s_i, and each block that completes updates it.
void BlockRecurrentModel::state_attention(const std::vector<ForwardItem>& items, const std::vector<Rows>& rows, size_t l,
                                          ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, W = cfg_.block_size, S = cfg_.num_states;
  const Layer& L = layers_[l];
  size_t rounds = 0;
  for (const Rows& r : rows) rounds = std::max(rounds, r.segs.size());
  for (size_t k = 0; k < rounds; k++) {
    spans_.clear();
    std::vector<std::pair<size_t, int64_t>> done;  // (item, block) completed in this round
    for (size_t i = 0; i < items.size(); i++) {
      if (k >= rows[i].segs.size()) continue;
      const auto [p0, p1] = rows[i].segs[k];
      const float* skv = static_cast<RecurrentState*>(items[i].state)->skv[L.rec].data();  // [S, 2C]
      spans_.add_span({skv, skv + C, 2 * C, S, kSpanNoMask});
      const int64_t r0 = rows[i].row(p0);
      SpanAttentionTask t{att_.data() + r0 * 2 * C + C, 2 * C, qs_.data() + r0 * C, C, p1 - p0, p0, 0, nullptr, 0};
      spans_.add_task(t);
      for (t.head = 1; t.head < H; t.head++) spans_.add_task_again(t);
      if (p1 % W == 0) done.push_back({i, p0 / W});
    }
    attention_spans(spans_.tasks(), D, pool);
    if (!done.empty()) update_states(items, rows, done, l, pool);
  }
}

// The horizontal step for each (item, block i) in `done`: u = ln_s(s_i), state
// queries from u over [state K/V ; block i's token K/V], y = proj_h(attn),
// s_{i+1} = s_i * sigmoid(gate_bias) + y * (1 - sigmoid(gate_bias)).
void BlockRecurrentModel::update_states(const std::vector<ForwardItem>& items, const std::vector<Rows>& rows,
                                        const std::vector<std::pair<size_t, int64_t>>& done, size_t l, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, W = cfg_.block_size, S = cfg_.num_states;
  const Layer& L = layers_[l];
  const int64_t M = (int64_t)done.size() * S;  // state rows of every update, item after item
  su_.resize(M * C);
  sq_.resize(M * C);
  sa_.resize(M * C);
  sy_.resize(M * C);
  for (size_t k = 0; k < done.size(); k++) {
    const auto* st = static_cast<RecurrentState*>(items[done[k].first].state);
    std::memcpy(su_.data() + k * S * C, st->s[L.rec].data(), S * C * sizeof(float));
  }
  layernorm(su_.data(), su_.data(), L.ln_s.weight.data(), L.ln_s.bias.data(), M, C, cfg_.layer_norm_epsilon);
  L.state_q.apply(sq_.data(), su_.data(), M, pool);  // [M, C], no rotary
  spans_.clear();
  for (size_t k = 0; k < done.size(); k++) {
    const Rows& r = rows[done[k].first];
    auto* st = static_cast<RecurrentState*>(items[done[k].first].state);
    const float* skv = st->skv[L.rec].data();
    const int64_t b0 = done[k].second * W, b1 = b0 + W;  // the block's positions
    spans_.add_span({skv, skv + C, 2 * C, S, kSpanNoMask});
    if (b0 < r.past) st->kv[l].spans(spans_, b0, r.past, /*unmasked=*/true);
    const int64_t cs = std::max(b0, r.past);
    const float* kr = qkv_.data() + r.row(cs) * 3 * C;
    spans_.add_span({kr + C, kr + 2 * C, 3 * C, b1 - cs, kSpanNoMask});
    SpanAttentionTask t{sa_.data() + k * S * C, C, sq_.data() + k * S * C, C, S, 0, 0, nullptr, 0};
    spans_.add_task(t);
    for (t.head = 1; t.head < H; t.head++) spans_.add_task_again(t);
  }
  attention_spans(spans_.tasks(), D, pool);
  L.state_proj.apply(sy_.data(), sa_.data(), M, pool);  // y: [M, C]
  for (size_t k = 0; k < done.size(); k++) {
    auto* st = static_cast<RecurrentState*>(items[done[k].first].state);
    float* s = st->s[L.rec].data();
    const float* y = sy_.data() + k * S * C;
    for (int64_t j = 0; j < S; j++)
      for (int64_t c = 0; c < C; c++) s[j * C + c] = s[j * C + c] * L.keep[c] + y[j * C + c] * (1.f - L.keep[c]);
    std::memcpy(su_.data() + k * S * C, s, S * C * sizeof(float));
  }
  std::vector<float> kv(M * 2 * C);
  state_kv(L, kv.data(), su_.data(), M, pool);
  for (size_t k = 0; k < done.size(); k++) {
    auto* st = static_cast<RecurrentState*>(items[done[k].first].state);
    std::memcpy(st->skv[L.rec].data(), kv.data() + k * S * 2 * C, S * 2 * C * sizeof(float));
  }
}

void BlockRecurrentModel::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, F = cfg_.n_inner, V = cfg_.vocab_size, W = cfg_.block_size;
  int64_t R = 0;
  const std::vector<Rows> rows = plan_block_rows(items, W, &R);
  x_.resize(R * C);
  pos_.resize(R);
  for (size_t i = 0; i < items.size(); i++)
    for (int64_t j = 0; j < rows[i].n; j++) {
      head_.embed(x_.data() + (rows[i].x0 + j) * C, items[i].tokens[j]);
      pos_[rows[i].x0 + j] = rows[i].past + j;
    }
  rotary_.tables(cos_, sin_, pos_.data(), R);

  h_.resize(R * C);
  qkv_.resize(R * 3 * C);
  tmp_.resize(R * C);
  ff_.resize(R * F);
  for (size_t l = 0; l < layers_.size(); l++) {
    const Layer& L = layers_[l];
    const int64_t a_stride = L.rec >= 0 ? 2 * C : C;  // att_ rows: a_self (| a_cross)
    att_.resize(R * a_stride);
    layernorm(h_.data(), x_.data(), L.ln_1.weight.data(), L.ln_1.bias.data(), R, C, cfg_.layer_norm_epsilon);
    L.c_attn.apply(qkv_.data(), h_.data(), R, pool);  // [R, 3C] = Q | K | V
    rotary_.apply(qkv_.data(), 3 * C, R, H, D, cos_.data(), sin_.data());
    rotary_.apply(qkv_.data() + C, 3 * C, R, H, D, cos_.data(), sin_.data());
    self_attention(items, rows, l, a_stride, pool);
    if (L.rec >= 0) {
      qs_.resize(R * C);
      L.q_state.apply(qs_.data(), h_.data(), R, pool);  // token queries of a_cross, no rotary
      state_attention(items, rows, l, pool);
    }
    for (size_t i = 0; i < items.size(); i++) {  // every read of this layer is done: keep the new K/V
      const float* kr = qkv_.data() + rows[i].x0 * 3 * C;
      static_cast<RecurrentState*>(items[i].state)->kv[l].write(rows[i].past, rows[i].n, kr + C, kr + 2 * C, 3 * C);
    }
    L.attn_proj.apply(tmp_.data(), att_.data(), R, pool);
    add_inplace(x_.data(), tmp_.data(), R * C);

    layernorm(h_.data(), x_.data(), L.ln_2.weight.data(), L.ln_2.bias.data(), R, C, cfg_.layer_norm_epsilon);
    L.c_fc.apply(ff_.data(), h_.data(), R, pool);  // [R, F]
    gelu(ff_.data(), ff_.data(), R * F);
    L.mlp_proj.apply(tmp_.data(), ff_.data(), R, pool);
    add_inplace(x_.data(), tmp_.data(), R * C);
  }
  for (size_t i = 0; i < items.size(); i++) static_cast<RecurrentState*>(items[i].state)->len = rows[i].end;

  int64_t out_rows = 0;
  for (const auto& it : items) out_rows += it.all_logits ? it.n : 1;
  head_in_.resize(out_rows * C);
  int64_t at = 0;
  for (size_t i = 0; i < items.size(); i++) {
    const int64_t first = items[i].all_logits ? 0 : items[i].n - 1;
    for (int64_t j = first; j < items[i].n; j++, at++)
      std::memcpy(head_in_.data() + at * C, x_.data() + (rows[i].x0 + j) * C, C * sizeof(float));
  }
  logits_.resize(out_rows * V);
  head_.logits(logits_.data(), head_in_.data(), out_rows, cfg_.layer_norm_epsilon, pool);
  at = 0;
  for (const auto& it : items) {
    const int64_t n = it.all_logits ? it.n : 1;
    std::memcpy(it.logits, logits_.data() + at * V, n * V * sizeof(float));
    at += n;
  }
}

}  // namespace roost
