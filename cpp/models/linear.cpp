#include "linear.h"

#include "../common.h"
#include "weights.h"

namespace roost {

const Matrix* load_stacked_linear(Backend& be, const Checkpoint& ckpt,
                                  const std::vector<std::pair<std::string, int64_t>>& parts, int64_t K) {
  std::vector<char> bytes;
  TensorView all;
  int64_t N = 0;
  for (size_t i = 0; i < parts.size(); i++) {
    const TensorView& t = ckpt.get(parts[i].first, {parts[i].second, K});
    if (i == 0) all.dtype = t.dtype;
    if (t.dtype != all.dtype)
      throw Error("E_CHECKPOINT", ckpt.source() + ": " + parts[i].first + " is " + dtype_name(t.dtype) + " but " +
                                      parts[0].first + " is " + dtype_name(all.dtype) + " (they must match)");
    bytes.insert(bytes.end(), static_cast<const char*>(t.data), static_cast<const char*>(t.data) + t.nbytes);
    N += parts[i].second;
  }
  all.name = parts[0].first;
  all.file = ckpt.source();
  all.shape = {N, K};
  all.data = bytes.data();
  all.nbytes = bytes.size();
  return be.matrix(all, K, N, /*src_is_nk=*/true);
}

const float* load_vector(Backend& be, const Checkpoint& ckpt, const std::string& name, int64_t n) {
  return be.floats(tensor_to_f32(ckpt.get(name, {n})));
}

const float* load_stacked_vector(Backend& be, const Checkpoint& ckpt,
                                 const std::vector<std::pair<std::string, int64_t>>& parts) {
  std::vector<float> all;
  for (const auto& [name, n] : parts) {
    std::vector<float> v = tensor_to_f32(ckpt.get(name, {n}));
    all.insert(all.end(), v.begin(), v.end());
  }
  return be.floats(all);
}

}  // namespace roost
