// The CUDA backend as the engine core sees it (cpp/device.cpp): plain C++, no
// CUDA headers, so cpp/ stays free of them. Only linked when the build has
// CUDA (ROOST_WITH_CUDA).
#pragma once

#include <memory>
#include <string>

#include "../cpp/models/model.h"

namespace roost::cuda_backend {

// CUDA devices this process can use; 0 with the reason in *why when none
// (no driver, no GPU, a driver older than this build's runtime).
int device_count(std::string* why);
// "NVIDIA H100 80GB HBM3"; "" when the device cannot be queried.
std::string device_name(int device);
// Loads <dir> onto `device`: every architecture of shared/spec/models.md.
// Throws roost::Error (E_CONFIG / E_CHECKPOINT as the CPU loader, E_INTERNAL
// for CUDA failures such as running out of device memory).
std::unique_ptr<Model> load_model(const std::string& dir, int device);

}  // namespace roost::cuda_backend
