// relu and the exact (erf) gelu of ops.h: plain loops the compiler vectorises
// (relu) or that cost little next to the GEMM they follow (gelu_erf).
#include <cmath>

#include "ops.h"

namespace roost {

void relu(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

void gelu_erf(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.70710678118654752f));
}

}  // namespace roost
