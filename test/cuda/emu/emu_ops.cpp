// cuda/ops.h on the host, for the emulation (CMake: roost_cuda_emulated): the same
// contracts and the same rounding points as the kernels (x rounded to the
// weight type on the GEMM's tensor-core path, kept float32 by its GEMV and
// SIMT paths; F16 K/V, Q and P rounded to F16 in the flash
// path), plain loops instead of tensor cores. The SIMT attention follows the
// kernel's work split (units, key slices, partials, combine) and the flash
// path checks the plan's tiling (nq <= br), so the host side of the CUDA
// backend (its attention plans, uploads, the shared models' KV rows on it)
// runs exactly as on the GPU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../../../cpp/dtype.h"
#include "../../../cuda/ops.h"

namespace roost::cuda {

namespace {

float half_to_f(uint16_t h) { return f16_to_f32(h); }
float round_half(float f) { return f16_to_f32(f32_to_f16(f)); }
uint16_t bf16_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}
float round_to(float f, WType t) { return t == WType::BF16 ? bf16_to_f32(bf16_bits(f)) : round_half(f); }
float w_at(const DevMatrix& W, int64_t n, int64_t k) {
  const uint16_t b = static_cast<const uint16_t*>(W.data)[n * W.K + k];
  return W.type == WType::BF16 ? bf16_to_f32(b) : f16_to_f32(b);
}
float gelu_f(float x) {
  const float s = 0.7978845608028654f;
  return 0.5f * x * (1.f + std::tanh(s * (x + 0.044715f * x * x * x)));
}
void epi_store(float* y, Epilogue e, float v) {
  if (e == Epilogue::Add) *y += v;
  else if (e == Epilogue::Gelu) *y = gelu_f(v);
  else if (e == Epilogue::Relu) *y = std::max(v, 0.f);
  else if (e == Epilogue::GeluErf) *y = 0.5f * v * (1.f + std::erf(v * 0.70710678118654752f));
  else *y = v;
}

void gemm_host(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
               Epilogue epi, bool round_x) {
  std::vector<float> xr(W.K);
  for (int64_t m = 0; m < M; m++) {
    for (int64_t k = 0; k < W.K; k++) xr[k] = round_x ? round_to(x[m * ldx + k], W.type) : x[m * ldx + k];
    for (int64_t n = 0; n < W.N; n++) {
      float acc = 0.f;
      for (int64_t k = 0; k < W.K; k++) acc += xr[k] * w_at(W, n, k);
      epi_store(y + m * ldy + n, epi, acc + (bias ? bias[n] : 0.f));
    }
  }
}

int64_t visible(const AttnSpan& sp, int64_t qpos) { return std::max<int64_t>(0, std::min(qpos - sp.pos0 + 1, sp.n)); }

// The scaled score of query q (one head) against key row `row` of span sp, appended to sc with that
// row's V (as both attention kernels read them); returns the score.
float score_key(const float* q, const AttnSpan& sp, int64_t layer, int64_t row, int64_t head, int64_t D, float scale,
                std::vector<float>& sc, std::vector<const uint16_t*>& vrows) {
  const int64_t at = layer * sp.layer_stride + row * sp.stride + head * D;
  float dot = 0.f;
  for (int64_t d = 0; d < D; d++) dot += q[d] * half_to_f(sp.k[at + d]);
  sc.push_back(dot * scale);
  vrows.push_back(sp.v + at);
  return dot * scale;
}

}  // namespace

void gemm(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
          Epilogue epi, Scratch&, const DeviceContext&) {
  // cuda/gemm.cu: GEMV for M <= 8 and SIMT for unaligned operands keep x in float32; tensor cores round it.
  const bool aligned = W.K % 8 == 0 && ldx % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  gemm_host(y, ldy, x, ldx, W, bias, M, epi, M > 8 && aligned);
}

void gemm_simt(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
               Epilogue epi, cudaStream_t) {
  gemm_host(y, ldy, x, ldx, W, bias, M, epi, false);
}

void layernorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, const float* b,
               int64_t M, int64_t C, float eps, cudaStream_t) {
  for (int64_t m = 0; m < M; m++) {
    const float* xr = x + (int64_t)(rows ? rows[m] : m) * ldx;
    float* yr = y + m * ldy;
    float s = 0.f;
    for (int64_t c = 0; c < C; c++) s += xr[c];
    const float mean = s / (float)C;
    float v = 0.f;
    for (int64_t c = 0; c < C; c++) v += (xr[c] - mean) * (xr[c] - mean);
    const float rstd = 1.f / std::sqrt(v / (float)C + eps);
    for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mean) * rstd * w[c] + b[c];
  }
}

void rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, int64_t M,
             int64_t C, float eps, cudaStream_t) {
  for (int64_t m = 0; m < M; m++) {
    const float* xr = x + (int64_t)(rows ? rows[m] : m) * ldx;
    float* yr = y + m * ldy;
    double ss = 0;
    for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
    const float inv = (float)(1.0 / std::sqrt(ss / (double)C + (double)eps));
    for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * inv * w[c];
  }
}

void silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F, cudaStream_t) {
  for (int64_t m = 0; m < M; m++)
    for (int64_t f = 0; f < F; f++) {
      const float g = x[m * ldx + f];
      y[m * ldy + f] = g / (1.f + std::exp(-g)) * x[m * ldx + F + f];
    }
}

void gelu(float* y, const float* x, int64_t n, cudaStream_t) {
  for (int64_t i = 0; i < n; i++) y[i] = gelu_f(x[i]);
}

void add_inplace(float* y, const float* x, int64_t n, cudaStream_t) {
  for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void softmax_rows(float* y, const float* x, int64_t M, int64_t n, cudaStream_t) {
  for (int64_t m = 0; m < M; m++) {
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; i++) mx = std::max(mx, (double)x[m * n + i]);
    for (int64_t i = 0; i < n; i++) s += std::exp(x[m * n + i] - mx);
    for (int64_t i = 0; i < n; i++) y[m * n + i] = (float)(std::exp(x[m * n + i] - mx) / s);
  }
}

void log_softmax_rows(float* y, const float* x, int64_t M, int64_t n, cudaStream_t) {
  for (int64_t m = 0; m < M; m++) {
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < n; i++) mx = std::max(mx, (double)x[m * n + i]);
    for (int64_t i = 0; i < n; i++) s += std::exp(x[m * n + i] - mx);
    for (int64_t i = 0; i < n; i++) y[m * n + i] = (float)(x[m * n + i] - mx - std::log(s));
  }
}

void rotary(float* x, int64_t ld, int64_t M, int64_t H, int64_t D, int64_t rot_dim, int parts, const int64_t* pos,
            const double* inv_freq, cudaStream_t) {
  const int64_t half = rot_dim / 2, C = H * D;
  for (int64_t r = 0; r < M; r++)
    for (int64_t i = 0; i < half; i++) {
      const double a = (double)pos[r] * inv_freq[i];
      const float c = (float)std::cos(a), s = (float)std::sin(a);
      for (int p = 0; p < parts; p++)
        for (int64_t h = 0; h < H; h++) {
          float* v = x + r * ld + p * C + h * D;
          const float x1 = v[i], x2 = v[i + half];
          v[i] = x1 * c - x2 * s;
          v[i + half] = x2 * c + x1 * s;
        }
    }
}

void embed(float* x, const void* wte, WType type, const float* wpe, const int32_t* tok, const int64_t* pos, int64_t M,
           int64_t C, cudaStream_t) {
  const uint16_t* w = static_cast<const uint16_t*>(wte);
  for (int64_t r = 0; r < M; r++)
    for (int64_t c = 0; c < C; c++) {
      const float p = wpe ? wpe[pos[r] * C + c] : 0.f;
      if (tok[r] < 0) {  // a soft-prompt row: kept, plus its position
        x[r * C + c] += p;
        continue;
      }
      const uint16_t b = w[(int64_t)tok[r] * C + c];
      x[r * C + c] = (type == WType::BF16 ? bf16_to_f32(b) : f16_to_f32(b)) + p;
    }
}

void scale_columns(float* x, int64_t ld, int64_t M, int64_t cols, const float* scale, cudaStream_t) {
  for (int64_t r = 0; r < M; r++)
    for (int64_t c = 0; c < cols; c++) x[r * ld + c] *= scale[c];
}

void move_rows(const RowMove* moves, int64_t count, int64_t C, int64_t layer, bool to_half_, cudaStream_t) {
  for (int64_t i = 0; i < count; i++) {
    const float* src = moves[i].src + layer * moves[i].src_layer_stride;
    if (to_half_) {
      uint16_t* d = static_cast<uint16_t*>(moves[i].dst) + layer * moves[i].dst_layer_stride;
      for (int64_t c = 0; c < C; c++) d[c] = f32_to_f16(src[c]);
    } else {
      float* d = static_cast<float*>(moves[i].dst) + layer * moves[i].dst_layer_stride;
      for (int64_t c = 0; c < C; c++) d[c] = src[c];
    }
  }
}

void to_half(uint16_t* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t C, cudaStream_t) {
  for (int64_t r = 0; r < M; r++)
    for (int64_t c = 0; c < C; c++) y[r * ldy + c] = f32_to_f16(x[r * ldx + c]);
}

void gate_update(float* const* s, int64_t layer_stride, int64_t layer, const float* y, const float* keep, int64_t count,
                 int64_t S, int64_t C, cudaStream_t) {
  for (int64_t i = 0; i < count; i++)
    for (int64_t j = 0; j < S; j++) {
      float* sr = s[i] + layer * layer_stride + j * C;
      const float* yr = y + (i * S + j) * C;
      for (int64_t c = 0; c < C; c++) sr[c] = sr[c] * keep[c] + yr[c] * (1.f - keep[c]);
    }
}

bool flash_supported(int64_t D, int br) {
  if (br == 64) return D == 16 || D == 32 || D == 64 || D == 128;
  if (br == 128) return D == 64 || D == 128;
  return false;
}

void attention_flash(const AttnTask* tasks, int64_t n_tasks, const AttnSpan* spans, int64_t D, int br, int64_t layer,
                     cudaStream_t) {
  if (!flash_supported(D, br)) throw Error("E_INTERNAL", "emulation: flash called for an unsupported shape");
  const float scale = 1.f / std::sqrt((float)D);
  std::vector<float> q(D), sc;
  std::vector<const uint16_t*> vrows;
  for (int64_t ti = 0; ti < n_tasks; ti++) {
    const AttnTask& t = tasks[ti];
    if (t.nq > br || t.nq < 1) throw Error("E_INTERNAL", "emulation: flash task with " + std::to_string(t.nq) + " rows");
    if (t.q_stride % 4 || t.out_stride % 2) throw Error("E_INTERNAL", "emulation: flash task misaligned");
    for (int64_t i = 0; i < t.nq; i++) {
      const int64_t qpos = t.qpos0 + i;
      for (int64_t d = 0; d < D; d++) q[d] = round_half(t.q[i * t.q_stride + t.head * D + d]);
      sc.clear();
      vrows.clear();
      float mx = -INFINITY;
      for (int64_t s = 0; s < t.n_spans; s++) {
        const AttnSpan& sp = spans[t.span0 + s];
        for (int64_t r = 0, n = visible(sp, qpos); r < n; r++)
          mx = std::max(mx, score_key(q.data(), sp, layer, r, t.head, D, scale, sc, vrows));
      }
      float* out = t.out + i * t.out_stride + t.head * D;
      std::vector<double> acc(D, 0.0);
      double l = 0;
      // D 64 with 128-row tiles: the kernel's exponentials are F16 (fast_exp2_h2), argument and result.
      const bool exp_f16 = D == 64 && br == 128;
      for (size_t j = 0; j < sc.size(); j++) {
        const float p = exp_f16 ? round_half(std::exp2(round_half((sc[j] - mx) * 1.4426950408889634f)))
                                : std::exp(sc[j] - mx);
        l += p;
        const float ph = round_half(p);  // P enters the PV product as F16
        for (int64_t d = 0; d < D; d++) acc[d] += ph * half_to_f(vrows[j][d]);
      }
      for (int64_t d = 0; d < D; d++) out[d] = l > 0 ? (float)(acc[d] / l) : 0.f;
    }
  }
}

void attention_simt(const AttnTask* tasks, const AttnSpan* spans, const AttnUnit* units, int64_t n_units,
                    const AttnWork* works, int64_t n_works, int64_t D, int64_t layer, bool vec,
                    float* partial, cudaStream_t) {
  const float scale = 1.f / std::sqrt((float)D);
  // Works, as the kernel: a slice of one query's keys each.
  for (int64_t w = 0; w < n_works; w++) {
    const AttnUnit u = units[works[w].unit];
    const AttnTask& t = tasks[u.task];
    if (works[w].split >= u.nsplit || u.work0 + works[w].split != w)
      throw Error("E_INTERNAL", "emulation: SIMT work list out of order");
    const int64_t qpos = t.qpos0 + u.t;
    const int64_t chunk = (t.n_keys + u.nsplit - 1) / u.nsplit;
    const int64_t r0 = works[w].split * chunk, r1 = std::min(t.n_keys, r0 + chunk);
    const float* q = t.q + u.t * t.q_stride + t.head * D;
    std::vector<float> sc;
    std::vector<const uint16_t*> vrows;
    float mx = -INFINITY;
    for (int64_t r = r0; r < r1; r++) {
      int64_t s = 0, off = r;
      while (off >= spans[t.span0 + s].n) off -= spans[t.span0 + s].n, s++;
      if (s >= t.n_spans) throw Error("E_INTERNAL", "emulation: key index past the task's spans");
      const AttnSpan& sp = spans[t.span0 + s];
      if (sp.pos0 + off > qpos) continue;
      mx = std::max(mx, score_key(q, sp, layer, off, t.head, D, scale, sc, vrows));
    }
    float* p = partial + w * (D + 2);
    double l = 0;
    std::vector<double> acc(D, 0.0);
    for (size_t j = 0; j < sc.size(); j++) {
      const double e = std::exp((double)sc[j] - mx);
      l += e;
      for (int64_t d = 0; d < D; d++) acc[d] += e * half_to_f(vrows[j][d]);
    }
    for (int64_t d = 0; d < D; d++) p[d] = (float)acc[d];
    p[D] = mx;
    p[D + 1] = (float)l;
  }
  for (int64_t ui = 0; ui < n_units; ui++) {
    const AttnUnit u = units[ui];
    const AttnTask& t = tasks[u.task];
    const float* p = partial + (int64_t)u.work0 * (D + 2);
    float M = -INFINITY;
    for (int s = 0; s < u.nsplit; s++) M = std::max(M, p[s * (D + 2) + D]);
    double L = 0;
    for (int s = 0; s < u.nsplit; s++) {
      const float ms = p[s * (D + 2) + D];
      if (ms != -INFINITY) L += std::exp(ms - M) * p[s * (D + 2) + D + 1];
    }
    float* out = t.out + u.t * t.out_stride + t.head * D;
    for (int64_t d = 0; d < D; d++) {
      double o = 0;
      for (int s = 0; s < u.nsplit; s++) {
        const float ms = p[s * (D + 2) + D];
        if (ms != -INFINITY) o += std::exp(ms - M) * p[s * (D + 2) + d];
      }
      out[d] = L > 0 ? (float)(o / L) : 0.f;
    }
  }
}

}  // namespace roost::cuda
