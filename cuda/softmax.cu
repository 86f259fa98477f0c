// Row softmax and log-softmax, one block per row: max-subtracted, the
// normalizer summed in double (as the CPU reference).
#include "common.cuh"

namespace roost::cuda {

namespace {

template <bool LOG>
__global__ void __launch_bounds__(256) softmax_kernel(float* y, const float* x, int64_t n) {
  __shared__ float redf[32];
  __shared__ double redd[32];
  const float* xr = x + (int64_t)blockIdx.x * n;
  float* yr = y + (int64_t)blockIdx.x * n;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, xr[i]);
  mx = block_max(mx, redf);
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += exp((double)xr[i] - (double)mx);
  s = block_sum_d(s, redd);
  if (LOG) {
    const double lse = (double)mx + log(s);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (float)((double)xr[i] - lse);
  } else {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (float)(exp((double)xr[i] - (double)mx) / s);
  }
}

}  // namespace

void softmax_rows(float* y, const float* x, int64_t M, int64_t n, cudaStream_t stream) {
  if (M <= 0) return;
  softmax_kernel<false><<<(unsigned)M, 256, 0, stream>>>(y, x, n);
  ROOST_CUDA_LAUNCH_CHECK();
}

void log_softmax_rows(float* y, const float* x, int64_t M, int64_t n, cudaStream_t stream) {
  if (M <= 0) return;
  softmax_kernel<true><<<(unsigned)M, 256, 0, stream>>>(y, x, n);
  ROOST_CUDA_LAUNCH_CHECK();
}

}  // namespace roost::cuda
