// The plain matmul: float accumulation in k order, reading the packed layout
// through the scalar conversions of dtype.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "matmul_impl.h"
#include "ops.h"

namespace roost {

using namespace matmul_impl;

namespace {

// Q8_0: per output, per block b of 32 along K, the exact integer dot product of the
// quantized activations and weights, scaled by d_w * d_x and accumulated in block order
// with one fused multiply-add (the fast kernels round identically, so they match bit
// for bit).
void matmul_q8_0_reference(float* y, const float* x, const PackedMatrix& W, const float* bias, int64_t M) {
  const int64_t K = W.K, N = W.N, nb = q8_blocks(K), Kq = nb * kQ8Block;
  std::vector<int8_t> xq(M * Kq);
  std::vector<float> xd(M * nb);
  quantize_rows_q8_0(xq.data(), xd.data(), x, M, K, nullptr);
  const uint8_t* w = W.data.as<uint8_t>();
  for (int64_t n = 0; n < N; n++)
    for (int64_t m = 0; m < M; m++) {
      float acc = 0.f;
      for (int64_t b = 0; b < nb; b++) {
        int32_t isum = 0;
        for (int64_t i = 0; i < kQ8Block; i++)
          isum += (int32_t)xq[m * Kq + b * kQ8Block + i] * (int8_t)w[q8_weight_offset(K, b * kQ8Block + i, n)];
        uint16_t dw;
        std::memcpy(&dw, w + q8_scale_offset(K, b, n), 2);
        acc = std::fma((float)isum, f16_to_f32(dw) * xd[m * nb + b], acc);
      }
      y[m * N + n] = acc + (bias ? bias[n] : 0.f);
    }
}

}  // namespace

void matmul_reference(float* y, const float* x, const PackedMatrix& W, const float* bias, int64_t M) {
  if (W.dtype == DType::Q8_0) {
    matmul_q8_0_reference(y, x, W, bias, M);
    return;
  }
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
