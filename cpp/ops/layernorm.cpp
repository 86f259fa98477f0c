#include "layernorm_impl.h"
#include "ops.h"

namespace roost {

void layernorm(float* y, const float* x, const float* weight, const float* bias, int64_t M, int64_t C, float eps) {
  switch (active_isa()) {
    case Isa::Avx512: layernorm_impl::layernorm_avx512(y, x, weight, bias, M, C, eps); return;
    case Isa::Avx2: layernorm_impl::layernorm_avx2(y, x, weight, bias, M, C, eps); return;
    case Isa::Reference: break;
  }
  layernorm_reference(y, x, weight, bias, M, C, eps);
}

}  // namespace roost
