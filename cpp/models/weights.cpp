#include "weights.h"

namespace roost {

std::vector<float> tensor_to_f32(const TensorView& t) {
  std::vector<float> out(t.numel());
  for (size_t i = 0; i < out.size(); i++) out[i] = load_as_f32(t.data, t.dtype, i);
  return out;
}

LayerNormWeights load_layernorm(const Checkpoint& ckpt, const std::string& prefix, int64_t C) {
  return {tensor_to_f32(ckpt.get(prefix + ".weight", {C})), tensor_to_f32(ckpt.get(prefix + ".bias", {C}))};
}

Linear load_linear(const Checkpoint& ckpt, const std::string& prefix, int64_t K, int64_t N) {
  const TensorView& w = ckpt.get(prefix + ".weight", {K, N});
  Linear lin;
  lin.W = pack_matrix(w.data, w.dtype, K, N, /*src_is_nk=*/false);
  lin.bias = tensor_to_f32(ckpt.get(prefix + ".bias", {N}));
  return lin;
}

}  // namespace roost
