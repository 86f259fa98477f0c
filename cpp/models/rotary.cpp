#include "rotary.h"

#include <cmath>

namespace roost {

std::vector<double> rotary_inv_freq(const ModelConfig& cfg) {
  const int64_t dim = cfg.rotary_dim;
  const auto& s = cfg.rope_scaling;
  std::vector<double> f;
  for (int64_t i = 0; i < dim / 2; i++) {
    double inv = std::pow(cfg.rotary_base, -2.0 * (double)i / (double)dim);
    if (s.type == "linear") {
      inv /= s.factor;
    } else if (s.type == "llama3") {  // HF _compute_llama3_parameters
      const double old_len = (double)s.original_max_position_embeddings;
      const double wavelen = 2.0 * M_PI / inv;
      const double low_wavelen = old_len / s.low_freq_factor, high_wavelen = old_len / s.high_freq_factor;
      if (wavelen > low_wavelen) {
        inv /= s.factor;  // low frequencies: fully scaled
      } else if (wavelen >= high_wavelen) {  // the band between: interpolated
        const double smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        inv = (1.0 - smooth) * inv / s.factor + smooth * inv;
      }
    }
    f.push_back(inv);
  }
  return f;
}

Rotary::Rotary(std::vector<double> inv_freq) : dim_(2 * (int64_t)inv_freq.size()), inv_freq_(std::move(inv_freq)) {}

void Rotary::tables(std::vector<float>& cos, std::vector<float>& sin, const int64_t* pos, int64_t n) const {
  const int64_t half = dim_ / 2;
  cos.resize(n * half);
  sin.resize(n * half);
  for (int64_t t = 0; t < n; t++) {
    for (int64_t i = 0; i < half; i++) {
      double a = (double)pos[t] * inv_freq_[i];
      cos[t * half + i] = (float)std::cos(a);
      sin[t * half + i] = (float)std::sin(a);
    }
  }
}

void Rotary::apply(float* x, int64_t stride, int64_t n, int64_t H, int64_t D, const float* cos, const float* sin) const {
  const int64_t half = dim_ / 2;
  for (int64_t t = 0; t < n; t++) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int64_t h = 0; h < H; h++) {
      float* v = x + t * stride + h * D;  // one head: [D], rotate pairs (i, i + half)
      for (int64_t i = 0; i < half; i++) {
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c[i] - x2 * s[i];
        v[i + half] = x2 * c[i] + x1 * s[i];
      }
    }
  }
}

}  // namespace roost
