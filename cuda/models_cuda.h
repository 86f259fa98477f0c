// The CUDA models (implementations of roost::Model whose forward runs on the GPU).
#pragma once

#include <memory>

#include "../cpp/config.h"
#include "../cpp/models/model.h"
#include "../cpp/safetensors.h"
#include "runtime.h"

namespace roost::cuda {

std::unique_ptr<Model> make_gpt2(const ModelConfig& cfg, const Checkpoint& ckpt, std::shared_ptr<DeviceContext> ctx);
std::unique_ptr<Model> make_perceiver_ar(const ModelConfig& cfg, const Checkpoint& ckpt,
                                         std::shared_ptr<DeviceContext> ctx);
std::unique_ptr<Model> make_block_recurrent(const ModelConfig& cfg, const Checkpoint& ckpt,
                                            std::shared_ptr<DeviceContext> ctx);

}  // namespace roost::cuda
