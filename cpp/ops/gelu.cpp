#include "gelu_impl.h"
#include "ops.h"

namespace roost {

void gelu(float* y, const float* x, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: gelu_impl::gelu_avx512(y, x, n); return;
    case Isa::Avx2: gelu_impl::gelu_avx2(y, x, n); return;
    case Isa::Reference: break;
  }
  gelu_reference(y, x, n);
}

}  // namespace roost
