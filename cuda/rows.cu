// Row-wise data movement: token embedding (+ learned positions), row moves
// (KV appends, rings, states; float -> float or F16), strided float -> F16,
// block_recurrent's fixed-gate state update and the (IA)^3 column scaling.
#include "common.cuh"

namespace roost::cuda {

namespace {

template <typename T>
__global__ void embed_kernel(float* __restrict__ x, const T* __restrict__ wte, const float* __restrict__ wpe,
                             const int32_t* __restrict__ tok, const int64_t* __restrict__ pos, int C) {
  const int64_t r = blockIdx.x;
  const float* p = wpe ? wpe + pos[r] * C : nullptr;
  float* xr = x + r * C;
  if (tok[r] < 0) {  // a soft-prompt row moved in before: keep it, add the position
    if (p)
      for (int c = threadIdx.x; c < C; c += blockDim.x) xr[c] += p[c];
    return;
  }
  const T* e = wte + (int64_t)tok[r] * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) xr[c] = Half<T>::to_float(e[c]) + (p ? p[c] : 0.f);
}

template <bool TO_HALF>
__global__ void move_rows_kernel(const RowMove* __restrict__ moves, int C, int64_t layer) {
  const RowMove mv = moves[blockIdx.x];
  const float* src = mv.src + layer * mv.src_layer_stride;
  if (TO_HALF) {
    __half* d = static_cast<__half*>(mv.dst) + layer * mv.dst_layer_stride;
    for (int c = threadIdx.x; c < C; c += blockDim.x) d[c] = __float2half_rn(src[c]);
  } else {
    float* d = static_cast<float*>(mv.dst) + layer * mv.dst_layer_stride;
    for (int c = threadIdx.x; c < C; c += blockDim.x) d[c] = src[c];
  }
}

__global__ void to_half_kernel(__half* __restrict__ y, int64_t ldy, const float* __restrict__ x, int64_t ldx, int C) {
  const int64_t r = blockIdx.x;
  for (int c = threadIdx.x; c < C; c += blockDim.x) y[r * ldy + c] = __float2half_rn(x[r * ldx + c]);
}

__global__ void gate_kernel(float* const* __restrict__ s, int64_t layer_offset, const float* __restrict__ y,
                            const float* __restrict__ keep, int S, int C) {
  const int i = blockIdx.x / S, j = blockIdx.x % S;
  float* sr = s[i] + layer_offset + (int64_t)j * C;
  const float* yr = y + ((int64_t)i * S + j) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) sr[c] = sr[c] * keep[c] + yr[c] * (1.f - keep[c]);
}

__global__ void scale_columns_kernel(float* __restrict__ x, int64_t ld, const float* __restrict__ scale, int cols) {
  float* xr = x + (int64_t)blockIdx.x * ld;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) xr[c] *= scale[c];
}

unsigned row_threads(int64_t C) { return C >= 256 ? 256 : (unsigned)((C + 31) / 32 * 32); }

}  // namespace

void embed(float* x, const void* wte, WType type, const float* wpe, const int32_t* tok, const int64_t* pos, int64_t M,
           int64_t C, cudaStream_t stream) {
  if (M <= 0) return;
  if (type == WType::BF16)
    embed_kernel<__nv_bfloat16><<<(unsigned)M, row_threads(C), 0, stream>>>(
        x, static_cast<const __nv_bfloat16*>(wte), wpe, tok, pos, (int)C);
  else
    embed_kernel<__half><<<(unsigned)M, row_threads(C), 0, stream>>>(x, static_cast<const __half*>(wte), wpe, tok, pos,
                                                                     (int)C);
  ROOST_CUDA_LAUNCH_CHECK();
}

void move_rows(const RowMove* moves, int64_t count, int64_t C, int64_t layer, bool to_half, cudaStream_t stream) {
  if (count <= 0) return;
  if (to_half) move_rows_kernel<true><<<(unsigned)count, row_threads(C), 0, stream>>>(moves, (int)C, layer);
  else move_rows_kernel<false><<<(unsigned)count, row_threads(C), 0, stream>>>(moves, (int)C, layer);
  ROOST_CUDA_LAUNCH_CHECK();
}

void to_half(uint16_t* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t C, cudaStream_t stream) {
  if (M <= 0) return;
  to_half_kernel<<<(unsigned)M, row_threads(C), 0, stream>>>(reinterpret_cast<__half*>(y), ldy, x, ldx, (int)C);
  ROOST_CUDA_LAUNCH_CHECK();
}

void gate_update(float* const* s, int64_t layer_stride, int64_t layer, const float* y, const float* keep, int64_t count,
                 int64_t S, int64_t C, cudaStream_t stream) {
  if (count <= 0) return;
  gate_kernel<<<(unsigned)(count * S), row_threads(C), 0, stream>>>(s, layer * layer_stride, y, keep, (int)S, (int)C);
  ROOST_CUDA_LAUNCH_CHECK();
}

void scale_columns(float* x, int64_t ld, int64_t M, int64_t cols, const float* scale, cudaStream_t stream) {
  if (M <= 0 || cols <= 0) return;
  scale_columns_kernel<<<(unsigned)M, row_threads(cols), 0, stream>>>(x, ld, scale, (int)cols);
  ROOST_CUDA_LAUNCH_CHECK();
}

}  // namespace roost::cuda
