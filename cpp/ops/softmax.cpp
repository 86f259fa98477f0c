#include "ops.h"
#include "softmax_impl.h"

namespace roost {

void softmax(float* x, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: softmax_impl::softmax_avx512(x, n); return;
    case Isa::Avx2: softmax_impl::softmax_avx2(x, n); return;
    case Isa::Reference: break;
  }
  softmax_reference(x, n);
}

void log_softmax(float* y, const float* x, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: softmax_impl::log_softmax_avx512(y, x, n); return;
    case Isa::Avx2: softmax_impl::log_softmax_avx2(y, x, n); return;
    case Isa::Reference: break;
  }
  log_softmax_reference(y, x, n);
}

float log_softmax_at(const float* x, int64_t n, int64_t i) {
  switch (active_isa()) {
    case Isa::Avx512: return softmax_impl::log_softmax_at_avx512(x, n, i);
    case Isa::Avx2: return softmax_impl::log_softmax_at_avx2(x, n, i);
    case Isa::Reference: break;
  }
  return log_softmax_at_reference(x, n, i);
}

}  // namespace roost
