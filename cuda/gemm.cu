// y = epilogue(x @ W + bias): float32 activations, F16/BF16 weights stored
// [N][K], tensor cores (mma.sync m16n8k16, F32 accumulate). Three kernels:
//   - gemm_tc: tiles BM x BN x 32 through double-buffered shared memory
//     (weights by cp.async, activations converted to F16/BF16 on the way in),
//     optionally split over K with a deterministic reduce;
//   - gemv: M <= 8 rows (decode), one warp per 4 output columns streaming
//     weight rows with 16-byte loads;
//   - gemm_simt: the plain fallback (any K, any alignment), and the reference
//     the tests hold the others to.
#include <algorithm>

#include "common.cuh"

namespace roost::cuda {

namespace {

constexpr int kBK = 32;
constexpr int kLDS = kBK + 8;  // shared row stride in halves: 80 bytes, ldmatrix rows hit distinct banks

__device__ __forceinline__ void epilogue_store(float* y, int epi, float v) {
  if (epi == (int)Epilogue::Add) *y += v;
  else if (epi == (int)Epilogue::Gelu) *y = gelu_new(v);
  else if (epi == (int)Epilogue::Relu) *y = fmaxf(v, 0.f);
  else if (epi == (int)Epilogue::GeluErf) *y = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
  else *y = v;
}

template <typename T, int BM, int BN, int WM, int WN>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32)
    gemm_tc_kernel(float* __restrict__ y, int64_t ldy, const float* __restrict__ x, int64_t ldx,
                   const T* __restrict__ w, const float* __restrict__ bias, int M, int N, int K, int epi,
                   int kt_per_split, float* __restrict__ partial) {
  constexpr int WARPS_N = BN / WN;
  constexpr int NTH = (BM / WM) * WARPS_N * 32;
  constexpr int MT = WM / 16, NT = WN / 8;  // mma tiles per warp
  static_assert(NT % 2 == 0, "B fragments are loaded two n8 tiles at a time");
  constexpr int A_ITERS = BM * kBK / 4 / NTH;  // float4 chunks per thread
  constexpr int B_CHUNKS = BN * kBK / 8;       // 16-byte chunks of a B tile
  constexpr int B_ITERS = (B_CHUNKS + NTH - 1) / NTH;
  static_assert(A_ITERS * NTH * 4 == BM * kBK, "A tile must split evenly");

  __shared__ __align__(16) uint16_t As[2][BM * kLDS];
  __shared__ __align__(16) uint16_t Bs[2][BN * kLDS];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int KT = (K + kBK - 1) / kBK;
  const int kt0 = blockIdx.z * kt_per_split, kt1 = min(KT, kt0 + kt_per_split);

  float acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;

  float4 areg[A_ITERS];
  auto load_a = [&](int kt) {
#pragma unroll
    for (int i = 0; i < A_ITERS; i++) {
      const int c = tid + i * NTH;
      const int row = c / (kBK / 4), col = (c % (kBK / 4)) * 4;
      const int gm = m0 + row, gk = kt * kBK + col;
      areg[i] = (gm < M && gk < K) ? __ldg(reinterpret_cast<const float4*>(x + (int64_t)gm * ldx + gk))
                                   : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  };
  auto store_a = [&](int st) {
#pragma unroll
    for (int i = 0; i < A_ITERS; i++) {
      const int c = tid + i * NTH;
      const int row = c / (kBK / 4), col = (c % (kBK / 4)) * 4;
      uint2 packed;
      packed.x = Half<T>::pack(areg[i].x, areg[i].y);
      packed.y = Half<T>::pack(areg[i].z, areg[i].w);
      *reinterpret_cast<uint2*>(&As[st][row * kLDS + col]) = packed;
    }
  };
  auto load_b = [&](int kt, int st) {
#pragma unroll
    for (int i = 0; i < B_ITERS; i++) {
      const int c = tid + i * NTH;
      if (c < B_CHUNKS) {
        const int row = c / (kBK / 8), col = (c % (kBK / 8)) * 8;
        const int gn = n0 + row, gk = kt * kBK + col;
        const bool ok = gn < N && gk < K;
        cp_async16(&Bs[st][row * kLDS + col], ok ? (const void*)(w + (int64_t)gn * K + gk) : (const void*)w, ok);
      }
    }
  };
  auto compute = [&](int st) {
    const uint16_t* as = As[st];
    const uint16_t* bs = Bs[st];
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t af[MT][4], bf[NT][2];
#pragma unroll
      for (int i = 0; i < MT; i++) {
        const int row = wm * WM + i * 16 + (lane & 15), col = kk + (lane >> 4) * 8;
        ldmatrix_x4(af[i][0], af[i][1], af[i][2], af[i][3], &as[row * kLDS + col]);
      }
#pragma unroll
      for (int j = 0; j < NT; j += 2) {
        const int n = wn * WN + j * 8 + (lane & 7) + (lane >> 4) * 8, col = kk + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(bf[j][0], bf[j][1], bf[j + 1][0], bf[j + 1][1], &bs[n * kLDS + col]);
      }
#pragma unroll
      for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) mma16816<T>(acc[i][j], af[i], bf[j][0], bf[j][1]);
    }
  };

  if (kt0 < kt1) {
    load_a(kt0);
    load_b(kt0, 0);
    cp_async_commit();
    store_a(0);
    cp_async_wait_all();
    __syncthreads();
    for (int kt = kt0; kt < kt1; kt++) {
      const int st = (kt - kt0) & 1;
      const bool more = kt + 1 < kt1;
      if (more) {  // next tile in flight while this one computes
        load_b(kt + 1, st ^ 1);
        cp_async_commit();
        load_a(kt + 1);
      }
      compute(st);
      if (more) {
        store_a(st ^ 1);  // stage st^1 was last read before the previous barrier
        cp_async_wait_all();
      }
      __syncthreads();
    }
  }

#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int row = m0 + wm * WM + i * 16 + (lane >> 2) + (e >> 1) * 8;
        const int col = n0 + wn * WN + j * 8 + (lane & 3) * 2 + (e & 1);
        if (row < M && col < N) {
          if (partial) {
            partial[((int64_t)blockIdx.z * M + row) * N + col] = acc[i][j][e];
          } else {
            epilogue_store(y + (int64_t)row * ldy + col, epi, acc[i][j][e] + (bias ? bias[col] : 0.f));
          }
        }
      }
}

__global__ void splitk_reduce_kernel(float* __restrict__ y, int64_t ldy, const float* __restrict__ partial,
                                     const float* __restrict__ bias, int M, int N, int splits, int epi) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (int64_t)M * N) return;
  const int row = (int)(i / N), col = (int)(i % N);
  float s = 0.f;
  for (int z = 0; z < splits; z++) s += partial[((int64_t)z * M + row) * N + col];
  epilogue_store(y + (int64_t)row * ldy + col, epi, s + (bias ? bias[col] : 0.f));
}

constexpr int kGemvRows = 8;  // largest M of the GEMV path
constexpr int kGemvCols = 4;  // output columns per warp

template <typename T, bool VEC>
__global__ void __launch_bounds__(256)
    gemv_kernel(float* __restrict__ y, int64_t ldy, const float* __restrict__ x, int64_t ldx, const T* __restrict__ w,
                const float* __restrict__ bias, int M, int N, int K, int epi) {
  const int lane = threadIdx.x & 31;
  const int64_t n0 = (((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5) * kGemvCols;
  if (n0 >= N) return;
  float acc[kGemvRows][kGemvCols];
#pragma unroll
  for (int m = 0; m < kGemvRows; m++)
#pragma unroll
    for (int j = 0; j < kGemvCols; j++) acc[m][j] = 0.f;

  if constexpr (VEC) {
    for (int k = lane * 8; k < K; k += 256) {
      float wf[kGemvCols][8];
#pragma unroll
      for (int j = 0; j < kGemvCols; j++) {
        if (n0 + j < N) {
          const uint4 raw = __ldg(reinterpret_cast<const uint4*>(w + (n0 + j) * K + k));
          const float2 a = Half<T>::to_float2(raw.x), b = Half<T>::to_float2(raw.y);
          const float2 c = Half<T>::to_float2(raw.z), d = Half<T>::to_float2(raw.w);
          wf[j][0] = a.x, wf[j][1] = a.y, wf[j][2] = b.x, wf[j][3] = b.y;
          wf[j][4] = c.x, wf[j][5] = c.y, wf[j][6] = d.x, wf[j][7] = d.y;
        } else {
#pragma unroll
          for (int e = 0; e < 8; e++) wf[j][e] = 0.f;
        }
      }
#pragma unroll
      for (int m = 0; m < kGemvRows; m++) {
        if (m < M) {
          const float4 x0 = __ldg(reinterpret_cast<const float4*>(x + m * ldx + k));
          const float4 x1 = __ldg(reinterpret_cast<const float4*>(x + m * ldx + k + 4));
#pragma unroll
          for (int j = 0; j < kGemvCols; j++)
            acc[m][j] += x0.x * wf[j][0] + x0.y * wf[j][1] + x0.z * wf[j][2] + x0.w * wf[j][3] + x1.x * wf[j][4] +
                         x1.y * wf[j][5] + x1.z * wf[j][6] + x1.w * wf[j][7];
        }
      }
    }
  } else {
    for (int k = lane; k < K; k += 32) {
      float wv[kGemvCols];
#pragma unroll
      for (int j = 0; j < kGemvCols; j++) wv[j] = n0 + j < N ? Half<T>::to_float(w[(n0 + j) * K + k]) : 0.f;
#pragma unroll
      for (int m = 0; m < kGemvRows; m++)
        if (m < M) {
          const float xv = x[m * ldx + k];
#pragma unroll
          for (int j = 0; j < kGemvCols; j++) acc[m][j] += xv * wv[j];
        }
    }
  }
#pragma unroll
  for (int m = 0; m < kGemvRows; m++) {
    if (m < M) {
#pragma unroll
      for (int j = 0; j < kGemvCols; j++) {
        const float v = warp_sum(acc[m][j]);
        if (lane == 0 && n0 + j < N) epilogue_store(y + m * ldy + n0 + j, epi, v + (bias ? bias[n0 + j] : 0.f));
      }
    }
  }
}

template <typename T>
__global__ void gemm_simt_kernel(float* __restrict__ y, int64_t ldy, const float* __restrict__ x, int64_t ldx,
                                 const T* __restrict__ w, const float* __restrict__ bias, int M, int N, int K,
                                 int epi) {
  __shared__ float xs[16][17];
  __shared__ float ws[16][17];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * 16 + ty, col = blockIdx.x * 16 + tx;
  const int wn = blockIdx.x * 16 + ty;  // the weight row (output column) this thread loads
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += 16) {
    xs[ty][tx] = (row < M && k0 + tx < K) ? x[(int64_t)row * ldx + k0 + tx] : 0.f;
    ws[ty][tx] = (wn < N && k0 + tx < K) ? Half<T>::to_float(w[(int64_t)wn * K + k0 + tx]) : 0.f;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; kk++) acc += xs[ty][kk] * ws[tx][kk];
    __syncthreads();
  }
  if (row < M && col < N) epilogue_store(y + (int64_t)row * ldy + col, (int)epi, acc + (bias ? bias[col] : 0.f));
}

template <typename T>
void gemm_simt_t(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
                 Epilogue epi, cudaStream_t stream) {
  dim3 grid(grid_for(W.N, 16), grid_for(M, 16));
  gemm_simt_kernel<T><<<grid, dim3(16, 16), 0, stream>>>(y, ldy, x, ldx, static_cast<const T*>(W.data), bias, (int)M,
                                                          (int)W.N, (int)W.K, (int)epi);
  ROOST_CUDA_LAUNCH_CHECK();
}

template <typename T, int BM, int BN, int WM, int WN>
void launch_tc(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
               Epilogue epi, Scratch& ws, const DeviceContext& ctx) {
  const int KT = (int)((W.K + kBK - 1) / kBK);
  const int64_t ctas = (int64_t)grid_for(M, BM) * grid_for(W.N, BN);
  int splits = 1;
  if (ctas < ctx.sm_count() && KT >= 4) {  // too few tiles to fill the GPU: split K
    splits = (int)std::min<int64_t>((2 * ctx.sm_count() + ctas - 1) / ctas, KT / 2);
    splits = std::max(1, std::min(splits, 32));
  }
  const int kt_per = (KT + splits - 1) / splits;
  splits = (KT + kt_per - 1) / kt_per;  // every split gets at least one k tile
  float* partial = splits > 1 ? ws.get<float>((size_t)splits * M * W.N) : nullptr;
  dim3 grid(grid_for(W.N, BN), grid_for(M, BM), splits);
  constexpr int threads = (BM / WM) * (BN / WN) * 32;
  gemm_tc_kernel<T, BM, BN, WM, WN><<<grid, threads, 0, ctx.stream()>>>(
      y, ldy, x, ldx, static_cast<const T*>(W.data), bias, (int)M, (int)W.N, (int)W.K, (int)epi, kt_per, partial);
  ROOST_CUDA_LAUNCH_CHECK();
  if (splits > 1) {
    const int64_t n = M * W.N;
    splitk_reduce_kernel<<<grid_for(n, 256), 256, 0, ctx.stream()>>>(y, ldy, partial, bias, (int)M, (int)W.N, splits,
                                                                     (int)epi);
    ROOST_CUDA_LAUNCH_CHECK();
  }
}

template <typename T>
void gemm_t(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
            Epilogue epi, Scratch& ws, const DeviceContext& ctx) {
  const bool aligned = W.K % 8 == 0 && ldx % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(W.data) % 16 == 0;
  if (M <= kGemvRows) {
    const unsigned blocks = grid_for(W.N, 8 * kGemvCols);  // 8 warps per block
    if (aligned)
      gemv_kernel<T, true><<<blocks, 256, 0, ctx.stream()>>>(y, ldy, x, ldx, static_cast<const T*>(W.data), bias,
                                                              (int)M, (int)W.N, (int)W.K, (int)epi);
    else
      gemv_kernel<T, false><<<blocks, 256, 0, ctx.stream()>>>(y, ldy, x, ldx, static_cast<const T*>(W.data), bias,
                                                               (int)M, (int)W.N, (int)W.K, (int)epi);
    ROOST_CUDA_LAUNCH_CHECK();
    return;
  }
  if (!aligned) return gemm_simt_t<T>(y, ldy, x, ldx, W, bias, M, epi, ctx.stream());
  const int64_t big_ctas = (int64_t)grid_for(M, 128) * grid_for(W.N, 128);
  if (big_ctas >= 2 * ctx.sm_count())
    launch_tc<T, 128, 128, 64, 32>(y, ldy, x, ldx, W, bias, M, epi, ws, ctx);
  else
    launch_tc<T, 64, 64, 32, 32>(y, ldy, x, ldx, W, bias, M, epi, ws, ctx);
}

}  // namespace

void gemm(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
          Epilogue epi, Scratch& ws, const DeviceContext& ctx) {
  if (M <= 0 || W.N <= 0) return;
  if (W.type == WType::BF16) gemm_t<__nv_bfloat16>(y, ldy, x, ldx, W, bias, M, epi, ws, ctx);
  else gemm_t<__half>(y, ldy, x, ldx, W, bias, M, epi, ws, ctx);
}

void gemm_simt(float* y, int64_t ldy, const float* x, int64_t ldx, const DevMatrix& W, const float* bias, int64_t M,
               Epilogue epi, cudaStream_t stream) {
  if (M <= 0 || W.N <= 0) return;
  if (W.type == WType::BF16) gemm_simt_t<__nv_bfloat16>(y, ldy, x, ldx, W, bias, M, epi, stream);
  else gemm_simt_t<__half>(y, ldy, x, ldx, W, bias, M, epi, stream);
}

}  // namespace roost::cuda
