#include "perceiver_ar.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../common.h"
#include "kv_ring.h"

namespace roost {

namespace {

// Per sequence: layer-0 K/V of every position ([cap, C] each, grown
// geometrically), the layer-0 outputs z of the last N positions (ring [N, C],
// position p in slot p % N) and, per layer >= 1, the latent K/V of the last N
// positions (rings). Latent K/V are valid for positions [lat0, len).
class PerceiverState : public SequenceState {
 public:
  PerceiverState(int64_t n_layer, int64_t C, int64_t N)
      : C_(C), N_(N), z_((size_t)N * C * sizeof(float)) {
    for (int64_t l = 1; l < n_layer; l++) lat_.emplace_back(N, C);
  }
  int64_t length() const override { return len; }
  size_t bytes() const override {
    size_t b = k0_.bytes() + v0_.bytes() + z_.bytes();
    for (const KvRing& r : lat_) b += r.bytes();
    return b;
  }

  void reserve(int64_t need, int64_t limit) {
    if (need <= cap_) return;
    int64_t cap = std::max<int64_t>({need, cap_ * 2, 64});
    cap = (cap + 63) / 64 * 64;
    if (limit > 0) cap = std::min(cap, std::max(limit, need));
    for (AlignedBuffer* buf : {&k0_, &v0_}) {
      AlignedBuffer bigger((size_t)cap * C_ * sizeof(float));
      if (len > 0) std::memcpy(bigger.data(), buf->data(), (size_t)len * C_ * sizeof(float));
      *buf = std::move(bigger);
    }
    cap_ = cap;
  }
  float* k0() { return k0_.as<float>(); }  // [cap, C], row p = position p
  float* v0() { return v0_.as<float>(); }
  float* z(int64_t pos) { return z_.as<float>() + (pos % N_) * C_; }  // [C]
  KvRing& lat(int64_t layer) { return lat_[layer - 1]; }

  int64_t len = 0, lat0 = 0;

 private:
  int64_t C_, N_, cap_ = 0;
  AlignedBuffer k0_, v0_, z_;
  std::vector<KvRing> lat_;
};

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

}  // namespace

// One item's share of the step. Positions past .. end-1 are new; the latent
// window of the sequence after the step is [win, end).
PerceiverArModel::PerceiverArModel(const ModelConfig& config, const Checkpoint& ckpt)
    : cfg_(config), head_(ckpt, config.vocab_size, config.n_embd), rotary_(config.rotary_dim, config.rotary_base) {
  const int64_t C = cfg_.n_embd, F = cfg_.n_inner;
  weight_bytes_ += head_.bytes();
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer L;
    if (l == 0) {
      L.ln_q = load_layernorm(ckpt, p + "ln_q", C);
      L.ln_kv = load_layernorm(ckpt, p + "ln_kv", C);
      L.q_attn = load_linear(ckpt, p + "attn.q_attn", C, C);
      L.kv_attn = load_linear(ckpt, p + "attn.kv_attn", C, 2 * C);
    } else {
      L.ln_1 = load_layernorm(ckpt, p + "ln_1", C);
      L.c_attn = load_linear(ckpt, p + "attn.c_attn", C, 3 * C);
    }
    L.attn_proj = load_linear(ckpt, p + "attn.c_proj", C, C);
    L.ln_2 = load_layernorm(ckpt, p + "ln_2", C);
    L.c_fc = load_linear(ckpt, p + "mlp.c_fc", C, F);
    L.mlp_proj = load_linear(ckpt, p + "mlp.c_proj", F, C);
    for (const Linear* lin : {&L.q_attn, &L.kv_attn, &L.c_attn, &L.attn_proj, &L.c_fc, &L.mlp_proj})
      weight_bytes_ += lin->W.bytes() + lin->bias.size() * sizeof(float);
    for (const LayerNormWeights* ln : {&L.ln_q, &L.ln_kv, &L.ln_1, &L.ln_2})
      weight_bytes_ += (ln->weight.size() + ln->bias.size()) * sizeof(float);
    layers_.push_back(std::move(L));
  }
}

std::unique_ptr<SequenceState> PerceiverArModel::new_state() const {
  return std::make_unique<PerceiverState>(cfg_.n_layer, cfg_.n_embd, cfg_.num_latents);
}

// x += mlp(ln_2(x)), x: [M, C]
void PerceiverArModel::mlp(const Layer& L, float* x, int64_t M, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, F = cfg_.n_inner;
  h_.resize(M * C);
  ff_.resize(M * F);
  tmp_.resize(M * C);
  layernorm(h_.data(), x, L.ln_2.weight.data(), L.ln_2.bias.data(), M, C, cfg_.layer_norm_epsilon);
  L.c_fc.apply(ff_.data(), h_.data(), M, pool);  // [M, F]
  gelu(ff_.data(), ff_.data(), M * F);
  L.mlp_proj.apply(tmp_.data(), ff_.data(), M, pool);
  add_inplace(x, tmp_.data(), M * C);
}

// Layer 0: K/V of every new token into the cache; queries (and the rest of the
// layer) only for new tokens inside the latent window. Writes z_ and the z rings.
void PerceiverArModel::layer0(const std::vector<ForwardItem>& items, std::vector<Rows>& rows, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H;
  const Layer& L = layers_[0];
  int64_t R = 0, M = 0;
  for (const Rows& r : rows) R += r.n, M += r.end - r.zp;

  // K/V of every new token: kv_ [R, 2C] = K | V, rotary on K at its position.
  h_.resize(R * C);
  kv_.resize(R * 2 * C);
  layernorm(h_.data(), x_.data(), L.ln_kv.weight.data(), L.ln_kv.bias.data(), R, C, cfg_.layer_norm_epsilon);
  L.kv_attn.apply(kv_.data(), h_.data(), R, pool);
  pos_.resize(R);
  for (const Rows& r : rows)
    for (int64_t j = 0; j < r.n; j++) pos_[r.x0 + j] = r.past + j;
  rotary_.tables(cos_, sin_, pos_.data(), R);
  rotary_.apply(kv_.data(), 2 * C, R, H, D, cos_.data(), sin_.data());
  for (size_t i = 0; i < items.size(); i++) {
    auto* st = static_cast<PerceiverState*>(items[i].state);
    for (int64_t j = 0; j < rows[i].n; j++) {  // cache row past + j
      const float* src = kv_.data() + (rows[i].x0 + j) * 2 * C;
      std::memcpy(st->k0() + (rows[i].past + j) * C, src, C * sizeof(float));
      std::memcpy(st->v0() + (rows[i].past + j) * C, src + C, C * sizeof(float));
    }
  }

  // Queries of the window's new tokens: z_ [M, C] starts as their x.
  z_.resize(M * C);
  pos_.resize(M);
  for (const Rows& r : rows)
    for (int64_t p = r.zp; p < r.end; p++) {
      std::memcpy(z_.data() + (r.z0 + p - r.zp) * C, x_.data() + (r.x0 + p - r.past) * C, C * sizeof(float));
      pos_[r.z0 + p - r.zp] = p;
    }
  h_.resize(M * C);
  qkv_.resize(M * C);
  att_.resize(M * C);
  tmp_.resize(M * C);
  layernorm(h_.data(), z_.data(), L.ln_q.weight.data(), L.ln_q.bias.data(), M, C, cfg_.layer_norm_epsilon);
  L.q_attn.apply(qkv_.data(), h_.data(), M, pool);  // Q only: [M, C]
  rotary_.tables(cos_, sin_, pos_.data(), M);
  rotary_.apply(qkv_.data(), C, M, H, D, cos_.data(), sin_.data());
  std::vector<AttentionSeq> seqs;
  for (size_t i = 0; i < items.size(); i++) {
    auto* st = static_cast<PerceiverState*>(items[i].state);
    const Rows& r = rows[i];
    // Query at position zp + t sees cache rows 0 .. zp + t: causal over every position.
    seqs.push_back({att_.data() + r.z0 * C, C, qkv_.data() + r.z0 * C, C, st->k0(), st->v0(), C, r.zp, r.end - r.zp});
  }
  attention_causal(seqs, H, D, pool);
  L.attn_proj.apply(tmp_.data(), att_.data(), M, pool);
  add_inplace(z_.data(), tmp_.data(), M * C);
  mlp(L, z_.data(), M, pool);
  for (size_t i = 0; i < items.size(); i++) {
    auto* st = static_cast<PerceiverState*>(items[i].state);
    for (int64_t p = rows[i].zp; p < rows[i].end; p++)
      std::memcpy(st->z(p), z_.data() + (rows[i].z0 + p - rows[i].zp) * C, C * sizeof(float));
  }
}

// Layers >= 1 over y_: a rebuilt item runs its whole window (causal among the
// window, the exact prefill); a decode item runs its one new latent against
// the ring of the last N latent K/V.
void PerceiverArModel::latent_layers(const std::vector<ForwardItem>& items, std::vector<Rows>& rows, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, N = cfg_.num_latents;
  int64_t M = 0;
  for (const Rows& r : rows) M += r.end - r.yp;
  y_.resize(M * C);
  pos_.resize(M);
  for (size_t i = 0; i < items.size(); i++) {
    auto* st = static_cast<PerceiverState*>(items[i].state);
    for (int64_t p = rows[i].yp; p < rows[i].end; p++) {
      std::memcpy(y_.data() + (rows[i].y0 + p - rows[i].yp) * C, st->z(p), C * sizeof(float));
      pos_[rows[i].y0 + p - rows[i].yp] = p;
    }
  }
  rotary_.tables(cos_, sin_, pos_.data(), M);
  for (int64_t l = 1; l < cfg_.n_layer; l++) {
    const Layer& L = layers_[l];
    h_.resize(M * C);
    qkv_.resize(M * 3 * C);
    att_.resize(M * C);
    tmp_.resize(M * C);
    layernorm(h_.data(), y_.data(), L.ln_1.weight.data(), L.ln_1.bias.data(), M, C, cfg_.layer_norm_epsilon);
    L.c_attn.apply(qkv_.data(), h_.data(), M, pool);  // [M, 3C] = Q | K | V
    rotary_.apply(qkv_.data(), 3 * C, M, H, D, cos_.data(), sin_.data());
    rotary_.apply(qkv_.data() + C, 3 * C, M, H, D, cos_.data(), sin_.data());
    std::vector<AttentionSeq> seqs;
    spans_.clear();
    for (size_t i = 0; i < items.size(); i++) {
      auto* st = static_cast<PerceiverState*>(items[i].state);
      const Rows& r = rows[i];
      float* q = qkv_.data() + r.y0 * 3 * C;  // the item's rows: [end - yp, 3C]
      if (r.rebuild) {  // window row t sees window rows 0..t
        seqs.push_back({att_.data() + r.y0 * C, C, q, 3 * C, q + C, q + 2 * C, 3 * C, 0, r.end - r.yp});
      } else {  // position past sees the cached latents [max(lat0, past-N+1), past) and itself
        st->lat(l).spans(spans_, std::max(st->lat0, r.past - N + 1), r.past, /*unmasked=*/true);
        spans_.add_span({q + C, q + 2 * C, 3 * C, 1, kSpanNoMask});
        SpanAttentionTask t{att_.data() + r.y0 * C, C, q, 3 * C, 1, r.past, 0, nullptr, 0};
        spans_.add_task(t);
        for (t.head = 1; t.head < H; t.head++) spans_.add_task_again(t);  // every head reads the same rows
      }
    }
    if (!seqs.empty()) attention_causal(seqs, H, D, pool);
    if (!spans_.empty()) attention_spans(spans_.tasks(), D, pool);
    for (size_t i = 0; i < items.size(); i++) {  // after every read: the new K/V into the ring
      auto* st = static_cast<PerceiverState*>(items[i].state);
      const float* q = qkv_.data() + rows[i].y0 * 3 * C;
      st->lat(l).write(rows[i].yp, rows[i].end - rows[i].yp, q + C, q + 2 * C, 3 * C);
    }
    L.attn_proj.apply(tmp_.data(), att_.data(), M, pool);
    add_inplace(y_.data(), tmp_.data(), M * C);
    mlp(L, y_.data(), M, pool);
  }
}

void PerceiverArModel::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, V = cfg_.vocab_size, N = cfg_.num_latents;
  PerceiverPlan plan = plan_perceiver_rows(items, N);
  std::vector<Rows>& rows = plan.rows;
  for (size_t i = 0; i < items.size(); i++) static_cast<PerceiverState*>(items[i].state)->reserve(rows[i].end, max_context());
  x_.resize(plan.x_rows * C);
  for (size_t i = 0; i < items.size(); i++)
    for (int64_t j = 0; j < rows[i].n; j++) head_.embed(x_.data() + (rows[i].x0 + j) * C, items[i].tokens[j]);

  layer0(items, rows, pool);
  if (cfg_.n_layer > 1) latent_layers(items, rows, pool);
  for (size_t i = 0; i < items.size(); i++) {
    auto* st = static_cast<PerceiverState*>(items[i].state);
    st->len = rows[i].end;
    st->lat0 = rows[i].rebuild ? rows[i].win : std::max(st->lat0, rows[i].end - N);
  }

  // Logits for the wanted rows inside the window; the rest are NaN (no logits there).
  const std::vector<float>& fin = cfg_.n_layer > 1 ? y_ : z_;  // final hidden rows
  head_in_.clear();
  for (size_t i = 0; i < items.size(); i++) {
    const Rows& r = rows[i];
    const int64_t first = r.end - (items[i].all_logits ? r.n : 1);
    const int64_t f0 = cfg_.n_layer > 1 ? r.y0 - r.yp : r.z0 - r.zp;  // row of position p in fin: f0 + p
    for (int64_t p = std::max(first, r.win); p < r.end; p++)
      head_in_.insert(head_in_.end(), fin.begin() + (f0 + p) * C, fin.begin() + (f0 + p + 1) * C);
  }
  const int64_t rows_out = (int64_t)head_in_.size() / C;
  logits_.resize(rows_out * V);
  head_.logits(logits_.data(), head_in_.data(), rows_out, cfg_.layer_norm_epsilon, pool);
  int64_t at = 0;
  for (size_t i = 0; i < items.size(); i++) {
    const Rows& r = rows[i];
    const int64_t first = r.end - (items[i].all_logits ? r.n : 1);
    for (int64_t p = first; p < r.end; p++) {
      float* out = items[i].logits + (p - first) * V;
      if (p < r.win) std::fill(out, out + V, kNaN);
      else std::memcpy(out, logits_.data() + (at++) * V, V * sizeof(float));
    }
  }
}

}  // namespace roost
