#include "elementwise_impl.h"

namespace roost::elementwise_impl {

void add_inplace_reference(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

}  // namespace roost::elementwise_impl
