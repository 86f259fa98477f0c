#include "adapter.h"

#include <cmath>
#include <set>

#include "../common.h"
#include "../json.h"
#include "../safetensors.h"
#include "weights.h"

namespace roost {

namespace {

constexpr size_t kMaxAdapterConfigBytes = 1u << 20;

std::vector<float> finite_tensor(const Checkpoint& ckpt, const std::string& name, const std::vector<int64_t>& shape) {
  std::vector<float> v = tensor_to_f32(ckpt.get(name, shape));
  for (float x : v)
    if (!std::isfinite(x)) throw Error("E_CHECKPOINT", ckpt.source() + ": tensor " + name + " holds a NaN or infinite value");
  return v;
}

}  // namespace

Adapter load_adapter(const std::string& name, const std::string& dir, const ModelConfig& base) {
  const std::string cfg_path = dir + "/adapter_config.json";
  json::Value root;
  try {
    root = json::parse(json::read_file(cfg_path, kMaxAdapterConfigBytes));
  } catch (const json::ParseError& e) {
    throw Error("E_CONFIG", cfg_path + ": invalid JSON " + e.what());
  }
  auto fail = [&](const std::string& what) -> Error { return Error("E_CONFIG", cfg_path + ": " + what); };
  if (!root.is_object()) throw fail("must be a JSON object");

  Adapter a;
  a.name = name;
  const json::Value* type = root.find("peft_type");
  if (!type || !type->is_string() || (type->text != "PROMPT_TUNING" && type->text != "IA3"))
    throw fail("peft_type must be \"PROMPT_TUNING\" or \"IA3\"" + (type ? " (got " + json::dump(*type) + ")" : std::string(" (missing)")));
  a.type = type->text == "IA3" ? "ia3" : "prompt_tuning";

  // The base model it was trained on: every shape must agree with this model's.
  const json::Value* bm = root.find("base_model");
  if (!bm || !bm->is_object()) throw fail("base_model must be an object naming the base model's model_type and sizes");
  const json::Value* mt = bm->find("model_type");
  if (!mt || !mt->is_string()) throw fail("base_model.model_type must be a string");
  if (mt->text != base.model_type)
    throw fail("adapter \"" + name + "\" was made for a " + mt->text + " model; this model is " + base.model_type);
  const std::pair<const char*, int64_t> sizes[] = {
      {"vocab_size", base.vocab_size}, {"n_embd", base.n_embd}, {"n_layer", base.n_layer}, {"n_inner", base.n_inner}};
  for (const auto& [key, have] : sizes) {
    const json::Value* v = bm->find(key);
    if (!v || !v->has_i64) throw fail(std::string("base_model.") + key + " must be an integer");
    if (v->i64 != have)
      throw fail("adapter \"" + name + "\" was made for a model with " + key + " " + std::to_string(v->i64) +
                 "; this model has " + std::to_string(have));
  }
  if (base.model_type != "gpt2")
    throw fail("adapters are supported for model_type gpt2 (dense and bigbird attention), not " + base.model_type);

  const int64_t C = base.n_embd, F = base.n_inner, L = base.n_layer;
  Checkpoint ckpt = Checkpoint::open_file(dir + "/adapter_model.safetensors");
  std::set<std::string> expected;
  if (a.type == "prompt_tuning") {
    const json::Value* p = root.find("num_virtual_tokens");
    if (!p || !p->has_i64 || p->i64 < 1) throw fail("num_virtual_tokens must be an integer >= 1");
    if (base.n_positions > 0 && p->i64 >= base.n_positions)
      throw fail("num_virtual_tokens " + std::to_string(p->i64) + " leaves no room in the model's context of " +
                 std::to_string(base.n_positions));
    a.prompt_tokens = p->i64;
    a.prompt = finite_tensor(ckpt, "prompt_embeddings", {a.prompt_tokens, C});
    expected.insert("prompt_embeddings");
  } else {
    for (int64_t l = 0; l < L; l++) {
      const std::string p = "h." + std::to_string(l) + ".";
      a.ia3_k.push_back(finite_tensor(ckpt, p + "attn.ia3_k", {C}));
      a.ia3_v.push_back(finite_tensor(ckpt, p + "attn.ia3_v", {C}));
      a.ia3_ff.push_back(finite_tensor(ckpt, p + "mlp.ia3_ff", {F}));
      expected.insert({p + "attn.ia3_k", p + "attn.ia3_v", p + "mlp.ia3_ff"});
    }
  }
  for (const std::string& t : ckpt.names())
    if (!expected.count(t))
      throw Error("E_CHECKPOINT", ckpt.source() + ": unexpected tensor " + t + " for a " + type->text + " adapter");
  return a;
}

}  // namespace roost
