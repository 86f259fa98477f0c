// The plain matmul: float accumulation in k order, reading the packed layout
// through the scalar conversions of dtype.h.
#include <algorithm>
#include <vector>

#include "matmul_impl.h"
#include "ops.h"

namespace roost {

using namespace matmul_impl;

void matmul_reference(float* y, const float* x, const PackedMatrix& W, const float* bias, int64_t M) {
  const int64_t K = W.K, N = W.N;
  std::vector<float> w(kPanel);            // one panel row as float
  std::vector<float> acc(M * kPanel);      // [M][16]
  for (int64_t p = 0; p < panel_count(N); p++) {
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int64_t k = 0; k < K; k++) {
      for (int64_t j = 0; j < kPanel; j++) w[j] = load_as_f32(W.data.data(), W.dtype, (size_t)((p * K + k) * kPanel + j));
      for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < kPanel; j++) acc[m * kPanel + j] += x[m * K + k] * w[j];
    }
    int64_t n0 = p * kPanel, valid = std::min(kPanel, N - n0);
    for (int64_t m = 0; m < M; m++)
      for (int64_t j = 0; j < valid; j++) y[m * N + n0 + j] = acc[m * kPanel + j] + (bias ? bias[n0 + j] : 0.f);
  }
}

}  // namespace roost
