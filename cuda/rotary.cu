// Rotary position embedding (GPT-NeoX rotate-half) in place on float rows:
// one block per row; the row's cos/sin are computed once in double (angles
// pos * inv_freq) and rounded to float, as cpp/models/rotary.cpp does.
#include "common.cuh"

namespace roost::cuda {

namespace {

__global__ void rotary_kernel(float* x, int64_t ld, int H, int D, int half, int parts, const int64_t* __restrict__ pos,
                              const double* __restrict__ inv_freq) {
  extern __shared__ float cs[];  // cos [half] | sin [half]
  const int64_t r = blockIdx.x;
  const double p = (double)pos[r];
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(p * inv_freq[i], &s, &c);
    cs[i] = (float)c;
    cs[half + i] = (float)s;
  }
  __syncthreads();
  const int64_t C = (int64_t)H * D;
  float* row = x + r * ld;
  for (int idx = threadIdx.x; idx < half * H * parts; idx += blockDim.x) {
    const int i = idx % half, h = (idx / half) % H, part = idx / (half * H);
    float* v = row + part * C + (int64_t)h * D;
    const float c = cs[i], s = cs[half + i];
    const float x1 = v[i], x2 = v[i + half];
    v[i] = x1 * c - x2 * s;
    v[i + half] = x2 * c + x1 * s;
  }
}

}  // namespace

void rotary(float* x, int64_t ld, int64_t M, int64_t H, int64_t D, int64_t rot_dim, int parts, const int64_t* pos,
            const double* inv_freq, cudaStream_t stream) {
  if (M <= 0 || rot_dim <= 0) return;
  const int half = (int)(rot_dim / 2);
  rotary_kernel<<<(unsigned)M, 128, 2 * half * sizeof(float), stream>>>(x, ld, (int)H, (int)D, half, parts, pos,
                                                                        inv_freq);
  ROOST_CUDA_LAUNCH_CHECK();
}

}  // namespace roost::cuda
