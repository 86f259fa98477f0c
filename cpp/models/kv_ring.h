// A fixed ring of K/V rows: position p lives in slot p % cap. Decode state of
// constant size (block_recurrent's previous + current block, perceiver_ar's
// last N latents). Reads go through attention spans, so a wrapped range is
// just two spans: softmax does not care about key order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common.h"
#include "../ops/attention_spans.h"

namespace roost {

class KvRing {
 public:
  KvRing() = default;
  KvRing(int64_t cap, int64_t C) : cap_(cap), C_(C), k_((size_t)cap * C * sizeof(float)), v_((size_t)cap * C * sizeof(float)) {}
  int64_t cap() const { return cap_; }
  size_t bytes() const { return k_.bytes() + v_.bytes(); }
  float* k(int64_t pos) { return k_.as<float>() + (pos % cap_) * C_; }  // row [C]
  float* v(int64_t pos) { return v_.as<float>() + (pos % cap_) * C_; }

  // Stores rows for positions p0 .. p0+n-1 (row t at k + t * stride); only the
  // last cap of them survive.
  void write(int64_t p0, int64_t n, const float* k, const float* v, int64_t stride) {
    for (int64_t t = std::max<int64_t>(0, n - cap_); t < n; t++) {
      std::memcpy(this->k(p0 + t), k + t * stride, C_ * sizeof(float));
      std::memcpy(this->v(p0 + t), v + t * stride, C_ * sizeof(float));
    }
  }

  // Spans covering positions [a, b) (b - a <= cap, every one written), with
  // their true positions (causal clip works) unless `unmasked`.
  void spans(SpanBatch& out, int64_t a, int64_t b, bool unmasked = false) const {
    while (a < b) {
      const int64_t slot = a % cap_, n = std::min(b - a, cap_ - slot);  // up to the ring's end
      out.add_span({k_.as<float>() + slot * C_, v_.as<float>() + slot * C_, C_, n, unmasked ? kSpanNoMask : a});
      a += n;
    }
  }

 private:
  int64_t cap_ = 0, C_ = 0;
  AlignedBuffer k_, v_;
};

}  // namespace roost
