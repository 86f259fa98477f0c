// The backend interface: what a model's forward step is written against, once
// for every device. A backend owns memory (weights, KV caches and states,
// activations, per-step metadata) and runs ops on it; the CPU backend
// (cpp/cpu_backend.cpp, over cpp/ops) and the CUDA backend (cuda/,
// over the kernels of cuda/ops.h) implement it. Models live in cpp/models/ and
// never see which backend runs them.
//
// Memory model. Pointers into backend memory (activations `float*`, K/V
// `void*`, uploaded metadata) are addresses in the backend's memory space: on
// CUDA they are device pointers, so a model only offsets them and hands them
// back to ops, never dereferences them. Every op is queued in order on the
// backend's one stream (the CPU backend runs it at once); nothing a model
// reads on the host comes back except through read_rows().
//
// Precision contract (docs/cuda.md gives the CUDA figures):
//   - activations are float32 rows with an explicit row stride (in floats);
//   - weight matrices are the backend's choice: the CPU keeps the checkpoint
//     dtype (F32/F16/BF16, widened to float in the kernel; Q8_0 blocks from a
//     GGUF file or --quantize q8_0, met by activations quantized per block of
//     32, cpp/ops/ops.h); CUDA stores F16, or
//     BF16 when the checkpoint's wte is BF16; products accumulate in float32;
//   - LayerNorm parameters, biases, learned positions stay float32;
//   - attention keys/values (KV caches, rings, state keys) are stored in the
//     backend's kv_type(): F16 on CUDA, F32 or F16 on the CPU (--kv-cache-dtype). They are written only
//     by move_rows(..., to_kv = true) and to_kv(), read only by attention.
//
// An op a backend cannot run for a model is reported by unsupported() before
// the model is built (the loader refuses it naming the backend, the op and
// why); no op falls back to another device silently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "safetensors.h"
#include "threadpool.h"

namespace roost {

// ------------------------------------------------------------------ memory

// A block of backend memory; freed (in stream order) when the object goes.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() const = 0;
  virtual size_t bytes() const = 0;
  template <typename T> T* as() const { return static_cast<T*>(data()); }
};

// Grow-only scratch for activations: get(n) returns at least n bytes; growing
// invalidates earlier pointers (work already queued on them stays valid), so a
// model sizes every scratch it needs at the start of a step.
class Scratch {
 public:
  virtual ~Scratch() = default;
  virtual void* get(size_t bytes) = 0;
  template <typename T> T* get(size_t count) { return static_cast<T*>(get(count * sizeof(T))); }
};

// A weight matrix W [K, N] (y = x @ W) in the backend's format. Owned by the backend.
class Matrix {
 public:
  virtual ~Matrix() = default;
  int64_t K = 0, N = 0;
};

// Per-step row positions, prepared once per step (positions() below) and read
// by embed() (learned positions) and rotary(): the CPU backend turns them into
// cos/sin tables once, CUDA uploads them once. Valid until the next begin_step().
class Positions {
 public:
  virtual ~Positions() = default;
  int64_t count = 0;
};


// ------------------------------------------------------------------ op arguments

// GEMM epilogues: Store y = acc + bias; Add y += acc + bias (the residual);
// Gelu y = gelu_new(acc + bias); Relu y = max(acc + bias, 0) (OPT);
// GeluErf y = gelu(acc + bias), the exact erf form (XGLM's "gelu").
enum class Epilogue : int { Store = 0, Add = 1, Gelu = 2, Relu = 3, GeluErf = 4 };

// One row move of move_rows(): C values from src + layer * src_layer_stride
// (floats) to dst + layer * dst_layer_stride (elements of the destination:
// float, or kv_type() when the move writes K/V).
struct RowMove {
  const float* src;
  void* dst;
  int64_t dst_layer_stride = 0;
  int64_t src_layer_stride = 0;
};

// Attention over key spans (cpp/ops/attention_spans.h's model, on any device).
// A span is n K/V rows (kv_type() elements, row r of K at k + r * stride, head
// h at columns h*D .. h*D+D-1); row r sits at position pos0 + r and is visible
// to a query at qpos iff pos0 + r <= qpos (kNoMaskPos: always). For layer l the
// rows are read at k + l * layer_stride (layer_stride 0: k already points at
// the layer's rows). Strides are in elements.
constexpr int64_t kNoMaskPos = INT64_MIN / 4;
struct AttnSpan {
  const void* k;
  const void* v;
  int64_t stride;
  int64_t n;
  int64_t pos0;
  int64_t layer_stride;
};
// Grouped-query attention (K/V of G heads serve H = G * group query heads) is
// a task per query head h with head = h / group (the K/V columns it reads)
// and q, out pointing (h - head) * D floats further (the query head's columns).
// Queries 0..nq-1 of one head (float rows: row t at q + t * q_stride, position
// qpos0 + t) against the union of the task's spans; output rows like the
// queries. Scale 1/sqrt(D); a query that sees no key gets zeros. span0,
// n_spans and n_keys are filled in by AttentionPlan.
struct AttnTask {
  float* out;
  int64_t out_stride;
  const float* q;
  int64_t q_stride;
  int64_t nq;
  int64_t qpos0;
  int32_t head = 0;
  int32_t n_spans = 0;
  int64_t span0 = 0;
  int64_t n_keys = 0;
  // T5's relative position bias (docs/t5.md; null: none, the backend needs
  // Op::RelativeBias): score += bias[clamp(kpos - qpos, -bias_max, bias_max) +
  // bias_max], kpos = pos0 + r of the key's span, the table of head h at
  // bias + h * (2 * bias_max + 1) floats (backend memory; every head's tasks
  // share the pointer). With unmasked, every key of the spans is visible (the
  // encoder's bidirectional attention).
  const float* bias = nullptr;
  int64_t bias_max = 0;
  bool unmasked = false;
  // Prompt rows grouped by the pass cut: the CPU backend's kernel choice then
  // keeps each row's result independent of the cut (cpp/ops/attention_spans.h).
  bool pass_cut = false;
};
// The task of a forward item's rows: cut by the pass unless they are its one decode token.
inline AttnTask item_rows(AttnTask t, bool decode) {
  t.pass_cut = !decode;
  return t;
}

// The task batcher of every model: a list of tasks over spans, built once per
// step on the host, prepared once (the backend chooses kernels and uploads the
// lists) and run for one or more layers (the spans' layer_stride moves them).
// The list building is shared; prepare/run are the backend's.
class AttentionPlan {
 public:
  virtual ~AttentionPlan() = default;
  void clear();
  void add_span(const AttnSpan& s) { spans_.push_back(s); }
  // A task over the spans added since the previous add_task/add_heads.
  void add_task(AttnTask t);
  // Tasks for heads 0..H-1 of the same queries over the same spans (t.head ignored).
  void add_heads(AttnTask t, int64_t H);
  // Tasks for query heads 0..H-1 (head size D) over the same spans, head h
  // reading K/V head h / (H / G) of G (grouped-query attention, above).
  void add_gqa_heads(AttnTask t, int64_t H, int64_t G, int64_t D);
  bool empty() const { return tasks_.empty(); }
  const std::vector<AttnTask>& tasks() const { return tasks_; }
  const std::vector<AttnSpan>& spans() const { return spans_; }

  // After the last add, before run(); inside the step (after begin_step()).
  // D: head size. Throws E_ARGUMENT for a D the backend refused in unsupported().
  virtual void prepare(int64_t D) = 0;
  // Every task for `layer` (see AttnSpan::layer_stride).
  virtual void run(int64_t layer) = 0;

 protected:
  std::vector<AttnSpan> spans_;
  std::vector<AttnTask> tasks_;
  size_t mark_ = 0;  // spans_ index where the next task's spans start
};

// ------------------------------------------------------------------ the backend

// The ops, for supports()/unsupported(): one name per op family below.
// GemmQ8: gemm over Q8_0 weights (a GGUF Q8_0 checkpoint or --quantize q8_0).
// RelativeBias: AttnTask::bias (T5); GeluMul: gelu_mul() (T5 v1.1).
enum class Op : int { Embed, LayerNorm, Gemm, Rotary, Attention, MoveRows, ToKv, GateUpdate, ScaleColumns, RmsNorm, SiluMul, GemmQ8,
                      RelativeBias, GeluMul };
const char* op_name(Op op);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda"
  virtual KvType kv_type() const = 0;
  size_t kv_size() const { return kv_type_size(kv_type()); }

  // "" when this backend runs `op` for a model with this config, else why not
  // (the loader's error message quotes it). Never a silent fallback.
  virtual std::string unsupported(Op op, const ModelConfig& cfg) const = 0;
  bool supports(Op op, const ModelConfig& cfg) const { return unsupported(op, cfg).empty(); }

  // ---- weights (load time; owned by the backend, counted in weight_bytes())
  // t is W [K, N] (Conv1D) or, with src_is_nk, [N, K] (wte [V, C], lm_head).
  virtual const Matrix* matrix(const TensorView& t, int64_t K, int64_t N, bool src_is_nk) = 0;
  // float32 constants (LayerNorm weights, biases, learned positions, gates).
  virtual const float* floats(const std::vector<float>& v) = 0;
  virtual size_t weight_bytes() const = 0;

  // ---- memory
  virtual std::unique_ptr<Buffer> alloc(size_t bytes) = 0;  // contents undefined
  virtual std::unique_ptr<Scratch> scratch() = 0;
  virtual std::unique_ptr<AttentionPlan> attention_plan() = 0;
  // Backend-to-backend copies (queued): bytes, and `height` rows of `width`
  // bytes with the given pitches (the KV cache's growth).
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) = 0;

  // ---- the step
  // Starts a forward step: the previous step's uploads and positions become
  // invalid. `pool` runs the CPU backend's ops (CUDA ignores it).
  virtual void begin_step(ThreadPool& pool) = 0;
  // Copies host data into backend memory valid until the next begin_step().
  virtual const void* upload(const void* data, size_t bytes) = 0;
  template <typename T> const T* upload(const std::vector<T>& v) {
    return static_cast<const T*>(upload(v.data(), v.size() * sizeof(T)));
  }
  // Row positions and their rotary angles theta_i = pos * inv_freq[i] in double,
  // cos/sin rounded to float (GPT-NeoX rotate-half over rotary_dim = 2 *
  // inv_freq.size() channels; empty: no rotary). rotary_inv_freq()
  // (cpp/models/rotary.h) gives a config's frequencies.
  virtual const Positions* positions(const std::vector<int64_t>& pos, const std::vector<double>& inv_freq) = 0;
  // Host rows dest[r] (width floats each) = rows r of x [R, width] (contiguous);
  // waits for every queued op first. The step's one device -> host copy.
  virtual void read_rows(const std::vector<float*>& dest, const float* x, int64_t width) = 0;
  // Waits for every queued op (a step without logits rows ends with it).
  virtual void finish() = 0;

  // ---- ops (outputs, inputs, sizes; strides in elements)
  // x[r, :] = wte[tok[r], :] + (wpe ? wpe[pos[r], :] : 0) for r < M, x [M, C].
  // tok[r] < 0: row r keeps its contents (a soft-prompt embedding moved there
  // before) and gets wpe added. tok is uploaded; wte is [V, C] read by rows
  // (the matrix(.., src_is_nk = true) of wte).
  virtual void embed(float* x, const Matrix& wte, const float* wpe, const int32_t* tok, const Positions& pos,
                     int64_t M, int64_t C) = 0;
  // LayerNorm of M rows of C (population variance, eps inside the sqrt):
  // y = (x - mean) / sqrt(var + eps) * w + b. Row m of y reads row
  // (rows ? rows[m] : m) of x (rows uploaded). y may alias x when rows is null.
  virtual void layernorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w,
                         const float* b, int64_t M, int64_t C, float eps) = 0;
  // RMSNorm of M rows of C (the Llama family): y = x / sqrt(mean(x^2) + eps) * w,
  // rows and aliasing as layernorm().
  virtual void rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w,
                       int64_t M, int64_t C, float eps) = 0;
  // SwiGLU: y[m, f] = silu(x[m, f]) * x[m, F + f] for f < F (x rows: gate | up),
  // silu(a) = a / (1 + exp(-a)). y must not alias x.
  virtual void silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F) = 0;
  // T5 v1.1's gated GELU: y[m, f] = gelu_new(x[m, f]) * x[m, F + f] (x rows:
  // wi_0 | wi_1). y must not alias x. Only backends whose unsupported(GeluMul)
  // is "" override it (the default throws E_CONFIG).
  virtual void gelu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F);
  // y[M, N] = epilogue(x[M, K] @ W + bias[N]); bias may be null; y must not alias x.
  virtual void gemm(float* y, int64_t ldy, const float* x, int64_t ldx, const Matrix& W, const float* bias, int64_t M,
                    Epilogue epi) = 0;
  // Rotary on the first rotary_dim channels of each of H heads of D, in place,
  // for `parts` column blocks of C = H*D starting at x (Q then K of a fused
  // Q|K|V row), rows of stride ld; row r at position pos[r].
  virtual void rotary(float* x, int64_t ld, int64_t M, int64_t H, int64_t D, int parts, const Positions& pos) = 0;
  // The moves (uploaded array of `count`) for `layer`; to_kv: destinations are
  // K/V (kv_type()), else float.
  virtual void move_rows(const RowMove* moves, int64_t count, int64_t C, int64_t layer, bool to_kv) = 0;
  // y [M, C] (kv_type(), row stride ldy) = x [M, C] (float, row stride ldx).
  virtual void to_kv(void* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t C) = 0;
  // block_recurrent's fixed gate, for each of `count` states s_i [S, C] at
  // s[i] + layer * layer_stride (s: uploaded array of pointers) and update
  // rows y + i*S*C: s = s * keep + y * (1 - keep)  (keep [C]).
  virtual void gate_update(float* const* s, int64_t layer_stride, int64_t layer, const float* y, const float* keep,
                           int64_t count, int64_t S, int64_t C) = 0;
  // x[r, c] *= scale[c] for r < M, c < cols, rows of stride ld ((IA)^3).
  virtual void scale_columns(float* x, int64_t ld, int64_t M, int64_t cols, const float* scale) = 0;
};

// The CPU backend (always built). weights = Q8_0: every matrix() of an F32, F16 or
// BF16 tensor is quantized to Q8_0 blocks at load (--quantize q8_0); Q8_0 tensors
// are kept as they are either way.
std::shared_ptr<Backend> make_cpu_backend(WeightFormat weights = WeightFormat::Keep, KvType kv = KvType::F32);

// Throws Error("E_CONFIG") naming the backend, the op and the reason when the
// backend lacks any of `ops` for this model.
void require_ops(const Backend& be, const ModelConfig& cfg, std::initializer_list<Op> ops);

// ------------------------------------------------------------------ registry
// Backends other than the CPU register themselves at start-up; cpp/ never
// includes their headers. The CUDA backend (cuda/) defines
// register_cuda_backend(); the addon and the executables that link roost_cuda
// call it (cpp/binding/addon.cpp under ROOST_WITH_CUDA).
struct BackendProvider {
  std::string name;                                         // "cuda"
  std::function<int(std::string* why)> device_count;        // 0 with the reason when none usable
  std::function<std::string(int device)> device_name;       // "NVIDIA H100 80GB HBM3"
  // A backend on `device` for the model in ckpt (the weight type follows the checkpoint).
  std::function<std::shared_ptr<Backend>(int device, const Checkpoint& ckpt)> create;
};
void register_backend(BackendProvider provider);  // a second registration of a name replaces the first
const BackendProvider* find_backend(const std::string& name);
void register_cuda_backend();  // defined in cuda/ (only in builds with CUDA)

}  // namespace roost
