#include "elementwise_impl.h"
#include "ops.h"

namespace roost {

void add_inplace(float* y, const float* x, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: elementwise_impl::add_inplace_avx512(y, x, n); return;
    case Isa::Avx2: elementwise_impl::add_inplace_avx2(y, x, n); return;
    case Isa::Reference: break;
  }
  elementwise_impl::add_inplace_reference(y, x, n);
}

}  // namespace roost
