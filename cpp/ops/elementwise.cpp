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

void to_f16(uint16_t* y, const float* x, int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: elementwise_impl::to_f16_avx512(y, x, n); return;
    case Isa::Avx2: elementwise_impl::to_f16_avx2(y, x, n); return;
    case Isa::Reference: break;
  }
  to_f16_reference(y, x, n);
}

void to_f16_reference(uint16_t* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = f32_to_f16(x[i]);
}

}  // namespace roost
