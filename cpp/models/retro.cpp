#include "retro.h"

#include <algorithm>
#include <map>

#include "../common.h"

namespace roost {

namespace {

// Per sequence: the decoder's self-attention K/V (every layer, grown as the
// sequence grows), the layer-cca_start activations of the chunk in progress
// (the encoder's H_u once it completes), and per complete chunk the K/V of
// its encoded neighbours for every CCA layer ([n_cca][K|V][k*2m][C], null:
// the chunk had no neighbours), plus neighbours given for chunks to come.
class RetroState : public SequenceState {
 public:
  RetroState(Backend& be, const ModelConfig& cfg)
      : kv(cfg.n_layer, cfg.n_embd), h(be.alloc((size_t)cfg.chunk_size * cfg.n_embd * sizeof(float))), cfg_(cfg) {}
  int64_t length() const override { return len; }
  size_t bytes() const override {
    size_t b = kv.bytes() + h->bytes();
    for (const auto& c : chunks)
      if (c) b += c->bytes();
    return b;
  }
  void set_neighbours(int64_t chunk, std::vector<int32_t> tokens) override {
    const int64_t want = cfg_.num_neighbours * 2 * cfg_.chunk_size;
    if (chunk < (int64_t)chunks.size())
      throw Error("E_ARGUMENT", "neighbours of chunk " + std::to_string(chunk) + " come too late: the sequence has " +
                                    std::to_string(chunks.size()) + " complete chunks");
    if ((int64_t)tokens.size() != want)
      throw Error("E_ARGUMENT", "neighbours of chunk " + std::to_string(chunk) + " must be " +
                                    std::to_string(cfg_.num_neighbours) + " x " + std::to_string(2 * cfg_.chunk_size) +
                                    " tokens (got " + std::to_string(tokens.size()) + ")");
    for (int32_t t : tokens)
      if (t < 0 || t >= cfg_.vocab_size)
        throw Error("E_ARGUMENT", "neighbour token " + std::to_string(t) + " is outside the vocabulary (0.." +
                                      std::to_string(cfg_.vocab_size - 1) + ")");
    pending[chunk] = std::move(tokens);
  }

  KvRows kv;
  int64_t len = 0;
  std::unique_ptr<Buffer> h;                     // [m, C] float, slot p % m
  std::vector<std::unique_ptr<Buffer>> chunks;   // one per complete chunk
  std::map<int64_t, std::vector<int32_t>> pending;

 private:
  const ModelConfig& cfg_;
};

// One chunk the pass completes and encodes: its item, its chunk index, its buffer.
struct Encode {
  size_t item;
  int64_t chunk;
  Buffer* kv;
};

}  // namespace

RetroModel::RetroModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> backend)
    : ModelBase(config, ckpt, std::move(backend)) {
  require_ops(be(), cfg_, {Op::ToKv, Op::Rotary});
  const int64_t C = cfg_.n_embd;
  auto attn = [&](const std::string& ln, const std::string& p) {
    return Attn{load_norm(be(), ckpt, ln, C), load_dense(be(), ckpt, p + ".q", C, C),
                load_dense(be(), ckpt, p + ".kv", C, 2 * C), load_dense(be(), ckpt, p + ".c_proj", C, C)};
  };
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer Ly{load_norm(be(), ckpt, p + "ln_1", C), load_dense(be(), ckpt, p + "attn.c_attn", C, 3 * C),
             load_dense(be(), ckpt, p + "attn.c_proj", C, C), load_mlp(ckpt, p), -1, {}};
    if (l >= cfg_.cca_start && (l - cfg_.cca_start) % cfg_.cca_period == 0) {
      Ly.cca = n_cca_++;
      Ly.cross = attn(p + "ln_cca", p + "cca");
    }
    layers_.push_back(std::move(Ly));
  }
  for (int64_t s = 0; s < cfg_.encoder_layers; s++) {
    const std::string p = "enc.h." + std::to_string(s) + ".";
    enc_.push_back(EncLayer{load_norm(be(), ckpt, p + "ln_1", C), load_dense(be(), ckpt, p + "attn.c_attn", C, 3 * C),
                            load_dense(be(), ckpt, p + "attn.c_proj", C, C), attn(p + "ln_ca", p + "ca"),
                            load_mlp(ckpt, p)});
  }
  enc_ln_h_ = load_norm(be(), ckpt, "enc.ln_h", C);
  enc_ln_f_ = load_norm(be(), ckpt, "enc.ln_f", C);
  for (auto* p : {&self_, &enc_self_, &enc_ca_, &cca_}) *p = be().attention_plan();
  for (auto* s : {&s_x_, &s_qkv_, &s_att_, &s_cq_, &s_hc_, &s_hn_, &s_hkv_, &s_hkv_kv_, &s_e_, &s_eh_, &s_eqkv_, &s_ekv_,
                  &s_eatt_, &s_eq_, &s_ckv_})
    *s = be().scratch();
}

std::unique_ptr<SequenceState> RetroModel::new_state() const {
  return std::make_unique<RetroState>(be(), cfg_);
}

void RetroModel::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, L = cfg_.n_layer, F = cfg_.n_inner;
  const int64_t m = cfg_.chunk_size, r = 2 * m, KR = cfg_.num_neighbours * r;
  const float eps = cfg_.layer_norm_epsilon;
  Backend& be = this->be();
  const size_t es = be.kv_size();
  be.begin_step(pool);

  std::vector<int64_t> row0(items.size());
  int64_t N = 0;
  for (size_t i = 0; i < items.size(); i++) {
    row0[i] = N;
    N += items[i].n;
  }
  // The chunks this pass completes: a buffer for each with neighbours (encoded at
  // layer cca_start), none for the others (their readers get no CCA term).
  std::vector<Encode> enc;
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<RetroState*>(items[i].state);
    s->kv.reserve(be, s->len + items[i].n, s->len, 0);
    for (int64_t u = (int64_t)s->chunks.size(); u < (s->len + items[i].n) / m; u++) {
      auto it = s->pending.find(u);
      s->chunks.push_back(it == s->pending.end() ? nullptr : be.alloc((size_t)n_cca_ * 2 * KR * C * es));
      if (s->chunks.back()) enc.push_back(Encode{i, u, s->chunks.back().get()});
    }
  }
  const int64_t U = (int64_t)enc.size(), RE = U * KR, M = std::max(N, RE);

  // Every scratch sized once, before any pointer into it is taken.
  float* x = s_x_->get<float>(N * C);
  float* qkv = s_qkv_->get<float>(N * 3 * C);
  float* att = s_att_->get<float>(N * C);
  float* cq = s_cq_->get<float>(N * C);
  float* h = s_h_->get<float>(M * C);  // also mlp()'s
  s_ff_->get<float>(M * F);
  float* hc = s_hc_->get<float>(std::max<int64_t>(U * m, 1) * C);
  float* hn = s_hn_->get<float>(std::max<int64_t>(U * m, 1) * C);
  float* hkv = s_hkv_->get<float>(std::max<int64_t>(U * m, 1) * 2 * C);
  char* hkv_kv = static_cast<char*>(s_hkv_kv_->get(std::max<int64_t>(U * m, 1) * 2 * C * es));
  float* e = s_e_->get<float>(std::max<int64_t>(RE, 1) * C);
  float* eh = s_eh_->get<float>(std::max<int64_t>(RE, 1) * C);
  float* eqkv = s_eqkv_->get<float>(std::max<int64_t>(RE, 1) * 3 * C);
  char* ekv = static_cast<char*>(s_ekv_->get(std::max<int64_t>(RE, 1) * 2 * C * es));
  float* eatt = s_eatt_->get<float>(std::max<int64_t>(RE, 1) * C);
  float* eq = s_eq_->get<float>(std::max<int64_t>(RE, 1) * C);
  float* ckv = s_ckv_->get<float>(std::max<int64_t>(RE, 1) * 2 * C);

  // Decoder rows: tokens, positions, K/V destinations; self-attention tasks.
  std::vector<int32_t> tok(N);
  std::vector<int64_t> pos(N);
  std::vector<RowMove> kv_moves(2 * N);
  self_->clear();
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<RetroState*>(items[i].state);
    for (int64_t j = 0; j < items[i].n; j++) {
      const int64_t rr = row0[i] + j, p = s->len + j;
      tok[rr] = items[i].tokens[j];
      pos[rr] = p;
      kv_moves[2 * rr] = RowMove{qkv + rr * 3 * C + C, s->kv.k(0, p), s->kv.layer_stride()};
      kv_moves[2 * rr + 1] = RowMove{qkv + rr * 3 * C + 2 * C, s->kv.v(0, p), s->kv.layer_stride()};
    }
    self_->add_span(s->kv.span(0, 0, s->len + items[i].n, 0, /*per_layer=*/true));
    self_->add_heads(item_rows(AttnTask{att + row0[i] * C, C, qkv + row0[i] * 3 * C, 3 * C, items[i].n, s->len}, items[i].decode), H);
  }
  self_->prepare(D);
  const Positions& P = positions(pos);
  const RowMove* d_kv_moves = be.upload(kv_moves);
  be.embed(x, *wte_, nullptr, be.upload(tok), P, N, C);

  // H_u of every encoded chunk gathered from the state (rows before this pass)
  // and this pass's rows; then the rows of each chunk still in progress saved.
  std::vector<RowMove> gather, keep;
  for (int64_t j = 0; j < U; j++) {
    auto* s = static_cast<RetroState*>(items[enc[j].item].state);
    for (int64_t t = 0; t < m; t++) {
      const int64_t q = enc[j].chunk * m + t;
      const float* src = q < s->len ? s->h->as<float>() + (q % m) * C : x + (row0[enc[j].item] + q - s->len) * C;
      gather.push_back(RowMove{src, hc + (j * m + t) * C});
    }
  }
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<RetroState*>(items[i].state);
    const int64_t end = s->len + items[i].n;
    for (int64_t q = std::max(s->len, end / m * m); q < end; q++)
      keep.push_back(RowMove{x + (row0[i] + q - s->len) * C, s->h->as<float>() + (q % m) * C});
  }
  const RowMove* d_gather = gather.empty() ? nullptr : be.upload(gather);
  const RowMove* d_keep = keep.empty() ? nullptr : be.upload(keep);

  // Encoder: neighbour tokens at positions 0 .. r-1, self-attention within each
  // neighbour, cross-attention from each neighbour to its chunk's m rows.
  std::vector<int32_t> etok;
  std::vector<int64_t> epos;
  enc_self_->clear();
  enc_ca_->clear();
  for (int64_t j = 0; j < U; j++) {
    auto* s = static_cast<RetroState*>(items[enc[j].item].state);
    const std::vector<int32_t>& nb = s->pending.at(enc[j].chunk);
    etok.insert(etok.end(), nb.begin(), nb.end());
    for (int64_t n = 0; n < cfg_.num_neighbours; n++) {
      const int64_t row = j * KR + n * r;  // this neighbour's first encoder row
      for (int64_t t = 0; t < r; t++) epos.push_back(t);
      enc_self_->add_span(AttnSpan{ekv + row * C * es, ekv + (RE + row) * C * es, C, r, kNoMaskPos, 0});
      enc_self_->add_heads(AttnTask{eatt + row * C, C, eqkv + row * 3 * C, 3 * C, r, 0}, H);
      enc_ca_->add_span(AttnSpan{hkv_kv + j * m * C * es, hkv_kv + (U * m + j * m) * C * es, C, m, kNoMaskPos, 0});
      enc_ca_->add_heads(AttnTask{eatt + row * C, C, eq + row * C, C, r, 0}, H);
    }
  }
  if (U > 0) {
    enc_self_->prepare(D);
    enc_ca_->prepare(D);
  }

  // CCA: the token at position p reads chunk u = (p + 1) / m - 1 (docs/retro.md);
  // runs of rows reading the same encoded chunk are one task, and the rows of
  // every run (and only those) get the c_proj term.
  std::vector<std::pair<int64_t, int64_t>> cca_runs;  // (first row, rows)
  cca_->clear();
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<RetroState*>(items[i].state);
    for (int64_t j = 0; j < items[i].n;) {
      const int64_t u = (s->len + j + 1) / m - 1;
      int64_t j2 = j + 1;
      while (j2 < items[i].n && (s->len + j2 + 1) / m - 1 == u) j2++;
      if (u >= 0 && s->chunks[u]) {
        char* base = s->chunks[u]->as<char>();
        cca_->add_span(AttnSpan{base, base + KR * C * es, C, KR, kNoMaskPos, 2 * KR * C});
        cca_->add_heads(
            item_rows(AttnTask{att + (row0[i] + j) * C, C, cq + (row0[i] + j) * C, C, j2 - j, s->len + j}, items[i].decode), H);
        cca_runs.push_back({row0[i] + j, j2 - j});
      }
      j = j2;
    }
  }
  if (!cca_runs.empty()) cca_->prepare(D);

  for (int64_t l = 0; l < L; l++) {
    const Layer& Ly = layers_[l];
    be.layernorm(h, C, x, C, nullptr, Ly.ln_1.w, Ly.ln_1.b, N, C, eps);
    be.gemm(qkv, 3 * C, h, C, *Ly.c_attn.W, Ly.c_attn.bias, N, Epilogue::Store);
    be.rotary(qkv, 3 * C, N, H, D, 2, P);
    be.move_rows(d_kv_moves, 2 * N, C, l, /*to_kv=*/true);
    self_->run(l);
    be.gemm(x, C, att, C, *Ly.attn_proj.W, Ly.attn_proj.bias, N, Epilogue::Add);

    if (l == cfg_.cca_start) {
      if (d_gather) be.move_rows(d_gather, (int64_t)gather.size(), C, 0, false);
      if (d_keep) be.move_rows(d_keep, (int64_t)keep.size(), C, 0, false);
      if (U > 0) {
        const Positions& EP = positions(epos);
        be.embed(e, *wte_, nullptr, be.upload(etok), EP, RE, C);
        be.layernorm(hn, C, hc, C, nullptr, enc_ln_h_.w, enc_ln_h_.b, U * m, C, eps);
        for (const EncLayer& El : enc_) {
          be.layernorm(eh, C, e, C, nullptr, El.ln_1.w, El.ln_1.b, RE, C, eps);
          be.gemm(eqkv, 3 * C, eh, C, *El.c_attn.W, El.c_attn.bias, RE, Epilogue::Store);
          be.rotary(eqkv, 3 * C, RE, H, D, 2, EP);
          be.to_kv(ekv, C, eqkv + C, 3 * C, RE, C);
          be.to_kv(ekv + RE * C * es, C, eqkv + 2 * C, 3 * C, RE, C);
          enc_self_->run(0);
          be.gemm(e, C, eatt, C, *El.attn_proj.W, El.attn_proj.bias, RE, Epilogue::Add);

          be.layernorm(eh, C, e, C, nullptr, El.ca.ln.w, El.ca.ln.b, RE, C, eps);
          be.gemm(eq, C, eh, C, *El.ca.q.W, El.ca.q.bias, RE, Epilogue::Store);
          be.gemm(hkv, 2 * C, hn, C, *El.ca.kv.W, El.ca.kv.bias, U * m, Epilogue::Store);
          be.to_kv(hkv_kv, C, hkv, 2 * C, U * m, C);
          be.to_kv(hkv_kv + U * m * C * es, C, hkv + C, 2 * C, U * m, C);
          enc_ca_->run(0);
          be.gemm(e, C, eatt, C, *El.ca.proj.W, El.ca.proj.bias, RE, Epilogue::Add);
          mlp(El.mlp, e, RE);
        }
        be.layernorm(eh, C, e, C, nullptr, enc_ln_f_.w, enc_ln_f_.b, RE, C, eps);  // E
        for (const Layer& Lc : layers_) {
          if (Lc.cca < 0) continue;
          be.gemm(ckv, 2 * C, eh, C, *Lc.cross.kv.W, Lc.cross.kv.bias, RE, Epilogue::Store);
          for (int64_t j = 0; j < U; j++) {
            char* dst = enc[j].kv->as<char>() + Lc.cca * 2 * KR * C * es;
            be.to_kv(dst, C, ckv + j * KR * 2 * C, 2 * C, KR, C);
            be.to_kv(dst + KR * C * es, C, ckv + j * KR * 2 * C + C, 2 * C, KR, C);
          }
        }
      }
    }
    if (Ly.cca >= 0 && !cca_runs.empty()) {
      be.layernorm(h, C, x, C, nullptr, Ly.cross.ln.w, Ly.cross.ln.b, N, C, eps);
      be.gemm(cq, C, h, C, *Ly.cross.q.W, Ly.cross.q.bias, N, Epilogue::Store);
      cca_->run(Ly.cca);
      for (const auto& [r0, n] : cca_runs)
        be.gemm(x + r0 * C, C, att + r0 * C, C, *Ly.cross.proj.W, Ly.cross.proj.bias, n, Epilogue::Add);
    }
    mlp(Ly.mlp, x, N);
  }
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<RetroState*>(items[i].state);
    s->len += items[i].n;
  }
  for (const Encode& en : enc) static_cast<RetroState*>(items[en.item].state)->pending.erase(en.chunk);

  std::vector<int32_t> rows;
  std::vector<float*> dest;
  wanted_logits(items, row0, cfg_.vocab_size, rows, dest);
  head_logits(x, rows, dest);
}

}  // namespace roost
