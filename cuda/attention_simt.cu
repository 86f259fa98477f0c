// Attention over key spans on CUDA cores, split over keys (flash-decoding):
// one CTA per work = one query of one head and a slice of its keys. The CTA
// scores 128 keys at a time (a thread per key), keeps a running max and sum,
// and accumulates P V with a thread per output channel; each work leaves an
// unnormalized partial (acc[D], max, sum) and a combine kernel merges a
// query's slices. Decode (one query, long context) and every head size the
// flash kernel lacks run here.
#include "common.cuh"

namespace roost::cuda {

namespace {

constexpr int kThreads = 128;

template <bool VEC>
__global__ void __launch_bounds__(kThreads, 4)
    simt_kernel(const AttnTask* __restrict__ tasks, const AttnSpan* __restrict__ spans,
                const AttnUnit* __restrict__ units, const AttnWork* __restrict__ works, int D,
                int64_t layer, float scale, float* __restrict__ partial) {
  extern __shared__ float q[];  // [D]
  __shared__ float p_sh[kThreads];
  __shared__ const __half* v_sh[kThreads];
  __shared__ float red[32];
  const AttnWork w = works[blockIdx.x];
  const AttnUnit u = units[w.unit];
  const AttnTask t = tasks[u.task];
  const int tid = threadIdx.x;
  const int64_t hd = (int64_t)t.head * D;
  for (int d = tid; d < D; d += kThreads) q[d] = t.q[u.t * t.q_stride + hd + d];
  __syncthreads();

  const int64_t qpos = t.qpos0 + u.t;
  // 32-bit division (a 64-bit one is a called subroutine); a task's keys are far below 2^32.
  const int64_t chunk = (int64_t)(((uint32_t)t.n_keys + (uint32_t)u.nsplit - 1u) / (uint32_t)u.nsplit);
  const int64_t r0 = w.split * chunk, r1 = min(t.n_keys, r0 + chunk);
  const AttnSpan* tsp = spans + t.span0;
  float m_run = -INFINITY, l_run = 0.f, acc0 = 0.f, acc1 = 0.f;
  for (int64_t base = r0; base < r1; base += kThreads) {
    const int64_t r = base + tid;
    float sc = -INFINITY;
    const __half* vp = nullptr;
    if (r < r1) {
      int s = 0;
      int64_t off = r;
      while (off >= tsp[s].n) off -= tsp[s].n, s++;  // r < n_keys: ends inside a span
      const AttnSpan sp = tsp[s];
      if (sp.pos0 + off <= qpos) {
        const int64_t row = layer * sp.layer_stride + off * sp.stride + hd;
        const __half* kp = reinterpret_cast<const __half*>(sp.k) + row;
        float dot = 0.f;
        if (VEC) {
          for (int d = 0; d < D; d += 8) {
            const uint4 raw = *reinterpret_cast<const uint4*>(kp + d);
            const float2 a = Half<__half>::to_float2(raw.x), b = Half<__half>::to_float2(raw.y);
            const float2 c = Half<__half>::to_float2(raw.z), e = Half<__half>::to_float2(raw.w);
            dot += q[d] * a.x + q[d + 1] * a.y + q[d + 2] * b.x + q[d + 3] * b.y + q[d + 4] * c.x + q[d + 5] * c.y +
                   q[d + 6] * e.x + q[d + 7] * e.y;
          }
        } else {
          for (int d = 0; d < D; d++) dot += q[d] * __half2float(kp[d]);
        }
        sc = dot * scale;
        vp = reinterpret_cast<const __half*>(sp.v) + row;
      }
    }
    const float mx = block_max(sc, red);
    const float m_new = fmaxf(m_run, mx);
    const float mu = m_new == -INFINITY ? 0.f : m_new;
    const float alpha = expf(m_run - mu);  // m_run = -inf: 0
    const float p = sc == -INFINITY ? 0.f : expf(sc - mu);
    p_sh[tid] = p;
    v_sh[tid] = vp;
    const float ps = block_sum(p, red);  // its barriers also publish p_sh / v_sh
    l_run = l_run * alpha + ps;
    m_run = m_new;
    const int nk = (int)min((int64_t)kThreads, r1 - base);
    if (tid < D) {
      float a = acc0 * alpha;
      for (int j = 0; j < nk; j++) {
        const float pj = p_sh[j];
        if (pj != 0.f) a += pj * __half2float(v_sh[j][tid]);
      }
      acc0 = a;
    }
    if (tid + kThreads < D) {
      float a = acc1 * alpha;
      for (int j = 0; j < nk; j++) {
        const float pj = p_sh[j];
        if (pj != 0.f) a += pj * __half2float(v_sh[j][tid + kThreads]);
      }
      acc1 = a;
    }
    __syncthreads();  // p_sh / v_sh are rewritten next round
  }
  float* out = partial + (int64_t)blockIdx.x * (D + 2);
  if (tid < D) out[tid] = acc0;
  if (tid + kThreads < D) out[tid + kThreads] = acc1;
  if (tid == 0) {
    out[D] = m_run;
    out[D + 1] = l_run;
  }
}

__global__ void __launch_bounds__(kThreads)
    combine_kernel(const AttnTask* __restrict__ tasks, const AttnUnit* __restrict__ units, int D,
                   const float* __restrict__ partial) {
  const AttnUnit u = units[blockIdx.x];
  const AttnTask t = tasks[u.task];
  const float* p = partial + (int64_t)u.work0 * (D + 2);
  float M = -INFINITY;
  for (int s = 0; s < u.nsplit; s++) M = fmaxf(M, p[s * (D + 2) + D]);
  float L = 0.f;
  for (int s = 0; s < u.nsplit; s++) {
    const float ms = p[s * (D + 2) + D];
    L += ms == -INFINITY ? 0.f : expf(ms - M) * p[s * (D + 2) + D + 1];
  }
  float* out = t.out + u.t * t.out_stride + (int64_t)t.head * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.f;
    for (int s = 0; s < u.nsplit; s++) {
      const float ms = p[s * (D + 2) + D];
      if (ms != -INFINITY) o += expf(ms - M) * p[s * (D + 2) + d];
    }
    out[d] = L > 0.f ? o / L : 0.f;  // no visible key: zeros
  }
}

}  // namespace

void attention_simt(const AttnTask* tasks, const AttnSpan* spans, const AttnUnit* units, int64_t n_units,
                    const AttnWork* works, int64_t n_works, int64_t D, int64_t layer, bool vec,
                    float* partial, cudaStream_t stream) {
  if (n_works <= 0) return;
  if (D > kMaxHeadDim) throw Error("E_INTERNAL", "attention_simt: head size " + std::to_string(D) + " > 256");
  const float scale = 1.f / sqrtf((float)D);
  const size_t smem = (size_t)D * sizeof(float);
  if (vec && D % 8 == 0)
    simt_kernel<true><<<(unsigned)n_works, kThreads, smem, stream>>>(tasks, spans, units, works, (int)D, layer, scale,
                                                                     partial);
  else
    simt_kernel<false><<<(unsigned)n_works, kThreads, smem, stream>>>(tasks, spans, units, works, (int)D, layer,
                                                                      scale, partial);
  ROOST_CUDA_LAUNCH_CHECK();
  combine_kernel<<<(unsigned)n_units, kThreads, 0, stream>>>(tasks, units, (int)D, partial);
  ROOST_CUDA_LAUNCH_CHECK();
}

}  // namespace roost::cuda
