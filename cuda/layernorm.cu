// LayerNorm over rows (population variance), one warp per row, float32 with
// a two-pass mean/variance; optional row gather (the head's wanted rows).
#include "common.cuh"

namespace roost::cuda {

namespace {

__global__ void __launch_bounds__(256)
    layernorm_kernel(float* __restrict__ y, int64_t ldy, const float* x, int64_t ldx, const int32_t* __restrict__ rows,
                     const float* __restrict__ w, const float* __restrict__ b, int M, int C, float eps) {
  const int lane = threadIdx.x & 31;
  const int m = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (m >= M) return;
  const float* xr = x + (int64_t)(rows ? rows[m] : m) * ldx;
  float* yr = y + (int64_t)m * ldy;
  float s = 0.f;
  for (int c = lane; c < C; c += 32) s += xr[c];
  const float mean = warp_sum(s) / (float)C;
  float v = 0.f;
  for (int c = lane; c < C; c += 32) {
    const float d = xr[c] - mean;
    v += d * d;
  }
  const float var = warp_sum(v) / (float)C;
  const float rstd = 1.f / sqrtf(var + eps);
  for (int c = lane; c < C; c += 32) yr[c] = (xr[c] - mean) * rstd * w[c] + b[c];
}

}  // namespace

void layernorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, const float* b,
               int64_t M, int64_t C, float eps, cudaStream_t stream) {
  if (M <= 0) return;
  layernorm_kernel<<<grid_for(M, 8), 256, 0, stream>>>(y, ldy, x, ldx, rows, w, b, (int)M, (int)C, eps);
  ROOST_CUDA_LAUNCH_CHECK();
}

}  // namespace roost::cuda
