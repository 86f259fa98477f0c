// The one model-type dispatch of every device: config.json names the
// architecture, the backend factory gives the device it runs on.
#include "../common.h"
#include "../safetensors.h"
#include "block_recurrent.h"
#include "gpt2.h"
#include "llama.h"
#include "model.h"
#include "opt.h"
#include "perceiver_ar.h"

namespace roost {

std::unique_ptr<Model> load_model(const std::string& dir, const BackendFactory& make_backend) {
  ModelConfig cfg = load_config(dir);  // refuses every config the spec refuses, naming the field
  Checkpoint ckpt = Checkpoint::open(dir);
  // Weights are copied into backend memory, so the mapping closes when ckpt goes.
  std::shared_ptr<Backend> be = make_backend(ckpt);
  if (cfg.model_type == "gpt2") return std::make_unique<Gpt2Model>(cfg, ckpt, be);
  if (cfg.model_type == "perceiver_ar") return std::make_unique<PerceiverArModel>(cfg, ckpt, be);
  if (cfg.llama_family()) return std::make_unique<LlamaModel>(cfg, ckpt, be);
  if (cfg.opt_family()) return std::make_unique<OptModel>(cfg, ckpt, be);
  if (cfg.model_type == "block_recurrent") return std::make_unique<BlockRecurrentModel>(cfg, ckpt, be);
  throw Error("E_CONFIG", dir + "/config.json: model_type \"" + cfg.model_type + "\" is unknown");
}

std::unique_ptr<Model> load_model(const std::string& dir) {
  return load_model(dir, [](const Checkpoint&) { return make_cpu_backend(); });
}

}  // namespace roost
