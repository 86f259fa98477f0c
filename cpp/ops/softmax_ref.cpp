// Max-subtracted softmax with the normalizer in double. A row that is all -inf
// has no defined distribution and comes out NaN (as in every variant).
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"

namespace roost {

namespace {
float row_max(const float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) mx = std::max(mx, x[i]);
  return mx;
}
}  // namespace

void softmax_reference(float* x, int64_t n) {
  const double mx = row_max(x, n);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += std::exp(x[i] - mx);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(std::exp(x[i] - mx) / sum);
}

void log_softmax_reference(float* y, const float* x, int64_t n) {
  const double mx = row_max(x, n);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += std::exp(x[i] - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; i++) y[i] = (float)(x[i] - lse);
}

}  // namespace roost
