// Q8_0 quantization (llama.cpp's block format, docs/models.md "8-bit weights"): the one
// rounding rule that packing weights and quantizing activations share.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops.h"
#include "quantize_impl.h"

namespace roost {

float quantize_block_q8_0(int8_t q[32], const float x[32]) {
  float amax = 0.f;
  for (int i = 0; i < kQ8Block; i++) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  for (int i = 0; i < kQ8Block; i++) q[i] = (int8_t)std::roundf(x[i] * id);
  return d;
}

namespace quantize_impl {

void rows_q8_0_reference(int8_t* q, float* d, int32_t* sums, const float* x, int64_t m0, int64_t m1, int64_t K) {
  const int64_t nb = (K + kQ8Block - 1) / kQ8Block, Kq = nb * kQ8Block;
  float block[kQ8Block];
  for (int64_t m = m0; m < m1; m++) {
    for (int64_t b = 0; b < nb; b++) {
      const int64_t k0 = b * kQ8Block, n = std::min<int64_t>(kQ8Block, K - k0);
      std::memcpy(block, x + m * K + k0, n * sizeof(float));
      std::fill(block + n, block + kQ8Block, 0.f);
      int8_t* out = q + m * Kq + k0;
      const float scale = quantize_block_q8_0(out, block);
      d[m * nb + b] = f16_to_f32(f32_to_f16(scale));  // the dot product uses the scale the block stores
      if (sums) {
        int32_t s = 0;
        for (int i = 0; i < kQ8Block; i++) s += out[i];
        sums[m * nb + b] = -128 * s;
      }
    }
  }
}

}  // namespace quantize_impl

void quantize_rows_q8_0(int8_t* q, float* d, const float* x, int64_t M, int64_t K, ThreadPool* pool, int32_t* sums) {
  auto* rows = active_isa() == Isa::Avx512 ? quantize_impl::rows_q8_0_avx512 : quantize_impl::rows_q8_0_reference;
  auto run = [&](int64_t m0, int64_t m1) { rows(q, d, sums, x, m0, m1, K); };
  // A decode step's rows are quicker to quantize than to hand to the pool.
  if (!pool || pool->size() == 1 || M * K < (1 << 16)) run(0, M);
  else pool->parallel_for(M, run);
}

}  // namespace roost
