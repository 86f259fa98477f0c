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

void rows_q8_0_reference(int8_t* q, float* d, int32_t* sums, const float* x, int64_t m0, int64_t m1, int64_t M,
                         int64_t K, int64_t tile) {
  const int64_t nb = (K + kQ8Block - 1) / kQ8Block;
  float block[kQ8Block];
  int8_t out[kQ8Block];
  for (int64_t m = m0; m < m1; m++) {
    const Q8Place at = q8_place(m, M, nb, tile);
    for (int64_t b = 0; b < nb; b++) {
      const int64_t k0 = b * kQ8Block, n = std::min<int64_t>(kQ8Block, K - k0);
      std::memcpy(block, x + m * K + k0, n * sizeof(float));
      std::fill(block + n, block + kQ8Block, 0.f);
      const float scale = quantize_block_q8_0(out, block);
      for (int s = 0; s < 8; s++) std::memcpy(q + at.bytes + b * at.block_bytes + s * at.quad_stride, out + 4 * s, 4);
      const int64_t si = at.scale + b * at.scale_stride;
      d[si] = f16_to_f32(f32_to_f16(scale));  // the dot product uses the scale the block stores
      if (sums) {
        int32_t sum = 0;
        for (int i = 0; i < kQ8Block; i++) sum += out[i];
        sums[si] = -128 * sum;
      }
    }
  }
}

}  // namespace quantize_impl

void quantize_rows_q8_0(int8_t* q, float* d, const float* x, int64_t M, int64_t K, ThreadPool* pool, int32_t* sums,
                        int64_t tile) {
  if (tile < 1) throw Error("E_ARGUMENT", "quantize_rows_q8_0: tile must be at least 1 row");
  auto* rows = active_isa() == Isa::Avx512 ? quantize_impl::rows_q8_0_avx512 : quantize_impl::rows_q8_0_reference;
  auto run = [&](int64_t m0, int64_t m1) { rows(q, d, sums, x, m0, m1, M, K, tile); };
  // A decode step's rows are quicker to quantize than to hand to the pool.
  if (!pool || pool->size() == 1 || M * K < (1 << 16)) run(0, M);
  // Whole tiles per thread: a tile's rows share cache lines (their quads interleave),
  // and two threads writing one tile fought over every line (fc2's 32 x 3072 took
  // 96 us in a batch-32 step, 18 on one thread).
  else pool->parallel_for(M, run, tile);
}

}  // namespace roost
