// The Llama family's row ops (docs/models.md): RMSNorm and the SwiGLU product.
// Both read and write each element once, so they cost a sliver of the GEMMs
// around them; one plain loop per row (vectorised by the compiler), rows split
// over the pool, is the only variant.
#include <cmath>
#include <cstring>

#include "ops.h"

namespace roost {

void rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, int64_t M,
             int64_t C, float eps, ThreadPool& pool) {
  pool.parallel_for(M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) {
      const float* xr = x + (rows ? rows[m] : m) * ldx;
      float* yr = y + m * ldy;
      double ss = 0;  // the mean of squares in double: C terms of one sign
      for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
      const float inv = (float)(1.0 / std::sqrt(ss / (double)C + (double)eps));
      for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * inv * w[c];
    }
  }, 4);
}

void silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F, ThreadPool& pool) {
  pool.parallel_for(M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) {
      const float* gate = x + m * ldx;
      const float* up = gate + F;
      float* yr = y + m * ldy;
      for (int64_t f = 0; f < F; f++) yr[f] = gate[f] / (1.f + std::exp(-gate[f])) * up[f];
    }
  }, 4);
}

}  // namespace roost
