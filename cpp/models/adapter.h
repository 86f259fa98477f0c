// Per-request adapters of one base model (docs/adapters.md):
//  - prompt tuning (Lester et al. 2021): P learned input embeddings [P, C] run
//    before the first token, at positions 0 .. P-1;
//  - (IA)^3 (Liu et al. 2022): per layer, vectors that rescale the attention
//    keys [C] and values [C] (right after c_attn, before rotary) and the MLP's
//    inner activations [F] (after the nonlinearity, before c_proj).
// An adapter folder holds adapter_config.json and adapter_model.safetensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../config.h"

namespace roost {

struct Adapter {
  std::string name;
  std::string type;              // "prompt_tuning" | "ia3"
  int64_t prompt_tokens = 0;     // P (prompt tuning), else 0
  std::vector<float> prompt;     // [P, C]
  // (IA)^3, one entry per layer (empty otherwise).
  std::vector<std::vector<float>> ia3_k, ia3_v, ia3_ff;

  bool has_ia3() const { return !ia3_k.empty(); }
};

// Reads and validates <dir> against the base model's config. Throws
// Error("E_CONFIG"/"E_CHECKPOINT") naming the folder, the field or tensor,
// and, for an adapter made for another model, both shapes.
Adapter load_adapter(const std::string& name, const std::string& dir, const ModelConfig& base);

}  // namespace roost
