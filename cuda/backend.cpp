#include "backend.h"

#include "../cpp/common.h"
#include "../cpp/config.h"
#include "../cpp/safetensors.h"
#include "models_cuda.h"
#include "runtime.h"

namespace roost::cuda_backend {

int device_count(std::string* why) { return cuda::device_count(why); }

std::string device_name(int device) { return cuda::device_name(device); }

std::unique_ptr<Model> load_model(const std::string& dir, int device) {
  ModelConfig cfg = load_config(dir);
  Checkpoint ckpt = Checkpoint::open(dir);
  auto ctx = std::make_shared<cuda::DeviceContext>(device);
  if (cfg.model_type == "gpt2") return cuda::make_gpt2(cfg, ckpt, ctx);
  if (cfg.model_type == "perceiver_ar") return cuda::make_perceiver_ar(cfg, ckpt, ctx);
  if (cfg.model_type == "block_recurrent") return cuda::make_block_recurrent(cfg, ckpt, ctx);
  throw Error("E_CONFIG", dir + "/config.json: model_type \"" + cfg.model_type + "\" is unknown");
}

}  // namespace roost::cuda_backend
