#include "block_recurrent.h"

#include <algorithm>
#include <cmath>

#include "../common.h"

namespace roost {

namespace {

// block_recurrent: one item's rows and its new positions cut at block boundaries (W = block_size).
struct BlockRows {
  int64_t past, n, end, x0;
  std::vector<std::pair<int64_t, int64_t>> segs;  // [begin, end) positions, one per block touched
  int64_t row(int64_t pos) const { return x0 + pos - past; }
};

// The items' rows; *total receives the number of rows over all items.
std::vector<BlockRows> plan_block_rows(const std::vector<ForwardItem>& items, int64_t W, int64_t* total) {
  std::vector<BlockRows> rows(items.size());
  int64_t R = 0;
  for (size_t i = 0; i < items.size(); i++) {
    BlockRows& r = rows[i];
    r.past = items[i].state->length();
    r.n = items[i].n;
    r.end = r.past + r.n;
    r.x0 = R;
    for (int64_t p = r.past; p < r.end;) {
      const int64_t q = std::min(r.end, (p / W + 1) * W);
      r.segs.push_back({p, q});
      p = q;
    }
    R += r.n;
  }
  *total = R;
  return rows;
}

using Rows = BlockRows;

// Per sequence: per layer a ring of the last 2W token K/V rows (a query in
// block i reads keys from blocks i-1 and i only: at most 2W-1 earlier rows);
// per layer the state s [S, C] (float) and its keys/values kv_state(ln_s(s))
// (S K/V rows), which a_cross and the update both read. Ordinary layers leave
// theirs unused, so one layer stride serves every layer.
class RecurrentState : public SequenceState {
 public:
  RecurrentState(Backend& be, int64_t L, int64_t C, int64_t W, int64_t S)
      : ring(L, C), skv(L, C), s_(be.alloc((size_t)L * S * C * sizeof(float))) {
    ring.make_ring(be, 2 * W);
    skv.make_ring(be, S);
  }
  int64_t length() const override { return len; }
  size_t bytes() const override { return ring.bytes() + skv.bytes() + s_->bytes(); }
  float* s() const { return s_->as<float>(); }  // layer l at + l*S*C

  KvRows ring, skv;
  int64_t len = 0;

 private:
  std::unique_ptr<Buffer> s_;
};

}  // namespace

BlockRecurrentModel::BlockRecurrentModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> backend)
    : ModelBase(config, ckpt, std::move(backend)), init_kv_(config.n_layer, config.n_embd) {
  require_ops(be(), cfg_, {Op::ToKv, Op::GateUpdate});
  const int64_t C = cfg_.n_embd, S = cfg_.num_states, L = cfg_.n_layer;
  std::vector<float> init_s((size_t)L * S * C, 0.f);
  for (int64_t l = 0; l < L; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer Ly;
    const auto& rl = cfg_.recurrent_layers;
    Ly.rec = std::find(rl.begin(), rl.end(), l) != rl.end();
    Ly.ln_1 = load_norm(be(), ckpt, p + "ln_1", C);
    Ly.c_attn = load_dense(be(), ckpt, p + "attn.c_attn", C, 3 * C);
    Ly.attn_proj = load_dense(be(), ckpt, p + "attn.c_proj", Ly.rec ? 2 * C : C, C);  // input [a_self ; a_cross]
    Ly.mlp = load_mlp(ckpt, p);
    if (Ly.rec) {
      Ly.q_state = load_dense(be(), ckpt, p + "attn.q_state", C, C);
      Ly.kv_state = load_dense(be(), ckpt, p + "attn.kv_state", C, 2 * C);
      Ly.ln_s = load_norm(be(), ckpt, p + "ln_s", C);
      Ly.state_q = load_dense(be(), ckpt, p + "state.q_attn", C, C);
      Ly.state_proj = load_dense(be(), ckpt, p + "state.c_proj", C, C);
      std::vector<float> keep;
      for (float g : tensor_to_f32(ckpt.get(p + "state.gate_bias", {C}))) keep.push_back(1.f / (1.f + std::exp(-g)));
      Ly.keep = be().floats(keep);
      const std::vector<float> s0 = tensor_to_f32(ckpt.get(p + "state_init", {S, C}));
      std::copy(s0.begin(), s0.end(), init_s.begin() + l * S * C);
    }
    layers_.push_back(std::move(Ly));
  }
  init_s_ = be().alloc(init_s.size() * sizeof(float));
  init_kv_.make_ring(be(), S);
  for (auto& p : self_) p = be().attention_plan();
  for (auto* s : {&s_x_, &s_qkv_, &s_kvh_, &s_qs_, &s_att_, &s_su_, &s_sq_, &s_sa_, &s_sy_, &s_skv_}) *s = be().scratch();

  // Every sequence starts from s_0 and kv_state(ln_s(s_0)), computed here once on the backend.
  ThreadPool one(1);
  be().begin_step(one);
  be().copy(init_s_->data(), be().upload(init_s), init_s_->bytes());
  float* u = s_su_->get<float>(S * C);
  float* kv = s_skv_->get<float>(S * 2 * C);
  for (int64_t l = 0; l < L; l++) {
    const Layer& Ly = layers_[l];
    if (!Ly.rec) continue;
    be().layernorm(u, C, init_s_->as<float>() + l * S * C, C, nullptr, Ly.ln_s.w, Ly.ln_s.b, S, C, cfg_.layer_norm_epsilon);
    be().gemm(kv, 2 * C, u, C, *Ly.kv_state.W, Ly.kv_state.bias, S, Epilogue::Store);
    be().to_kv(init_kv_.k(l, 0), C, kv, 2 * C, S, C);
    be().to_kv(init_kv_.v(l, 0), C, kv + C, 2 * C, S, C);
  }
  be().finish();
}

std::unique_ptr<SequenceState> BlockRecurrentModel::new_state() const {
  const int64_t C = cfg_.n_embd, S = cfg_.num_states, L = cfg_.n_layer;
  auto st = std::make_unique<RecurrentState>(be(), L, C, cfg_.block_size, S);
  be().copy(st->s(), init_s_->data(), init_s_->bytes());
  be().copy(st->skv.k(0, 0), init_kv_.k(0, 0), init_kv_.bytes());
  return st;
}

std::unique_ptr<SequenceState> BlockRecurrentModel::copy_state(const SequenceState& state) const {
  const auto& from = dynamic_cast<const RecurrentState&>(state);
  const int64_t C = cfg_.n_embd, S = cfg_.num_states, L = cfg_.n_layer;
  auto st = std::make_unique<RecurrentState>(be(), L, C, cfg_.block_size, S);
  be().copy(st->s(), from.s(), (size_t)L * S * C * sizeof(float));
  be().copy(st->skv.k(0, 0), from.skv.k(0, 0), from.skv.bytes());
  be().copy(st->ring.k(0, 0), from.ring.k(0, 0), from.ring.bytes());
  st->len = from.len;
  return st;
}

void BlockRecurrentModel::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, V = cfg_.vocab_size, W = cfg_.block_size;
  const int64_t S = cfg_.num_states, L = cfg_.n_layer, W2 = 2 * W;
  const float eps = cfg_.layer_norm_epsilon;
  Backend& be = this->be();
  const size_t es = be.kv_size();
  be.begin_step(pool);

  int64_t R = 0;
  const std::vector<Rows> rows = plan_block_rows(items, W, &R);
  size_t n_rounds = 0;
  for (const Rows& r : rows) n_rounds = std::max(n_rounds, r.segs.size());
  bool any_rec = false, any_plain = false;
  for (const Layer& Ly : layers_) (Ly.rec ? any_rec : any_plain) = true;

  float* x = s_x_->get<float>(R * C);
  float* h = s_h_->get<float>(R * C);
  float* qkv = s_qkv_->get<float>(R * 3 * C);
  char* kvh = static_cast<char*>(s_kvh_->get(R * 2 * C * es));  // this step's K | V rows
  float* att = s_att_->get<float>(R * 2 * C);                    // a_self (| a_cross)
  float* qs = any_rec ? s_qs_->get<float>(R * C) : nullptr;
  auto step_kv = [&](int64_t row) { return kvh + row * 2 * C * es; };  // K at +0, V at + C elements

  std::vector<int32_t> tok(R);
  std::vector<int64_t> pos(R);
  std::vector<RowMove> ring_moves;  // after each layer's reads: the new K/V rows into the ring (last 2W survive)
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<RecurrentState*>(items[i].state);
    const Rows& r = rows[i];
    for (int64_t j = 0; j < r.n; j++) {
      tok[r.x0 + j] = items[i].tokens[j];
      pos[r.x0 + j] = r.past + j;
    }
    for (int64_t t = std::max<int64_t>(0, r.n - W2); t < r.n; t++) {
      const int64_t slot = (r.past + t) % W2, row = r.x0 + t;
      ring_moves.push_back({qkv + row * 3 * C + C, s->ring.k(0, slot), s->ring.layer_stride()});
      ring_moves.push_back({qkv + row * 3 * C + 2 * C, s->ring.v(0, slot), s->ring.layer_stride()});
    }
  }
  const Positions& P = positions(pos);
  const RowMove* d_ring = be.upload(ring_moves);

  // a_self: the query at p in block i sees keys max(0, (i-1)W) .. p; earlier
  // ones from the ring, the step's own from kvh.
  for (int k = 0; k < 2; k++) {
    AttentionPlan& plan = *self_[k];
    plan.clear();
    if (!(k ? any_rec : any_plain)) continue;
    const int64_t a_stride = k ? 2 * C : C;
    for (size_t i = 0; i < items.size(); i++) {
      auto* s = static_cast<RecurrentState*>(items[i].state);
      const Rows& r = rows[i];
      for (const auto& [p0, p1] : r.segs) {
        const int64_t ks = std::max<int64_t>(0, (p0 / W - 1) * W);
        if (ks < r.past) s->ring.ring_spans(plan, ks, r.past, /*unmasked=*/false, /*per_layer=*/true);
        const int64_t cs = std::max(ks, r.past);
        plan.add_span(AttnSpan{step_kv(r.row(cs)), step_kv(r.row(cs)) + C * es, 2 * C, p1 - cs, cs, 0});
        plan.add_heads(
            item_rows(AttnTask{att + r.row(p0) * a_stride, a_stride, qkv + r.row(p0) * 3 * C, 3 * C, p1 - p0, p0}, items[i].decode), H);
      }
    }
    plan.prepare(D);
  }

  // a_cross and the state updates, round by round (the k-th segment of every
  // item). The update buffers are sized for the largest round first, so the
  // lists below can hold their addresses.
  const size_t used_rounds = any_rec ? n_rounds : 0;
  while (rounds_.size() < used_rounds) rounds_.push_back(Round{be.attention_plan(), be.attention_plan()});
  int64_t max_done = 0;
  for (size_t k = 0; k < used_rounds; k++) {
    int64_t done = 0;
    for (const Rows& r : rows) done += k < r.segs.size() && r.segs[k].second % W == 0;
    max_done = std::max(max_done, done);
  }
  const int64_t MM = std::max<int64_t>(1, max_done * S);
  float* su = s_su_->get<float>(MM * C);        // ln_s(s) rows of the round's updates
  float* sq = s_sq_->get<float>(MM * C);        // state queries
  float* sa = s_sa_->get<float>(MM * C);        // their attention
  float* sy = s_sy_->get<float>(MM * C);        // proj_h
  float* skvf = s_skv_->get<float>(MM * 2 * C);  // kv_state of the new states
  for (size_t k = 0; k < used_rounds; k++) {
    Round& rd = rounds_[k];
    rd.read->clear();
    rd.update->clear();
    std::vector<std::pair<size_t, int64_t>> done;  // (item, block)
    for (size_t i = 0; i < items.size(); i++) {
      if (k >= rows[i].segs.size()) continue;
      auto* s = static_cast<RecurrentState*>(items[i].state);
      const auto [p0, p1] = rows[i].segs[k];
      rd.read->add_span(s->skv.span(0, 0, S, kNoMaskPos, /*per_layer=*/true));
      rd.read->add_heads(
          item_rows(AttnTask{att + rows[i].row(p0) * 2 * C + C, 2 * C, qs + rows[i].row(p0) * C, C, p1 - p0, p0}, items[i].decode), H);
      if (p1 % W == 0) done.push_back({i, p0 / W});
    }
    rd.read->prepare(D);
    rd.done = (int64_t)done.size();
    if (done.empty()) continue;
    std::vector<RowMove> s_rows, kv_rows;
    std::vector<float*> s_ptrs;
    for (size_t d = 0; d < done.size(); d++) {
      const Rows& r = rows[done[d].first];
      auto* s = static_cast<RecurrentState*>(items[done[d].first].state);
      s_ptrs.push_back(s->s());
      for (int64_t j = 0; j < S; j++) {
        s_rows.push_back({s->s() + j * C, su + (d * S + j) * C, 0, S * C});
        kv_rows.push_back({skvf + (d * S + j) * 2 * C, s->skv.k(0, j), s->skv.layer_stride(), 0});
        kv_rows.push_back({skvf + (d * S + j) * 2 * C + C, s->skv.v(0, j), s->skv.layer_stride(), 0});
      }
      const int64_t b0 = done[d].second * W, b1 = b0 + W;
      rd.update->add_span(s->skv.span(0, 0, S, kNoMaskPos, /*per_layer=*/true));
      // The block's rows keep their positions and the S queries sit at b1 - 1,
      // which sees them all: the ring's rows and the pass's then form one run of
      // key blocks wherever the pass starts (cpp/ops/attention_impl.h, run_end).
      if (b0 < r.past) s->ring.ring_spans(*rd.update, b0, r.past, /*unmasked=*/false, /*per_layer=*/true);
      const int64_t cs = std::max(b0, r.past);
      rd.update->add_span(AttnSpan{step_kv(r.row(cs)), step_kv(r.row(cs)) + C * es, 2 * C, b1 - cs, cs, 0});
      rd.update->add_heads(item_rows(AttnTask{sa + d * S * C, C, sq + d * S * C, C, S, b1 - 1}, /*decode=*/false), H);
    }
    rd.update->prepare(D);
    rd.s_rows = be.upload(s_rows);
    rd.kv_rows = be.upload(kv_rows);
    rd.s_ptrs = be.upload(s_ptrs);
  }

  be.embed(x, *wte_, nullptr, be.upload(tok), P, R, C);
  for (int64_t l = 0; l < L; l++) {
    const Layer& Ly = layers_[l];
    const int64_t a_stride = Ly.rec ? 2 * C : C;
    be.layernorm(h, C, x, C, nullptr, Ly.ln_1.w, Ly.ln_1.b, R, C, eps);
    be.gemm(qkv, 3 * C, h, C, *Ly.c_attn.W, Ly.c_attn.bias, R, Epilogue::Store);  // Q | K | V
    be.rotary(qkv, 3 * C, R, H, D, 2, P);
    be.to_kv(kvh, 2 * C, qkv + C, 3 * C, R, 2 * C);
    self_[Ly.rec ? 1 : 0]->run(l);
    if (Ly.rec) {
      be.gemm(qs, C, h, C, *Ly.q_state.W, Ly.q_state.bias, R, Epilogue::Store);  // token queries of a_cross, no rotary
      for (size_t k = 0; k < used_rounds; k++) {
        const Round& rd = rounds_[k];
        rd.read->run(l);
        if (rd.done == 0) continue;
        const int64_t M = rd.done * S;
        be.move_rows(rd.s_rows, M, C, l, false);  // su = s
        be.layernorm(su, C, su, C, nullptr, Ly.ln_s.w, Ly.ln_s.b, M, C, eps);
        be.gemm(sq, C, su, C, *Ly.state_q.W, Ly.state_q.bias, M, Epilogue::Store);  // no rotary
        rd.update->run(l);
        be.gemm(sy, C, sa, C, *Ly.state_proj.W, Ly.state_proj.bias, M, Epilogue::Store);
        be.gate_update(rd.s_ptrs, S * C, l, sy, Ly.keep, rd.done, S, C);
        be.move_rows(rd.s_rows, M, C, l, false);  // su = the new s
        be.layernorm(su, C, su, C, nullptr, Ly.ln_s.w, Ly.ln_s.b, M, C, eps);
        be.gemm(skvf, 2 * C, su, C, *Ly.kv_state.W, Ly.kv_state.bias, M, Epilogue::Store);
        be.move_rows(rd.kv_rows, 2 * M, C, l, /*to_kv=*/true);
      }
    }
    be.move_rows(d_ring, (int64_t)ring_moves.size(), C, l, /*to_kv=*/true);  // every read of this layer is done
    be.gemm(x, C, att, a_stride, *Ly.attn_proj.W, Ly.attn_proj.bias, R, Epilogue::Add);
    mlp(Ly.mlp, x, R);
  }
  for (size_t i = 0; i < items.size(); i++) static_cast<RecurrentState*>(items[i].state)->len = rows[i].end;

  std::vector<int64_t> x0(items.size());
  for (size_t i = 0; i < items.size(); i++) x0[i] = rows[i].x0;
  std::vector<int32_t> out_rows;
  std::vector<float*> dest;
  wanted_logits(items, x0, V, out_rows, dest);
  head_logits(x, out_rows, dest);
}

}  // namespace roost
