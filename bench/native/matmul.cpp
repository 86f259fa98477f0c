// Matmul micro-benchmark: validates each shape against matmul_reference, then times
//   - the decode GEMV (M = 1) in GB/s of weights streamed, for the GPT-2-124M shapes,
//     with the weights cold (rotating through copies larger than L3, as in a real
//     decode step where the whole model streams from memory);
//   - batched decode (M = 2..32 rows against cold weights), in GB/s of weights and GFLOP/s;
//   - the prefill GEMM in GFLOP/s at M = 128 and 512;
// each in F32, F16 and Q8_0 (quantized from random F32 at pack time; GB/s counts the
// Q8_0 bytes, 34 per 32 weights, so tokens/s scale as GB/s over bytes per token).
// Prints a table and writes bench/results/kernels-matmul.json (run from the repo root,
// or pass the output path as the first argument; a second argument, e.g. F16,Q8_0,
// limits the dtypes, a third, e.g. gemv or gemv,batched, the sections).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ops/ops.h"

using namespace roost;

namespace {

constexpr int kRounds = 15;
constexpr size_t kColdBytes = 160u << 20;  // 5x the 32 MiB L3

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::vector<uint16_t> random_half(size_t n, DType t, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.f, 0.02f);
  std::vector<uint16_t> out(n);
  for (auto& h : out) {
    float f = dist(rng);
    if (t == DType::F16) h = f32_to_f16(f);
    else { uint32_t b; std::memcpy(&b, &f, 4); h = (uint16_t)(b >> 16); }
  }
  return out;
}

// Q8_0 rows quantize the same kind of random F32 weights at pack time.
PackedMatrix make_matrix(DType t, int64_t K, int64_t N, bool nk, std::mt19937& rng) {
  if (t == DType::F32 || t == DType::Q8_0) {
    std::normal_distribution<float> dist(0.f, 0.02f);
    std::vector<float> w(K * N);
    for (auto& v : w) v = dist(rng);
    return pack_matrix(w.data(), DType::F32, K, N, nk, t == DType::Q8_0 ? WeightFormat::Q8_0 : WeightFormat::Keep);
  }
  auto w = random_half(K * N, t, rng);
  return pack_matrix(w.data(), t, K, N, nk);
}

PackedMatrix copy_of(const PackedMatrix& W) {
  PackedMatrix c;
  c.K = W.K;
  c.N = W.N;
  c.dtype = W.dtype;
  c.data.resize(W.bytes());
  std::memcpy(c.data.data(), W.data.data(), W.bytes());
  return c;
}

double max_rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0;
  for (size_t i = 0; i < a.size(); i++) e = std::max(e, std::fabs((double)a[i] - b[i]) / (1e-3 + std::fabs((double)b[i])));
  return e;
}

struct Row {
  std::string kind, shape, dtype;
  int threads;
  double median, best;  // GB/s (gemv) or GFLOP/s (gemm)
  std::string unit;
};

// Validates y of the fast path against the reference; aborts the bench on a mismatch.
bool validate(const PackedMatrix& W, const std::vector<float>& x, const std::vector<float>& bias, int64_t M,
              ThreadPool& pool) {
  std::vector<float> y(M * W.N), ref(M * W.N);
  matmul(y.data(), x.data(), W, bias.data(), M, pool);
  matmul_reference(ref.data(), x.data(), W, bias.data(), M);
  double e = max_rel_err(y, ref);
  if (e > 1e-2) {
    std::fprintf(stderr, "VALIDATION FAILED: K=%lld N=%lld M=%lld max rel err %.3g\n", (long long)W.K, (long long)W.N,
                 (long long)M, e);
    return false;
  }
  return true;
}

// CPU time of the whole machine and of this process, in clock ticks: the share
// other processes took during the run says how far to trust it (the build machine
// is shared, and 2-thread numbers collapse when another process holds a core).
struct CpuTicks {
  long long machine_busy = 0, machine_total = 0, self = 0;
};
CpuTicks cpu_ticks() {
  CpuTicks t;
  if (FILE* f = std::fopen("/proc/stat", "r")) {
    long long v[8] = {};
    if (std::fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                    &v[7]) == 8) {
      for (long long x : v) t.machine_total += x;
      t.machine_busy = t.machine_total - v[3] - v[4];  // minus idle and iowait
    }
    std::fclose(f);
  }
  if (FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[1024];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    const char* p = std::strrchr(buf, ')');  // fields after the command name
    long long utime = 0, stime = 0;
    if (p && std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &utime, &stime) == 2)
      t.self = utime + stime;
    std::fclose(f);
  }
  return t;
}

std::pair<double, double> median_best(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  const char* out_path = argc > 1 ? argv[1] : "bench/results/kernels-matmul.json";
  std::vector<DType> dtypes;
  const std::string wanted = argc > 2 ? argv[2] : "F32,F16,Q8_0";
  for (DType t : {DType::F32, DType::F16, DType::Q8_0})
    if (("," + wanted + ",").find(std::string(",") + dtype_name(t) + ",") != std::string::npos) dtypes.push_back(t);
  if (dtypes.empty()) {
    std::fprintf(stderr, "no known dtype in \"%s\" (F32, F16, Q8_0)\n", wanted.c_str());
    return 1;
  }
  // A third argument, e.g. gemv or gemv,batched, limits the sections (gemv, batched, gemm).
  const std::string sections = "," + std::string(argc > 3 ? argv[3] : "gemv,batched,gemm") + ",";
  auto section = [&](const char* name) { return sections.find(std::string(",") + name + ",") != std::string::npos; };
  std::mt19937 rng(1234);
  std::printf("isa %s (Q8_0: %s), threads 1 and 2\n", isa_name(active_isa()),
              active_isa() == Isa::Avx512 && q8_vnni_active() ? "VNNI" : "no VNNI");
  const CpuTicks start = cpu_ticks();
  std::vector<Row> rows;
  bool ok = true;

  struct Shape { int64_t K, N; bool nk; const char* name; };
  const Shape gemv_shapes[] = {{768, 2304, false, "attn.c_attn 768x2304"},
                               {768, 768, false, "attn.c_proj 768x768"},
                               {768, 3072, false, "mlp.c_fc 768x3072"},
                               {3072, 768, false, "mlp.c_proj 3072x768"},
                               {768, 50257, true, "lm_head 768x50257 (nk)"}};
  for (DType t : dtypes) {
    if (!section("gemv")) break;
    for (const Shape& s : gemv_shapes) {
      std::vector<PackedMatrix> copies;
      copies.push_back(make_matrix(t, s.K, s.N, s.nk, rng));
      size_t n_copies = std::max<size_t>(1, (kColdBytes + copies[0].bytes() - 1) / copies[0].bytes());
      while (copies.size() < n_copies) copies.push_back(copy_of(copies[0]));
      std::vector<float> x(s.K), bias(s.N), y(s.N);
      std::normal_distribution<float> dist(0.f, 1.f);
      for (auto& v : x) v = dist(rng);
      for (auto& v : bias) v = dist(rng);
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        ok = validate(copies[0], x, bias, 1, pool) && ok;
        for (auto& W : copies) matmul(y.data(), x.data(), W, bias.data(), 1, pool);  // warm up
        std::vector<double> gbs;
        for (int r = 0; r < kRounds; r++) {
          double t0 = now_s();
          for (auto& W : copies) matmul(y.data(), x.data(), W, bias.data(), 1, pool);
          double dt = (now_s() - t0) / copies.size();
          gbs.push_back(copies[0].bytes() / dt / 1e9);
        }
        auto [med, best] = median_best(gbs);
        rows.push_back({"gemv M=1", s.name, dtype_name(t), threads, med, best, "GB/s"});
        std::printf("%-9s %-26s %-4s %d thr  %7.1f GB/s median  %7.1f best\n", "gemv M=1", s.name, dtype_name(t),
                    threads, med, best);
        std::fflush(stdout);
      }
    }
  }

  // Batched decode: the weights still stream once per call, whatever M.
  for (DType t : dtypes) {
    if (!section("batched")) break;
    const int64_t K = 768, N = 3072;
    std::vector<PackedMatrix> copies;
    copies.push_back(make_matrix(t, K, N, false, rng));
    while (copies.size() * copies[0].bytes() < kColdBytes) copies.push_back(copy_of(copies[0]));
    for (int64_t M : {2, 4, 8, 16, 32}) {
      std::vector<float> x(M * K), bias(N), y(M * N);
      std::normal_distribution<float> dist(0.f, 1.f);
      for (auto& v : x) v = dist(rng);
      for (auto& v : bias) v = dist(rng);
      const int threads = 2;
      ThreadPool pool(threads);
      ok = validate(copies[0], x, bias, M, pool) && ok;
      for (auto& W : copies) matmul(y.data(), x.data(), W, bias.data(), M, pool);
      std::vector<double> gbs;
      for (int r = 0; r < kRounds; r++) {
        double t0 = now_s();
        for (auto& W : copies) matmul(y.data(), x.data(), W, bias.data(), M, pool);
        double dt = (now_s() - t0) / copies.size();
        gbs.push_back(copies[0].bytes() / dt / 1e9);
      }
      auto [med, best] = median_best(gbs);
      const double gflop_per_gb = 2.0 * M * K * N / copies[0].bytes();
      std::string shape = "M=" + std::to_string(M) + " " + std::to_string(K) + "x" + std::to_string(N);
      rows.push_back({"batched", shape, dtype_name(t), threads, med, best, "GB/s"});
      std::printf("%-9s %-26s %-4s %d thr  %7.1f GB/s median  %7.1f best  (%.0f GFLOP/s best)\n", "batched",
                  shape.c_str(), dtype_name(t), threads, med, best, best * gflop_per_gb);
      std::fflush(stdout);
    }
  }

  for (DType t : dtypes) {
    if (!section("gemm")) break;
    for (int64_t N : {2304, 3072}) {
      const int64_t K = 768;
      PackedMatrix W = make_matrix(t, K, N, false, rng);
      for (int64_t M : {128, 512}) {
        std::vector<float> x(M * K), bias(N), y(M * N);
        std::normal_distribution<float> dist(0.f, 1.f);
        for (auto& v : x) v = dist(rng);
        for (auto& v : bias) v = dist(rng);
        double flop = 2.0 * M * K * N;
        for (int threads : {1, 2}) {
          ThreadPool pool(threads);
          if (M == 128) ok = validate(W, x, bias, M, pool) && ok;
          matmul(y.data(), x.data(), W, bias.data(), M, pool);
          int reps = std::max<int>(1, (int)(2e9 / flop / threads));  // ~10-20 ms per round
          std::vector<double> gf;
          for (int r = 0; r < kRounds; r++) {
            double t0 = now_s();
            for (int i = 0; i < reps; i++) matmul(y.data(), x.data(), W, bias.data(), M, pool);
            gf.push_back(flop * reps / (now_s() - t0) / 1e9);
          }
          auto [med, best] = median_best(gf);
          std::string shape = "M=" + std::to_string(M) + " " + std::to_string(K) + "x" + std::to_string(N);
          rows.push_back({"gemm", shape, dtype_name(t), threads, med, best, "GFLOP/s"});
          std::printf("%-9s %-26s %-4s %d thr  %7.1f GFLOP/s median  %7.1f best\n", "gemm", shape.c_str(),
                      dtype_name(t), threads, med, best);
          std::fflush(stdout);
        }
      }
    }
  }

  const CpuTicks end = cpu_ticks();
  const long long total = end.machine_total - start.machine_total;
  const double other_load =
      total > 0 ? std::max(0.0, (double)(end.machine_busy - start.machine_busy - (end.self - start.self)) / total) : 0.0;
  std::printf("other processes used %.0f%% of the machine's CPU time during the run\n", 100 * other_load);

  FILE* f = std::fopen(out_path, "w");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", out_path);
    return 1;
  }
  std::fprintf(f,
               "{\n  \"bench\": \"kernels-matmul\",\n  \"isa\": \"%s\",\n  \"q8_vnni\": %s,\n  \"rounds\": %d,\n"
               "  \"other_cpu_load\": %.3f,\n  \"results\": [\n",
               isa_name(active_isa()), active_isa() == Isa::Avx512 && q8_vnni_active() ? "true" : "false", kRounds,
               other_load);
  for (size_t i = 0; i < rows.size(); i++) {
    const Row& r = rows[i];
    std::fprintf(f,
                 "    {\"kind\": \"%s\", \"shape\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, \"unit\": \"%s\", "
                 "\"median\": %.2f, \"best\": %.2f}%s\n",
                 r.kind.c_str(), r.shape.c_str(), r.dtype.c_str(), r.threads, r.unit.c_str(), r.median, r.best,
                 i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
  std::printf("wrote %s\n", out_path);
  return ok ? 0 : 1;
}
