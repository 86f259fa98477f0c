// Compares configurations of the flash attention kernel (cuda/attention_flash.cu)
// on dense causal attention, batch 1, 16 heads of 64: median ms and TFLOP/s
// of each, and its largest difference from the shipped configuration. Used to
// choose the template arguments attention_flash() launches; not part of run.sh.
//   nvcc -O3 -std=c++17 -arch=sm_90 -Icpp -Icuda bench/gpu/flash_tune.cu \
//        BUILD/libroost_cuda.a BUILD/libroost_core.a -o flash_tune && ./flash_tune
#include "../../cuda/attention_flash.cu"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace roost::cuda;

namespace {

#define CK(x)                                                                              \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) { std::printf("%s: %s\n", #x, cudaGetErrorString(e_)); std::exit(1); } \
  } while (0)

struct Setup {
  int64_t T, H, D;
  float *q, *out;
  uint16_t *k, *v;
  AttnSpan* span;
  AttnTask* tasks[5];  // query tiles of 64 * (i + 1) rows, longest first
  int64_t ntasks[5];
};

Setup setup(int64_t T, int64_t H, int64_t D) {
  Setup s{T, H, D};
  const int64_t C = H * D;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(T * C);
  std::vector<__half> kv(T * C);
  for (auto& x : q) x = nd(rng);
  CK(cudaMalloc(&s.q, T * C * 4));
  CK(cudaMalloc(&s.out, T * C * 4));
  CK(cudaMemcpy(s.q, q.data(), T * C * 4, cudaMemcpyHostToDevice));
  for (uint16_t** p : {&s.k, &s.v}) {
    for (auto& x : kv) x = __float2half(nd(rng));
    CK(cudaMalloc(p, T * C * 2));
    CK(cudaMemcpy(*p, kv.data(), T * C * 2, cudaMemcpyHostToDevice));
  }
  AttnSpan sp{s.k, s.v, C, T, 0, 0};
  CK(cudaMalloc(&s.span, sizeof sp));
  CK(cudaMemcpy(s.span, &sp, sizeof sp, cudaMemcpyHostToDevice));
  for (int i = 0; i < 5; i++) {
    const int64_t br = 64 * (i + 1);
    std::vector<AttnTask> ts;
    for (int64_t j = (T + br - 1) / br - 1; j >= 0; j--)
      for (int32_t h = 0; h < H; h++)
        ts.push_back(AttnTask{s.out + j * br * C, C, s.q + j * br * C, C, std::min(br, T - j * br), j * br, h, 1, 0, T});
    CK(cudaMalloc(&s.tasks[i], ts.size() * sizeof(AttnTask)));
    CK(cudaMemcpy(s.tasks[i], ts.data(), ts.size() * sizeof(AttnTask), cudaMemcpyHostToDevice));
    s.ntasks[i] = (int64_t)ts.size();
  }
  return s;
}

template <typename F> double median_ms(int iters, F&& f) {
  f();
  CK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < iters; i++) {
    CK(cudaEventRecord(a));
    f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float t;
    CK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::vector<float> baseline;

template <int WARPS, int MT, int BC, int MINB, bool LAZY, bool EXPH = false> void variant(Setup& s, int iters) {
  constexpr int BR = WARPS * 16 * MT;
  const int i = BR / 64 - 1;
  auto run = [&] { launch<64, WARPS, MT, BC, MINB, LAZY, EXPH>(s.tasks[i], s.ntasks[i], s.span, 0, nullptr); };
  const double ms = median_ms(iters, run);
  CK(cudaDeviceSynchronize());
  std::vector<float> out(s.T * s.H * s.D);
  CK(cudaMemcpy(out.data(), s.out, out.size() * 4, cudaMemcpyDeviceToHost));
  double diff = 0;
  if (baseline.empty()) baseline = out;
  for (size_t j = 0; j < out.size(); j++) diff = std::max(diff, (double)std::fabs(out[j] - baseline[j]));
  const double tflops = 4.0 * s.T * s.T * s.D / 2 * s.H / (ms * 1e-3) / 1e12;
  std::printf("T=%lld warps %d mt %d br %d bc %d minb %d lazy %d exph %d: %.3f ms %.1f TFLOP/s (max diff %.2g)\n",
              (long long)s.T, WARPS, MT, BR, BC, MINB, (int)LAZY, (int)EXPH, ms, tflops, diff);
}

}  // namespace

int main() {
  for (int64_t T : {16384, 65536}) {
    Setup s = setup(T, 16, 64);
    const int it = T > 20000 ? 5 : 20;
    baseline.clear();
    variant<4, 2, 64, 1, false>(s, it);
    variant<4, 2, 64, 1, false, true>(s, it);
    variant<4, 2, 64, 1, true, true>(s, it);
    variant<4, 2, 128, 1, true, true>(s, it);
    variant<4, 3, 32, 1, false>(s, it);
    variant<4, 3, 32, 1, true>(s, it);
    variant<4, 3, 32, 1, true, true>(s, it);
    variant<4, 3, 64, 1, true, true>(s, it);
    variant<2, 3, 32, 1, true, true>(s, it);
    variant<4, 4, 16, 1, true, true>(s, it);
    variant<4, 4, 32, 1, true, true>(s, it);
  }
  return 0;
}
