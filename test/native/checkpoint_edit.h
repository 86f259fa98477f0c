// What the checkpoint tests of the model families share: a fixture's tensors
// as float32, a copy of its folder with altered tensors, the logits of a
// folder, the error message of a body that should throw, and the F16 / BF16
// copy of a fixture checked against the F32 of the same rounded values.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common.h"
#include "dtype.h"
#include "models/model.h"
#include "models/weights.h"
#include "random_checkpoint.h"
#include "safetensors.h"
#include "threadpool.h"

namespace roost_test {

// The E_CONFIG / E_CHECKPOINT message of body(), "" when it does not throw.
inline std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const roost::Error& e) {
    return e.code() + ": " + e.what();
  }
  return "";
}

// This process's scratch folder for one test file's altered copies.
inline std::filesystem::path scratch_dir(const std::string& tag) {
  return std::filesystem::temp_directory_path() / ("roost-test-" + tag + "-" + std::to_string(::getpid()));
}

// The fixture's tensors as float32, to rewrite altered copies.
inline std::map<std::string, Tensor> fixture_tensors(const std::string& dir) {
  roost::Checkpoint ckpt = roost::Checkpoint::open(dir);
  std::map<std::string, Tensor> out;
  for (const std::string& n : ckpt.names()) {
    const roost::TensorView* t = ckpt.find(n);
    out[n] = Tensor{t->shape, roost::tensor_to_f32(*t)};
  }
  return out;
}

// scratch_dir(tag)/name holding from's config.json and `tensors`.
inline std::string copy_with(const std::string& tag, const std::string& from, const std::string& name,
                             const std::map<std::string, Tensor>& tensors) {
  const std::filesystem::path dir = scratch_dir(tag) / name;
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(std::filesystem::path(from) / "config.json", dir / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  write_safetensors((dir / "model.safetensors").string(), tensors);
  return dir.string();
}

// Every position's logits of `tokens` in one forward of the model in dir.
inline std::vector<float> logits_of(const std::string& dir, const std::vector<int32_t>& tokens) {
  auto model = roost::load_model(dir);
  roost::ThreadPool pool(1);
  auto state = model->new_state();
  std::vector<float> out(tokens.size() * model->config().vocab_size);
  model->forward({roost::ForwardItem{state.get(), tokens.data(), (int64_t)tokens.size(), true, out.data()}}, pool);
  return out;
}

// The largest |logit| difference, over every position of `prompt`, between
// src stored in 16-bit floats (dtype "F16" or "BF16", each value rounded to
// nearest even) and an F32 copy holding the same rounded values: the error of
// the 16-bit weight path alone (widening in the kernels), not of the rounding.
inline double half_copy_error(const std::string& tag, const std::string& src, const std::string& dtype,
                              const std::vector<int32_t>& prompt) {
  const bool bf = dtype == "BF16";
  auto rounded = fixture_tensors(src);
  std::map<std::string, std::vector<uint16_t>> bits;
  for (auto& [n, t] : rounded)
    for (float& v : t.data) {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      const uint16_t h = bf ? (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16) : roost::f32_to_f16(v);
      bits[n].push_back(h);
      v = bf ? roost::bf16_to_f32(h) : roost::f16_to_f32(h);
    }
  const std::string f32_dir = copy_with(tag, src, "rounded-" + dtype, rounded);
  const std::filesystem::path half_dir = copy_with(tag, src, dtype, rounded);
  std::string header = "{";
  size_t off = 0;
  for (const auto& [n, t] : rounded) {
    std::string shape;
    for (int64_t d : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    header += std::string(header.size() > 1 ? "," : "") + "\"" + n + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[" +
              shape + "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + 2 * t.data.size()) + "]}";
    off += 2 * t.data.size();
  }
  header += "}";
  std::ofstream f(half_dir / "model.safetensors", std::ios::binary | std::ios::trunc);
  const uint64_t hn = header.size();
  f.write(reinterpret_cast<const char*>(&hn), 8);
  f.write(header.data(), (std::streamsize)hn);
  for (const auto& [n, b] : bits) f.write(reinterpret_cast<const char*>(b.data()), (std::streamsize)(2 * b.size()));
  f.close();
  const std::vector<float> want = logits_of(f32_dir, prompt), got = logits_of(half_dir.string(), prompt);
  double worst = 0;
  for (size_t i = 0; i < want.size(); i++) worst = std::max(worst, (double)std::fabs(got[i] - want[i]));
  return worst;
}

}  // namespace roost_test
