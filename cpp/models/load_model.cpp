// The one model-type dispatch of every device: config.json names the
// architecture, the backend factory gives the device it runs on.
#include <sys/stat.h>

#include "../common.h"
#include "../gguf.h"
#include "../safetensors.h"
#include "block_recurrent.h"
#include "gpt2.h"
#include "llama.h"
#include "model.h"
#include "opt.h"
#include "perceiver_ar.h"
#include "t5.h"
#include "retro.h"

namespace roost {

namespace {

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool has_q8_tensor(const Checkpoint& ckpt) {
  for (const std::string& name : ckpt.names())
    if (ckpt.find(name)->dtype == DType::Q8_0) return true;
  return false;
}

}  // namespace

std::unique_ptr<Model> load_model(const std::string& path, const BackendFactory& make_backend, WeightFormat weights) {
  ModelConfig cfg;
  Checkpoint ckpt = [&] {
    if (!is_regular_file(path)) {  // a folder: config.json, then its weights
      cfg = load_config(path);      // refuses every config the spec refuses, naming the field
      return Checkpoint::open(path);
    }
    // A GGUF file: config from its own metadata, validated as a config.json is.
    Checkpoint c = Checkpoint::open_gguf(path);
    cfg = parse_config(gpt2_config_json(*c.gguf()), path + " (GGUF metadata)", path);
    return c;
  }();
  // Weights are copied into backend memory, so the mapping closes when ckpt goes.
  std::shared_ptr<Backend> be = make_backend(ckpt);
  if (weights == WeightFormat::Q8_0 || has_q8_tensor(ckpt)) require_ops(*be, cfg, {Op::GemmQ8});
  if (cfg.model_type == "gpt2") return std::make_unique<Gpt2Model>(cfg, ckpt, be);
  if (cfg.model_type == "perceiver_ar") return std::make_unique<PerceiverArModel>(cfg, ckpt, be);
  if (cfg.llama_family()) return std::make_unique<LlamaModel>(cfg, ckpt, be);
  if (cfg.opt_family()) return std::make_unique<OptModel>(cfg, ckpt, be);
  if (cfg.model_type == "block_recurrent") return std::make_unique<BlockRecurrentModel>(cfg, ckpt, be);
  if (cfg.encoder_decoder()) return std::make_unique<T5Model>(cfg, ckpt, be);
  if (cfg.model_type == "retro") return std::make_unique<RetroModel>(cfg, ckpt, be);
  throw Error("E_CONFIG", path + "/config.json: model_type \"" + cfg.model_type + "\" is unknown");
}

std::unique_ptr<Model> load_model(const std::string& path, WeightFormat weights, std::optional<KvType> kv) {
  return load_model(path, [weights, kv](const Checkpoint& ckpt) {
    // Auto: a half cache beside 8-bit weights, as llama.cpp's default; float
    // weights keep a float cache, so their results stay those of the reference.
    const bool q8 = weights == WeightFormat::Q8_0 || has_q8_tensor(ckpt);
    return make_cpu_backend(weights, kv ? *kv : q8 ? KvType::F16 : KvType::F32);
  }, weights);
}

}  // namespace roost
