#include <cmath>

#include "ops.h"

namespace roost {

void gelu_reference(float* y, const float* x, int64_t n) {
  const double s = std::sqrt(2.0 / M_PI);
  for (int64_t i = 0; i < n; i++) {
    double v = x[i];
    y[i] = (float)(0.5 * v * (1.0 + std::tanh(s * (v + 0.044715 * v * v * v))));
  }
}

}  // namespace roost
