#include "finite_check.h"

#include <cstring>

namespace roost {

namespace {

// An IEEE value is NaN or infinite exactly when its exponent bits are all ones.
template <typename Bits>
int64_t scan(const uint8_t* data, int64_t n, Bits exponent_mask) {
  for (int64_t i = 0; i < n; ++i) {
    Bits b;
    std::memcpy(&b, data + i * int64_t(sizeof(Bits)), sizeof(Bits));  // not necessarily aligned (safetensors.h)
    if ((b & exponent_mask) == exponent_mask) return i;
  }
  return -1;
}

}  // namespace

int64_t first_non_finite(const TensorView& t) {
  const auto* data = static_cast<const uint8_t*>(t.data);
  const int64_t n = t.numel();
  switch (t.dtype) {
    case DType::F32: return scan<uint32_t>(data, n, 0x7f800000u);
    case DType::F16: return scan<uint16_t>(data, n, uint16_t(0x7c00));
    case DType::BF16: return scan<uint16_t>(data, n, uint16_t(0x7f80));
    case DType::Q8_0:  // int8 quants are always finite: only each block's F16 scale can be NaN or infinite
      for (int64_t b = 0; b * kQ8Block < n; ++b) {
        uint16_t d;
        std::memcpy(&d, data + b * int64_t(kQ8BlockBytes), sizeof d);
        if ((d & 0x7c00) == 0x7c00) return b * kQ8Block;
      }
      return -1;
  }
  return -1;
}

}  // namespace roost
