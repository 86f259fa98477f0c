// OPT and XGLM below the golden fixtures (test_gpt2_golden runs
// test/fixtures/{opt,xglm}-* against tools/reference/opt.py and xglm.py): the
// relu / exact-gelu GEMM epilogues against double loops, XGLM's sinusoid
// table, the config refusals, the checkpoint refusals (missing and mis-shaped
// tensors, a missing untied head), OPTModel's "decoder." names and an F16 copy.
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "backend.h"
#include "common.h"
#include "config.h"
#include "doctest.h"
#include "models/model.h"
#include "models/opt.h"
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

TEST_CASE("opt ops: relu and exact gelu, alone and as CPU GEMM epilogues, against double loops") {
  std::mt19937 rng(11);
  std::normal_distribution<float> n01(0.f, 1.f);
  std::vector<float> x(257), y(257);
  for (auto& v : x) v = 4 * n01(rng);
  x[0] = 0.f;
  x[1] = -0.f;
  relu(y.data(), x.data(), (int64_t)x.size());
  for (size_t i = 0; i < x.size(); i++) CHECK_MESSAGE((y[i] == std::max(x[i], 0.f)), ("relu"));
  gelu_erf(y.data(), x.data(), (int64_t)x.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); i++) {
    const double want = 0.5 * x[i] * (1 + std::erf(x[i] / std::sqrt(2.0)));
    worst = std::max(worst, std::fabs(y[i] - want) / (1 + std::fabs(want)));
  }
  CHECK_MESSAGE((worst < 1e-6), ("gelu_erf = 0.5 x (1 + erf(x / sqrt 2)) (relative): " + std::to_string(worst)));

  // The CPU backend's GEMM with each epilogue, W [K, N] F32, bias, a strided output.
  ThreadPool pool(2);
  auto be = make_cpu_backend();
  be->begin_step(pool);
  const int64_t M = 5, K = 19, N = 23, ldy = 29;
  std::vector<float> a(M * K), w(K * N), b(N);
  for (auto& v : a) v = n01(rng);
  for (auto& v : w) v = n01(rng);
  for (auto& v : b) v = n01(rng);
  TensorView t;
  t.name = "w";
  t.dtype = DType::F32;
  t.shape = {K, N};
  t.data = w.data();
  t.nbytes = w.size() * 4;
  const Matrix* W = be->matrix(t, K, N, false);
  for (Epilogue epi : {Epilogue::Relu, Epilogue::GeluErf}) {
    std::vector<float> out(M * ldy, -3.f);
    be->gemm(out.data(), ldy, a.data(), K, *W, b.data(), M, epi);
    worst = 0;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double v = b[n];
        for (int64_t k = 0; k < K; k++) v += (double)a[m * K + k] * w[k * N + n];
        const double want = epi == Epilogue::Relu ? std::max(v, 0.0) : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        worst = std::max(worst, std::fabs(out[m * ldy + n] - want) / (1 + std::fabs(want)));
      }
    CHECK_MESSAGE((worst < 1e-5), ("gemm epilogue " + std::to_string((int)epi) + " (relative): " + std::to_string(worst)));
    CHECK_MESSAGE((out[ldy - 1] == -3.f), ("gemm writes only N columns of a strided row"));
  }
}

TEST_CASE("xglm sinusoid_table: fairseq's half sin, half cos, zero pad row, zero last column when odd") {
  for (int64_t C : {8, 9}) {
    const int64_t rows = 40, half = C / 2;
    const std::vector<float> t = sinusoid_table(rows, C, 5);
    double worst = 0;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t i = 0; i < half; i++) {
        const double f = std::exp(-i * std::log(10000.0) / (half - 1));
        const double s = r == 5 ? 0 : std::sin(r * f), c = r == 5 ? 0 : std::cos(r * f);
        worst = std::max({worst, std::fabs(t[r * C + i] - s), std::fabs(t[r * C + half + i] - c)});
        if (C % 2) CHECK_MESSAGE((t[r * C + C - 1] == 0.f), ("odd width: the last column is zero"));
      }
    CHECK_MESSAGE((worst < 2e-5), ("sinusoids within float32 rounding of the angles: " + std::to_string(worst)));
  }
}

static std::string opt_json(const std::string& extra) {
  return "{\"model_type\":\"opt\",\"vocab_size\":300,\"hidden_size\":32,\"num_attention_heads\":4,\"num_hidden_layers\":2,"
         "\"ffn_dim\":48,\"max_position_embeddings\":64" + (extra.empty() ? "" : "," + extra) + "}";
}
static std::string xglm_json(const std::string& extra) {
  return "{\"model_type\":\"xglm\",\"vocab_size\":300,\"d_model\":32,\"attention_heads\":4,\"num_layers\":2,"
         "\"ffn_dim\":48,\"max_position_embeddings\":64" + (extra.empty() ? "" : "," + extra) + "}";
}

TEST_CASE("opt / xglm config: HF keys read, bad configs refused naming the field") {
  auto cfg = [](const std::string& t) { return parse_config(t, "m/config.json", "m"); };
  ModelConfig o = cfg(opt_json(""));
  CHECK_MESSAGE((o.n_embd == 32 && o.n_head == 4 && o.n_layer == 2 && o.n_inner == 48 && o.n_positions == 64 && o.pre_norm &&
                 o.final_norm && o.linear_bias && o.tie_word_embeddings && o.word_embed_proj_dim == 0 &&
                 o.activation_function == "relu" && o.position_embedding == "learned" && o.layer_norm_epsilon == 1e-5f),
                ("opt defaults: pre-LN, final LayerNorm, biases, tied, relu"));
  ModelConfig p = cfg(opt_json("\"do_layer_norm_before\":false,\"word_embed_proj_dim\":16,\"enable_bias\":false"));
  CHECK_MESSAGE((!p.pre_norm && !p.final_norm && p.word_embed_proj_dim == 16 && !p.linear_bias), ("opt-350m switches"));
  CHECK_MESSAGE((cfg(opt_json("\"word_embed_proj_dim\":32")).word_embed_proj_dim == 0), ("word_embed_proj_dim = hidden_size: no projections"));
  CHECK_MESSAGE((!cfg(opt_json("\"_remove_final_layer_norm\":true")).final_norm), ("_remove_final_layer_norm"));
  ModelConfig x = cfg(xglm_json(""));
  CHECK_MESSAGE((x.n_embd == 32 && x.n_head == 4 && x.position_embedding == "sinusoidal" && x.activation_function == "gelu" &&
                 x.embed_scale == std::sqrt(32.0) && x.pad_token_id == 1 && x.tie_word_embeddings && x.final_norm && x.pre_norm),
                ("xglm defaults: gelu, sqrt(d_model) scale, pad 1, tied"));
  CHECK_MESSAGE((cfg(xglm_json("\"scale_embedding\":false,\"pad_token_id\":null")).embed_scale == 1.0 &&
                 cfg(xglm_json("\"pad_token_id\":null")).pad_token_id == -1), ("xglm scale off, no pad row"));

  const std::vector<std::pair<std::string, std::string>> bad = {
      {opt_json("\"activation_function\":\"silu\""), "activation_function must be \"relu\", \"gelu\" or \"gelu_new\""},
      {opt_json("\"layer_norm_elementwise_affine\":false"), "layer_norm_elementwise_affine must be true"},
      {opt_json("\"do_layer_norm_before\":\"yes\""), "do_layer_norm_before must be true or false"},
      {opt_json("\"enable_bias\":1"), "enable_bias must be true or false"},
      {opt_json("\"word_embed_proj_dim\":0"), "word_embed_proj_dim must be an integer >= 1"},
      {"{\"model_type\":\"opt\",\"vocab_size\":300,\"hidden_size\":32,\"num_attention_heads\":5,\"num_hidden_layers\":2,"
       "\"ffn_dim\":48,\"max_position_embeddings\":64}", "hidden_size must be divisible by num_attention_heads = 5"},
      {opt_json("\"tie_word_embeddings\":\"no\""), "tie_word_embeddings must be true or false"},
      {"{\"model_type\":\"opt\",\"vocab_size\":300,\"hidden_size\":32,\"num_attention_heads\":4,\"num_hidden_layers\":2,"
       "\"max_position_embeddings\":64}", "ffn_dim is missing"},
      {"{\"model_type\":\"opt\",\"vocab_size\":300,\"hidden_size\":32,\"num_attention_heads\":4,\"num_hidden_layers\":2,"
       "\"ffn_dim\":48}", "max_position_embeddings is missing"},
      {xglm_json("\"add_cross_attention\":true"), "add_cross_attention must be false"},
      {xglm_json("\"activation_function\":\"swish\""), "activation_function must be"},
      {xglm_json("\"pad_token_id\":-1"), "pad_token_id must be an integer >= 0"},
      {xglm_json("\"scale_embedding\":0"), "scale_embedding must be true or false"},
      {"{\"model_type\":\"xglm\",\"vocab_size\":300,\"d_model\":2,\"attention_heads\":1,\"num_layers\":1,\"ffn_dim\":4,"
       "\"max_position_embeddings\":8}", "d_model must be an integer >= 4"},
      {"{\"model_type\":\"xglm\",\"vocab_size\":300,\"hidden_size\":32,\"attention_heads\":4,\"num_layers\":2,\"ffn_dim\":48,"
       "\"max_position_embeddings\":64}", "d_model is missing"},
      {"{\"model_type\":\"xglm\",\"vocab_size\":300,\"d_model\":32,\"attention_heads\":5,\"num_layers\":2,\"ffn_dim\":48,"
       "\"max_position_embeddings\":64}", "d_model must be divisible by attention_heads = 5"},
      {"{\"model_type\":\"gptj\",\"vocab_size\":300}", "model_type must be \"gpt2\", \"perceiver_ar\", \"block_recurrent\", \"retro\", \"llama\", \"mistral\", \"qwen2\", \"opt\", \"xglm\" or \"t5\""},
  };
  for (const auto& [text, part] : bad) {
    const std::string msg = error_of([&] { cfg(text); });
    CHECK_MESSAGE((msg.rfind("E_CONFIG: m/config.json: ", 0) == 0 && msg.find(part) != std::string::npos),
                  ("config refused naming \"" + part + "\": " + msg));
  }
}

TEST_CASE("opt / xglm checkpoints: missing and mis-shaped tensors, missing untied head, OPTModel names, F16") {
  const std::vector<std::pair<std::string, std::vector<std::string>>> fixtures = {
      {"test/fixtures/opt-postln-proj",
       {"model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight", "model.decoder.project_in.weight",
        "model.decoder.project_out.weight", "lm_head.weight", "model.decoder.layers.0.self_attn.q_proj.weight",
        "model.decoder.layers.1.self_attn.k_proj.bias", "model.decoder.layers.0.self_attn.v_proj.weight",
        "model.decoder.layers.1.self_attn.out_proj.weight", "model.decoder.layers.0.self_attn.out_proj.bias",
        "model.decoder.layers.1.self_attn_layer_norm.weight", "model.decoder.layers.0.self_attn_layer_norm.bias",
        "model.decoder.layers.0.fc1.weight", "model.decoder.layers.1.fc1.bias", "model.decoder.layers.1.fc2.weight",
        "model.decoder.layers.0.fc2.bias", "model.decoder.layers.1.final_layer_norm.weight"}},
      {"test/fixtures/opt-preln", {"model.decoder.final_layer_norm.weight", "model.decoder.final_layer_norm.bias"}},
      {"test/fixtures/xglm-odd",
       {"model.embed_tokens.weight", "lm_head.weight", "model.layer_norm.weight", "model.layer_norm.bias",
        "model.layers.1.self_attn.q_proj.weight", "model.layers.0.fc1.weight", "model.layers.1.final_layer_norm.bias"}},
  };
  for (const auto& [src, needed] : fixtures) {
    const auto base = fixture_tensors(src);
    for (const std::string& name : needed) {
      auto t = base;
      REQUIRE_MESSAGE((t.erase(name) == 1), ("test bug: " + src + " has " + name));
      const std::string msg = error_of([&] { load_model(copy_with("opt", src, "missing", t)); });
      CHECK_MESSAGE((msg.rfind("E_CHECKPOINT", 0) == 0 && msg.find(name) != std::string::npos), ("missing " + name + ": " + msg));
      t = base;
      t[name].shape.insert(t[name].shape.begin(), 1);  // same data, an extra leading dimension
      const std::string msg2 = error_of([&] { load_model(copy_with("opt", src, "misshaped", t)); });
      CHECK_MESSAGE((msg2.rfind("E_CHECKPOINT", 0) == 0 && msg2.find(name) != std::string::npos), ("mis-shaped " + name + ": " + msg2));
    }
  }

  // tie_word_embeddings false without lm_head.weight: refused, naming both.
  auto t = fixture_tensors("test/fixtures/xglm-odd");
  t.erase("lm_head.weight");
  std::string msg = error_of([&] { load_model(copy_with("opt", "test/fixtures/xglm-odd", "nohead", t)); });
  CHECK_MESSAGE((msg.find("lm_head.weight is missing") != std::string::npos && msg.find("tie_word_embeddings") != std::string::npos),
                ("untied head missing: " + msg));

  // OPTModel / XGLMModel saves ("decoder.*", bare names): the same logits to the bit.
  const std::vector<int32_t> prompt = {3, 14, 15, 92, 65, 35, 89, 79, 256, 2};
  for (const auto& [src, from, to] : {std::tuple<std::string, std::string, std::string>{"test/fixtures/opt-postln-proj", "model.decoder.", "decoder."},
                                      {"test/fixtures/xglm-tiny", "model.", ""}}) {
    std::map<std::string, roost_test::Tensor> renamed;
    for (auto& [n, v] : fixture_tensors(src)) renamed[n.rfind(from, 0) == 0 ? to + n.substr(from.size()) : n] = v;
    CHECK_MESSAGE((logits_of(copy_with("opt", src, "renamed", renamed), prompt) == logits_of(src, prompt)), (src + " with " + to + "* names"));
  }

  // An F16 copy of opt-postln-proj: the logits of the F32 checkpoint holding the same rounded values.
  const double worst = roost_test::half_copy_error("opt", "test/fixtures/opt-postln-proj", "F16", prompt);
  CHECK_MESSAGE((worst < 1e-4), ("F16 opt checkpoint = F32 of the same values: max |dlogit| " + std::to_string(worst)));
  fs::remove_all(scratch_dir("opt"));
}
