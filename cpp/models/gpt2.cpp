#include "gpt2.h"

#include <algorithm>
#include <cstring>

#include "../common.h"
#include "bigbird_attention.h"

namespace roost {

namespace {

// KV cache of one sequence: per layer, K and V rows [cap, C] (position-major,
// head h at columns h*D .. h*D+D-1), grown geometrically.
class Gpt2State : public SequenceState {
 public:
  Gpt2State(int64_t n_layer, int64_t C) : C_(C), k_(n_layer), v_(n_layer) {}
  int64_t length() const override { return len_; }
  // BigBird still caches every position: global and random blocks reach anywhere.
  size_t bytes() const override { return (size_t)cap_ * C_ * sizeof(float) * 2 * k_.size() + bigbird.bytes(); }

  void reserve(int64_t need, int64_t limit) {
    if (need <= cap_) return;
    int64_t cap = std::max<int64_t>({need, cap_ * 2, 64});
    cap = (cap + 63) / 64 * 64;
    if (limit > 0) cap = std::min(cap, std::max(limit, need));
    for (size_t l = 0; l < k_.size(); l++) {
      grow(k_[l], cap);
      grow(v_[l], cap);
    }
    cap_ = cap;
  }
  float* k(size_t layer) { return k_[layer].as<float>(); }
  float* v(size_t layer) { return v_[layer].as<float>(); }
  int64_t len_ = 0;
  BigBirdBlocks bigbird;  // block lists of the blocks the last step touched (bigbird only)

 private:
  void grow(AlignedBuffer& buf, int64_t cap) {
    AlignedBuffer bigger((size_t)cap * C_ * sizeof(float));
    if (len_ > 0) std::memcpy(bigger.data(), buf.data(), (size_t)len_ * C_ * sizeof(float));
    buf = std::move(bigger);
  }
  int64_t C_;
  int64_t cap_ = 0;
  std::vector<AlignedBuffer> k_, v_;
};

// x[r, c] *= scale[c] for rows r < M of a matrix with row stride ld.
void scale_columns(float* x, int64_t ld, const float* scale, int64_t M, int64_t cols) {
  for (int64_t r = 0; r < M; r++) {
    float* row = x + r * ld;
    for (int64_t c = 0; c < cols; c++) row[c] *= scale[c];
  }
}

}  // namespace

Gpt2Model::Gpt2Model(const ModelConfig& config, const Checkpoint& ckpt) : cfg_(config) {
  const int64_t C = cfg_.n_embd, V = cfg_.vocab_size, F = cfg_.n_inner;

  const TensorView& wte = ckpt.get("wte.weight", {V, C});
  wte_ = pack_matrix(wte.data, wte.dtype, C, V, /*src_is_nk=*/true);
  weight_bytes_ += wte_.bytes();
  head_ = &wte_;
  if (const TensorView* lm = ckpt.find("lm_head.weight")) {
    ckpt.get("lm_head.weight", {V, C});  // shape check with a message naming it
    lm_head_ = pack_matrix(lm->data, lm->dtype, C, V, true);
    weight_bytes_ += lm_head_.bytes();
    head_ = &lm_head_;
  }
  if (cfg_.position_embedding == "learned") {
    wpe_ = tensor_to_f32(ckpt.get("wpe.weight", {cfg_.n_positions, C}));
    weight_bytes_ += wpe_.size() * sizeof(float);
  } else {
    rotary_ = Rotary(cfg_.rotary_dim, cfg_.rotary_base);
  }
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    Layer L;
    L.ln_1 = load_layernorm(ckpt, p + "ln_1", C);
    L.c_attn = load_linear(ckpt, p + "attn.c_attn", C, 3 * C);
    L.attn_proj = load_linear(ckpt, p + "attn.c_proj", C, C);
    L.ln_2 = load_layernorm(ckpt, p + "ln_2", C);
    L.c_fc = load_linear(ckpt, p + "mlp.c_fc", C, F);
    L.mlp_proj = load_linear(ckpt, p + "mlp.c_proj", F, C);
    for (const Linear* lin : {&L.c_attn, &L.attn_proj, &L.c_fc, &L.mlp_proj})
      weight_bytes_ += lin->W.bytes() + lin->bias.size() * sizeof(float);
    layers_.push_back(std::move(L));
  }
  ln_f_ = load_layernorm(ckpt, "ln_f", C);
}

std::unique_ptr<SequenceState> Gpt2Model::new_state() const {
  return std::make_unique<Gpt2State>(cfg_.n_layer, cfg_.n_embd);
}

void Gpt2Model::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, F = cfg_.n_inner, V = cfg_.vocab_size;
  std::vector<int64_t> row0(items.size());  // first row of each item in the flattened batch
  int64_t N = 0;
  for (size_t i = 0; i < items.size(); i++) {
    row0[i] = N;
    N += items[i].n;
    static_cast<Gpt2State*>(items[i].state)->reserve(items[i].state->length() + items[i].n, max_context());
  }
  x_.resize(N * C);
  h_.resize(N * C);
  qkv_.resize(N * 3 * C);
  att_.resize(N * C);
  tmp_.resize(N * C);
  ff_.resize(N * F);
  pos_.resize(N);

  // Embeddings: x = wte[tok] (+ wpe[pos]).  x: [N, C]
  for (size_t i = 0; i < items.size(); i++) {
    const int64_t past = items[i].state->length();
    for (int64_t j = 0; j < items[i].n; j++) {
      const int64_t r = row0[i] + j;
      pos_[r] = past + j;
      float* xr = x_.data() + r * C;
      if (items[i].embeds) std::memcpy(xr, items[i].embeds + j * C, C * sizeof(float));
      else matrix_column(xr, wte_, items[i].tokens[j]);
      if (!wpe_.empty()) {
        const float* pe = wpe_.data() + pos_[r] * C;
        for (int64_t c = 0; c < C; c++) xr[c] += pe[c];
      }
    }
  }
  if (rotary_.dim() > 0) rotary_.tables(cos_, sin_, pos_.data(), N);

  const bool bigbird = cfg_.attention.kind == "bigbird";
  const int64_t bsz = cfg_.attention.block_size;
  if (bigbird)
    for (const auto& it : items) {
      auto* st = static_cast<Gpt2State*>(it.state);
      const int64_t past = st->length();
      bigbird_prepare(st->bigbird, cfg_.attention, cfg_.n_layer, H, past / bsz, (past + it.n - 1) / bsz + 1);
    }

  std::vector<AttentionSeq> seqs(items.size());
  for (size_t l = 0; l < layers_.size(); l++) {
    const Layer& L = layers_[l];
    layernorm(h_.data(), x_.data(), L.ln_1.weight.data(), L.ln_1.bias.data(), N, C, cfg_.layer_norm_epsilon);
    L.c_attn.apply(qkv_.data(), h_.data(), N, pool);  // qkv: [N, 3C] = Q | K | V
    for (size_t i = 0; i < items.size(); i++)  // (IA)^3: rescale K and V before rotary and the cache
      if (const Adapter* a = items[i].adapter; a && a->has_ia3()) {
        float* rows = qkv_.data() + row0[i] * 3 * C;
        scale_columns(rows + C, 3 * C, a->ia3_k[l].data(), items[i].n, C);
        scale_columns(rows + 2 * C, 3 * C, a->ia3_v[l].data(), items[i].n, C);
      }
    if (rotary_.dim() > 0) {
      rotary_.apply(qkv_.data(), 3 * C, N, H, D, cos_.data(), sin_.data());      // Q
      rotary_.apply(qkv_.data() + C, 3 * C, N, H, D, cos_.data(), sin_.data());  // K
    }
    for (size_t i = 0; i < items.size(); i++) {
      auto* st = static_cast<Gpt2State*>(items[i].state);
      const int64_t past = st->length(), n = items[i].n;
      float* kc = st->k(l);
      float* vc = st->v(l);
      for (int64_t j = 0; j < n; j++) {  // append K, V rows at positions past + j
        const float* src = qkv_.data() + (row0[i] + j) * 3 * C;
        std::memcpy(kc + (past + j) * C, src + C, C * sizeof(float));
        std::memcpy(vc + (past + j) * C, src + 2 * C, C * sizeof(float));
      }
      seqs[i] = AttentionSeq{att_.data() + row0[i] * C, C, qkv_.data() + row0[i] * 3 * C, 3 * C, kc, vc, C, past, n};
    }
    if (bigbird) {
      span_batch_.clear();
      for (size_t i = 0; i < items.size(); i++)
        bigbird_tasks(span_batch_, static_cast<Gpt2State*>(items[i].state)->bigbird, seqs[i], bsz, (int64_t)l, cfg_.n_layer, H);
      attention_spans(span_batch_.tasks(), D, pool);
    } else {
      attention_causal(seqs, H, D, pool);
    }
    L.attn_proj.apply(tmp_.data(), att_.data(), N, pool);
    add_inplace(x_.data(), tmp_.data(), N * C);

    layernorm(h_.data(), x_.data(), L.ln_2.weight.data(), L.ln_2.bias.data(), N, C, cfg_.layer_norm_epsilon);
    L.c_fc.apply(ff_.data(), h_.data(), N, pool);  // [N, F]
    gelu(ff_.data(), ff_.data(), N * F);
    for (size_t i = 0; i < items.size(); i++)  // (IA)^3: rescale the MLP's inner activations
      if (const Adapter* a = items[i].adapter; a && a->has_ia3())
        scale_columns(ff_.data() + row0[i] * F, F, a->ia3_ff[l].data(), items[i].n, F);
    L.mlp_proj.apply(tmp_.data(), ff_.data(), N, pool);
    add_inplace(x_.data(), tmp_.data(), N * C);
  }
  for (const auto& it : items) {
    auto* st = static_cast<Gpt2State*>(it.state);
    st->len_ += it.n;
    if (bigbird) bigbird_keep_last(st->bigbird, cfg_.n_layer, H);
  }

  // Final LayerNorm and head only for the rows whose logits are wanted.
  int64_t R = 0;
  for (const auto& it : items) R += it.all_logits ? it.n : 1;
  head_in_.resize(R * C);
  int64_t r = 0;
  for (size_t i = 0; i < items.size(); i++) {
    const int64_t first = items[i].all_logits ? 0 : items[i].n - 1;
    for (int64_t j = first; j < items[i].n; j++, r++)
      std::memcpy(head_in_.data() + r * C, x_.data() + (row0[i] + j) * C, C * sizeof(float));
  }
  layernorm(head_in_.data(), head_in_.data(), ln_f_.weight.data(), ln_f_.bias.data(), R, C, cfg_.layer_norm_epsilon);
  logits_.resize(R * V);
  matmul(logits_.data(), head_in_.data(), *head_, nullptr, R, pool);  // [R, V]
  r = 0;
  for (const auto& it : items) {
    const int64_t rows = it.all_logits ? it.n : 1;
    std::memcpy(it.logits, logits_.data() + r * V, rows * V * sizeof(float));
    r += rows;
  }
}

}  // namespace roost
