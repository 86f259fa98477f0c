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

}  // namespace roost
