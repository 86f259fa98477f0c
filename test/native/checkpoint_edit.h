// What the checkpoint-refusal tests of the model families share: a fixture's
// tensors as float32, a copy of its folder with altered tensors, the logits of
// a folder, and the error message of a body that should throw.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common.h"
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

}  // namespace roost_test
