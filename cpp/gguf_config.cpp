// The gpt2 metadata of a GGUF file as a config.json (gguf.h gpt2_config_json).
#include <cmath>
#include <cstdio>
#include <sstream>

#include "common.h"
#include "gguf.h"

namespace roost {

namespace {

// A metadata integer checked to be in [lo, hi], for the config.
uint64_t bounded(const GgufFile& f, const std::string& key, uint64_t lo, uint64_t hi) {
  const uint64_t v = f.get_uint(key);
  if (v < lo || v > hi)
    throw Error("E_CHECKPOINT", f.path() + ": metadata " + key + " is " + std::to_string(v) + ", expected " +
                                    std::to_string(lo) + " to " + std::to_string(hi));
  return v;
}

}  // namespace

std::string gpt2_config_json(const GgufFile& f) {
  const std::string& arch = f.get_string("general.architecture");
  if (arch != "gpt2")
    throw Error("E_CHECKPOINT", f.path() + ": general.architecture is " + arch + "; only gpt2 GGUF files load directly");
  constexpr uint64_t kMax = uint64_t(1) << 31;  // parse_config bounds sizes again; this keeps the text sane
  const TensorView* embd = f.find("token_embd.weight");
  if (!embd || embd->shape.size() != 2)
    throw Error("E_CHECKPOINT", f.path() + ": tensor token_embd.weight is missing or not a matrix");
  const int64_t vocab = embd->shape[0];
  if (const GgufValue* toks = f.find_kv("tokenizer.ggml.tokens")) {
    if (toks->type != GgufValue::ARRAY || toks->elem != GgufValue::STRING)
      throw Error("E_CHECKPOINT", f.path() + ": metadata tokenizer.ggml.tokens is not an array of strings");
    if ((int64_t)toks->count != vocab)
      throw Error("E_CHECKPOINT", f.path() + ": tokenizer.ggml.tokens has " + std::to_string(toks->count) +
                                      " tokens but token_embd.weight has " + std::to_string(vocab) + " rows");
  }
  const uint64_t C = bounded(f, "gpt2.embedding_length", 1, kMax);
  std::ostringstream j;
  j << "{\"model_type\": \"gpt2\", \"vocab_size\": " << vocab << ", \"n_embd\": " << C
    << ", \"n_layer\": " << bounded(f, "gpt2.block_count", 1, kMax)
    << ", \"n_head\": " << bounded(f, "gpt2.attention.head_count", 1, kMax)
    << ", \"n_positions\": " << bounded(f, "gpt2.context_length", 1, kMax);
  if (f.find_kv("gpt2.feed_forward_length")) j << ", \"n_inner\": " << bounded(f, "gpt2.feed_forward_length", 1, kMax);
  if (f.find_kv("gpt2.attention.layer_norm_epsilon")) {
    const double eps = f.get_float("gpt2.attention.layer_norm_epsilon");
    if (!(eps > 0) || !std::isfinite(eps))
      throw Error("E_CHECKPOINT", f.path() + ": metadata gpt2.attention.layer_norm_epsilon must be a finite number > 0");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", eps);
    j << ", \"layer_norm_epsilon\": " << buf;
  }
  if (f.find_kv("tokenizer.ggml.eos_token_id"))
    j << ", \"eos_token_id\": " << bounded(f, "tokenizer.ggml.eos_token_id", 0, (uint64_t)vocab - 1);
  j << "}";
  return j.str();
}

}  // namespace roost
