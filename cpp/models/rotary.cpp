#include "rotary.h"

#include <cmath>

namespace roost {

Rotary::Rotary(int64_t rotary_dim, double base) : dim_(rotary_dim) {
  for (int64_t i = 0; i < dim_ / 2; i++) inv_freq_.push_back(std::pow(base, -2.0 * (double)i / (double)dim_));
}

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
