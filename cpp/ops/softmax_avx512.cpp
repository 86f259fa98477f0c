#include <cmath>

#include "simd_avx512_impl.h"
#include "softmax_impl.h"

namespace roost::softmax_impl {

using namespace simd512;

namespace {

float row_max(const float* x, int64_t n) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 m0 = ninf, m1 = ninf;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i < n; i += 16) m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(ninf, head_mask(n - i), x + i));
  return hmax(_mm512_max_ps(m0, m1));
}

}  // namespace

void softmax_avx512(float* x, int64_t n) {
  const __m512 vmax = _mm512_set1_ps(row_max(x, n));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = head_mask(n - i);
    __m512 e = _mm512_maskz_mov_ps(k, exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vmax)));
    _mm512_mask_storeu_ps(x + i, k, e);
    sum = _mm512_add_ps(sum, e);
  }
  const __m512 inv = _mm512_set1_ps((float)(1.0 / (double)hsum(sum)));
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = head_mask(n - i);
    _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv));
  }
}

namespace {
// What log_softmax subtracts: the row's max, then log of the normalizer.
struct Norm {
  float max, log_sum;
};
Norm log_softmax_norm(const float* x, int64_t n) {
  const float mx = row_max(x, n);
  const __m512 vmax = _mm512_set1_ps(mx);
  // The normalizer is summed in double lanes: its log is subtracted from every
  // log-prob, so its error would shift them all alike.
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = head_mask(n - i);
    __m512 e = _mm512_maskz_mov_ps(k, exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vmax)));
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  return {mx, (float)std::log(_mm512_reduce_add_pd(_mm512_add_pd(s0, s1)))};
}
}  // namespace

void log_softmax_avx512(float* y, const float* x, int64_t n) {
  const Norm norm = log_softmax_norm(x, n);
  // (x - max) - log(sum) rather than x - lse: x - max is exact near the max
  // (Sterbenz), and log(sum) <= log(n) is small, so large logits lose nothing to a
  // rounded lse.
  const __m512 vmax = _mm512_set1_ps(norm.max), vlog = _mm512_set1_ps(norm.log_sum);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = head_mask(n - i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vmax), vlog));
  }
}

float log_softmax_at_avx512(const float* x, int64_t n, int64_t i) {
  const Norm norm = log_softmax_norm(x, n);
  return (x[i] - norm.max) - norm.log_sum;  // the same two float subtractions as each lane above
}

}  // namespace roost::softmax_impl
