#include "device.h"

#include "common.h"

#ifdef ROOST_WITH_CUDA
#include "../cuda/backend.h"
#endif

namespace roost {

bool built_with_cuda() {
#ifdef ROOST_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cuda_unavailable_reason() {
#ifdef ROOST_WITH_CUDA
  std::string why;
  if (cuda_backend::device_count(&why) > 0) return "";
  return "no usable CUDA device (" + why + ")";
#else
  return "this build of Roost has no CUDA support (nvcc was not found at build time)";
#endif
}

bool cuda_available() { return cuda_unavailable_reason().empty(); }

std::string cuda_device_name() {
#ifdef ROOST_WITH_CUDA
  if (cuda_available()) return cuda_backend::device_name(0);
#endif
  return "";
}

std::string resolve_device(const std::string& device) {
  if (device == "cpu") return "cpu";
  if (device == "auto") return cuda_available() ? "cuda" : "cpu";
  if (device == "cuda") {
#ifndef ROOST_WITH_CUDA
    throw Error("E_ARGUMENT", "--device cuda: this build of Roost has no CUDA support (nvcc was not found at build time)");
#else
    const std::string why = cuda_unavailable_reason();
    if (!why.empty()) throw Error("E_ARGUMENT", "--device cuda: " + why);
    return "cuda";
#endif
  }
  throw Error("E_ARGUMENT", "--device must be cpu, cuda or auto (got \"" + device + "\")");
}

std::unique_ptr<Model> load_model_for_device(const std::string& dir, const std::string& device) {
  const std::string where = resolve_device(device);
#ifdef ROOST_WITH_CUDA
  if (where == "cuda") return cuda_backend::load_model(dir, 0);
#endif
  return load_model(dir);
}

}  // namespace roost
