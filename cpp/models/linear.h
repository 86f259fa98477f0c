// HuggingFace nn.Linear weights ([out, in]) into backend memory, shared by the
// architectures that read HF's own tensor names (llama.cpp, opt.cpp).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "../backend.h"
#include "../safetensors.h"

namespace roost {

// nn.Linear weights [n_i, K] stacked row-wise into one [sum n_i, K] matrix, so
// q|k|v (and gate|up) are one GEMM each. Every part must have the first's dtype.
const Matrix* load_stacked_linear(Backend& be, const Checkpoint& ckpt,
                                  const std::vector<std::pair<std::string, int64_t>>& parts, int64_t K);
// A float32 vector [n] (norm weight, bias) in backend memory.
const float* load_vector(Backend& be, const Checkpoint& ckpt, const std::string& name, int64_t n);
// The named vectors [n_i] concatenated (stacked biases).
const float* load_stacked_vector(Backend& be, const Checkpoint& ckpt,
                                 const std::vector<std::pair<std::string, int64_t>>& parts);

}  // namespace roost
