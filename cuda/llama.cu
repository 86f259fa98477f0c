// The Llama family's row ops (docs/models.md): RMSNorm, one warp per row with
// the sum of squares in double (as the CPU's cpp/ops/llama_ops.cpp), and the
// SwiGLU product silu(gate) * up, one block per row.
#include "common.cuh"

namespace roost::cuda {

namespace {

__global__ void __launch_bounds__(256)
    rmsnorm_kernel(float* __restrict__ y, int64_t ldy, const float* x, int64_t ldx, const int32_t* __restrict__ rows,
                   const float* __restrict__ w, int M, int C, float eps) {
  const int lane = threadIdx.x & 31;
  const int m = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (m >= M) return;
  const float* xr = x + (int64_t)(rows ? rows[m] : m) * ldx;
  float* yr = y + (int64_t)m * ldy;
  double ss = 0;
  for (int c = lane; c < C; c += 32) ss += (double)xr[c] * xr[c];
  const float inv = (float)(1.0 / sqrt(warp_sum_d(ss) / (double)C + (double)eps));
  for (int c = lane; c < C; c += 32) yr[c] = xr[c] * inv * w[c];
}

__global__ void silu_mul_kernel(float* __restrict__ y, int64_t ldy, const float* __restrict__ x, int64_t ldx, int F) {
  const float* gate = x + (int64_t)blockIdx.x * ldx;
  const float* up = gate + F;
  float* yr = y + (int64_t)blockIdx.x * ldy;
  for (int f = threadIdx.x; f < F; f += blockDim.x) yr[f] = gate[f] / (1.f + expf(-gate[f])) * up[f];
}

}  // namespace

void rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, int64_t M,
             int64_t C, float eps, cudaStream_t stream) {
  if (M <= 0) return;
  rmsnorm_kernel<<<grid_for(M, 8), 256, 0, stream>>>(y, ldy, x, ldx, rows, w, (int)M, (int)C, eps);
  ROOST_CUDA_LAUNCH_CHECK();
}

void silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F, cudaStream_t stream) {
  if (M <= 0 || F <= 0) return;
  silu_mul_kernel<<<(unsigned)M, F >= 256 ? 256 : (unsigned)((F + 31) / 32 * 32), 0, stream>>>(y, ldy, x, ldx, (int)F);
  ROOST_CUDA_LAUNCH_CHECK();
}

}  // namespace roost::cuda
