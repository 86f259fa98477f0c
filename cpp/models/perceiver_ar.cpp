#include "perceiver_ar.h"

#include <algorithm>
#include <limits>

#include "../common.h"

namespace roost {

namespace {

// Per sequence: the layer-0 K/V of every position in the model's paged pool
// (a one-layer paged cache: what the prefix alone determines, so full blocks
// are shared through the prefix cache), a ring of the layer-0 outputs z of the
// last N positions (float [N, C], position p in slot p % N), per layer >= 1 a
// ring of the last N latent K/V, and a ring of the last N tokens (what an
// interim pass or an adopted prefix leaves for the next pass to rebuild the
// window from). Latent K/V are valid for positions [lat0, len); after an
// interim pass or a prefix-cache hit (`stale`) neither ring holds the window.
class PerceiverState : public SequenceState {
 public:
  PerceiverState(Backend& be, KvPool* pool, int64_t n_layer, int64_t C, int64_t N)
      : kv0(pool), lat(std::max<int64_t>(0, n_layer - 1), C), C_(C), N_(N), z_(be.alloc((size_t)N * C * sizeof(float))), tok_(N) {
    if (n_layer > 1) lat.make_ring(be, N);
  }
  int64_t length() const override { return len; }
  size_t bytes() const override { return kv0.bytes() + z_->bytes() + lat.bytes() + tok_.size() * sizeof(int32_t); }
  PagedKv* paged() override { return &kv0; }
  // The cached blocks' layer-0 K/V; the window's tokens go to the token ring
  // and the next pass rebuilds the window (z and latents) as after an interim pass.
  void adopt_prefix(const std::vector<int32_t>& blocks, int64_t length, const int32_t* ids) override {
    kv0.adopt(len / kv0.pool().block_rows(), blocks);
    for (int64_t p = std::max(len, length - N_); p < length; p++) tok(p) = ids[p - len];
    len = length;
    stale = true;
  }
  float* z(int64_t pos) const { return z_->as<float>() + (pos % N_) * C_; }  // [C]
  int32_t& tok(int64_t pos) { return tok_[pos % N_]; }

  PagedKv kv0;  // layer 0, every position
  KvRows lat;   // layers 1.. (layer l at index l - 1), ring of N
  int64_t len = 0, lat0 = 0;
  bool stale = false;

 private:
  int64_t C_, N_;
  std::unique_ptr<Buffer> z_;
  std::vector<int32_t> tok_;
};

// perceiver_ar: one item's rows in a step's buffers (N = num_latents).
struct PerceiverRows {
  int64_t past, n, end, win;  // win = first position of the latent window after this step
  bool interim;               // only the layer-0 K/V: a later pass of this step rebuilds the window
  bool rebuild;               // n >= 2 or a stale state: recompute the whole window (exact prefill)
  int64_t x0;                 // first row in x (every new token)
  int64_t z0, zp;             // first row in z (layer 0 queries) and its position: max(past, win), win when stale
  int64_t y0, yp;             // first row in y (layers >= 1) and its position: win (rebuild) or past (decode)
};

struct PerceiverPlan {
  std::vector<PerceiverRows> rows;
  int64_t x_rows = 0, z_rows = 0, y_rows = 0;  // totals over the items
};

PerceiverPlan plan_perceiver_rows(const std::vector<ForwardItem>& items, int64_t N) {
  PerceiverPlan p;
  p.rows.resize(items.size());
  for (size_t i = 0; i < items.size(); i++) {
    const bool stale = static_cast<const PerceiverState*>(items[i].state)->stale;
    PerceiverRows& r = p.rows[i];
    r.past = items[i].state->length();
    r.n = items[i].n;
    r.end = r.past + r.n;
    r.win = r.end - std::min(N, r.end);
    r.interim = items[i].interim;
    r.rebuild = r.n >= 2 || stale;
    r.x0 = p.x_rows;
    r.zp = r.interim ? r.end : stale ? r.win : std::max(r.past, r.win);
    r.z0 = p.z_rows;
    r.yp = r.interim ? r.end : r.rebuild ? r.win : r.past;
    r.y0 = p.y_rows;
    p.x_rows += r.n, p.z_rows += r.end - r.zp, p.y_rows += r.end - r.yp;
  }
  return p;
}

using Rows = PerceiverRows;

}  // namespace

PerceiverArModel::PerceiverArModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> backend)
    : ModelBase(config, ckpt, std::move(backend)) {
  require_ops(be(), cfg_, {Op::ToKv});
  const int64_t C = cfg_.n_embd;
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer L;
    if (l == 0) {
      L.ln_q = load_norm(be(), ckpt, p + "ln_q", C);
      L.ln_kv = load_norm(be(), ckpt, p + "ln_kv", C);
      L.q_attn = load_dense(be(), ckpt, p + "attn.q_attn", C, C);
      L.kv_attn = load_dense(be(), ckpt, p + "attn.kv_attn", C, 2 * C);
    } else {
      L.ln_1 = load_norm(be(), ckpt, p + "ln_1", C);
      L.c_attn = load_dense(be(), ckpt, p + "attn.c_attn", C, 3 * C);
    }
    L.attn_proj = load_dense(be(), ckpt, p + "attn.c_proj", C, C);
    L.mlp = load_mlp(ckpt, p);
    layers_.push_back(std::move(L));
  }
  plan0_ = be().attention_plan();
  plan_ = be().attention_plan();
  for (auto* s : {&s_x_, &s_kv_, &s_z_, &s_q_, &s_y_, &s_qkv_, &s_kvh_, &s_att_}) *s = be().scratch();
  pool_ = make_kv_pool(be(), cfg_, C, /*layers=*/1);  // layer 0's K/V only
}

std::unique_ptr<SequenceState> PerceiverArModel::new_state() const {
  return std::make_unique<PerceiverState>(be(), pool_.get(), cfg_.n_layer, cfg_.n_embd, cfg_.num_latents);
}

void PerceiverArModel::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, N = cfg_.num_latents, V = cfg_.vocab_size;
  const float eps = cfg_.layer_norm_epsilon;
  Backend& be = this->be();
  const size_t es = be.kv_size();
  be.begin_step(pool);

  PerceiverPlan plan = plan_perceiver_rows(items, N);
  std::vector<Rows>& rows = plan.rows;
  const int64_t R = plan.x_rows, Z = plan.z_rows, Y = plan.y_rows;
  reserve_kv(*pool_, items);
  const bool deep = cfg_.n_layer > 1;
  float* x = s_x_->get<float>(R * C);
  float* kv = s_kv_->get<float>(R * 2 * C);
  float* z = s_z_->get<float>(Z * C);
  float* q = s_q_->get<float>(Z * C);
  float* y = deep ? s_y_->get<float>(Y * C) : nullptr;
  float* qkv = deep ? s_qkv_->get<float>(Y * 3 * C) : nullptr;
  char* kvh = deep ? static_cast<char*>(s_kvh_->get(Y * 2 * C * es)) : nullptr;  // this step's latent K | V rows
  float* att = s_att_->get<float>(std::max(Z, Y) * C);
  float* h = s_h_->get<float>(std::max({R, Z, Y}) * C);

  // Host metadata for the whole step.
  std::vector<int32_t> tok(R), tok_z(Z);
  std::vector<int64_t> pos_x(R), pos_z(Z), pos_y(Y);
  std::vector<RowMove> kv_moves, z_out, y_in, lat_moves;
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<PerceiverState*>(items[i].state);
    const Rows& r = rows[i];
    for (int64_t j = 0; j < r.n; j++) {
      const int64_t row = r.x0 + j, p = r.past + j;
      tok[row] = items[i].tokens[j];
      pos_x[row] = p;
      kv_moves.push_back({kv + row * 2 * C, s->kv0.k(p)});
      kv_moves.push_back({kv + row * 2 * C + C, s->kv0.v(p)});
    }
    for (int64_t p = r.zp; p < r.end; p++) {  // window positions before past: tokens from the ring
      pos_z[r.z0 + p - r.zp] = p;
      tok_z[r.z0 + p - r.zp] = p < r.past ? s->tok(p) : items[i].tokens[p - r.past];
      z_out.push_back({z + (r.z0 + p - r.zp) * C, s->z(p)});
    }
    for (int64_t p = std::max(r.past, r.end - N); p < r.end; p++) s->tok(p) = items[i].tokens[p - r.past];
    if (!deep) continue;
    for (int64_t p = r.yp; p < r.end; p++) {
      pos_y[r.y0 + p - r.yp] = p;
      y_in.push_back({s->z(p), y + (r.y0 + p - r.yp) * C});
    }
    const int64_t cnt = r.end - r.yp;  // latent K/V rows this step; the ring keeps the last N
    for (int64_t t = std::max<int64_t>(0, cnt - N); t < cnt; t++) {
      const int64_t slot = (r.yp + t) % N;
      lat_moves.push_back({qkv + (r.y0 + t) * 3 * C + C, s->lat.k(0, slot), s->lat.layer_stride()});
      lat_moves.push_back({qkv + (r.y0 + t) * 3 * C + 2 * C, s->lat.v(0, slot), s->lat.layer_stride()});
    }
  }
  const Positions& Px = positions(pos_x);
  const Positions& Pz = positions(pos_z);

  // Attention lists: layer 0 (window queries over the cache of every position),
  // layers >= 1 (the same list for every layer through the ring's layer stride).
  plan0_->clear();
  plan_->clear();
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<PerceiverState*>(items[i].state);
    const Rows& r = rows[i];
    if (r.interim) continue;
    s->kv0.add_spans(*plan0_, 0, r.end, /*per_layer=*/false);
    plan0_->add_heads(item_rows(AttnTask{att + r.z0 * C, C, q + r.z0 * C, C, r.end - r.zp, r.zp}, items[i].decode), H);
    if (!deep) continue;
    const char* kr = kvh + r.y0 * 2 * C * es;
    if (r.rebuild) {  // window row t sees window rows 0..t
      plan_->add_span(AttnSpan{kr, kr + C * es, 2 * C, r.end - r.yp, r.yp, 0});
    } else {  // position past sees the cached latents [max(lat0, past-N+1), past) and itself
      s->lat.ring_spans(*plan_, std::max(s->lat0, r.past - N + 1), r.past, /*unmasked=*/true, /*per_layer=*/true);
      plan_->add_span(AttnSpan{kr, kr + C * es, 2 * C, 1, kNoMaskPos, 0});
    }
    plan_->add_heads(item_rows(AttnTask{att + r.y0 * C, C, qkv + r.y0 * 3 * C, 3 * C, r.end - r.yp, r.yp}, items[i].decode), H);
  }
  plan0_->prepare(D);

  // Layer 0: K/V of every new token into the cache, then the window's queries.
  const Layer& L0 = layers_[0];
  be.embed(x, *wte_, nullptr, be.upload(tok), Px, R, C);
  be.layernorm(h, C, x, C, nullptr, L0.ln_kv.w, L0.ln_kv.b, R, C, eps);
  be.gemm(kv, 2 * C, h, C, *L0.kv_attn.W, L0.kv_attn.bias, R, Epilogue::Store);  // K | V
  be.rotary(kv, 2 * C, R, H, D, 1, Px);                                           // K only
  be.move_rows(be.upload(kv_moves), (int64_t)kv_moves.size(), C, 0, /*to_kv=*/true);
  if (Z > 0) {  // the latent windows (none when every item is interim)
    be.embed(z, *wte_, nullptr, be.upload(tok_z), Pz, Z, C);
    be.layernorm(h, C, z, C, nullptr, L0.ln_q.w, L0.ln_q.b, Z, C, eps);
    be.gemm(q, C, h, C, *L0.q_attn.W, L0.q_attn.bias, Z, Epilogue::Store);
    be.rotary(q, C, Z, H, D, 1, Pz);
    plan0_->run(0);
    be.gemm(z, C, att, C, *L0.attn_proj.W, L0.attn_proj.bias, Z, Epilogue::Add);
    mlp(L0.mlp, z, Z);
    be.move_rows(be.upload(z_out), Z, C, 0, false);

    if (deep) {
      const Positions& Py = positions(pos_y);
      const RowMove* d_lat = be.upload(lat_moves);
      plan_->prepare(D);
      be.move_rows(be.upload(y_in), Y, C, 0, false);
      for (int64_t l = 1; l < cfg_.n_layer; l++) {
        const Layer& Ly = layers_[l];
        be.layernorm(h, C, y, C, nullptr, Ly.ln_1.w, Ly.ln_1.b, Y, C, eps);
        be.gemm(qkv, 3 * C, h, C, *Ly.c_attn.W, Ly.c_attn.bias, Y, Epilogue::Store);
        be.rotary(qkv, 3 * C, Y, H, D, 2, Py);
        be.to_kv(kvh, 2 * C, qkv + C, 3 * C, Y, 2 * C);
        plan_->run(l - 1);
        be.move_rows(d_lat, (int64_t)lat_moves.size(), C, l - 1, /*to_kv=*/true);  // after every read of this layer
        be.gemm(y, C, att, C, *Ly.attn_proj.W, Ly.attn_proj.bias, Y, Epilogue::Add);
        mlp(Ly.mlp, y, Y);
      }
    }
  }
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<PerceiverState*>(items[i].state);
    s->len = rows[i].end;
    s->stale = rows[i].interim;
    s->lat0 = rows[i].interim ? rows[i].end : rows[i].rebuild ? rows[i].win : std::max(s->lat0, rows[i].end - N);
  }

  // Logits for the wanted rows inside the window; rows before it get NaN.
  std::vector<int32_t> out_rows;
  std::vector<float*> dest;
  for (size_t i = 0; i < items.size(); i++) {
    const Rows& r = rows[i];
    if (r.interim) {  // discarded by the engine
      std::fill(items[i].logits, items[i].logits + V, std::numeric_limits<float>::quiet_NaN());
      continue;
    }
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

}  // namespace roost
