// Random checkpoint folders (config.json + model.safetensors, F32) for the
// native tests and benches of the long-context models: every tensor that
// docs/spec.md names for gpt2 (learned or rotary, any attention),
// perceiver_ar and block_recurrent. Weights are large on purpose (docs/peers.md:
// N(0, std) matrices, LayerNorm weights N(1, 0.2), biases N(0, 0.1)) so a wrong
// mask or scale shows in log-probs. The same seed gives the same tensors.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace roost_test {

struct ModelShape {
  std::string type = "gpt2";  // gpt2 | perceiver_ar | block_recurrent
  int64_t V = 260, C = 64, H = 4, L = 2, F = 0;  // F = 0: 4C
  bool rotary = true;
  int64_t n_positions = 0;  // learned positions need it; 0 = absent
  std::string attention;    // JSON object text for "attention", or empty (dense)
  int64_t latents = 0;      // perceiver_ar
  int64_t block = 0, states = 0;  // block_recurrent
  std::vector<int64_t> recurrent;
  double std = 0.2;
  uint64_t seed = 1;
};

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

inline void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors) {
  std::string header = "{";
  size_t off = 0;
  for (const auto& [name, t] : tensors) {
    if (header.size() > 1) header += ",";
    header += "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); i++) {
      if (i) header += ",";
      header += std::to_string(t.shape[i]);
    }
    const size_t bytes = t.data.size() * sizeof(float);
    header += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + bytes) + "]}";
    off += bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);  // little-endian header size
  f.write(header.data(), (std::streamsize)n);
  for (const auto& [name, t] : tensors) f.write(reinterpret_cast<const char*>(t.data.data()), (std::streamsize)(t.data.size() * sizeof(float)));
  if (!f) throw std::runtime_error("cannot write " + path);
}

inline std::string config_json(const ModelShape& m) {
  std::string c = "{\"model_type\":\"" + m.type + "\",\"vocab_size\":" + std::to_string(m.V) +
                  ",\"n_embd\":" + std::to_string(m.C) + ",\"n_head\":" + std::to_string(m.H) +
                  ",\"n_layer\":" + std::to_string(m.L) + ",\"tokenizer_class\":\"bytes\"";
  if (m.F) c += ",\"n_inner\":" + std::to_string(m.F);
  if (m.rotary) c += ",\"position_embedding\":\"rotary\"";
  if (m.n_positions) c += ",\"n_positions\":" + std::to_string(m.n_positions);
  if (!m.attention.empty()) c += ",\"attention\":" + m.attention;
  if (m.type == "perceiver_ar") c += ",\"num_latents\":" + std::to_string(m.latents);
  if (m.type == "block_recurrent") {
    c += ",\"block_size\":" + std::to_string(m.block) + ",\"num_states\":" + std::to_string(m.states) + ",\"recurrent_layers\":[";
    for (size_t i = 0; i < m.recurrent.size(); i++) {
      if (i) c += ",";
      c += std::to_string(m.recurrent[i]);
    }
    c += "]";
  }
  return c + "}";
}

inline std::map<std::string, Tensor> random_tensors(const ModelShape& m) {
  std::mt19937_64 rng(m.seed);
  std::map<std::string, Tensor> t;
  auto normal = [&](const std::string& name, std::vector<int64_t> shape, double mean, double sd) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::normal_distribution<float> dist((float)mean, (float)sd);
    Tensor x{shape, std::vector<float>(n)};
    for (float& v : x.data) v = dist(rng);
    t[name] = std::move(x);
  };
  auto linear = [&](const std::string& p, int64_t K, int64_t N) {
    normal(p + ".weight", {K, N}, 0, m.std);
    normal(p + ".bias", {N}, 0, 0.1);
  };
  auto ln = [&](const std::string& p) {
    normal(p + ".weight", {m.C}, 1, 0.2);
    normal(p + ".bias", {m.C}, 0, 0.1);
  };
  const int64_t C = m.C, F = m.F ? m.F : 4 * m.C;
  normal("wte.weight", {m.V, C}, 0, m.std);
  if (!m.rotary) normal("wpe.weight", {m.n_positions, C}, 0, m.std);
  for (int64_t l = 0; l < m.L; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    bool rec = false;
    for (int64_t r : m.recurrent) rec |= r == l;
    if (m.type == "perceiver_ar" && l == 0) {
      ln(p + "ln_q");
      ln(p + "ln_kv");
      linear(p + "attn.q_attn", C, C);
      linear(p + "attn.kv_attn", C, 2 * C);
    } else {
      ln(p + "ln_1");
      linear(p + "attn.c_attn", C, 3 * C);
    }
    linear(p + "attn.c_proj", rec ? 2 * C : C, C);
    ln(p + "ln_2");
    linear(p + "mlp.c_fc", C, F);
    linear(p + "mlp.c_proj", F, C);
    if (rec) {
      linear(p + "attn.q_state", C, C);
      linear(p + "attn.kv_state", C, 2 * C);
      ln(p + "ln_s");
      normal(p + "state_init", {m.states, C}, 0, 1);
      linear(p + "state.q_attn", C, C);
      linear(p + "state.c_proj", C, C);
      normal(p + "state.gate_bias", {C}, 0, 1);
    }
  }
  ln("ln_f");
  return t;
}

// Writes <dir>/config.json and <dir>/model.safetensors; returns dir.
inline std::string write_random_model(const std::string& dir, const ModelShape& m) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << config_json(m);
  write_safetensors(dir + "/model.safetensors", random_tensors(m));
  return dir;
}

}  // namespace roost_test
