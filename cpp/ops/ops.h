// The engine's CPU operations. Each op lives in its own files:
//   ops/<op>_ref.cpp      the plain reference loop (the truth the fast path is tested against)
//   ops/<op>_avx2.cpp     AVX2+FMA+F16C variant (compiled with those flags only)
//   ops/<op>_avx512.cpp   AVX-512 (F/BW/VL/DQ) variant
//   ops/<op>.cpp          the public entry: picks the variant once per process by cpuid
// Argument order everywhere: outputs, inputs, sizes, then the thread pool.
#pragma once

#include <cstdint>
#include <vector>

#include "../common.h"
#include "../dtype.h"
#include "../threadpool.h"

namespace roost {

// ---------------------------------------------------------------------------
// Which instruction set the fast paths use. Chosen once by cpuid; the
// environment variable ROOST_ISA=reference|avx2|avx512 forces one (tests run
// every variant the machine supports through set_isa()).
enum class Isa { Reference, Avx2, Avx512 };
Isa detected_isa();          // best variant this CPU supports
Isa active_isa();            // what the ops use now
void set_isa(Isa isa);       // throws E_ARGUMENT if the CPU lacks it
const char* isa_name(Isa isa);

// ---------------------------------------------------------------------------
// Weight matrices, packed once at load time into the layout the kernels stream.
// Logically W is [K, N] (Conv1D layout: y = x @ W). F16 and BF16 weights stay
// 2 bytes per element in memory and are widened to float inside the kernel
// (decode is memory-bound); Q8_0 weights stay 34 bytes per 32 and meet activations
// quantized to int8 in integer dot products.
struct PackedMatrix {
  int64_t K = 0, N = 0;
  DType dtype = DType::F32;  // element type as stored in `data`
  AlignedBuffer data;        // layout private to ops/matmul*
  size_t bytes() const { return data.bytes(); }
};

// What pack_matrix stores: WeightFormat (dtype.h).

// src is [K, N] row-major when !src_is_nk (Conv1D), [N, K] row-major when src_is_nk
// (nn.Linear / the tied head wte [V, C]). With WeightFormat::Keep it keeps src_dtype
// (F32, F16 or BF16). A Q8_0 source is a GGUF Q8_0 tensor as stored: N rows of K / 32
// blocks (src_is_nk must be true, K a multiple of 32); its blocks are kept as they are,
// whatever `format` says.
PackedMatrix pack_matrix(const void* src, DType src_dtype, int64_t K, int64_t N, bool src_is_nk,
                         WeightFormat format = WeightFormat::Keep);

// Q8_0 quantization of one block of 32 values, as llama.cpp's quantize_row_q8_0_ref:
// d = max|x| / 127, q[i] = roundf(x[i] / d) (halves away from zero; computed as x * (1/d)),
// and the block stores F16(d). Returns d before its F16 rounding.
float quantize_block_q8_0(int8_t q[32], const float x[32]);

// Q8_0 matmuls quantize the activations too, per block of 32 along K as llama.cpp does:
// row m of x [M, K] becomes q [M, Kq] int8 (Kq = K rounded up to 32, zero padded) and
// d [M, Kq / 32], each d already rounded to F16 as llama.cpp's block_q8_0 stores it.
// The fast paths and matmul_reference both quantize with this function (its AVX-512
// variant rounds step by step as the scalar rule, so every ISA gives the same bytes).
// sums, when given, gets -128 * the sum of each block's q [M, Kq / 32]: the VNNI kernel
// offsets the weights by +128 to make them vpdpbusd's unsigned operand, and starts each
// block's dot product from this to take the offset off again.
// tile > 1 lays the rows out for the VNNI kernel's row tiles (quantize_impl.h, Q8Place):
// in tiles of `tile` rows, each block's 4-byte quads interleaved across the tile's rows,
// so a tile reads every row's operands from one pointer.
void quantize_rows_q8_0(int8_t* q, float* d, const float* x, int64_t M, int64_t K, ThreadPool* pool,
                        int32_t* sums = nullptr, int64_t tile = 1);

// The Q8_0 kernels use AVX-512 VNNI (vpdpbusd) where the CPU has it and the AVX-512BW
// path (vpmaddubsw) otherwise; tests switch VNNI off to run the other path here too.
bool cpu_has_avx512_vnni();
void set_q8_vnni(bool on);  // throws E_ARGUMENT when on and the CPU lacks it
bool q8_vnni_active();

// y[M, N] = x[M, K] @ W + bias[N] (bias may be null). Multithreaded over pool.
// M = 1 is the decode GEMV (bandwidth-bound); large M the prefill GEMM.
// act (gelu, relu, gelu_erf), when given, then runs in place on y: on each chunk of
// columns by the thread that computed it, while the chunk is in its cache (run
// after the product on one thread, GELU took about 4% of a batch-32 Q8_0 step).
using Activation = void (*)(float* y, const float* x, int64_t n);
void matmul(float* y, const float* x, const PackedMatrix& W, const float* bias, int64_t M, ThreadPool& pool,
            Activation act = nullptr);
void matmul_reference(float* y, const float* x, const PackedMatrix& W, const float* bias, int64_t M);

// out[K] = column n of W as float (row n of a tied embedding wte [V, C]).
void matrix_column(float* out, const PackedMatrix& W, int64_t n);

// ---------------------------------------------------------------------------
// Elementwise and row ops. y may alias x.
// LayerNorm of each of M rows of size C with population variance:
//   y = (x - mean) / sqrt(var + eps) * weight + bias
void layernorm(float* y, const float* x, const float* weight, const float* bias, int64_t M, int64_t C, float eps);
void layernorm_reference(float* y, const float* x, const float* weight, const float* bias, int64_t M, int64_t C, float eps);

// RMSNorm (the Llama family): row m of y (stride ldy) = row (rows ? rows[m] : m)
// of x (stride ldx) / sqrt(mean(x^2) + eps) * w. y may alias x when rows is null.
void rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, int64_t M,
             int64_t C, float eps, ThreadPool& pool);
// SwiGLU: y[m, f] = silu(x[m, f]) * x[m, F + f], f < F (x rows: gate | up); y must not alias x.
void silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F, ThreadPool& pool);

// gelu_new (tanh approximation): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu(float* y, const float* x, int64_t n);
void gelu_reference(float* y, const float* x, int64_t n);
// The GEMM epilogues of OPT and XGLM (y may alias x): relu y = max(x, 0);
// gelu_erf y = 0.5 x (1 + erf(x / sqrt 2)), the exact form (torch's GELU).
void relu(float* y, const float* x, int64_t n);
void gelu_erf(float* y, const float* x, int64_t n);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);

// y[i] = x[i] as IEEE half, rounded to nearest even (dtype.h f32_to_f16; a NaN
// stays a NaN, its payload may differ): rows written to an F16 KV cache.
void to_f16(uint16_t* y, const float* x, int64_t n);
void to_f16_reference(uint16_t* y, const float* x, int64_t n);

// In-place softmax of one row; returns nothing. log_softmax writes log-probs
// (max-subtracted, computed in double for the normalizer).
void softmax(float* x, int64_t n);
void softmax_reference(float* x, int64_t n);
void log_softmax(float* y, const float* x, int64_t n);
void log_softmax_reference(float* y, const float* x, int64_t n);
// Element i of log_softmax(x), bit for bit, without writing the row: a greedy sample
// reports only its token's log-prob.
float log_softmax_at(const float* x, int64_t n, int64_t i);
float log_softmax_at_reference(const float* x, int64_t n, int64_t i);

// ---------------------------------------------------------------------------
// Causal self-attention of one batch step. Each sequence s contributes Tq new
// queries at absolute positions pos0 .. pos0+Tq-1; its key/value cache holds
// rows 0 .. pos0+Tq-1 (the new rows already written). Rows are C = H*D floats
// (head h at columns h*D .. h*D+D-1). Query i attends to keys 0 .. pos0+i,
// scale 1/sqrt(D). Work is split across (sequence, head, query) over the pool.
struct AttentionSeq {
  float* out;            // [Tq, out_stride]
  int64_t out_stride;
  const float* q;        // [Tq, q_stride]
  int64_t q_stride;
  const void* k;         // [pos0 + Tq, kv_stride] elements of kv
  const void* v;         // [pos0 + Tq, kv_stride]
  int64_t kv_stride;
  int64_t pos0;
  int64_t Tq;
  bool pass_cut = false;  // as SpanAttentionTask::pass_cut (attention_spans.h)
  KvType kv = KvType::F32;
};
void attention_causal(const std::vector<AttentionSeq>& seqs, int64_t H, int64_t D, ThreadPool& pool);
void attention_causal_reference(const std::vector<AttentionSeq>& seqs, int64_t H, int64_t D);

}  // namespace roost
