// The Llama family's pieces below the golden fixtures (test_gpt2_golden runs
// test/fixtures/{llama,qwen2,mistral}-* against tools/reference/llama.py):
// the rmsnorm / silu_mul ops against plain double loops, rotary_inv_freq's
// rope_scaling, the config refusals, the checkpoint refusals (missing and
// mis-shaped tensors), and a sharded copy of a fixture giving the same logits.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <unistd.h>
#include <string>
#include <vector>

#include "common.h"
#include "config.h"
#include "doctest.h"
#include "models/model.h"
#include "models/rotary.h"
#include "models/weights.h"
#include "ops/ops.h"
#include "checkpoint_edit.h"
#include "random_checkpoint.h"
#include "safetensors.h"

using namespace roost;
using roost_test::copy_with;
using roost_test::error_of;
using roost_test::fixture_tensors;
using roost_test::logits_of;
using roost_test::scratch_dir;
namespace fs = std::filesystem;

TEST_CASE("llama ops: rmsnorm and silu_mul against double loops") {
  ThreadPool pool(2);
  std::mt19937 rng(7);
  std::normal_distribution<float> n01(0.f, 1.f);
  const int64_t M = 5, C = 37, ldx = 41, ldy = 39;
  std::vector<float> x(M * ldx), w(C), y(M * ldy, -7.f);
  for (auto& v : x) v = 3 * n01(rng);
  for (auto& v : w) v = 1 + 0.2f * n01(rng);
  const std::vector<int32_t> rows = {4, 0, 2, 2, 1};
  rmsnorm(y.data(), ldy, x.data(), ldx, rows.data(), w.data(), M, C, 1e-5f, pool);
  double worst = 0;
  for (int64_t m = 0; m < M; m++) {
    const float* xr = x.data() + rows[m] * ldx;
    double ss = 0;
    for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
    const double inv = 1 / std::sqrt(ss / C + 1e-5);
    for (int64_t c = 0; c < C; c++) {
      const double want = xr[c] * inv * w[c];
      worst = std::max(worst, std::fabs(y[m * ldy + c] - want) / (1 + std::fabs(want)));
    }
    CHECK_MESSAGE((y[m * ldy + C] == -7.f), ("rmsnorm writes only C columns of a row"));
  }
  CHECK_MESSAGE((worst < 1e-6), ("rmsnorm (gathered rows, strides) equals the double loop (relative): " + std::to_string(worst)));

  const int64_t F = 19;
  std::vector<float> gu(M * 2 * F), out(M * F);
  for (auto& v : gu) v = 4 * n01(rng);
  silu_mul(out.data(), F, gu.data(), 2 * F, M, F, pool);
  worst = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t f = 0; f < F; f++) {
      const double g = gu[m * 2 * F + f], u = gu[m * 2 * F + F + f];
      const double want = g / (1 + std::exp(-g)) * u;
      worst = std::max(worst, std::fabs(out[m * F + f] - want) / (1 + std::fabs(want)));
    }
  CHECK_MESSAGE((worst < 1e-6), ("silu_mul equals silu(gate) * up (relative): " + std::to_string(worst)));
}

TEST_CASE("llama rotary_inv_freq: plain, linear and llama3 rope_scaling") {
  ModelConfig c;
  c.rotary_dim = 12;
  c.rotary_base = 500000.0;
  const std::vector<double> plain = rotary_inv_freq(c);
  CHECK_MESSAGE((plain.size() == 6 && plain[0] == 1.0 && std::fabs(plain[1] - std::pow(500000.0, -2.0 / 12)) < 1e-15), ("inv_freq = base^(-2i/dim)"));
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 4;
  const std::vector<double> lin = rotary_inv_freq(c);
  for (size_t i = 0; i < 6; i++) CHECK_MESSAGE((std::fabs(lin[i] - plain[i] / 4) < 1e-18), ("linear divides by factor"));
  c.rope_scaling = {};
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8;
  c.rope_scaling.low_freq_factor = 1;
  c.rope_scaling.high_freq_factor = 4;
  c.rope_scaling.original_max_position_embeddings = 64;
  const std::vector<double> l3 = rotary_inv_freq(c);
  // wavelengths 2pi/f: 6.3 (< 64/4: kept), 56 (between: smoothed), >= 500 (> 64: divided by 8)
  const double w1 = 2 * M_PI / plain[1], smooth = (64 / w1 - 1) / (4 - 1);
  CHECK_MESSAGE((l3[0] == plain[0]), ("llama3 keeps high frequencies"));
  CHECK_MESSAGE((std::fabs(l3[1] - ((1 - smooth) * plain[1] / 8 + smooth * plain[1])) < 1e-15), ("llama3 smooths the middle band"));
  for (size_t i = 2; i < 6; i++) CHECK_MESSAGE((std::fabs(l3[i] - plain[i] / 8) < 1e-18), ("llama3 divides low frequencies"));
}

// s with the first `from` replaced by `to`.
static std::string sub_json(std::string s, const std::string& from, const std::string& to) {
  return s.replace(s.find(from), from.size(), to);
}

static std::string llama_json(const std::string& model_type, const std::string& extra) {
  return "{\"model_type\":\"" + model_type + "\",\"vocab_size\":300,\"hidden_size\":32,\"num_attention_heads\":4," +
         "\"num_hidden_layers\":2,\"intermediate_size\":48" + (extra.empty() ? "" : "," + extra) + "}";
}

TEST_CASE("llama config: HF keys read, bad configs refused") {
  auto cfg = [](const std::string& t) { return parse_config(t, "m/config.json", "m"); };
  ModelConfig c = cfg(llama_json("llama", "\"num_key_value_heads\":2,\"rope_theta\":500000,\"max_position_embeddings\":64"));
  CHECK_MESSAGE((c.n_embd == 32 && c.n_head == 4 && c.n_kv_head == 2 && c.head_dim() == 8 && c.n_inner == 48 &&
            c.rotary_dim == 8 && c.rotary_base == 500000 && c.n_positions == 64 && !c.qkv_bias && !c.tie_word_embeddings &&
            c.layer_norm_epsilon == 1e-6f), ("llama config read from HF keys"));
  CHECK_MESSAGE((cfg(llama_json("qwen2", "")).qkv_bias && !cfg(llama_json("qwen2", "")).o_bias), ("qwen2 has q/k/v biases only"));
  CHECK_MESSAGE((cfg(llama_json("llama", "\"head_dim\":12")).head_dim() == 12), ("explicit head_dim"));
  CHECK_MESSAGE((cfg(llama_json("mistral", "\"sliding_window\":16,\"max_position_embeddings\":64")).sliding_window == 16), ("window kept"));
  CHECK_MESSAGE((cfg(llama_json("mistral", "\"sliding_window\":64,\"max_position_embeddings\":64")).sliding_window == 0), ("a window as long as the context never binds"));
  CHECK_MESSAGE((cfg(llama_json("llama", "\"eos_token_id\":[7,9]")).eos_token_id == 7), ("an eos_token_id list: the first"));
  CHECK_MESSAGE((cfg(llama_json("llama", "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}")).rope_scaling.factor == 2), ("rope_scaling with the older \"type\" key"));

  const std::vector<std::pair<std::string, std::string>> bad = {
      {llama_json("llama", "\"num_key_value_heads\":3"), "num_key_value_heads must divide num_attention_heads = 4"},
      {llama_json("llama", "\"num_key_value_heads\":8"), "num_key_value_heads must be an integer <= 4"},
      {sub_json(llama_json("llama", ""), "\"hidden_size\":32", "\"hidden_size\":30"), "hidden_size must be divisible"},
      {llama_json("llama", "\"head_dim\":7"), "head_dim must be even"},
      {llama_json("llama", "\"hidden_act\":\"gelu\""), "hidden_act must be \"silu\""},
      {llama_json("llama", "\"rms_norm_eps\":0"), "rms_norm_eps must be a number > 0"},
      {llama_json("llama", "\"rope_theta\":-1"), "rope_theta must be a number > 0"},
      {llama_json("llama", "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}"), "rope_scaling.rope_type is not supported"},
      {llama_json("llama", "\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":4}"), "(got \"dynamic\")"},
      {llama_json("llama", "\"rope_scaling\":{\"rope_type\":\"linear\"}"), "rope_scaling.factor is missing"},
      {llama_json("llama", "\"rope_scaling\":{\"factor\":2}"), "rope_scaling.rope_type is missing"},
      {llama_json("llama", "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4}"),
       "rope_scaling.original_max_position_embeddings is missing"},
      {llama_json("llama", "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,\"high_freq_factor\":1,"
                           "\"original_max_position_embeddings\":64}"),
       "rope_scaling.high_freq_factor must be greater than low_freq_factor"},
      {llama_json("llama", "\"partial_rotary_factor\":0.5"), "partial_rotary_factor must be 1"},
      {llama_json("llama", "\"mlp_bias\":true"), "mlp_bias must be false"},
      {llama_json("llama", "\"attention_bias\":1"), "attention_bias must be true or false"},
      {llama_json("qwen2", "\"use_sliding_window\":true"), "use_sliding_window must be false for qwen2"},
      {llama_json("mistral", "\"sliding_window\":0"), "sliding_window must be an integer >= 1"},
      {llama_json("llama", "\"eos_token_id\":[]"), "eos_token_id must not be an empty list"},
      {llama_json("llama", "\"eos_token_id\":[400]"), "eos_token_id[0] must be an integer <= 299"},
      {"{\"model_type\":\"llama\",\"vocab_size\":300,\"num_attention_heads\":4,\"num_hidden_layers\":2,\"intermediate_size\":8}",
       "hidden_size is missing"},
      {"{\"model_type\":\"llama\",\"vocab_size\":300,\"hidden_size\":32,\"num_attention_heads\":4,\"num_hidden_layers\":2}",
       "intermediate_size is missing"},
  };
  for (const auto& [text, part] : bad) {
    const std::string msg = error_of([&] { cfg(text); });
    CHECK_MESSAGE((msg.rfind("E_CONFIG: m/config.json: ", 0) == 0 && msg.find(part) != std::string::npos), ("config refused naming \"" + part + "\": " + msg));
  }
}

TEST_CASE("llama checkpoint: missing and mis-shaped tensors, sharded, F16/BF16, untied head") {
  const std::string src = "test/fixtures/llama-gqa2";  // untied, GQA 4 over 2, head_dim 8, hidden 32, F 48
  const auto base = fixture_tensors(src);
  const std::vector<std::string> needed = {
      "model.embed_tokens.weight", "lm_head.weight", "model.norm.weight", "model.layers.1.input_layernorm.weight",
      "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
      "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
      "model.layers.1.post_attention_layernorm.weight", "model.layers.0.mlp.gate_proj.weight",
      "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight"};
  for (const std::string& name : needed) {
    auto t = base;
    REQUIRE_MESSAGE((t.erase(name) == 1), ("test bug: the fixture has " + name));
    const std::string msg = error_of([&] { load_model(copy_with("llama", src, "missing", t)); });
    CHECK_MESSAGE((msg.rfind("E_CHECKPOINT", 0) == 0 && msg.find(name) != std::string::npos), ("missing " + name + ": " + msg));
    t = base;
    t[name].shape.insert(t[name].shape.begin(), 1);  // same data, an extra leading dimension
    const std::string msg2 = error_of([&] { load_model(copy_with("llama", src, "misshaped", t)); });
    CHECK_MESSAGE((msg2.rfind("E_CHECKPOINT", 0) == 0 && msg2.find(name) != std::string::npos), ("mis-shaped " + name + ": " + msg2));
  }

  // A sharded copy (two files + index): the same logits to the bit.
  const fs::path dir = scratch_dir("llama") / "sharded";
  fs::create_directories(dir);
  fs::copy_file(fs::path(src) / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  std::map<std::string, roost_test::Tensor> a, b;
  std::string index = "{\"metadata\":{},\"weight_map\":{";
  bool first = true;
  for (const auto& [n, t] : base) {
    const bool in_a = n.find("layers.1.") == std::string::npos;
    (in_a ? a : b)[n] = t;
    index += std::string(first ? "" : ",") + "\"" + n + "\":\"" + (in_a ? "a.safetensors" : "b.safetensors") + "\"";
    first = false;
  }
  index += "}}";
  roost_test::write_safetensors((dir / "a.safetensors").string(), a);
  roost_test::write_safetensors((dir / "b.safetensors").string(), b);
  std::ofstream(dir / "model.safetensors.index.json") << index;
  const std::vector<int32_t> prompt = {3, 14, 15, 92, 65, 35, 89, 79, 256, 2};
  CHECK_MESSAGE((logits_of(dir.string(), prompt) == logits_of(src, prompt)), ("sharded llama checkpoint gives the same logits"));

  // F16 and BF16 copies: the logits of the F32 checkpoint holding the same (rounded) values.
  for (const char* dt : {"F16", "BF16"}) {
    const double worst = roost_test::half_copy_error("llama", src, dt, prompt);
    CHECK_MESSAGE((worst < 1e-4), (std::string(dt) + " llama checkpoint = F32 of the same values: max |dlogit| " + std::to_string(worst)));
  }

  // tie_word_embeddings false without lm_head.weight: refused, naming both.
  auto t = base;
  t.erase("lm_head.weight");
  const std::string msg = error_of([&] { load_model(copy_with("llama", src, "nohead", t)); });
  CHECK_MESSAGE((msg.find("lm_head.weight is missing") != std::string::npos && msg.find("tie_word_embeddings") != std::string::npos), ("untied head missing: " + msg));
  fs::remove_all(scratch_dir("llama"));
}
