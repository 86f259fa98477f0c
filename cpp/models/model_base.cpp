#include "model_base.h"

#include <algorithm>

#include "../common.h"
#include "rotary.h"

namespace roost {

Dense load_dense(Backend& be, const Checkpoint& ckpt, const std::string& prefix, int64_t K, int64_t N) {
  Dense d;
  d.W = be.matrix(ckpt.get(prefix + ".weight", {K, N}), K, N, /*src_is_nk=*/false);
  d.bias = be.floats(tensor_to_f32(ckpt.get(prefix + ".bias", {N})));
  return d;
}

const Matrix* load_head(Backend& be, const Checkpoint& ckpt, const ModelConfig& cfg, const Matrix* embed,
                        const std::string& embed_name, int64_t K) {
  if (cfg.tie_word_embeddings) return embed;
  if (!ckpt.find("lm_head.weight"))
    throw Error("E_CHECKPOINT", ckpt.source() + ": lm_head.weight is missing (config.json has tie_word_embeddings "
                                                "false; set it true only if the head is " + embed_name + ")");
  return be.matrix(ckpt.get("lm_head.weight", {cfg.vocab_size, K}), K, cfg.vocab_size, /*src_is_nk=*/true);
}

Norm load_norm(Backend& be, const Checkpoint& ckpt, const std::string& prefix, int64_t C) {
  return {be.floats(tensor_to_f32(ckpt.get(prefix + ".weight", {C}))),
          be.floats(tensor_to_f32(ckpt.get(prefix + ".bias", {C})))};
}

void KvRows::reserve(Backend& be, int64_t need, int64_t keep, int64_t limit) {
  if (need <= cap_) return;
  int64_t cap = std::max<int64_t>({need, cap_ * 2, 64});
  cap = (cap + 63) / 64 * 64;
  if (limit > 0) cap = std::min(cap, std::max(limit, need));
  es_ = be.kv_size();
  std::unique_ptr<Buffer> bigger = be.alloc((size_t)L_ * 2 * cap * C_ * es_);
  if (keep > 0)  // every (layer, K|V) block: rows 0 .. keep-1
    be.copy_2d(bigger->data(), (size_t)cap * C_ * es_, buf_->data(), (size_t)cap_ * C_ * es_, (size_t)keep * C_ * es_,
               (size_t)(2 * L_));
  buf_ = std::move(bigger);
  cap_ = cap;
}

void KvRows::make_ring(Backend& be, int64_t cap) {
  es_ = be.kv_size();
  buf_ = be.alloc((size_t)L_ * 2 * cap * C_ * es_);
  cap_ = cap;
}

void KvRows::grow_ring(Backend& be, int64_t cap, int64_t a, int64_t b) {
  es_ = be.kv_size();
  std::unique_ptr<Buffer> bigger = be.alloc((size_t)L_ * 2 * cap * C_ * es_);
  const size_t row = (size_t)C_ * es_;
  for (int64_t p = a; p < b;) {  // runs that wrap in neither ring; each copied for every (layer, K|V) block
    const int64_t from = p % cap_, to = p % cap, n = std::min({b - p, cap_ - from, cap - to});
    be.copy_2d(bigger->as<char>() + to * row, cap * row, buf_->as<char>() + from * row, cap_ * row, n * row,
               (size_t)(2 * L_));
    p += n;
  }
  buf_ = std::move(bigger);
  cap_ = cap;
}

void KvRows::ring_spans(AttentionPlan& plan, int64_t a, int64_t b, bool unmasked, bool per_layer) const {
  while (a < b) {
    const int64_t slot = a % cap_, n = std::min(b - a, cap_ - slot);  // up to the ring's end
    plan.add_span(span(0, slot, n, unmasked ? kNoMaskPos : a, per_layer));
    a += n;
  }
}

ModelBase::ModelBase(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<Backend> be)
    : BackendModel(cfg, std::move(be)), inv_freq_(rotary_inv_freq(cfg)) {
  require_ops(*be_, cfg_, {Op::Embed, Op::LayerNorm, Op::Gemm, Op::Attention, Op::MoveRows});
  if (cfg_.rotary_dim > 0) require_ops(*be_, cfg_, {Op::Rotary});
  const int64_t V = cfg_.vocab_size, C = cfg_.n_embd;
  wte_ = be_->matrix(ckpt.get("wte.weight", {V, C}), C, V, /*src_is_nk=*/true);
  head_ = wte_;
  if (ckpt.find("lm_head.weight")) head_ = be_->matrix(ckpt.get("lm_head.weight", {V, C}), C, V, true);
  ln_f_ = load_norm(*be_, ckpt, "ln_f", C);
  s_h_ = be_->scratch();
  s_ff_ = be_->scratch();
  s_hin_ = be_->scratch();
  s_logits_ = be_->scratch();
}

void SequenceState::adopt_prefix(const std::vector<int32_t>&, int64_t, const int32_t*) {
  throw Error("E_INTERNAL", "this model's sequence state has no KV blocks to adopt");
}

void SequenceState::set_neighbours(int64_t, std::vector<int32_t>) {
  throw Error("E_ARGUMENT", "neighbours are only taken by model_type retro");
}

std::unique_ptr<KvPool> make_kv_pool(Backend& be, const ModelConfig& cfg, int64_t width, int64_t layers) {
  return std::make_unique<KvPool>(be, layers > 0 ? layers : cfg.n_layer, width, kKvBlockRows, int64_t(1) << 30);
}

StepRows step_rows(const std::vector<ForwardItem>& items) {
  StepRows s;
  s.first_row.resize(items.size());
  for (size_t i = 0; i < items.size(); i++) {
    s.first_row[i] = s.n;
    s.n += items[i].n;
  }
  s.tokens.resize(s.n);
  s.positions.resize(s.n);
  for (size_t i = 0; i < items.size(); i++)
    for (int64_t j = 0; j < items[i].n; j++) {
      const int64_t r = s.first_row[i] + j;
      s.tokens[r] = items[i].embeds ? -1 : items[i].tokens[j];
      s.positions[r] = items[i].state->length() + j;
    }
  return s;
}

std::vector<RowMove> kv_moves(const std::vector<ForwardItem>& items, const StepRows& rows, float* qkv, int64_t ld,
                              int64_t k_col, int64_t v_col, const KvSlotOf& slot_of) {
  std::vector<RowMove> moves(2 * rows.n);
  for (size_t i = 0; i < items.size(); i++) {
    PagedKv* kv = slot_of ? nullptr : items[i].state->paged();
    for (int64_t j = 0; j < items[i].n; j++) {
      const int64_t r = rows.first_row[i] + j, p = rows.positions[r];
      const KvSlot s = slot_of ? slot_of(items[i], p) : KvSlot{kv->k(p), kv->v(p), kv->layer_stride(p)};
      moves[2 * r] = RowMove{qkv + r * ld + k_col, s.k, s.layer_stride};
      moves[2 * r + 1] = RowMove{qkv + r * ld + v_col, s.v, s.layer_stride};
    }
  }
  return moves;
}

void reserve_kv(KvPool& pool, const std::vector<ForwardItem>& items) {
  int64_t need = 0;
  for (const auto& it : items)
    if (PagedKv* kv = it.state->paged()) need += kv->blocks_needed(it.state->length() + it.n);
  if (need == 0) return;
  if (need > pool.available())
    throw Error("E_KV_FULL", "the KV memory is full: this step needs " + std::to_string(need) + " more blocks of " +
                                 std::to_string(kKvBlockRows) + " positions and " + std::to_string(pool.available()) +
                                 " are available (raise --kv-memory)");
  for (const auto& it : items)
    if (PagedKv* kv = it.state->paged()) kv->reserve(it.state->length() + it.n);
}

ModelBase::Mlp ModelBase::load_mlp(const Checkpoint& ckpt, const std::string& p) {
  const int64_t C = cfg_.n_embd, F = cfg_.n_inner;
  return {load_norm(*be_, ckpt, p + "ln_2", C), load_dense(*be_, ckpt, p + "mlp.c_fc", C, F),
          load_dense(*be_, ckpt, p + "mlp.c_proj", F, C)};
}

void ModelBase::mlp(const Mlp& m, float* x, int64_t M, const std::function<void(float*)>& after_gelu) {
  const int64_t C = cfg_.n_embd, F = cfg_.n_inner;
  float* h = s_h_->get<float>(M * C);
  float* ff = s_ff_->get<float>(M * F);
  be_->layernorm(h, C, x, C, nullptr, m.ln_2.w, m.ln_2.b, M, C, cfg_.layer_norm_epsilon);
  be_->gemm(ff, F, h, C, *m.c_fc.W, m.c_fc.bias, M, Epilogue::Gelu);
  if (after_gelu) after_gelu(ff);
  be_->gemm(x, C, ff, F, *m.proj.W, m.proj.bias, M, Epilogue::Add);
}

void wanted_logits(const std::vector<ForwardItem>& items, const std::vector<int64_t>& first_row, int64_t V,
                   std::vector<int32_t>& rows, std::vector<float*>& dest) {
  for (size_t i = 0; i < items.size(); i++) {
    const int64_t first = items[i].all_logits ? 0 : items[i].n - 1;
    for (int64_t j = first; j < items[i].n; j++) {
      rows.push_back((int32_t)(first_row[i] + j));
      dest.push_back(items[i].logits + (j - first) * V);
    }
  }
}

std::vector<float*> wanted_hidden(const std::vector<ForwardItem>& items, int64_t C) {
  std::vector<float*> hidden;
  bool any = false;
  for (const auto& it : items) any = any || it.hidden;
  if (!any) return hidden;
  for (const auto& it : items) {
    const int64_t rows = it.all_logits ? it.n : 1;
    for (int64_t j = 0; j < rows; j++) hidden.push_back(it.hidden ? it.hidden + j * C : nullptr);
  }
  return hidden;
}

void ModelBase::head_logits(const float* x, const std::vector<int32_t>& rows, const std::vector<float*>& dest,
                            const std::vector<float*>& hidden) {
  const int64_t R = (int64_t)rows.size(), C = cfg_.n_embd, V = cfg_.vocab_size;
  if (R == 0) return be_->finish();  // the step's work is done before forward returns, logits or not
  float* hin = s_hin_->get<float>(R * C);
  float* logits = s_logits_->get<float>(R * V);
  be_->layernorm(hin, C, x, C, be_->upload(rows), ln_f_.w, ln_f_.b, R, C, cfg_.layer_norm_epsilon);
  be_->gemm(logits, V, hin, C, *head_, nullptr, R, Epilogue::Store);
  if (!hidden.empty()) {  // rows nobody wants land in one throwaway row
    std::vector<float> unwanted(C);
    std::vector<float*> to(hidden);
    for (float*& p : to)
      if (!p) p = unwanted.data();
    be_->read_rows(to, hin, C);
  }
  be_->read_rows(dest, logits, V);
}

}  // namespace roost
