#include <cmath>

#include "ops.h"

namespace roost {

void layernorm_reference(float* y, const float* x, const float* weight, const float* bias, int64_t M, int64_t C,
                         float eps) {
  for (int64_t m = 0; m < M; m++) {
    const float* xr = x + m * C;  // [C]
    float* yr = y + m * C;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; c++) mean += xr[c];
    mean /= C;
    for (int64_t c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
    var /= C;
    double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t c = 0; c < C; c++) yr[c] = (float)((xr[c] - mean) * rstd * weight[c] + bias[c]);
  }
}

}  // namespace roost
