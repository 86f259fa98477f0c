// Where a model runs: the CPU backend or the CUDA backend (cuda/, found in
// cpp/backend.h's registry), chosen by --device cpu|cuda|auto. A build without
// nvcc has no CUDA backend: "cuda" is refused and "auto" is the CPU. A build with CUDA on a machine without a GPU
// (or driver) still runs on the CPU: "auto" falls back, "cuda" is refused with
// the reason.
#pragma once

#include <memory>
#include <string>

#include "models/model.h"

namespace roost {

// True when this build has the CUDA backend and a CUDA device is usable now.
bool cuda_available();
// Name of CUDA device 0 ("NVIDIA H100 80GB HBM3"), "" when cuda_available() is false.
std::string cuda_device_name();
// Why CUDA is not available ("" when it is): no CUDA in this build, no driver, no device.
std::string cuda_unavailable_reason();
// True when the CUDA backend is linked in and registered (a build with nvcc and
// ROOST_CUDA not OFF whose program called register_cuda_backend()).
bool built_with_cuda();

// "cpu" or "cuda": what `device` ("cpu" | "cuda" | "auto") resolves to here.
// Throws Error("E_ARGUMENT") for any other string, and for "cuda" when CUDA is
// not available (the message says why).
std::string resolve_device(const std::string& device);

// load_model (models/model.h) on the resolved device's backend: the same
// models, with KV caches and states in that backend's memory (one
// device-to-host copy of the wanted logits per forward on CUDA). weights = Q8_0
// (--quantize q8_0) is refused by a backend without Op::GemmQ8 (CUDA, for now).
// kv: the KV cache's element type (unset: load_model's auto; CUDA's is always F16
// and refuses F32).
std::unique_ptr<Model> load_model_for_device(const std::string& dir, const std::string& device,
                                             WeightFormat weights = WeightFormat::Keep,
                                             std::optional<KvType> kv = std::nullopt);

}  // namespace roost
