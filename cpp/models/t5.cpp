#include "t5.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "../common.h"
#include "linear.h"

namespace roost {

// What a T5 sequence keeps: its encoder input until the encoder runs, then
// every decoder layer's cross-attention K/V over the encoder output (exactly
// the input's length) and the decoder's self-attention K/V (grown as it goes).
// Both are freed with the state (the sequence's end or cancel).
class T5State : public SequenceState {
 public:
  T5State(int64_t dec_layers, int64_t W) : cross(dec_layers, W), self(dec_layers, W) {}
  // Engine tokens consumed: the input, then the decoder's (its start token is not one).
  int64_t length() const override { return encoded ? enc_len + dec_len - 1 : (int64_t)input.size(); }
  size_t bytes() const override { return cross.bytes() + self.bytes() + input.capacity() * sizeof(int32_t); }
  std::vector<int32_t> input;
  bool encoded = false;
  int64_t enc_len = 0, dec_len = 0;  // dec_len counts decoder_start_token_id
  KvRows cross, self;
};

namespace {

// q's weights [W, K] times scale (the sqrt(D) folded in), float32: scaling an
// F16 weight would round it. Every other projection keeps the checkpoint's
// dtype (load_stacked_linear).
const Matrix* load_scaled_q(Backend& be, const Checkpoint& ckpt, const std::string& name, int64_t W, int64_t K,
                            float scale) {
  std::vector<float> w = tensor_to_f32(ckpt.get(name, {W, K}));
  for (float& v : w) v *= scale;
  TensorView t;
  t.name = name;
  t.file = ckpt.source();
  t.dtype = DType::F32;
  t.shape = {W, K};
  t.data = w.data();
  t.nbytes = w.size() * sizeof(float);
  return be.matrix(t, K, W, /*src_is_nk=*/true);
}

// T5's bucket of n = key - query, float32 logs as HuggingFace computes them (docs/t5.md).
int64_t relative_bucket(int64_t n, bool bidirectional, int64_t buckets, int64_t max_distance) {
  int64_t b = 0, r;
  if (bidirectional) {
    buckets /= 2;
    if (n > 0) b = buckets;
    r = n < 0 ? -n : n;
  } else {
    r = n < 0 ? -n : 0;
  }
  const int64_t exact = buckets / 2;
  if (r < exact) return b + r;
  const float scaled = std::log((float)r / (float)exact) / (float)std::log((double)max_distance / (double)exact) *
                       (float)(buckets - exact);
  return b + std::min<int64_t>(exact + (int64_t)scaled, buckets - 1);
}

}  // namespace

const float* T5Model::bias_table(const Checkpoint& ckpt, const std::string& name, bool bidirectional) {
  const int64_t B = cfg_.rel_buckets, H = cfg_.n_head, R = cfg_.rel_max_distance;
  const std::vector<float> rel = tensor_to_f32(ckpt.get(name, {B, H}));  // Embedding [buckets, heads]
  std::vector<float> table(H * (2 * R + 1));
  for (int64_t n = -R; n <= R; n++) {
    const int64_t b = relative_bucket(n, bidirectional, B, R);
    for (int64_t h = 0; h < H; h++) table[h * (2 * R + 1) + n + R] = rel[b * H + h];
  }
  return be_->floats(table);
}

T5Model::T5Model(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> backend)
    : cfg_(config), be_(std::move(backend)) {
  require_ops(*be_, cfg_, {Op::Embed, Op::RmsNorm, Op::Gemm, Op::Attention, Op::MoveRows, Op::ToKv, Op::RelativeBias});
  if (cfg_.gated_gelu) require_ops(*be_, cfg_, {Op::GeluMul});
  Backend& be = *be_;
  const int64_t C = cfg_.n_embd, V = cfg_.vocab_size, F = cfg_.n_inner, D = cfg_.head_dim(), W = cfg_.n_head * D;
  const float qs = std::sqrt((float)D);
  shared_ = be.matrix(ckpt.get("shared.weight", {V, C}), C, V, /*src_is_nk=*/true);
  head_ = load_head(be, ckpt, cfg_, shared_, "shared.weight", C);
  enc_norm_ = load_vector(be, ckpt, "encoder.final_layer_norm.weight", C);
  std::vector<float> dn = tensor_to_f32(ckpt.get("decoder.final_layer_norm.weight", {C}));
  if (cfg_.tie_word_embeddings)  // T5 scales the decoder output by d_model^-0.5 before a tied head
    for (float& v : dn) v *= (float)std::pow((double)C, -0.5);
  dec_norm_ = be.floats(dn);
  enc_bias_ = bias_table(ckpt, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", true);
  dec_bias_ = bias_table(ckpt, "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", false);

  auto attn = [&](const std::string& a) {
    return Attn{load_scaled_q(be, ckpt, a + "q.weight", W, C, qs),
                load_stacked_linear(be, ckpt, {{a + "k.weight", W}, {a + "v.weight", W}}, C),
                load_stacked_linear(be, ckpt, {{a + "o.weight", C}}, W)};
  };
  auto ff = [&](const std::string& m) {
    Ff f;
    f.wi = cfg_.gated_gelu ? load_stacked_linear(be, ckpt, {{m + "wi_0.weight", F}, {m + "wi_1.weight", F}}, C)
                           : load_stacked_linear(be, ckpt, {{m + "wi.weight", F}}, C);
    f.wo = load_stacked_linear(be, ckpt, {{m + "wo.weight", C}}, F);
    return f;
  };
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "encoder.block." + std::to_string(l) + ".layer.";
    Layer Ly{};
    Ly.ln_self = load_vector(be, ckpt, p + "0.layer_norm.weight", C);
    Ly.self = attn(p + "0.SelfAttention.");
    Ly.ln_ff = load_vector(be, ckpt, p + "1.layer_norm.weight", C);
    Ly.ff = ff(p + "1.DenseReluDense.");
    enc_.push_back(Ly);
  }
  for (int64_t l = 0; l < cfg_.n_decoder_layer; l++) {
    const std::string p = "decoder.block." + std::to_string(l) + ".layer.", x = p + "1.EncDecAttention.";
    Layer Ly{};
    Ly.ln_self = load_vector(be, ckpt, p + "0.layer_norm.weight", C);
    Ly.self = attn(p + "0.SelfAttention.");
    Ly.ln_cross = load_vector(be, ckpt, p + "1.layer_norm.weight", C);
    Ly.cross_q = load_scaled_q(be, ckpt, x + "q.weight", W, C, qs);
    Ly.cross_kv = load_stacked_linear(be, ckpt, {{x + "k.weight", W}, {x + "v.weight", W}}, C);
    Ly.cross_o = load_stacked_linear(be, ckpt, {{x + "o.weight", C}}, W);
    Ly.ln_ff = load_vector(be, ckpt, p + "2.layer_norm.weight", C);
    Ly.ff = ff(p + "2.DenseReluDense.");
    dec_.push_back(Ly);
  }
  for (auto* p : {&plan_self_, &plan_cross_}) *p = be.attention_plan();
  for (auto* s : {&s_x_, &s_h_, &s_qkv_, &s_att_, &s_ff_, &s_gu_, &s_kv_, &s_q_, &s_logits_}) *s = be.scratch();
}

std::unique_ptr<SequenceState> T5Model::new_state() const {
  return std::make_unique<T5State>(cfg_.n_decoder_layer, cfg_.n_head * cfg_.head_dim());
}

void T5Model::feed_forward(const Ff& ff, const float* ln, float* x, int64_t M) {
  Backend& be = *be_;
  const int64_t C = cfg_.n_embd, F = cfg_.n_inner;
  float* h = s_h_->get<float>(M * C);
  float* act = s_ff_->get<float>(M * F);
  be.rmsnorm(h, C, x, C, nullptr, ln, M, C, cfg_.layer_norm_epsilon);
  if (cfg_.gated_gelu) {
    float* gu = s_gu_->get<float>(M * 2 * F);
    be.gemm(gu, 2 * F, h, C, *ff.wi, nullptr, M, Epilogue::Store);  // wi_0 | wi_1
    be.gelu_mul(act, F, gu, 2 * F, M, F);
  } else {
    be.gemm(act, F, h, C, *ff.wi, nullptr, M, Epilogue::Relu);
  }
  be.gemm(x, C, act, F, *ff.wo, nullptr, M, Epilogue::Add);
}

// The encoder in pieces of P = pass_rows_ rows (a long input runs like a
// chunked prefill: the scratch of a pass is P rows, not the input's length).
// Each layer first writes the K/V of every row, piece by piece; then each
// piece's queries attend over all keys of their own sequence, and the piece's
// rows take the attention output and the feed-forward. A piece changes only
// its own rows of x, after every K/V of the layer is written, so the result
// is the one-pass encoder's. Only x and the layer's K/V ([rows, C] and
// [rows, 2W]) span the whole input.
void T5Model::encode(const std::vector<T5State*>& states) {
  Backend& be = *be_;
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = cfg_.head_dim(), W = H * D, R = cfg_.rel_max_distance;
  const float eps = cfg_.layer_norm_epsilon;
  const size_t es = be.kv_size();
  std::vector<int64_t> row0, len;
  std::vector<int32_t> tok;
  std::vector<int64_t> pos;
  for (T5State* s : states) {
    row0.push_back((int64_t)tok.size());
    len.push_back((int64_t)s->input.size());
    for (size_t j = 0; j < s->input.size(); j++) pos.push_back((int64_t)j);
    tok.insert(tok.end(), s->input.begin(), s->input.end());
  }
  const int64_t E = (int64_t)tok.size(), P = std::min(std::max<int64_t>(pass_rows_, 1), E);
  float* x = s_x_->get<float>(E * C);
  char* kv = static_cast<char*>(s_kv_->get(E * 2 * W * es));  // this layer's K | V rows, kv_type()
  float* h = s_h_->get<float>(P * C);
  float* kvf = s_qkv_->get<float>(P * 2 * W);
  float* q = s_q_->get<float>(P * W);
  float* att = s_att_->get<float>(P * W);
  be.embed(x, *shared_, nullptr, be.upload(tok), *be.positions(pos, {}), E, C);

  // The rows [a, b) of sequence i that fall in the piece [r0, r0 + M).
  auto overlap = [&](size_t i, int64_t r0, int64_t M, int64_t& a, int64_t& b) {
    a = std::max(r0, row0[i]);
    b = std::min(r0 + M, row0[i] + len[i]);
    return a < b;
  };
  // Piece p's attention tasks: the same in every layer (the layer's K/V reuse one buffer).
  const int64_t pieces = (E + P - 1) / P;
  while ((int64_t)plan_enc_.size() < pieces) plan_enc_.push_back(be.attention_plan());
  for (int64_t p = 0; p < pieces; p++) {
    const int64_t r0 = p * P, M = std::min(P, E - r0);
    AttentionPlan& plan = *plan_enc_[p];
    plan.clear();
    for (size_t i = 0; i < states.size(); i++) {  // the sequence's queries in the piece see all of its keys
      int64_t a, b;
      if (!overlap(i, r0, M, a, b)) continue;
      const char* k = kv + row0[i] * 2 * W * es;
      plan.add_span(AttnSpan{k, k + W * es, 2 * W, len[i], 0, 0});
      AttnTask t{att + (a - r0) * W, W, q + (a - r0) * W, W, b - a, a - row0[i]};
      t.bias = enc_bias_;  // bidirectional
      t.bias_max = R;
      t.unmasked = true;
      plan.add_heads(t, H);
    }
    plan.prepare(D);
  }
  for (const Layer& Ly : enc_) {
    for (int64_t r0 = 0; r0 < E; r0 += P) {
      const int64_t M = std::min(P, E - r0);
      be.rmsnorm(h, C, x + r0 * C, C, nullptr, Ly.ln_self, M, C, eps);
      be.gemm(kvf, 2 * W, h, C, *Ly.self.kv, nullptr, M, Epilogue::Store);
      be.to_kv(kv + r0 * 2 * W * es, 2 * W, kvf, 2 * W, M, 2 * W);
    }
    for (int64_t r0 = 0; r0 < E; r0 += P) {
      const int64_t M = std::min(P, E - r0);
      be.rmsnorm(h, C, x + r0 * C, C, nullptr, Ly.ln_self, M, C, eps);
      be.gemm(q, W, h, C, *Ly.self.q, nullptr, M, Epilogue::Store);
      plan_enc_[r0 / P]->run(0);
      be.gemm(x + r0 * C, C, att, W, *Ly.self.o, nullptr, M, Epilogue::Add);
      feed_forward(Ly.ff, Ly.ln_ff, x + r0 * C, M);
    }
  }

  // The encoder output, piece by piece, and from it each decoder layer's cross
  // K/V, kept per sequence at exactly its length.
  for (T5State* s : states) s->cross.make_ring(be, (int64_t)s->input.size());
  for (int64_t r0 = 0; r0 < E; r0 += P) {
    const int64_t M = std::min(P, E - r0);
    be.rmsnorm(h, C, x + r0 * C, C, nullptr, enc_norm_, M, C, eps);
    for (size_t l = 0; l < dec_.size(); l++) {
      be.gemm(kvf, 2 * W, h, C, *dec_[l].cross_kv, nullptr, M, Epilogue::Store);  // K | V
      for (size_t i = 0; i < states.size(); i++) {
        int64_t a, b;
        if (!overlap(i, r0, M, a, b)) continue;
        T5State* s = states[i];
        be.to_kv(s->cross.k((int64_t)l, a - row0[i]), W, kvf + (a - r0) * 2 * W, 2 * W, b - a, W);
        be.to_kv(s->cross.v((int64_t)l, a - row0[i]), W, kvf + (a - r0) * 2 * W + W, 2 * W, b - a, W);
      }
    }
  }
  for (T5State* s : states) {
    s->enc_len = (int64_t)s->input.size();
    s->encoded = true;
    std::vector<int32_t>().swap(s->input);
  }
}

void T5Model::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  Backend& be = *be_;
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = cfg_.head_dim(), W = H * D, V = cfg_.vocab_size;
  const int64_t R = cfg_.rel_max_distance;
  const float eps = cfg_.layer_norm_epsilon;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  be.begin_step(pool);

  // Which tokens are decoder positions, and which logits row of its item each fills.
  std::vector<T5State*> to_encode;
  std::vector<int64_t> drow0(items.size()), dn(items.size()), slot0(items.size());
  std::vector<int32_t> dtok;
  for (size_t i = 0; i < items.size(); i++) {
    const ForwardItem& it = items[i];
    auto* s = static_cast<T5State*>(it.state);
    drow0[i] = (int64_t)dtok.size();
    if (s->encoded) {
      dtok.insert(dtok.end(), it.tokens, it.tokens + it.n);
      dn[i] = it.n;
      slot0[i] = 0;
    } else {
      s->input.insert(s->input.end(), it.tokens, it.tokens + it.n);
      dn[i] = it.input_ends ? 1 : 0;
      if (it.input_ends) {
        to_encode.push_back(s);
        dtok.push_back((int32_t)cfg_.decoder_start_token_id);
      }
      slot0[i] = it.n - 1;  // the start token's logits predict the first generated token
    }
    // Rows no decoder position fills: NaN (input tokens have no prediction).
    const int64_t rows = it.all_logits ? it.n : 1;
    const int64_t filled = it.all_logits ? dn[i] : std::min<int64_t>(dn[i], 1);
    if (filled < rows) std::fill(it.logits, it.logits + (rows - filled) * V, nan);
  }
  if (!to_encode.empty()) encode(to_encode);
  const int64_t N = (int64_t)dtok.size();
  if (N == 0) return be.finish();

  std::vector<RowMove> moves(2 * N);
  std::vector<int64_t> pos(N);
  float* qkv = s_qkv_->get<float>(N * 3 * W);
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<T5State*>(items[i].state);
    if (dn[i] == 0) continue;
    s->self.reserve(be, s->dec_len + dn[i], s->dec_len, 0);
    for (int64_t j = 0; j < dn[i]; j++) {
      const int64_t r = drow0[i] + j, p = s->dec_len + j;
      pos[r] = p;
      moves[2 * r] = RowMove{qkv + r * 3 * W + W, s->self.k(0, p), s->self.layer_stride()};
      moves[2 * r + 1] = RowMove{qkv + r * 3 * W + 2 * W, s->self.v(0, p), s->self.layer_stride()};
    }
  }
  float* x = s_x_->get<float>(N * C);
  float* h = s_h_->get<float>(N * C);
  float* att = s_att_->get<float>(N * W);
  float* q = s_q_->get<float>(N * W);
  const RowMove* d_moves = be.upload(moves);
  be.embed(x, *shared_, nullptr, be.upload(dtok), *be.positions(pos, {}), N, C);

  AttentionPlan& self = *plan_self_;
  AttentionPlan& cross = *plan_cross_;
  self.clear();
  cross.clear();
  for (size_t i = 0; i < items.size(); i++) {
    if (dn[i] == 0) continue;
    auto* s = static_cast<T5State*>(items[i].state);
    self.add_span(s->self.span(0, 0, s->dec_len + dn[i], 0, /*per_layer=*/true));
    AttnTask t{att + drow0[i] * W, W, qkv + drow0[i] * 3 * W, 3 * W, dn[i], s->dec_len};
    t.bias = dec_bias_;
    t.bias_max = R;
    self.add_heads(t, H);
    cross.add_span(s->cross.span(0, 0, s->enc_len, kNoMaskPos, /*per_layer=*/true));
    cross.add_heads(AttnTask{att + drow0[i] * W, W, q + drow0[i] * W, W, dn[i], s->dec_len}, H);
  }
  self.prepare(D);
  cross.prepare(D);
  for (size_t l = 0; l < dec_.size(); l++) {
    const Layer& Ly = dec_[l];
    be.rmsnorm(h, C, x, C, nullptr, Ly.ln_self, N, C, eps);
    be.gemm(qkv, 3 * W, h, C, *Ly.self.q, nullptr, N, Epilogue::Store);  // q | k | v rows
    be.gemm(qkv + W, 3 * W, h, C, *Ly.self.kv, nullptr, N, Epilogue::Store);
    be.move_rows(d_moves, 2 * N, W, (int64_t)l, /*to_kv=*/true);
    self.run((int64_t)l);
    be.gemm(x, C, att, W, *Ly.self.o, nullptr, N, Epilogue::Add);
    be.rmsnorm(h, C, x, C, nullptr, Ly.ln_cross, N, C, eps);
    be.gemm(q, W, h, C, *Ly.cross_q, nullptr, N, Epilogue::Store);
    cross.run((int64_t)l);
    be.gemm(x, C, att, W, *Ly.cross_o, nullptr, N, Epilogue::Add);
    feed_forward(Ly.ff, Ly.ln_ff, x, N);
  }
  for (size_t i = 0; i < items.size(); i++) static_cast<T5State*>(items[i].state)->dec_len += dn[i];

  // The final norm and head for the decoder rows whose logits are wanted.
  std::vector<int32_t> rows;
  std::vector<float*> dest;
  for (size_t i = 0; i < items.size(); i++) {
    if (dn[i] == 0) continue;
    if (items[i].all_logits) {
      for (int64_t j = 0; j < dn[i]; j++) {
        rows.push_back((int32_t)(drow0[i] + j));
        dest.push_back(items[i].logits + (slot0[i] + j) * V);
      }
    } else {
      rows.push_back((int32_t)(drow0[i] + dn[i] - 1));
      dest.push_back(items[i].logits);
    }
  }
  const int64_t Rw = (int64_t)rows.size();
  h = s_h_->get<float>(N * C);
  float* logits = s_logits_->get<float>(Rw * V);
  be.rmsnorm(h, C, x, C, be.upload(rows), dec_norm_, Rw, C, eps);
  be.gemm(logits, V, h, C, *head_, nullptr, Rw, Epilogue::Store);
  be.read_rows(dest, logits, V);
}

}  // namespace roost
