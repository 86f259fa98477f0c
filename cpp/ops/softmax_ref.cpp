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

namespace {
double log_sum_exp(const float* x, int64_t n) {
  const double mx = row_max(x, n);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += std::exp(x[i] - mx);
  return mx + std::log(sum);
}
}  // namespace

void log_softmax_reference(float* y, const float* x, int64_t n) {
  const double lse = log_sum_exp(x, n);
  for (int64_t i = 0; i < n; i++) y[i] = (float)(x[i] - lse);
}

float log_softmax_at_reference(const float* x, int64_t n, int64_t i) { return (float)(x[i] - log_sum_exp(x, n)); }

}  // namespace roost
