// Flash-style attention on tensor cores (FlashAttention-2 forward, Dao 2023):
// one CTA per task = up to BR queries of one head; the task's key spans are
// walked in tiles of BC rows (64, or 128 for head size 64), double-buffered
// in shared memory by cp.async; S = Q K^T and O += P V by mma.sync m16n8k16
// (F16 in, F32 accumulate); the softmax is online (running max and sum per
// row, base-2 exponentials), so no T x T matrix ever exists. P stays in registers (the S accumulator layout is
// the A-operand layout of the next mma).
//
// Each warp owns 16 * MT query rows. Masking (causal clip, span ends) is only
// evaluated on tiles that need it. Dense causal attention is one span
// [0, qpos_end) per task; BigBird is the task's selected blocks, one span
// each: the kernel reads nothing else.
#include "common.cuh"

namespace roost::cuda {

namespace {

__device__ __forceinline__ int64_t visible_rows(const AttnSpan& sp, int64_t qpos_max) {
  const int64_t v = qpos_max - sp.pos0 + 1;  // kNoMaskPos is far enough below any position not to overflow
  return v < 0 ? 0 : (v < sp.n ? v : sp.n);
}

// D: head size; WARPS x MT: 16-row query tiles per CTA; BC: keys per tile;
// MINB: CTAs per SM asked of the register allocator; LAZY: rescale O only
// when a row's running maximum grew (exact: otherwise the factor is 1);
// EXPH: exponentials two at a time in F16 (ex2.approx.f16x2: half the
// special-function work; P is rounded to F16 for the P V product anyway).
template <int D, int WARPS, int MT, int BC, int MINB, bool LAZY, bool EXPH = false>
__global__ void __launch_bounds__(WARPS * 32, MINB)
    flash_kernel(const AttnTask* __restrict__ tasks, const AttnSpan* __restrict__ spans, int64_t layer, float sl2) {
  constexpr int NTH = WARPS * 32, BR = WARPS * 16 * MT, LD = D + 8;
  constexpr int kBC = BC, KD = D / 16, NC = kBC / 8, ND = D / 8;
  static_assert(D % 16 == 0 && ND % 2 == 0, "head size must be a multiple of 16");

  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* sQ = reinterpret_cast<uint16_t*>(smem);  // [BR][LD], only until Q is in registers
  uint16_t* sK = reinterpret_cast<uint16_t*>(smem);  // [2][kBC][LD] (aliases sQ)
  uint16_t* sV = sK + 2 * kBC * LD;                  // [2][kBC][LD]

  const AttnTask t = tasks[blockIdx.x];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t nq = t.nq;
  const int64_t hd = (int64_t)t.head * D;

  // Q tile -> F16 in shared memory -> A fragments in registers for the whole loop.
  for (int c = tid; c < BR * (D / 4); c += NTH) {
    const int r = c / (D / 4), d = (c % (D / 4)) * 4;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < nq) v = *reinterpret_cast<const float4*>(t.q + r * t.q_stride + hd + d);
    uint2 p;
    p.x = Half<__half>::pack(v.x, v.y);
    p.y = Half<__half>::pack(v.z, v.w);
    *reinterpret_cast<uint2*>(&sQ[r * LD + d]) = p;
  }
  __syncthreads();
  uint32_t qf[MT][KD][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int kd = 0; kd < KD; kd++) {
      const int row = warp * 16 * MT + mt * 16 + (lane & 15), col = kd * 16 + (lane >> 4) * 8;
      ldmatrix_x4(qf[mt][kd][0], qf[mt][kd][1], qf[mt][kd][2], qf[mt][kd][3], &sQ[row * LD + col]);
    }
  __syncthreads();  // sQ is now free for K/V

  float o[MT][ND][4];
  float m_run[MT][2], l_run[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int nd = 0; nd < ND; nd++)
#pragma unroll
      for (int e = 0; e < 4; e++) o[mt][nd][e] = 0.f;
    m_run[mt][0] = m_run[mt][1] = -INFINITY;
    l_run[mt][0] = l_run[mt][1] = 0.f;
  }

  const int64_t qpos_lo = t.qpos0, qpos_hi = t.qpos0 + nq - 1;
  const AttnSpan* tsp = spans + t.span0;
  const int nsp = t.n_spans;

  auto load_tile = [&](int s, int64_t r, int buf) {
    const AttnSpan sp = tsp[s];
    const int64_t nrows = min((int64_t)kBC, visible_rows(sp, qpos_hi) - r);
    const uint16_t* kb = sp.k + layer * sp.layer_stride + hd;
    const uint16_t* vb = sp.v + layer * sp.layer_stride + hd;
    for (int c = tid; c < kBC * (D / 8); c += NTH) {
      const int row = c / (D / 8), col = (c % (D / 8)) * 8;
      const bool ok = row < nrows;  // rows past the span are zero-filled (0 * garbage would be NaN)
      const int64_t off = (r + row) * sp.stride + col;
      cp_async16(&sK[(buf * kBC + row) * LD + col], ok ? (const void*)(kb + off) : (const void*)kb, ok);
      cp_async16(&sV[(buf * kBC + row) * LD + col], ok ? (const void*)(vb + off) : (const void*)vb, ok);
    }
  };

  // Tiles: (span s, first row r); every thread walks the same sequence.
  int s = 0;
  int64_t r = 0;
  while (s < nsp && r >= visible_rows(tsp[s], qpos_hi)) s++, r = 0;
  if (s < nsp) {
    load_tile(s, r, 0);
    cp_async_commit();
  }
  int buf = 0;
  while (s < nsp) {
    int s2 = s;
    int64_t r2 = r + kBC;
    while (s2 < nsp && r2 >= visible_rows(tsp[s2], qpos_hi)) s2++, r2 = 0;
    cp_async_wait_all();
    __syncthreads();  // tile `buf` landed for everyone; buffer buf^1 is no longer read
    if (s2 < nsp) {
      load_tile(s2, r2, buf ^ 1);
      cp_async_commit();
    }
    const AttnSpan sp = tsp[s];
    const int64_t nrows = min((int64_t)kBC, visible_rows(sp, qpos_hi) - r);
    const int64_t kpos0 = sp.pos0 + r;

    // S = Q K^T
    float sc[MT][NC][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int nc = 0; nc < NC; nc++)
#pragma unroll
        for (int e = 0; e < 4; e++) sc[mt][nc][e] = 0.f;
    const uint16_t* kt = sK + buf * kBC * LD;
#pragma unroll
    for (int kd = 0; kd < KD; kd++)
#pragma unroll
      for (int nc = 0; nc < NC; nc += 2) {
        uint32_t b0, b1, b2, b3;
        const int key = nc * 8 + (lane & 7) + (lane >> 4) * 8, col = kd * 16 + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(b0, b1, b2, b3, &kt[key * LD + col]);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma16816<__half>(sc[mt][nc], qf[mt][kd], b0, b1);
          mma16816<__half>(sc[mt][nc + 1], qf[mt][kd], b2, b3);
        }
      }

    // Mask keys past the span and keys after the query (causal clip).
    if (nrows < kBC || kpos0 + kBC - 1 > qpos_lo) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nc = 0; nc < NC; nc++)
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int c = nc * 8 + (lane & 3) * 2 + (e & 1);
            const int row = warp * 16 * MT + mt * 16 + (lane >> 2) + (e >> 1) * 8;
            if (c >= nrows || kpos0 + c > t.qpos0 + row) sc[mt][nc][e] = -INFINITY;
          }
    }

    // Online softmax: rows (lane>>2) and (lane>>2)+8 of each m tile; a row's
    // 64 scores are spread over the 4 lanes of a quad.
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int hh = 0; hh < 2; hh++) {
        float mx = m_run[mt][hh];
#pragma unroll
        for (int nc = 0; nc < NC; nc++) mx = fmaxf(mx, fmaxf(sc[mt][nc][2 * hh], sc[mt][nc][2 * hh + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mu = mx == -INFINITY ? 0.f : mx * sl2;  // no key yet: keep exp2 finite
        if (!LAZY || mx > m_run[mt][hh]) {
          const float alpha = fast_exp2(m_run[mt][hh] * sl2 - mu);
          m_run[mt][hh] = mx;
          l_run[mt][hh] *= alpha;
#pragma unroll
          for (int nd = 0; nd < ND; nd++) {
            o[mt][nd][2 * hh] *= alpha;
            o[mt][nd][2 * hh + 1] *= alpha;
          }
        }
        float rs = 0.f;
        if constexpr (EXPH) {
          // P as packed F16 pairs in the first slot of each pair; the row sum in F16 within the tile.
          __half2 hs = __float2half2_rn(0.f);
#pragma unroll
          for (int nc = 0; nc < NC; nc++) {
            const uint32_t a = Half<__half>::pack(fmaf(sc[mt][nc][2 * hh], sl2, -mu),
                                                  fmaf(sc[mt][nc][2 * hh + 1], sl2, -mu));
            const uint32_t pp = fast_exp2_h2(a);
            sc[mt][nc][2 * hh] = __uint_as_float(pp);
            hs = __hadd2(hs, *reinterpret_cast<const __half2*>(&pp));
          }
          const float2 f = __half22float2(hs);
          rs = f.x + f.y;
        } else {
#pragma unroll
          for (int nc = 0; nc < NC; nc++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
              const float p = fast_exp2(fmaf(sc[mt][nc][2 * hh + j], sl2, -mu));
              sc[mt][nc][2 * hh + j] = p;
              rs += p;
            }
        }
        l_run[mt][hh] += rs;  // per-lane partial; the quad sums at the end
      }

    // O += P V (P from registers as F16 A fragments; V^T fragments by ldmatrix.trans).
    const uint16_t* vt = sV + buf * kBC * LD;
#pragma unroll
    for (int kc = 0; kc < kBC / 16; kc++) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        if constexpr (EXPH) {
          pa[mt][0] = __float_as_uint(sc[mt][2 * kc][0]);
          pa[mt][1] = __float_as_uint(sc[mt][2 * kc][2]);
          pa[mt][2] = __float_as_uint(sc[mt][2 * kc + 1][0]);
          pa[mt][3] = __float_as_uint(sc[mt][2 * kc + 1][2]);
        } else {
          pa[mt][0] = Half<__half>::pack(sc[mt][2 * kc][0], sc[mt][2 * kc][1]);
          pa[mt][1] = Half<__half>::pack(sc[mt][2 * kc][2], sc[mt][2 * kc][3]);
          pa[mt][2] = Half<__half>::pack(sc[mt][2 * kc + 1][0], sc[mt][2 * kc + 1][1]);
          pa[mt][3] = Half<__half>::pack(sc[mt][2 * kc + 1][2], sc[mt][2 * kc + 1][3]);
        }
      }
#pragma unroll
      for (int nd = 0; nd < ND; nd += 2) {
        uint32_t b0, b1, b2, b3;
        const int key = kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, col = nd * 8 + (lane >> 4) * 8;
        ldmatrix_x4_trans(b0, b1, b2, b3, &vt[key * LD + col]);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma16816<__half>(o[mt][nd], pa[mt], b0, b1);
          mma16816<__half>(o[mt][nd + 1], pa[mt], b2, b3);
        }
      }
    }
    s = s2;
    r = r2;
    buf ^= 1;
  }

#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
      float l = l_run[mt][hh];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;  // no visible key: zeros
      const int row = warp * 16 * MT + mt * 16 + (lane >> 2) + hh * 8;
      if (row < nq) {
        float* out = t.out + row * t.out_stride + hd;
#pragma unroll
        for (int nd = 0; nd < ND; nd++) {
          const int c = nd * 8 + (lane & 3) * 2;
          *reinterpret_cast<float2*>(out + c) = make_float2(o[mt][nd][2 * hh] * inv, o[mt][nd][2 * hh + 1] * inv);
        }
      }
    }
}

template <int D, int WARPS, int MT, int BC = 64, int MINB = 1, bool LAZY = false, bool EXPH = false>
void launch(const AttnTask* tasks, int64_t n, const AttnSpan* spans, int64_t layer, cudaStream_t stream) {
  constexpr int BR = WARPS * 16 * MT, LD = D + 8;
  constexpr size_t smem = (size_t)(BR * LD > 4 * BC * LD ? BR * LD : 4 * BC * LD) * 2;
  auto kernel = flash_kernel<D, WARPS, MT, BC, MINB, LAZY, EXPH>;
  if (smem > 48 * 1024)
    ROOST_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  const float sl2 = 1.4426950408889634f / sqrtf((float)D);  // 1/sqrt(D) in base-2 exponent units
  kernel<<<(unsigned)n, WARPS * 32, smem, stream>>>(tasks, spans, layer, sl2);
  ROOST_CUDA_LAUNCH_CHECK();
}

}  // namespace

bool flash_supported(int64_t D, int br) {
  if (br == 64) return D == 16 || D == 32 || D == 64 || D == 128;
  if (br == 128) return D == 64 || D == 128;
  return false;
}

void attention_flash(const AttnTask* tasks, int64_t n_tasks, const AttnSpan* spans, int64_t D, int br, int64_t layer,
                     cudaStream_t stream) {
  if (n_tasks <= 0) return;
  if (!flash_supported(D, br))
    throw Error("E_INTERNAL", "attention_flash: no kernel for head size " + std::to_string(D) + " and " +
                                  std::to_string(br) + " query rows");
  if (br == 64) {
    switch (D) {
      case 16: return launch<16, 4, 1>(tasks, n_tasks, spans, layer, stream);
      case 32: return launch<32, 4, 1>(tasks, n_tasks, spans, layer, stream);
      case 64: return launch<64, 4, 1>(tasks, n_tasks, spans, layer, stream);
      default: return launch<128, 4, 1>(tasks, n_tasks, spans, layer, stream);
    }
  }
  // Chosen on an H100 by bench/gpu/flash_tune.cu (16k tokens: 273 TFLOP/s against 262 for
  // <64, 4, 2> with 64-key tiles and no LAZY/EXPH, in the same run).
  if (D == 64) return launch<64, 4, 2, 128, 1, true, true>(tasks, n_tasks, spans, layer, stream);
  return launch<128, 8, 1>(tasks, n_tasks, spans, layer, stream);
}

}  // namespace roost::cuda
