// Memory read bandwidth of this machine now, the ceiling a batch-1 decode step streams its
// weights against. docs/peers.md's 79 GB/s was measured on one day; the host's bandwidth
// drifts (shared machines), so bench/decode runs this in the same run as its rows and
// reports each batch-1 row's share of what it printed.
//
// T threads read T x 256 MiB (well past L3) with AVX2 loads into four sums, prefetching
// 4 KiB ahead as the GEMV kernels stream a weight panel (matmul_avx512.cpp; AVX-512 loads
// measured the same). They claim 16 MiB chunks from a counter, as matmul() hands out its
// panels, so a thread that shares its core with another process reads less instead of
// holding the others up. Best of 5 passes, for 1 and 2 threads (or up to the count given).
//   build/bench_bandwidth [max_threads]      prints {"threads":[1,2],"gbPerSecond":[a,b]}
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr size_t kBytesPerThread = 256u << 20;
constexpr size_t kChunkFloats = (16u << 20) / sizeof(float);
constexpr int kPasses = 5;

__attribute__((target("avx2"))) double read_all(const float* x, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (size_t i = 0; i < n; i += 32) {
    _mm_prefetch((const char*)(x + i) + 4096, _MM_HINT_T0);
    _mm_prefetch((const char*)(x + i) + 4096 + 64, _MM_HINT_T0);
    s0 = _mm256_add_ps(s0, _mm256_load_ps(x + i));
    s1 = _mm256_add_ps(s1, _mm256_load_ps(x + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_load_ps(x + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_load_ps(x + i + 24));
  }
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  double s = 0;
  for (float v : out) s += v;
  return s;
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
  const int max_threads = argc > 1 ? std::atoi(argv[1]) : 2;
  if (max_threads < 1 || max_threads > 64) {
    std::fprintf(stderr, "bench_bandwidth: max_threads must be 1..64 (got %s)\n", argv[1]);
    return 1;
  }
  if (!__builtin_cpu_supports("avx2")) {
    std::fprintf(stderr, "bench_bandwidth: needs AVX2\n");
    return 1;
  }
  const size_t n = max_threads * (kBytesPerThread / sizeof(float));
  float* data = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  if (!data) {
    std::fprintf(stderr, "bench_bandwidth: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < n; i++) data[i] = 1.f;  // touch every page before timing
  std::vector<double> sink(max_threads);
  std::printf("{\"threads\":[");
  for (int t = 1; t <= max_threads; t++) std::printf("%s%d", t > 1 ? "," : "", t);
  std::printf("],\"gbPerSecond\":[");
  for (int t = 1; t <= max_threads; t++) {
    double best = 0;
    const size_t floats = t * (kBytesPerThread / sizeof(float)), chunks = floats / kChunkFloats;
    for (int pass = 0; pass < kPasses; pass++) {
      std::atomic<size_t> next{0};
      std::vector<std::thread> threads;
      const double t0 = now_s();
      for (int i = 0; i < t; i++)
        threads.emplace_back([&, i] {
          for (size_t c; (c = next.fetch_add(1)) < chunks;) sink[i] += read_all(data + c * kChunkFloats, kChunkFloats);
        });
      for (auto& th : threads) th.join();
      best = std::max(best, (double)floats * sizeof(float) / (now_s() - t0) / 1e9);
    }
    std::printf("%s%.1f", t > 1 ? "," : "", best);
  }
  std::printf("]}\n");
  std::free(data);
  return sink[0] == -1.0 ? 2 : 0;  // keeps the sums alive
}
