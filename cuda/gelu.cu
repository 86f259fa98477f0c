// gelu_new (tanh form, docs/models.md) and the residual add, elementwise.
#include <algorithm>

#include "common.cuh"

namespace roost::cuda {

namespace {

__global__ void gelu_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = gelu_new(x[i]);
}

__global__ void add_kernel(float* __restrict__ y, const float* __restrict__ x, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] += x[i];
}

unsigned elementwise_grid(int64_t n) { return (unsigned)std::min<int64_t>((n + 255) / 256, 65535); }

}  // namespace

void gelu(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_kernel<<<elementwise_grid(n), 256, 0, stream>>>(y, x, n);
  ROOST_CUDA_LAUNCH_CHECK();
}

void add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<<<elementwise_grid(n), 256, 0, stream>>>(y, x, n);
  ROOST_CUDA_LAUNCH_CHECK();
}

}  // namespace roost::cuda
