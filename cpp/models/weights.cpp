#include "weights.h"

namespace roost {

std::vector<float> tensor_to_f32(const TensorView& t) {
  std::vector<float> out(t.numel());
  for (size_t i = 0; i < out.size(); i++) out[i] = load_as_f32(t.data, t.dtype, i);
  return out;
}

}  // namespace roost
