// What every architecture's forward step shares, on any backend: weights in
// backend memory (Dense, Norm), per-sequence K/V rows (KvRows), the token
// embedding, the MLP block, ln_f + head and the step's one device -> host copy
// of the logits rows the engine asked for.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../backend.h"
#include "../kv_pool.h"
#include "../safetensors.h"
#include "model.h"
#include "weights.h"  // tensor_to_f32

namespace roost {

// Paged models: the pool of blocks of kKvBlockRows positions x layers (by
// default n_layer) x (K, V) x width (kv_type()), unbounded until the engine
// sets its budget.
std::unique_ptr<KvPool> make_kv_pool(Backend& be, const ModelConfig& cfg, int64_t width, int64_t layers = 0);
// Every paged item's blocks for its new rows, all or none: E_KV_FULL
// (nothing allocated) when the pool cannot hold them.
void reserve_kv(KvPool& pool, const std::vector<ForwardItem>& items);

// The state of a sequence whose K/V rows live in the model's pool: its block
// table and length (gpt2, opt / xglm, llama without a window).
class PagedState : public SequenceState {
 public:
  explicit PagedState(KvPool* pool) : kv(pool) {}
  int64_t length() const override { return len; }
  size_t bytes() const override { return kv.bytes(); }
  PagedKv* paged() override { return &kv; }
  void adopt_prefix(const std::vector<int32_t>& blocks, int64_t length, const int32_t*) override {
    kv.adopt(len / kv.pool().block_rows(), blocks);
    len = length;
  }
  PagedKv kv;
  int64_t len = 0;
};

// The rows of one step, its items flattened: item i's token j is row
// first_row[i] + j, at position length() + j, reading token tokens[row]
// (-1 where the item brings input embeddings instead).
struct StepRows {
  std::vector<int64_t> first_row;
  int64_t n = 0;
  std::vector<int32_t> tokens;
  std::vector<int64_t> positions;
};
StepRows step_rows(const std::vector<ForwardItem>& items);

// Where one position's K and V rows go: layer 0's rows and the stride to the next layer (elements).
struct KvSlot {
  void* k;
  void* v;
  int64_t layer_stride;
};
using KvSlotOf = std::function<KvSlot(const ForwardItem& item, int64_t position)>;
// The step's K/V moves for Backend::move_rows (to_kv): row r's K at
// qkv + r * ld + k_col and V at + v_col (moves 2r and 2r + 1) into the slot
// of its position, by default its paged state's block row.
std::vector<RowMove> kv_moves(const std::vector<ForwardItem>& items, const StepRows& rows, float* qkv, int64_t ld,
                              int64_t k_col, int64_t v_col, const KvSlotOf& slot_of = {});

// A Conv1D projection y = x @ W + b in backend memory.
struct Dense {
  const Matrix* W = nullptr;
  const float* bias = nullptr;  // [N]
};
// A LayerNorm's weight and bias (float32, backend memory).
struct Norm {
  const float* w = nullptr;
  const float* b = nullptr;
};
// prefix.weight [K, N] and prefix.bias [N].
Dense load_dense(Backend& be, const Checkpoint& ckpt, const std::string& prefix, int64_t K, int64_t N);
Norm load_norm(Backend& be, const Checkpoint& ckpt, const std::string& prefix, int64_t C);
// The output head [V, K]: the input embedding (named embed_name) when
// config.json ties them, else lm_head.weight, whose absence names the flag.
const Matrix* load_head(Backend& be, const Checkpoint& ckpt, const ModelConfig& cfg, const Matrix* embed,
                        const std::string& embed_name, int64_t K);

// K/V rows of `layers` layers of one sequence in backend memory (kv_type()
// elements): one block [layer][K|V][cap][C]. A cache grows geometrically
// (rows kept); a ring is reserved once (position p in slot p % cap).
class KvRows {
 public:
  KvRows(int64_t layers, int64_t C) : L_(layers), C_(C) {}
  // Makes room for `need` rows (never past `limit` unless need does; limit 0:
  // none), keeping rows 0 .. keep-1.
  void reserve(Backend& be, int64_t need, int64_t keep, int64_t limit);
  // A ring of exactly `cap` rows (contents undefined).
  void make_ring(Backend& be, int64_t cap);
  // A ring of `cap` (> cap()) rows keeping positions [a, b) of the current
  // ring, each moved to its slot p % cap.
  void grow_ring(Backend& be, int64_t cap, int64_t a, int64_t b);
  int64_t cap() const { return cap_; }
  size_t bytes() const { return buf_ ? buf_->bytes() : 0; }
  // Row `row` of layer `layer`; the layer stride (elements) moves to the next layer.
  void* k(int64_t layer, int64_t row) const { return at((2 * layer * cap_ + row) * C_); }
  void* v(int64_t layer, int64_t row) const { return at(((2 * layer + 1) * cap_ + row) * C_); }
  int64_t layer_stride() const { return 2 * cap_ * C_; }
  // Span of rows [row, row + n) of layer `layer` (layer_stride 0) or of the
  // layer attention runs (layer 0 + layer_stride).
  AttnSpan span(int64_t layer, int64_t row, int64_t n, int64_t pos0, bool per_layer) const {
    return AttnSpan{k(layer, row), v(layer, row), C_, n, pos0, per_layer ? layer_stride() : 0};
  }
  // Spans of ring positions [a, b) (b - a <= cap): two when the range wraps.
  void ring_spans(AttentionPlan& plan, int64_t a, int64_t b, bool unmasked, bool per_layer) const;

 private:
  void* at(int64_t elems) const { return static_cast<char*>(buf_->data()) + elems * es_; }
  int64_t L_, C_, cap_ = 0;
  size_t es_ = 4;
  std::unique_ptr<Buffer> buf_;
};

// The rows whose logits the items want (each item's last token, or all of
// them with all_logits): row first_row[i] + j for item i's token j, and the
// host row its V logits go to.
void wanted_logits(const std::vector<ForwardItem>& items, const std::vector<int64_t>& first_row, int64_t V,
                   std::vector<int32_t>& rows, std::vector<float*>& dest);
// The ForwardItem::hidden row (C floats) of each row wanted_logits listed, in
// the same order (null where the item wants none); empty when no item does.
std::vector<float*> wanted_hidden(const std::vector<ForwardItem>& items, int64_t C);

// What every architecture on one backend holds: its config, the backend
// (weights in its memory) and, for paged models, the KV pool.
class BackendModel : public Model {
 public:
  BackendModel(const ModelConfig& cfg, std::shared_ptr<Backend> be) : cfg_(cfg), be_(std::move(be)) {}
  const ModelConfig& config() const override { return cfg_; }
  int64_t max_context() const override { return cfg_.n_positions; }
  size_t weight_bytes() const override { return be_->weight_bytes(); }
  KvType kv_type() const override { return be_->kv_type(); }
  KvPool* kv_pool() override { return pool_.get(); }

 protected:
  Backend& be() const { return *be_; }
  ModelConfig cfg_;
  std::shared_ptr<Backend> be_;
  std::unique_ptr<KvPool> pool_;  // paged models only
};

// The GPT-2-named base of gpt2, perceiver_ar and block_recurrent: wte, the
// optional lm_head, ln_f, the gelu_new MLP.
class ModelBase : public BackendModel {
 public:
  ModelBase(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<Backend> be);

 protected:
  struct Mlp {
    Norm ln_2;
    Dense c_fc, proj;
  };
  Mlp load_mlp(const Checkpoint& ckpt, const std::string& p);
  // x [M, C] += proj(gelu_new(c_fc(ln_2(x)))); after_gelu (if set) sees the
  // [M, F] activations before proj ((IA)^3 rescales them there).
  void mlp(const Mlp& m, float* x, int64_t M, const std::function<void(float* ff)>& after_gelu = {});
  // Logits of x's rows `rows` (row stride C) into the host rows `dest` (V
  // floats each): gather + ln_f + head GEMM, one copy to the host. Ends the
  // step. hidden (empty, or one host row of C floats per row, null = not
  // wanted): the ln_f output of the same rows (ForwardItem::hidden).
  void head_logits(const float* x, const std::vector<int32_t>& rows, const std::vector<float*>& dest,
                   const std::vector<float*>& hidden = {});
  const Positions& positions(const std::vector<int64_t>& pos) {
    return *be_->positions(pos, inv_freq_);
  }

  const Matrix* wte_ = nullptr;   // [V, C] read by rows: embedding and the tied head
  const Matrix* head_ = nullptr;  // wte_ or lm_head
  Norm ln_f_;
  std::vector<double> inv_freq_;  // rotary_inv_freq(cfg_)
  std::unique_ptr<Scratch> s_h_, s_ff_, s_hin_, s_logits_;
};

// Positions per KV block for every paged attention kind: dense causal (gpt2,
// llama without a window) and BigBird (its spans are cut at block edges, so
// any BigBird block size works; 64 is also BigBird's usual block). 64 rows
// keep a partly filled last block small next to long prompts and make a
// block's K/V rows (64 x width) long enough that span overhead is noise.
constexpr int64_t kKvBlockRows = 64;

}  // namespace roost
