#include "opt.h"

#include <cmath>

#include "../common.h"
#include "linear.h"

namespace roost {

namespace {

Epilogue activation(const std::string& name) {
  if (name == "relu") return Epilogue::Relu;
  if (name == "gelu") return Epilogue::GeluErf;
  return Epilogue::Gelu;  // "gelu_new" (config.cpp admits no other)
}

// HF saves OPT as OPTForCausalLM ("model.decoder.*") or OPTModel ("decoder.*"),
// XGLM as XGLMForCausalLM ("model.*") or XGLMModel (no prefix): the prefix whose
// embed_tokens.weight the checkpoint holds, else the CausalLM one (its messages).
std::string tensor_prefix(const ModelConfig& cfg, const Checkpoint& ckpt) {
  const bool opt = cfg.model_type == "opt";
  const std::string causal = opt ? "model.decoder." : "model.", bare = opt ? "decoder." : "";
  if (!ckpt.find(causal + "embed_tokens.weight") && ckpt.find(bare + "embed_tokens.weight")) return bare;
  return causal;
}

}  // namespace

std::vector<float> sinusoid_table(int64_t rows, int64_t C, int64_t pad) {
  const int64_t half = C / 2;
  // torch: arange(half).float() * -(ln(10000) / (half - 1)) (the scalar rounded to float), exp in float32,
  // then arange(rows).float() * freq in float32, sin and cos of that float.
  const float step = (float)(-std::log(10000.0) / (double)(half - 1));
  std::vector<float> freq(half);
  for (int64_t i = 0; i < half; i++) freq[i] = std::exp((float)i * step);
  std::vector<float> t((size_t)(rows * C), 0.f);
  for (int64_t r = 0; r < rows; r++) {
    if (r == pad) continue;
    for (int64_t i = 0; i < half; i++) {
      const float a = (float)r * freq[i];
      t[r * C + i] = (float)std::sin((double)a);
      t[r * C + half + i] = (float)std::cos((double)a);
    }
  }
  return t;
}

OptModel::OptModel(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> backend)
    : BackendModel(config, std::move(backend)), act_(activation(config.activation_function)) {
  require_ops(*be_, cfg_, {Op::Embed, Op::LayerNorm, Op::Gemm, Op::Attention, Op::MoveRows});
  if (cfg_.embed_scale != 1.0) require_ops(*be_, cfg_, {Op::ScaleColumns});
  Backend& be = *be_;
  const int64_t C = cfg_.n_embd, V = cfg_.vocab_size, F = cfg_.n_inner, T = cfg_.n_positions + 2;
  const int64_t P = cfg_.word_embed_proj_dim ? cfg_.word_embed_proj_dim : C;
  const std::string pre = tensor_prefix(cfg_, ckpt);
  const bool bias = cfg_.linear_bias;

  embed_ = be.matrix(ckpt.get(pre + "embed_tokens.weight", {V, P}), P, V, /*src_is_nk=*/true);
  head_ = load_head(be, ckpt, cfg_, embed_, pre + "embed_tokens.weight", P);
  if (cfg_.word_embed_proj_dim) {
    project_in_ = be.matrix(ckpt.get(pre + "project_in.weight", {C, P}), P, C, true);
    project_out_ = be.matrix(ckpt.get(pre + "project_out.weight", {P, C}), C, P, true);
  }
  // Position p reads table row p + 2 (fairseq's offset): keep the table from row 2.
  std::vector<float> table = cfg_.position_embedding == "learned"
                                 ? tensor_to_f32(ckpt.get(pre + "embed_positions.weight", {T, C}))
                                 : sinusoid_table(T, C, cfg_.pad_token_id);
  positions_ = be.floats(std::vector<float>(table.begin() + 2 * C, table.end()));
  if (cfg_.embed_scale != 1.0) embed_scale_ = be.floats(std::vector<float>(P, (float)cfg_.embed_scale));
  if (cfg_.final_norm) {
    const std::string n = pre + (cfg_.model_type == "opt" ? "final_layer_norm" : "layer_norm");
    final_norm_ = load_norm(be, ckpt, n, C);
  }
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = pre + "layers." + std::to_string(l) + ".", a = p + "self_attn.";
    Layer Ly{};
    Ly.attn_norm = load_norm(be, ckpt, p + "self_attn_layer_norm", C);
    Ly.qkv = load_stacked_linear(be, ckpt, {{a + "q_proj.weight", C}, {a + "k_proj.weight", C}, {a + "v_proj.weight", C}}, C);
    Ly.out = be.matrix(ckpt.get(a + "out_proj.weight", {C, C}), C, C, true);
    Ly.mlp_norm = load_norm(be, ckpt, p + "final_layer_norm", C);
    Ly.fc1 = be.matrix(ckpt.get(p + "fc1.weight", {F, C}), C, F, true);
    Ly.fc2 = be.matrix(ckpt.get(p + "fc2.weight", {C, F}), F, C, true);
    if (bias) {
      Ly.qkv_bias = load_stacked_vector(be, ckpt, {{a + "q_proj.bias", C}, {a + "k_proj.bias", C}, {a + "v_proj.bias", C}});
      Ly.out_bias = load_vector(be, ckpt, a + "out_proj.bias", C);
      Ly.fc1_bias = load_vector(be, ckpt, p + "fc1.bias", F);
      Ly.fc2_bias = load_vector(be, ckpt, p + "fc2.bias", C);
    }
    layers_.push_back(Ly);
  }
  plan_ = be.attention_plan();
  for (auto* s : {&s_x_, &s_e_, &s_h_, &s_qkv_, &s_att_, &s_ff_, &s_out_, &s_logits_}) *s = be.scratch();
  pool_ = make_kv_pool(be, cfg_, C);
}

std::unique_ptr<SequenceState> OptModel::new_state() const {
  return std::make_unique<PagedState>(pool_.get());
}

void OptModel::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, L = cfg_.n_layer, F = cfg_.n_inner, V = cfg_.vocab_size;
  const int64_t P = cfg_.word_embed_proj_dim ? cfg_.word_embed_proj_dim : C;
  const float eps = cfg_.layer_norm_epsilon;
  Backend& be = *be_;
  be.begin_step(pool);

  const StepRows step = step_rows(items);
  const std::vector<int64_t>& row0 = step.first_row;
  const int64_t N = step.n;
  reserve_kv(*pool_, items);
  float* x = s_x_->get<float>(N * C);
  float* h = s_h_->get<float>(N * C);
  float* qkv = s_qkv_->get<float>(N * 3 * C);
  float* att = s_att_->get<float>(N * C);
  float* ff = s_ff_->get<float>(N * F);
  const Positions& Pos = *be.positions(step.positions, {});
  const RowMove* d_kv_moves = be.upload(kv_moves(items, step, qkv, 3 * C, C, 2 * C));

  // x = project_in(embed_tokens[tok] * scale) + positions[pos]; the positions go
  // in with the lookup unless a scale or projection comes between (then a second
  // embed() over rows of token -1 adds them to what is there).
  const bool one_pass = !project_in_ && !embed_scale_;
  float* e = project_in_ ? s_e_->get<float>(N * P) : x;
  be.embed(e, *embed_, one_pass ? positions_ : nullptr, be.upload(step.tokens), Pos, N, P);
  if (embed_scale_) be.scale_columns(e, P, N, P, embed_scale_);
  if (project_in_) be.gemm(x, C, e, P, *project_in_, nullptr, N, Epilogue::Store);
  if (!one_pass) be.embed(x, *embed_, positions_, be.upload(std::vector<int32_t>(N, -1)), Pos, N, C);

  AttentionPlan& plan = *plan_;
  plan.clear();
  for (size_t i = 0; i < items.size(); i++) {
    auto* s = static_cast<PagedState*>(items[i].state);
    const int64_t past = s->len, n = items[i].n;
    s->kv.add_spans(plan, 0, past + n, /*per_layer=*/true);
    plan.add_heads(item_rows(AttnTask{att + row0[i] * C, C, qkv + row0[i] * 3 * C, 3 * C, n, past}, items[i].decode), H);
  }
  plan.prepare(D);

  // Pre-LN: x += attn(LN(x)); x += mlp(LN(x)). Post-LN (opt-350m): x = LN(x + attn(x)); x = LN(x + mlp(x)).
  const bool pre = cfg_.pre_norm;
  for (int64_t l = 0; l < L; l++) {
    const Layer& Ly = layers_[l];
    if (pre) be.layernorm(h, C, x, C, nullptr, Ly.attn_norm.w, Ly.attn_norm.b, N, C, eps);
    be.gemm(qkv, 3 * C, pre ? h : x, C, *Ly.qkv, Ly.qkv_bias, N, Epilogue::Store);  // Q | K | V
    be.move_rows(d_kv_moves, 2 * N, C, l, /*to_kv=*/true);
    plan.run(l);
    be.gemm(x, C, att, C, *Ly.out, Ly.out_bias, N, Epilogue::Add);
    if (pre) be.layernorm(h, C, x, C, nullptr, Ly.mlp_norm.w, Ly.mlp_norm.b, N, C, eps);
    else be.layernorm(x, C, x, C, nullptr, Ly.attn_norm.w, Ly.attn_norm.b, N, C, eps);
    be.gemm(ff, F, pre ? h : x, C, *Ly.fc1, Ly.fc1_bias, N, act_);
    be.gemm(x, C, ff, F, *Ly.fc2, Ly.fc2_bias, N, Epilogue::Add);
    if (!pre) be.layernorm(x, C, x, C, nullptr, Ly.mlp_norm.w, Ly.mlp_norm.b, N, C, eps);
  }
  for (const auto& it : items) static_cast<PagedState*>(it.state)->len += it.n;

  // The final LayerNorm (or a plain gather), project_out and the head only for the rows whose logits are wanted.
  std::vector<int32_t> rows;
  std::vector<float*> dest;
  wanted_logits(items, row0, V, rows, dest);
  const int64_t R = (int64_t)rows.size();
  if (R == 0) return be.finish();
  float* out = s_out_->get<float>(R * C);
  if (final_norm_.w) {
    be.layernorm(out, C, x, C, be.upload(rows), final_norm_.w, final_norm_.b, R, C, eps);
  } else {
    std::vector<RowMove> gather(R);
    for (int64_t r = 0; r < R; r++) gather[r] = RowMove{x + rows[r] * C, out + r * C};
    be.move_rows(be.upload(gather), R, C, 0, /*to_kv=*/false);
  }
  if (project_out_) {
    float* proj = s_e_->get<float>(R * P);
    be.gemm(proj, P, out, C, *project_out_, nullptr, R, Epilogue::Store);
    out = proj;
  }
  float* logits = s_logits_->get<float>(R * V);
  be.gemm(logits, V, out, P, *head_, nullptr, R, Epilogue::Store);
  be.read_rows(dest, logits, V);
}

}  // namespace roost
