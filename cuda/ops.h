// The CUDA backend's operations: host-callable launchers over device pointers,
// each queued on `stream` (nothing here synchronizes). One op per .cu file
// (cuda/<op>.cu); every launch is followed by a launch check. The math is
// docs/models.md's and cpp/ops/ops.h's; docs/cuda.md gives the precision of
// each (F16/BF16 tensor cores with F32 accumulation). The CUDA backend
// (cuda/backend.h, the implementation of cpp/backend.h) is their one caller
// besides the tests and benches.
//
// Storage conventions:
//   - activations are float32, row-major, with an explicit row stride;
//   - weight matrices are F16 or BF16 on the device, stored [N][K] (K
//     contiguous: the transpose of the checkpoint's Conv1D [K, N]); y = x @ W;
//   - attention keys/values (KV caches, rings, state keys) are F16, rows of
//     C = H*D with head h at columns h*D .. h*D+D-1.
// Plain C++ (no CUDA headers beyond the runtime API): the backend, tests and
// benches include it with the host compiler.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "runtime.h"

namespace roost::cuda {

enum class WType : int { F16 = 0, BF16 = 1 };
inline size_t wtype_size(WType) { return 2; }

// W [K, N] stored [N][K] on the device; not owning.
struct DevMatrix {
  int64_t K = 0, N = 0;
  WType type = WType::F16;
  const void* data = nullptr;
};

// ----------------------------------------------------------------- GEMM
// y[M, N] (row stride ldy) = epilogue(x[M, K] (row stride ldx) @ W + bias[N]);
// bias may be null. x is converted to W's type (F16 or BF16) on load; the
// products accumulate in float32 (tensor cores, mma.sync m16n8k16).
//   Store: y = acc + bias      Add: y += acc + bias (residual)
//   Gelu:  y = gelu_new(acc + bias)
//   Relu:  y = max(acc + bias, 0)
//   GeluErf: y = 0.5 v (1 + erf(v / sqrt 2)), v = acc + bias
// M <= 8 takes a GEMV path (decode: bandwidth-bound); small grids are split
// over K (partials in `ws`, then a reduce). K % 8 != 0 or unaligned x falls
// back to a plain SIMT kernel. y must not alias x.
enum class Epilogue : int { Store = 0, Add = 1, Gelu = 2, Relu = 3, GeluErf = 4 };
void gemm(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
          Epilogue epi, Scratch& ws, const DeviceContext& ctx);
// The plain SIMT kernel alone (tests compare the fast paths with it).
void gemm_simt(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
               Epilogue epi, cudaStream_t stream);

// ----------------------------------------------------------------- row ops
// LayerNorm of M rows of C (population variance): y = (x - mean) / sqrt(var + eps) * w + b.
// Row m of y reads row (rows ? rows[m] : m) of x (a gather of the rows the head needs).
// y may alias x when rows is null.
void layernorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, const float* b,
               int64_t M, int64_t C, float eps, cudaStream_t stream);

// RMSNorm (the Llama family): y = x / sqrt(mean(x^2) + eps) * w; rows and aliasing as layernorm.
void rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, int64_t M,
             int64_t C, float eps, cudaStream_t stream);
// SwiGLU: y[m, f] = silu(x[m, f]) * x[m, F + f], f < F (x rows: gate | up); y must not alias x.
void silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F, cudaStream_t stream);

// gelu_new, elementwise over n floats (y may alias x).
void gelu(float* y, const float* x, int64_t n, cudaStream_t stream);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream);

// Row softmax / log-softmax over M rows of n (max-subtracted; log-softmax
// normalizer in double). In place allowed.
void softmax_rows(float* y, const float* x, int64_t M, int64_t n, cudaStream_t stream);
void log_softmax_rows(float* y, const float* x, int64_t M, int64_t n, cudaStream_t stream);

// Rotary (GPT-NeoX rotate-half) on the first rot_dim channels of each of H heads
// of D, in place, for `parts` column blocks of C = H*D starting at x (x + p*C for
// part p: Q then K of a fused Q|K|V row), rows of stride ld. Row r is at
// position pos[r]; angles pos * inv_freq[i] in double (inv_freq [rot_dim/2],
// device), cos/sin rounded to float as on the CPU.
void rotary(float* x, int64_t ld, int64_t M, int64_t H, int64_t D, int64_t rot_dim, int parts, const int64_t* pos,
            const double* inv_freq, cudaStream_t stream);

// x[r, :] = wte[tok[r], :] (F16/BF16 [V][C]) + (wpe ? wpe[pos[r], :] : 0), x: [M, C].
// tok[r] < 0: row r keeps its contents (a soft-prompt embedding) and gets wpe added.
void embed(float* x, const void* wte, WType type, const float* wpe, const int32_t* tok, const int64_t* pos, int64_t M,
           int64_t C, cudaStream_t stream);

// Row moves: for each i, C values from src[i] + layer * src_layer_stride
// (float) to dst[i] + layer * dst_layer_stride (float or F16, as `to_half`).
// The gather/scatter behind KV appends, rings and state copies.
struct RowMove {
  const float* src;
  void* dst;
  int64_t dst_layer_stride = 0;  // in elements of the destination type
  int64_t src_layer_stride = 0;  // in floats
};
void move_rows(const RowMove* moves, int64_t count, int64_t C, int64_t layer, bool to_half, cudaStream_t stream);

// Strided float -> F16 conversion of an [M, C] block (row strides in elements).
void to_half(uint16_t* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t C, cudaStream_t stream);

// Fixed gate of block_recurrent, for each of `count` states s_i [S, C] (at
// s[i] + layer * layer_stride) and their update rows y + i*S*C:
//   s = s * keep + y * (1 - keep)      (keep = sigmoid(gate_bias) [C])
void gate_update(float* const* s, int64_t layer_stride, int64_t layer, const float* y, const float* keep, int64_t count,
                 int64_t S, int64_t C, cudaStream_t stream);

// x[r, c] *= scale[c] for r < M, c < cols, rows of stride ld ((IA)^3).
void scale_columns(float* x, int64_t ld, int64_t M, int64_t cols, const float* scale, cudaStream_t stream);

// ----------------------------------------------------------------- attention
// Device mirror of cpp/ops/attention_spans.h: queries of one head against the
// union of key spans (F16 K/V rows). Row r of a span sits at position pos0 + r
// and is visible to a query at qpos iff pos0 + r <= qpos (kNoMaskPos: always).
// A span's rows for the layer being run are at k + layer * layer_stride.
constexpr int64_t kNoMaskPos = INT64_MIN / 4;
struct AttnSpan {
  const uint16_t* k;
  const uint16_t* v;
  int64_t stride;        // elements between rows
  int64_t n;             // rows
  int64_t pos0;          // position of row 0, or kNoMaskPos
  int64_t layer_stride;  // elements; 0 when k/v already point at the layer's rows
};
struct AttnTask {
  float* out;            // [nq, out_stride] float
  int64_t out_stride;
  const float* q;        // [nq, q_stride] float
  int64_t q_stride;
  int64_t nq;
  int64_t qpos0;
  int32_t head;
  int32_t n_spans;
  int64_t span0;         // first span in the plan's span list
  int64_t n_keys;        // total rows of its spans (filled by the plan)
};

// The kernels' work lists, built by the backend's attention plan
// (cuda/backend_attention.cpp) from the tasks of cpp/backend.h's AttentionPlan:
// a SIMT unit is one query of a task split over `nsplit` key slices, one work each.
struct AttnUnit { int32_t task, t, work0, nsplit; };
struct AttnWork { int32_t unit, split; };

// The attention kernels (also for the benches).
// Flash: one CTA per task (nq <= br), K/V tiles of 64 through shared memory,
// online softmax, F16 tensor cores, no T x T matrix. D in {16, 32, 64, 128},
// br 64 (any D) or 128 (D 64, 128).
bool flash_supported(int64_t D, int br);
void attention_flash(const AttnTask* tasks, int64_t n_tasks, const AttnSpan* spans, int64_t D, int br, int64_t layer,
                     cudaStream_t stream);
// SIMT split-K: one CTA per work (a query of a task and a slice of its keys),
// partials [works][D+2] in `partial`, then a combine per unit. D <= 256.
// vec: every span's K/V rows are 16-byte aligned and D % 8 == 0 (vector loads).
void attention_simt(const AttnTask* tasks, const AttnSpan* spans, const AttnUnit* units, int64_t n_units,
                    const AttnWork* works, int64_t n_works, int64_t D, int64_t layer, bool vec,
                    float* partial, cudaStream_t stream);
constexpr int64_t kMaxHeadDim = 256;

}  // namespace roost::cuda
