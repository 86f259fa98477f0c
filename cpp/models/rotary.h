// Rotary position embedding, GPT-NeoX "rotate-half" convention on the first
// rotary_dim channels of each head (docs/spec.md). Angles are computed
// in double: float angles drift by 1e-2 in log-prob at 64k tokens.
#pragma once

#include <cstdint>
#include <vector>

#include "../config.h"

namespace roost {

// The rotary inverse frequencies of a config (empty without rotary): base^(-2i/rotary_dim)
// for i < rotary_dim/2, then rope_scaling (linear: / factor; llama3: HF's
// wavelength-banded rescaling, docs/models.md). In double.
std::vector<double> rotary_inv_freq(const ModelConfig& cfg);

class Rotary {
 public:
  Rotary() = default;
  explicit Rotary(std::vector<double> inv_freq);
  int64_t dim() const { return dim_; }
  // Fills cos/sin tables [n, dim/2] for positions pos[0..n).
  void tables(std::vector<float>& cos, std::vector<float>& sin, const int64_t* pos, int64_t n) const;
  // Rotates rows x[i] (row stride `stride`, H heads of D) in place with table row i.
  void apply(float* x, int64_t stride, int64_t n, int64_t H, int64_t D, const float* cos, const float* sin) const;

 private:
  int64_t dim_ = 0;
  std::vector<double> inv_freq_;  // theta_i = pos * inv_freq_[i]
};

}  // namespace roost
