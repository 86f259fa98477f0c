#include <immintrin.h>

#include <cmath>

#include "simd_avx2_impl.h"
#include "softmax_impl.h"

namespace roost::softmax_impl {

using namespace simd256;

namespace {

float row_max(const float* x, int64_t n) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 m0 = ninf, m1 = ninf;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  for (; i < n; i += 8) {
    __m256i k = head_mask(n - i);
    m0 = _mm256_max_ps(m0, _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, k), _mm256_castsi256_ps(k)));
  }
  return hmax(_mm256_max_ps(m0, m1));
}

}  // namespace

void softmax_avx2(float* x, int64_t n) {
  const __m256 vmax = _mm256_set1_ps(row_max(x, n));
  __m256 sum = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) {
    __m256i k = head_mask(n - i);
    __m256 e = _mm256_and_ps(exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), vmax)), _mm256_castsi256_ps(k));
    _mm256_maskstore_ps(x + i, k, e);
    sum = _mm256_add_ps(sum, e);
  }
  const __m256 inv = _mm256_set1_ps((float)(1.0 / (double)hsum(sum)));
  for (int64_t i = 0; i < n; i += 8) {
    __m256i k = head_mask(n - i);
    _mm256_maskstore_ps(x + i, k, _mm256_mul_ps(_mm256_maskload_ps(x + i, k), inv));
  }
}

namespace {
// What log_softmax subtracts: the row's max, then log of the normalizer.
struct Norm {
  float max, log_sum;
};
Norm log_softmax_norm(const float* x, int64_t n) {
  const float mx = row_max(x, n);
  const __m256 vmax = _mm256_set1_ps(mx);
  // Normalizer in double lanes, as in the AVX-512 variant.
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  for (int64_t i = 0; i < n; i += 8) {
    __m256i k = head_mask(n - i);
    __m256 e = _mm256_and_ps(exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), vmax)), _mm256_castsi256_ps(k));
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  __m256d s = _mm256_add_pd(s0, s1);
  __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  const double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  return {mx, (float)std::log(sum)};
}
}  // namespace

void log_softmax_avx2(float* y, const float* x, int64_t n) {
  const Norm norm = log_softmax_norm(x, n);
  const __m256 vmax = _mm256_set1_ps(norm.max), vlog = _mm256_set1_ps(norm.log_sum);  // (x - max) - log(sum): see the AVX-512 variant
  for (int64_t i = 0; i < n; i += 8) {
    __m256i k = head_mask(n - i);
    _mm256_maskstore_ps(y + i, k, _mm256_sub_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, k), vmax), vlog));
  }
}

float log_softmax_at_avx2(const float* x, int64_t n, int64_t i) {
  const Norm norm = log_softmax_norm(x, n);
  return (x[i] - norm.max) - norm.log_sum;  // the same two float subtractions as each lane above
}

}  // namespace roost::softmax_impl
