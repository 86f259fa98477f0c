#include "gpt2.h"

#include <algorithm>
#include <map>

#include "../common.h"
#include "bigbird_attention.h"

namespace roost {

namespace {

// KV cache of one sequence: a block table over the model's KV pool
// (cpp/kv_pool.h; per layer K and V rows, head h at columns h*D .. h*D+D-1).
class Gpt2State : public PagedState {
 public:
  using PagedState::PagedState;
  // BigBird still caches every position: global and random blocks reach anywhere.
  size_t bytes() const override { return kv.bytes() + bigbird.bytes(); }
  BigBirdBlocks bigbird;  // block lists of the blocks the last step touched (bigbird only)
};

}  // namespace

Gpt2Model::Gpt2Model(const ModelConfig& config, const Checkpoint& ckpt, std::shared_ptr<Backend> backend)
    : ModelBase(config, ckpt, std::move(backend)) {
  const int64_t C = cfg_.n_embd;
  if (cfg_.position_embedding == "learned") wpe_ = be().floats(tensor_to_f32(ckpt.get("wpe.weight", {cfg_.n_positions, C})));
  for (int64_t l = 0; l < cfg_.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    layers_.push_back({load_norm(be(), ckpt, p + "ln_1", C), load_dense(be(), ckpt, p + "attn.c_attn", C, 3 * C),
                       load_dense(be(), ckpt, p + "attn.c_proj", C, C), load_mlp(ckpt, p)});
  }
  adapters_ = be().supports(Op::ScaleColumns, cfg_);
  plans_.resize(cfg_.attention.kind == "bigbird" ? cfg_.n_layer : 1);
  for (auto& p : plans_) p = be().attention_plan();
  s_x_ = be().scratch();
  s_qkv_ = be().scratch();
  s_att_ = be().scratch();
  pool_ = make_kv_pool(be(), cfg_, C);
}

std::unique_ptr<SequenceState> Gpt2Model::new_state() const {
  return std::make_unique<Gpt2State>(pool_.get());
}

void Gpt2Model::forward(const std::vector<ForwardItem>& items, ThreadPool& pool) {
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, D = C / H, L = cfg_.n_layer, F = cfg_.n_inner, V = cfg_.vocab_size;
  Backend& be = this->be();
  be.begin_step(pool);

  const StepRows step = step_rows(items);  // a soft prompt's rows read token -1
  const std::vector<int64_t>& row0 = step.first_row;
  const int64_t N = step.n;
  reserve_kv(*pool_, items);
  float* x = s_x_->get<float>(N * C);
  float* qkv = s_qkv_->get<float>(N * 3 * C);
  float* att = s_att_->get<float>(N * C);
  float* h = s_h_->get<float>(N * C);

  std::vector<RowMove> prompt_moves;  // soft-prompt embeddings into their rows of x
  for (size_t i = 0; i < items.size(); i++) {
    if (!items[i].embeds) continue;
    const float* embeds = static_cast<const float*>(be.upload(items[i].embeds, items[i].n * C * sizeof(float)));
    for (int64_t j = 0; j < items[i].n; j++) prompt_moves.push_back(RowMove{embeds + j * C, x + (row0[i] + j) * C});
  }
  const Positions& P = positions(step.positions);
  const RowMove* d_kv_moves = be.upload(kv_moves(items, step, qkv, 3 * C, C, 2 * C));
  if (!prompt_moves.empty()) be.move_rows(be.upload(prompt_moves), (int64_t)prompt_moves.size(), C, 0, false);
  be.embed(x, *wte_, wpe_, be.upload(step.tokens), P, N, C);

  // (IA)^3 vectors of the step's adapters, uploaded once per adapter.
  std::map<const Adapter*, Ia3> ia3;
  for (const auto& it : items)
    if (it.adapter && it.adapter->has_ia3() && !ia3.count(it.adapter)) {
      std::vector<float> k, v, ff;
      for (int64_t l = 0; l < L; l++) {
        k.insert(k.end(), it.adapter->ia3_k[l].begin(), it.adapter->ia3_k[l].end());
        v.insert(v.end(), it.adapter->ia3_v[l].begin(), it.adapter->ia3_v[l].end());
        ff.insert(ff.end(), it.adapter->ia3_ff[l].begin(), it.adapter->ia3_ff[l].end());
      }
      ia3[it.adapter] = Ia3{be.upload(k), be.upload(v), be.upload(ff)};
    }
  if (!ia3.empty() && !adapters_)
    throw Error("E_ARGUMENT", "the " + be.name() + " backend cannot run (IA)^3 adapters (" +
                                  be.unsupported(Op::ScaleColumns, cfg_) + ")");

  // Attention tasks: one per (item, head) for dense (the same list serves every
  // layer through the cache's layer stride), per (item, query block, head) and
  // layer for BigBird (the blocks differ by layer and head).
  const bool bigbird = cfg_.attention.kind == "bigbird";
  const int64_t b = cfg_.attention.block_size;
  for (auto& p : plans_) p->clear();
  if (!bigbird) {
    AttentionPlan& plan = *plans_[0];
    for (size_t i = 0; i < items.size(); i++) {
      auto* s = static_cast<Gpt2State*>(items[i].state);
      const int64_t past = s->len, n = items[i].n;
      s->kv.add_spans(plan, 0, past + n, /*per_layer=*/true);
      plan.add_heads(item_rows(AttnTask{att + row0[i] * C, C, qkv + row0[i] * 3 * C, 3 * C, n, past}, items[i].decode), H);
    }
    plan.prepare(D);
  } else {
    for (size_t i = 0; i < items.size(); i++) {
      auto* s = static_cast<Gpt2State*>(items[i].state);
      bigbird_prepare(s->bigbird, cfg_.attention, L, H, s->len / b, (s->len + items[i].n - 1) / b + 1);
    }
    for (int64_t l = 0; l < L; l++) {
      AttentionPlan& plan = *plans_[l];
      for (size_t i = 0; i < items.size(); i++) {
        auto* s = static_cast<Gpt2State*>(items[i].state);
        const int64_t end = s->len + items[i].n;
        bigbird_each_task(s->bigbird, b, l, L, H, s->len, items[i].n, [&](const BigBirdTask& t) {
          for (int64_t o = 0; o < t.n_blocks; o++) {
            const int64_t j = t.blocks[o];
            s->kv.add_spans(plan, j * b, std::min((j + 1) * b, end), /*per_layer=*/false, l);
          }
          const int64_t r = row0[i] + t.r0;
          plan.add_task(
              item_rows(AttnTask{att + r * C, C, qkv + r * 3 * C, 3 * C, t.p1 - t.p0, t.p0, (int32_t)t.head}, items[i].decode));
        });
      }
      plan.prepare(D);
    }
  }

  for (int64_t l = 0; l < L; l++) {
    const Layer& Ly = layers_[l];
    be.layernorm(h, C, x, C, nullptr, Ly.ln_1.w, Ly.ln_1.b, N, C, cfg_.layer_norm_epsilon);
    be.gemm(qkv, 3 * C, h, C, *Ly.c_attn.W, Ly.c_attn.bias, N, Epilogue::Store);  // Q | K | V
    for (size_t i = 0; i < items.size(); i++)  // (IA)^3: rescale K and V before rotary and the cache
      if (auto a = ia3.find(items[i].adapter); a != ia3.end()) {
        float* rows = qkv + row0[i] * 3 * C;
        be.scale_columns(rows + C, 3 * C, items[i].n, C, a->second.k + l * C);
        be.scale_columns(rows + 2 * C, 3 * C, items[i].n, C, a->second.v + l * C);
      }
    if (cfg_.rotary_dim > 0) be.rotary(qkv, 3 * C, N, H, D, 2, P);  // Q and K
    be.move_rows(d_kv_moves, 2 * N, C, l, /*to_kv=*/true);          // K, V into the cache
    if (bigbird) plans_[l]->run(0);
    else plans_[0]->run(l);
    be.gemm(x, C, att, C, *Ly.attn_proj.W, Ly.attn_proj.bias, N, Epilogue::Add);
    mlp(Ly.mlp, x, N, [&](float* ff) {  // (IA)^3: rescale the MLP's inner activations
      for (size_t i = 0; i < items.size(); i++)
        if (auto a = ia3.find(items[i].adapter); a != ia3.end())
          be.scale_columns(ff + row0[i] * F, F, items[i].n, F, a->second.ff + l * F);
    });
  }
  for (const auto& it : items) {
    auto* s = static_cast<Gpt2State*>(it.state);
    s->len += it.n;
    if (bigbird) bigbird_keep_last(s->bigbird, L, H);
  }

  // Final LayerNorm and head only for the rows whose logits are wanted.
  std::vector<int32_t> rows;
  std::vector<float*> dest;
  wanted_logits(items, row0, V, rows, dest);
  head_logits(x, rows, dest, wanted_hidden(items, C));
}

}  // namespace roost
