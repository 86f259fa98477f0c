// The CPU backend: cpp/backend.h's ops over the kernels of cpp/ops (one call
// each, run at once on the step's thread pool). Memory is host memory; K/V
// rows are float32 or IEEE half (kv_type()). It runs every op for every model, Q8_0 weights included.
#include <algorithm>
#include <cstring>
#include <deque>
#include <map>

#include "backend.h"
#include "common.h"
#include "models/rotary.h"
#include "ops/attention_spans.h"
#include "ops/t5_ops.h"
#include "ops/ops.h"

namespace roost {

namespace {

class CpuBuffer : public Buffer {
 public:
  explicit CpuBuffer(size_t bytes) : buf_(bytes) {}
  void* data() const override { return const_cast<void*>(buf_.data()); }
  size_t bytes() const override { return buf_.bytes(); }

 private:
  AlignedBuffer buf_;
};

class CpuScratch : public Scratch {
 public:
  using Scratch::get;
  void* get(size_t bytes) override {
    if (bytes > buf_.bytes()) buf_.resize(bytes);
    return buf_.data();
  }

 private:
  AlignedBuffer buf_;
};

class CpuMatrix : public Matrix {
 public:
  explicit CpuMatrix(PackedMatrix p) : packed(std::move(p)) { K = packed.K, N = packed.N; }
  PackedMatrix packed;
};

const PackedMatrix& packed(const Matrix& m) { return static_cast<const CpuMatrix&>(m).packed; }

// Positions and their cos/sin tables [count, rotary_dim / 2], computed once per step.
class CpuPositions : public Positions {
 public:
  std::vector<int64_t> pos;
  const Rotary* rotary = nullptr;
  std::vector<float> cos, sin;
};

// Host memory that lives until the next begin_step(): chunks kept across steps.
class UploadArena {
 public:
  void reset() { chunk_ = 0, used_ = 0; }
  void* push(const void* data, size_t bytes) {
    const size_t need = (bytes + 63) / 64 * 64;
    while (chunk_ < chunks_.size() && used_ + need > chunks_[chunk_].bytes()) chunk_++, used_ = 0;
    if (chunk_ == chunks_.size()) chunks_.emplace_back(std::max<size_t>(need, 1 << 16));
    void* p = chunks_[chunk_].as<char>() + used_;
    if (bytes) std::memcpy(p, data, bytes);
    used_ += need;
    return p;
  }

 private:
  std::deque<AlignedBuffer> chunks_;
  size_t chunk_ = 0, used_ = 0;
};

// Span attention on the CPU. A task group over all heads whose one span is the
// causal prefix of its queries (keys pos0 .. qpos0 + nq - 1, the dense gpt2
// cache, perceiver_ar's layer 0 and window) runs through attention_causal; the
// rest through attention_spans.
class CpuAttention : public AttentionPlan {
 public:
  CpuAttention(ThreadPool** pool, KvType kv) : pool_(pool), kv_(kv) {}

  void prepare(int64_t D) override {
    D_ = D;
    causal_.clear();
    span_tasks_.clear();
    biased_tasks_.clear();
    for (size_t t = 0; t < tasks_.size();) {
      const AttnTask& a = tasks_[t];
      if (a.bias) {  // T5's relative position bias: its own kernel (cpp/ops/t5_ops.h)
        biased_tasks_.push_back(t++);
        continue;
      }
      size_t e = t + 1;  // the group: heads 0, 1, .. of the same queries and spans
      while (e < tasks_.size() && tasks_[e].head == (int32_t)(e - t) && tasks_[e].q == a.q && tasks_[e].out == a.out &&
             tasks_[e].span0 == a.span0 && tasks_[e].n_spans == a.n_spans && tasks_[e].nq == a.nq &&
             tasks_[e].qpos0 == a.qpos0 && tasks_[e].pass_cut == a.pass_cut)
        e++;
      const AttnSpan* s = a.n_spans == 1 ? &spans_[a.span0] : nullptr;
      if (a.head == 0 && s && s->pos0 != kNoMaskPos && s->pos0 <= a.qpos0 && s->pos0 + s->n == a.qpos0 + a.nq) {
        causal_.push_back({t, (int64_t)(e - t)});
      } else {
        for (size_t i = t; i < e; i++) span_tasks_.push_back(i);
      }
      t = e;
    }
  }

  void run(int64_t layer) override {
    ThreadPool& pool = **pool_;
    auto at = [&](const void* p, int64_t layer_stride) { return kv_advance(p, layer * layer_stride, kv_); };
    for (size_t g = 0; g < causal_.size();) {  // one attention_causal call per run of groups with one head count
      const int64_t H = causal_[g].second;
      seqs_.clear();
      for (; g < causal_.size() && causal_[g].second == H; g++) {
        const AttnTask& a = tasks_[causal_[g].first];
        const AttnSpan& s = spans_[a.span0];
        seqs_.push_back(AttentionSeq{a.out, a.out_stride, a.q, a.q_stride, at(s.k, s.layer_stride),
                                     at(s.v, s.layer_stride), s.stride, a.qpos0 - s.pos0, a.nq, a.pass_cut, kv_});
      }
      attention_causal(seqs_, H, D_, pool);
    }
    if (!span_tasks_.empty() || !biased_tasks_.empty()) {
      keys_.resize(spans_.size());
      for (size_t i = 0; i < spans_.size(); i++) {
        const AttnSpan& s = spans_[i];
        keys_[i] = KeySpan{at(s.k, s.layer_stride), at(s.v, s.layer_stride), s.stride, s.n, s.pos0};
      }
      run_tasks_.clear();
      for (size_t i : span_tasks_) {
        const AttnTask& a = tasks_[i];
        run_tasks_.push_back(SpanAttentionTask{a.out, a.out_stride, a.q, a.q_stride, a.nq, a.qpos0, a.head,
                                               keys_.data() + a.span0, a.n_spans, a.pass_cut, kv_});
      }
      if (!run_tasks_.empty()) attention_spans(run_tasks_, D_, pool);
      biased_run_.clear();
      for (size_t i : biased_tasks_) {
        const AttnTask& a = tasks_[i];
        biased_run_.push_back(BiasedAttentionTask{
            SpanAttentionTask{a.out, a.out_stride, a.q, a.q_stride, a.nq, a.qpos0, a.head, keys_.data() + a.span0, a.n_spans,
                              false, kv_},
            a.bias + a.head * (2 * a.bias_max + 1), a.bias_max, a.unmasked});
      }
      if (!biased_run_.empty()) attention_biased(biased_run_, D_, pool);
    }
  }

 private:
  ThreadPool** pool_;
  KvType kv_;
  int64_t D_ = 0;
  std::vector<std::pair<size_t, int64_t>> causal_;  // (first task, heads)
  std::vector<size_t> span_tasks_;
  std::vector<size_t> biased_tasks_;
  std::vector<BiasedAttentionTask> biased_run_;
  std::vector<AttentionSeq> seqs_;
  std::vector<KeySpan> keys_;
  std::vector<SpanAttentionTask> run_tasks_;
};

class CpuBackend : public Backend {
 public:
  CpuBackend(WeightFormat weights, KvType kv) : weights_(weights), kv_(kv) {}
  std::string name() const override { return "cpu"; }
  KvType kv_type() const override { return kv_; }
  std::string unsupported(Op, const ModelConfig&) const override { return ""; }

  const Matrix* matrix(const TensorView& t, int64_t K, int64_t N, bool src_is_nk) override {
    // Every matrix a model loads comes through here (Conv1D and Linear weights, the
    // embedding / tied head wte, lm_head), so --quantize q8_0 quantizes them all;
    // LayerNorm parameters, biases and learned positions go through floats() and stay float32.
    auto m = std::make_unique<CpuMatrix>(pack_matrix(t.data, t.dtype, K, N, src_is_nk != t.transposed, weights_));
    weight_bytes_ += m->packed.bytes();
    matrices_.push_back(std::move(m));
    return matrices_.back().get();
  }
  const float* floats(const std::vector<float>& v) override {
    floats_.push_back(v);
    weight_bytes_ += v.size() * sizeof(float);
    return floats_.back().data();
  }
  size_t weight_bytes() const override { return weight_bytes_; }

  std::unique_ptr<Buffer> alloc(size_t bytes) override { return std::make_unique<CpuBuffer>(bytes); }
  std::unique_ptr<Scratch> scratch() override { return std::make_unique<CpuScratch>(); }
  std::unique_ptr<AttentionPlan> attention_plan() override { return std::make_unique<CpuAttention>(&pool_, kv_); }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy_2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) override {
    for (size_t r = 0; r < height; r++)
      std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  }

  void begin_step(ThreadPool& pool) override {
    pool_ = &pool;
    arena_.reset();
    positions_used_ = 0;
  }
  const void* upload(const void* data, size_t bytes) override { return arena_.push(data, bytes); }
  const Positions* positions(const std::vector<int64_t>& pos, const std::vector<double>& inv_freq) override {
    if (positions_used_ == positions_.size()) positions_.push_back(std::make_unique<CpuPositions>());
    CpuPositions& p = *positions_[positions_used_++];
    p.pos = pos;
    p.count = (int64_t)pos.size();
    p.rotary = nullptr;
    if (!inv_freq.empty()) {
      auto it = rotaries_.find(inv_freq);
      if (it == rotaries_.end()) it = rotaries_.emplace(inv_freq, Rotary(inv_freq)).first;
      p.rotary = &it->second;
      p.rotary->tables(p.cos, p.sin, p.pos.data(), p.count);
    }
    return &p;
  }
  void read_rows(const std::vector<float*>& dest, const float* x, int64_t width) override {
    auto copy = [&](int64_t a, int64_t b) {
      for (int64_t r = a; r < b; r++) std::memcpy(dest[r], x + r * width, width * sizeof(float));
    };
    // A batch's logits rows are megabytes (32 x GPT-2's 50257 floats: 6.4 MB).
    if ((double)dest.size() * width * sizeof(float) < (1 << 20)) copy(0, (int64_t)dest.size());
    else pool_->parallel_for((int64_t)dest.size(), copy);
  }
  void finish() override {}

  void embed(float* x, const Matrix& wte, const float* wpe, const int32_t* tok, const Positions& pos, int64_t M,
             int64_t C) override {
    const auto& p = static_cast<const CpuPositions&>(pos);
    for (int64_t r = 0; r < M; r++) {
      float* xr = x + r * C;
      if (tok[r] >= 0) matrix_column(xr, packed(wte), tok[r]);
      if (wpe) {
        const float* pe = wpe + p.pos[r] * C;
        for (int64_t c = 0; c < C; c++) xr[c] += pe[c];
      }
    }
  }

  void layernorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w,
                 const float* b, int64_t M, int64_t C, float eps) override {
    if (!rows && ldx == C && ldy == C) return roost::layernorm(y, x, w, b, M, C, eps);
    float* g = gather_.get<float>(M * C);  // the rows, contiguous
    for (int64_t m = 0; m < M; m++) std::memcpy(g + m * C, x + (rows ? rows[m] : m) * ldx, C * sizeof(float));
    roost::layernorm(g, g, w, b, M, C, eps);
    for (int64_t m = 0; m < M; m++) std::memcpy(y + m * ldy, g + m * C, C * sizeof(float));
  }

  void rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, int64_t M,
               int64_t C, float eps) override {
    roost::rmsnorm(y, ldy, x, ldx, rows, w, M, C, eps, *pool_);
  }

  void silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F) override {
    roost::silu_mul(y, ldy, x, ldx, M, F, *pool_);
  }
  void gelu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F) override {
    roost::gelu_mul(y, ldy, x, ldx, M, F, *pool_);
  }

  void gemm(float* y, int64_t ldy, const float* x, int64_t ldx, const Matrix& W, const float* bias, int64_t M,
            Epilogue epi) override {
    const int64_t K = W.K, N = W.N;
    if (M == 0) return;
    if (ldx != K) {  // the kernels read x contiguous
      float* xc = xin_.get<float>(M * K);
      for (int64_t m = 0; m < M; m++) std::memcpy(xc + m * K, x + m * ldx, K * sizeof(float));
      x = xc;
    }
    const bool direct = epi != Epilogue::Add && ldy == N;
    float* out = direct ? y : yout_.get<float>(M * N);
    const Activation act = epi == Epilogue::Gelu ? gelu : epi == Epilogue::Relu ? relu : epi == Epilogue::GeluErf ? gelu_erf : nullptr;
    matmul(out, x, packed(W), bias, M, *pool_, act);
    if (direct) return;
    if (ldy == N) return add_inplace(y, out, M * N);  // Add into contiguous rows
    for (int64_t m = 0; m < M; m++) {
      if (epi == Epilogue::Add) add_inplace(y + m * ldy, out + m * N, N);
      else std::memcpy(y + m * ldy, out + m * N, N * sizeof(float));
    }
  }

  void rotary(float* x, int64_t ld, int64_t M, int64_t H, int64_t D, int parts, const Positions& pos) override {
    const auto& p = static_cast<const CpuPositions&>(pos);
    if (!p.rotary) return;
    for (int part = 0; part < parts; part++) p.rotary->apply(x + part * H * D, ld, M, H, D, p.cos.data(), p.sin.data());
  }

  void move_rows(const RowMove* moves, int64_t count, int64_t C, int64_t layer, bool to_kv) override {
    const KvType dst_type = to_kv ? kv_ : KvType::F32;
    auto some = [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; i++)
        put_row(static_cast<char*>(moves[i].dst) + layer * moves[i].dst_layer_stride * (int64_t)kv_type_size(dst_type),
                dst_type, moves[i].src + layer * moves[i].src_layer_stride, C);
    };
    // A batch's K/V rows (64 of 768 at batch 32) land in cold cache lines: split
    // over the pool, a batch-32 Q8_0 decode step took 0.979-0.989 of the time.
    if (count * C >= kParallelMoveElements) pool_->parallel_for(count, some, 4);
    else some(0, count);
  }

  void to_kv(void* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t C) override {
    for (int64_t m = 0; m < M; m++) put_row(static_cast<char*>(y) + m * ldy * (int64_t)kv_size(), kv_, x + m * ldx, C);
  }

  void gate_update(float* const* s, int64_t layer_stride, int64_t layer, const float* y, const float* keep,
                   int64_t count, int64_t S, int64_t C) override {
    for (int64_t i = 0; i < count; i++) {
      float* si = s[i] + layer * layer_stride;
      const float* yi = y + i * S * C;
      for (int64_t j = 0; j < S * C; j++) si[j] = si[j] * keep[j % C] + yi[j] * (1.f - keep[j % C]);
    }
  }

  void scale_columns(float* x, int64_t ld, int64_t M, int64_t cols, const float* scale) override {
    for (int64_t r = 0; r < M; r++) {
      float* row = x + r * ld;
      for (int64_t c = 0; c < cols; c++) row[c] *= scale[c];
    }
  }

 private:
  static constexpr int64_t kParallelMoveElements = 16384;
  // C floats from x into a row of type t (the F16 cache rounds to nearest even).
  static void put_row(void* dst, KvType t, const float* x, int64_t C) {
    if (t == KvType::F16) to_f16(static_cast<uint16_t*>(dst), x, C);
    else std::memcpy(dst, x, C * sizeof(float));
  }

  WeightFormat weights_;
  KvType kv_;
  ThreadPool* pool_ = nullptr;
  std::vector<std::unique_ptr<CpuMatrix>> matrices_;
  std::deque<std::vector<float>> floats_;  // stable addresses
  size_t weight_bytes_ = 0;
  UploadArena arena_;
  std::vector<std::unique_ptr<CpuPositions>> positions_;
  size_t positions_used_ = 0;
  std::map<std::vector<double>, Rotary> rotaries_;
  CpuScratch gather_, xin_, yout_;
};

}  // namespace

std::shared_ptr<Backend> make_cpu_backend(WeightFormat weights, KvType kv) { return std::make_shared<CpuBackend>(weights, kv); }

}  // namespace roost
