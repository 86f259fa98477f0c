#include "../common.h"
#include "../safetensors.h"
#include "gpt2.h"
#include "model.h"

namespace roost {

std::unique_ptr<Model> load_model(const std::string& dir) {
  ModelConfig cfg = load_config(dir);
  Checkpoint ckpt = Checkpoint::open(dir);
  // Weights are packed into owned memory, so the mapping closes when ckpt goes.
  if (cfg.model_type == "gpt2") return std::make_unique<Gpt2Model>(cfg, ckpt);
  throw Error("E_CONFIG", dir + "/config.json: model_type \"" + cfg.model_type +
                              "\" is not supported by this engine build yet");
}

}  // namespace roost
