#include "device.h"

#include "backend.h"
#include "common.h"

namespace roost {

namespace {

const char* const kNoCudaBuild = "this build of Roost has no CUDA support (nvcc was not found at build time)";

}  // namespace

bool built_with_cuda() { return find_backend("cuda") != nullptr; }

std::string cuda_unavailable_reason() {
  const BackendProvider* cuda = find_backend("cuda");
  if (!cuda) return kNoCudaBuild;
  std::string why;
  if (cuda->device_count(&why) > 0) return "";
  return "no usable CUDA device (" + why + ")";
}

bool cuda_available() { return cuda_unavailable_reason().empty(); }

std::string cuda_device_name() { return cuda_available() ? find_backend("cuda")->device_name(0) : ""; }

std::string resolve_device(const std::string& device) {
  if (device == "cpu") return "cpu";
  if (device == "auto") return cuda_available() ? "cuda" : "cpu";
  if (device == "cuda") {
    const std::string why = cuda_unavailable_reason();
    if (!why.empty()) throw Error("E_ARGUMENT", "--device cuda: " + why);
    return "cuda";
  }
  throw Error("E_ARGUMENT", "--device must be cpu, cuda or auto (got \"" + device + "\")");
}

std::unique_ptr<Model> load_model_for_device(const std::string& dir, const std::string& device, WeightFormat weights,
                                             std::optional<KvType> kv) {
  if (resolve_device(device) == "cpu") return load_model(dir, weights, kv);
  if (kv == KvType::F32) throw Error("E_ARGUMENT", "--kv-cache-dtype f32: the CUDA backend's KV cache is f16 (use auto or f16)");
  const BackendProvider* cuda = find_backend("cuda");
  return load_model(dir, [cuda](const Checkpoint& ckpt) { return cuda->create(0, ckpt); }, weights);
}

}  // namespace roost
