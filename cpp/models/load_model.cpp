#include "../common.h"
#include "../safetensors.h"
#include "block_recurrent.h"
#include "gpt2.h"
#include "model.h"
#include "perceiver_ar.h"

namespace roost {

std::unique_ptr<Model> load_model(const std::string& dir) {
  ModelConfig cfg = load_config(dir);  // refuses every config the spec refuses, naming the field
  Checkpoint ckpt = Checkpoint::open(dir);
  // Weights are packed into owned memory, so the mapping closes when ckpt goes.
  if (cfg.model_type == "gpt2") return std::make_unique<Gpt2Model>(cfg, ckpt);
  if (cfg.model_type == "perceiver_ar") return std::make_unique<PerceiverArModel>(cfg, ckpt);
  if (cfg.model_type == "block_recurrent") return std::make_unique<BlockRecurrentModel>(cfg, ckpt);
  throw Error("E_CONFIG", dir + "/config.json: model_type \"" + cfg.model_type + "\" is unknown");
}

}  // namespace roost
