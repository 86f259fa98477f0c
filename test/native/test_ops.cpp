// Tests of cpp/ops: every variant this CPU supports (set_isa) against the
// references, and the references against plain double-precision loops.
// `doctest --duration=true` (e.g. build/test_ops --duration=true) times each group.
#include <algorithm>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "doctest.h"
#include "fmt.h"
#include "ops/ops.h"
#include "ops/attention_spans.h"
#include "ops/t5_ops.h"

using namespace roost;

namespace {

std::mt19937 g_rng(20261126);

std::vector<float> randn(size_t n, float mean = 0.f, float std = 1.f) {
  std::normal_distribution<float> d(mean, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g_rng);
  return v;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out = {Isa::Reference};
  if ((int)detected_isa() >= (int)Isa::Avx2) out.push_back(Isa::Avx2);
  if ((int)detected_isa() >= (int)Isa::Avx512) out.push_back(Isa::Avx512);
  return out;
}

// Largest violation of |got - want| <= tol[i], as "index got want tol" (empty if none).
std::string compare(const float* got, const float* want, const std::vector<double>& tol, size_t n) {
  double worst = 0;
  size_t at = n;
  for (size_t i = 0; i < n; i++) {
    double err = std::fabs((double)got[i] - want[i]);
    bool bad = !(err <= tol[i]);  // NaN fails
    if (bad && (at == n || !(err / tol[i] <= worst))) {
      worst = err / tol[i];
      at = i;
    }
  }
  if (at == n) return "";
  return fmt("worst at %zu: got %.9g want %.9g tol %.3g", at, got[at], want[at], tol[at]);
}

// ---------------------------------------------------------------- matmul

// A weight matrix as given to pack_matrix, plus the same values as float [K, N].
struct Weights {
  DType dtype;
  int64_t K, N;
  bool nk;
  std::vector<uint8_t> src;  // raw elements, [K, N] or [N, K]
  std::vector<float> kn;     // as float, [K, N]
};

// Uniform in [-1, 1) from a xorshift: the big matrices need tens of millions of
// values, and a normal distribution there would dominate the test's run time.
struct FastRng {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  float next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (float)(int32_t)(s >> 32) * (1.f / 2147483648.f);
  }
};

Weights make_weights(DType t, int64_t K, int64_t N, bool nk) {
  static FastRng rng;
  Weights w{t, K, N, nk, std::vector<uint8_t>(K * N * dtype_size(t)), std::vector<float>(K * N)};
  for (int64_t k = 0; k < K; k++) {
    for (int64_t n = 0; n < N; n++) {
      size_t i = nk ? n * K + k : k * N + n;  // position in src
      float f = rng.next();
      if (t == DType::F32) {
        std::memcpy(&w.src[4 * i], &f, 4);
      } else {
        uint16_t h;
        if (t == DType::F16) {
          h = f32_to_f16(f);
        } else {
          uint32_t b;
          std::memcpy(&b, &f, 4);
          h = (uint16_t)(b >> 16);  // truncation is fine: any bf16 is a test value
        }
        std::memcpy(&w.src[2 * i], &h, 2);
      }
      w.kn[k * N + n] = load_as_f32(w.src.data(), t, i);
    }
  }
  return w;
}

// y = x @ W + bias in double, and the matching sum |x||W| + |bias| that scales the
// rounding error any float order can make.
void naive_matmul(std::vector<double>& y, std::vector<double>& absdot, const std::vector<float>& x, const Weights& w,
                  const float* bias, int64_t M) {
  const int64_t K = w.K, N = w.N;
  y.assign(M * N, 0.0);
  absdot.assign(M * N, 0.0);
  for (int64_t m = 0; m < M; m++) {
    double* ym = &y[m * N];
    double* am = &absdot[m * N];
    for (int64_t k = 0; k < K; k++) {
      const double xv = x[m * K + k], ax = std::fabs(xv);
      const float* wk = &w.kn[k * N];
      for (int64_t n = 0; n < N; n++) {
        ym[n] += xv * wk[n];
        am[n] += ax * std::fabs(wk[n]);
      }
    }
    if (bias)
      for (int64_t n = 0; n < N; n++) {
        ym[n] += bias[n];
        am[n] += std::fabs(bias[n]);
      }
  }
}

// Pools of 1, 2 and 3 threads (3 oversubscribes the 2-core machine on purpose:
// the chunk scheduling must still cover every panel exactly once).
ThreadPool& pool_n(int n) {
  static std::unique_ptr<ThreadPool> pools[4];
  if (!pools[n]) pools[n] = std::make_unique<ThreadPool>(n);
  return *pools[n];
}

void test_matmul_case(DType t, int64_t K, int64_t N, bool nk, const std::vector<int64_t>& Ms, bool with_bias, int& case_no) {
  Weights w = make_weights(t, K, N, nk);
  PackedMatrix W = pack_matrix(w.src.data(), t, K, N, nk);
  std::vector<float> bias = randn(N);
  const float* b = with_bias ? bias.data() : nullptr;
  for (int64_t M : Ms) {
    std::vector<float> x = randn(M * K);
    std::vector<double> exact, absdot;
    naive_matmul(exact, absdot, x, w, b, M);
    std::vector<double> tol(M * N);
    // Any summation order errs by about eps * absdot; 1e-6 sqrt(K) leaves a wide
    // margin yet still catches one dropped or doubled term (about absdot / K).
    for (size_t i = 0; i < tol.size(); i++) tol[i] = 1e-6 * std::sqrt((double)K) * absdot[i] + 1e-30;
    std::vector<float> exact_f(exact.begin(), exact.end());
    std::vector<float> ref(M * N);
    matmul_reference(ref.data(), x.data(), W, b, M);
    std::string tag = fmt("%s K=%lld N=%lld %s M=%lld bias=%d", dtype_name(t), (long long)K, (long long)N,
                          nk ? "nk" : "kn", (long long)M, with_bias ? 1 : 0);
    const std::string ref_err = compare(ref.data(), exact_f.data(), tol, ref.size());
    CHECK_MESSAGE(ref_err.empty(), ("matmul_reference vs double " + tag + ": " + ref_err));
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      int threads = 1 + case_no++ % 3;
      std::vector<float> y(M * N, NAN);
      matmul(y.data(), x.data(), W, b, M, pool_n(threads));
      std::string err = compare(y.data(), ref.data(), tol, y.size());
      CHECK_MESSAGE(err.empty(), (fmt("matmul[%s, %d thr] ", isa_name(isa), threads) + tag + ": " + err));
    }
  }
  set_isa(detected_isa());
}

// Batch invariance (docs/design.md): row r of a call gives the same bits
// whether the call holds 1 row (the GEMV), 2, 3 or many (the GEMM tiles), on
// every ISA, thread count and float dtype; a cached prefix or another batch
// changes only how many rows a call holds.
void test_matmul_batch_invariance() {
  int case_no = 0;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (auto [K, N] : {std::pair<int64_t, int64_t>{37, 200}, {768, 2304}, {64, 16 * 11 + 5}}) {
      Weights w = make_weights(t, K, N, true);
      PackedMatrix W = pack_matrix(w.src.data(), t, K, N, true);
      std::vector<float> bias = randn(N);
      const int64_t Mmax = 19;
      std::vector<float> x = randn(Mmax * K);
      for (Isa isa : supported_isas()) {
        set_isa(isa);
        std::vector<float> alone(Mmax * N);
        for (int64_t r = 0; r < Mmax; r++) matmul(alone.data() + r * N, x.data() + r * K, W, bias.data(), 1, pool_n(1));
        for (int64_t M : {2, 3, 4, 9, 19}) {
          const int threads = 1 + case_no++ % 3;
          std::vector<float> y(M * N, NAN);
          matmul(y.data(), x.data(), W, bias.data(), M, pool_n(threads));
          int64_t differ = 0;
          for (int64_t i = 0; i < M * N; i++) differ += std::memcmp(&y[i], &alone[i], sizeof(float)) != 0;
          CHECK_MESSAGE(differ == 0, fmt("matmul[%s, %d thr] %s K=%lld N=%lld M=%lld: %lld of %lld values differ from the rows alone",
                                         isa_name(isa), threads, dtype_name(t), (long long)K, (long long)N, (long long)M,
                                         (long long)differ, (long long)(M * N)));
        }
      }
      set_isa(detected_isa());
    }
}

void test_matmul() {
  const std::vector<int64_t> all_m = {1, 2, 3, 7, 16, 33, 128};
  int case_no = 0;
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (bool nk : {false, true}) {
      // Tiny and ragged shapes at every M, with and without bias.
      for (bool bias : {false, true}) {
        test_matmul_case(t, 1, 1, nk, all_m, bias, case_no);
        test_matmul_case(t, 3, 17, nk, all_m, bias, case_no);
        test_matmul_case(t, 17, 50, nk, all_m, bias, case_no);
      }
      // The GPT-2-124M widths; the big ones at the M that decode and batching use.
      test_matmul_case(t, 768, 768, nk, all_m, nk, case_no);
      test_matmul_case(t, 3072, 771, nk, {1, 3, 16}, !nk, case_no);
      test_matmul_case(t, 768, 3072, nk, {1, 7, 33}, nk, case_no);
      test_matmul_case(t, 768, 50257, nk, {1, 2}, !nk, case_no);  // the tied head: 50257 is 3141 panels + 1 column
    }
  }
}

void test_matrix_column() {
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (bool nk : {false, true}) {
      const int64_t K = 37, N = 53;
      Weights w = make_weights(t, K, N, nk);
      PackedMatrix W = pack_matrix(w.src.data(), t, K, N, nk);
      bool ok = true;
      std::vector<float> col(K);
      for (int64_t n : {0, 1, 15, 16, 31, 52}) {
        matrix_column(col.data(), W, n);
        for (int64_t k = 0; k < K; k++) ok = ok && col[k] == w.kn[k * N + n];
      }
      bool threw = false;
      try {
        matrix_column(col.data(), W, N);
      } catch (const Error& e) {
        threw = e.code() == "E_ARGUMENT";
      }
      CHECK_MESSAGE((ok && threw), (fmt("matrix_column %s %s: ", dtype_name(t), nk ? "nk" : "kn") +
                                       (ok ? "out-of-range column did not throw E_ARGUMENT" : "wrong element")));
    }
  }
}

// ---------------------------------------------------------------- row ops

void test_layernorm() {
  struct Case { int64_t M, C; float mean, std; };
  // Offset rows (mean 100, std 1) are where a one-pass or plain-float mean fails.
  for (Case c : {Case{1, 1, 0, 1}, Case{3, 7, 0, 1}, Case{5, 17, 2, 3}, Case{4, 768, 0, 1}, Case{4, 768, 100, 1},
                 Case{2, 1000, -50, 0.1f}, Case{2, 3072, 0, 30}}) {
    std::vector<float> x = randn(c.M * c.C, c.mean, c.std), w = randn(c.C, 1, 0.2f), b = randn(c.C, 0, 0.2f);
    std::vector<float> ref(x.size());
    layernorm_reference(ref.data(), x.data(), w.data(), b.data(), c.M, c.C, 1e-5f);
    // Double truth for the reference itself.
    std::vector<float> exact(x.size());
    for (int64_t m = 0; m < c.M; m++) {
      long double mean = 0, var = 0;
      for (int64_t i = 0; i < c.C; i++) mean += x[m * c.C + i];
      mean /= c.C;
      for (int64_t i = 0; i < c.C; i++) var += (x[m * c.C + i] - mean) * (x[m * c.C + i] - mean);
      var /= c.C;
      for (int64_t i = 0; i < c.C; i++)
        exact[m * c.C + i] = (float)((x[m * c.C + i] - mean) / std::sqrt(var + 1e-5L) * w[i] + b[i]);
    }
    std::vector<double> tol(x.size());
    for (size_t i = 0; i < tol.size(); i++) tol[i] = 1e-5 * (1 + std::fabs(ref[i]));
    std::string tag = fmt("M=%lld C=%lld mean=%g std=%g", (long long)c.M, (long long)c.C, c.mean, c.std);
    std::string e0 = compare(ref.data(), exact.data(), tol, x.size());
    CHECK_MESSAGE(e0.empty(), ("layernorm_reference vs long double " + tag + ": " + e0));
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      std::vector<float> y = x;  // in place, as the engine may call it
      layernorm(y.data(), y.data(), w.data(), b.data(), c.M, c.C, 1e-5f);
      std::string e = compare(y.data(), ref.data(), tol, x.size());
      CHECK_MESSAGE(e.empty(), (fmt("layernorm[%s] ", isa_name(isa)) + tag + ": " + e));
    }
  }
  set_isa(detected_isa());
}

void test_gelu() {
  std::vector<float> x = randn(1000, 0, 3);
  for (float v : {0.f, -0.f, 1e-8f, -1e-8f, 1e-3f, 5.f, -5.f, 10.f, -10.f, 20.f, -20.f, 80.f, -80.f, 1e4f, -1e4f, 3e38f, -3e38f})
    x.push_back(v);
  std::vector<float> ref(x.size());
  gelu_reference(ref.data(), x.data(), (int64_t)x.size());
  // Spot values of the tanh form (gelu_new), computed in long double.
  bool spot = std::fabs(ref[1000 + 5] - 4.99999928f) < 1e-6f && ref[1000 + 14] == 0.f &&
              std::fabs(ref[1000 + 4] - 5.00398e-4f) < 1e-8f && std::fabs(ref[1000 + 6] - (-2.2918e-7f)) < 1e-10f;
  CHECK_MESSAGE(spot, (fmt("gelu_reference spot values: gelu(5)=%.9g gelu(-5)=%.9g", ref[1005], ref[1006])));
  std::vector<double> tol(x.size());
  for (size_t i = 0; i < tol.size(); i++) tol[i] = 2e-6 * std::fabs(ref[i]) + 1e-12;
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    for (int64_t n : {(int64_t)1, (int64_t)15, (int64_t)17, (int64_t)x.size()}) {
      std::vector<float> y(x.begin(), x.begin() + n);
      gelu(y.data(), y.data(), n);
      std::string e = compare(y.data(), ref.data(), tol, n);
      CHECK_MESSAGE(e.empty(), (fmt("gelu[%s] n=%lld: ", isa_name(isa), (long long)n) + e));
    }
  }
  set_isa(detected_isa());
}

void test_add_inplace() {
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    bool ok = true;
    for (int64_t n : {1, 7, 8, 16, 17, 1000}) {
      std::vector<float> y = randn(n), x = randn(n), want(n);
      for (int64_t i = 0; i < n; i++) want[i] = y[i] + x[i];
      add_inplace(y.data(), x.data(), n);
      ok = ok && std::memcmp(y.data(), want.data(), n * sizeof(float)) == 0;
    }
    CHECK_MESSAGE(ok, (fmt("add_inplace[%s]", isa_name(isa))));
  }
  set_isa(detected_isa());
}

// to_f16 on every ISA: the reference's round to nearest even, bit for bit, over
// normal, subnormal, overflowing, tie and signed-zero values; a NaN stays a NaN.
void test_to_f16() {
  std::vector<float> x = randn(1000, 0, 3);
  for (float v : {0.f, -0.f, 65504.f, 65520.f, -65520.f, 1e6f, 6e-8f, 3e-8f, 2.9e-8f, 1e-5f, -4e-6f, INFINITY, -INFINITY,
                  1.f + 1.f / 2048, 1.f + 3.f / 2048, 2049.f, 2051.f})
    x.push_back(v);
  for (int i = 0; i < 13; i++) x.push_back(std::ldexp(1.f + i / 13.f, -14 - i));  // the subnormal range
  std::vector<uint16_t> want(x.size());
  to_f16_reference(want.data(), x.data(), (int64_t)x.size());
  bool ref_ok = want[1000] == 0 && want[1001] == 0x8000 && want[1002] == 0x7bff && want[1003] == 0x7c00 &&
                want[1005] == 0x7c00 && want[1006] == 1 && want[1007] == 1 && want[1008] == 0 && want[1011] == 0x7c00 &&
                want[1013] == 0x3c00 && want[1014] == 0x3c02 && want[1015] == 0x6800 && want[1016] == 0x6802;
  CHECK_MESSAGE(ref_ok, "to_f16_reference: ties to even, overflow to inf, signed zero");
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    bool ok = true;
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{17}, (int64_t)x.size()}) {
      std::vector<uint16_t> got(n + 1, 0xabcd);
      to_f16(got.data(), x.data() + x.size() - n, n);
      ok = ok && std::memcmp(got.data(), want.data() + x.size() - n, n * 2) == 0 && got[n] == 0xabcd;
    }
    const float nan[3] = {NAN, 1.f, -NAN};
    uint16_t h[3];
    to_f16(h, nan, 3);
    ok = ok && (h[0] & 0x7c00) == 0x7c00 && (h[0] & 0x3ff) && h[1] == 0x3c00 && (h[2] & 0x7c00) == 0x7c00 && (h[2] & 0x3ff);
    CHECK_MESSAGE(ok, (fmt("to_f16[%s]", isa_name(isa))));
  }
  set_isa(detected_isa());
}

void test_softmax() {
  struct Case { const char* name; std::vector<float> x; };
  std::vector<Case> cases;
  for (int64_t n : {1, 7, 16, 17, 1000, 50257}) cases.push_back({"randn*5", randn(n, 0, 5)});
  {
    std::vector<float> v = randn(333, 1e4f, 10);  // large logits: max subtraction matters
    cases.push_back({"offset 1e4", v});
  }
  {
    std::vector<float> v = randn(100, 0, 3);  // masked entries, as sampling filters make them
    for (int i = 0; i < 100; i += 3) v[i] = -INFINITY;
    cases.push_back({"with -inf", v});
  }
  {
    std::vector<float> v = randn(50, 0, 1);
    v[7] = 100.f;  // one dominant logit: the others underflow to (near) 0
    v[8] = -1e30f;
    cases.push_back({"peaked", v});
  }
  for (const Case& c : cases) {
    const int64_t n = (int64_t)c.x.size();
    std::string tag = fmt("%s n=%lld", c.name, (long long)n);
    // Reference against long double.
    long double mx = -INFINITY, sum = 0;
    for (float v : c.x) mx = std::max<long double>(mx, v);
    for (float v : c.x) sum += std::exp((long double)v - mx);
    std::vector<float> p_exact(n), lp_exact(n);
    for (int64_t i = 0; i < n; i++) {
      p_exact[i] = (float)(std::exp((long double)c.x[i] - mx) / sum);
      lp_exact[i] = (float)((long double)c.x[i] - mx - std::log(sum));
    }
    std::vector<float> p_ref = c.x, lp_ref(n);
    softmax_reference(p_ref.data(), n);
    log_softmax_reference(lp_ref.data(), c.x.data(), n);
    std::vector<double> ptol(n), lptol(n);
    for (int64_t i = 0; i < n; i++) {
      // x - max rounds to float in the fast paths: exp then errs by |x - max| ulps.
      // A -inf logit must give exactly 0.
      ptol[i] = std::isinf(c.x[i]) ? 0 : (2e-6 + 2.5e-7 * std::fabs((double)c.x[i] - (double)mx)) * p_exact[i] + 1e-37;
      lptol[i] = std::isinf(lp_exact[i]) ? 0 : 2e-6 * (1 + std::fabs(lp_exact[i]));
    }
    auto same_inf = [&](const std::vector<float>& y) {
      for (int64_t i = 0; i < n; i++)
        if (std::isinf(lp_exact[i]) != std::isinf(y[i])) return false;
      return true;
    };
    // -inf log-probs compare as inf - inf = NaN; check them separately.
    auto lp_compare = [&](const std::vector<float>& y) {
      if (!same_inf(y)) return std::string("-inf entries differ");
      std::vector<float> a = y, b = lp_exact;
      for (int64_t i = 0; i < n; i++)
        if (std::isinf(b[i])) a[i] = b[i] = 0;
      return compare(a.data(), b.data(), lptol, n);
    };
    std::string e0 = compare(p_ref.data(), p_exact.data(), ptol, n), e1 = lp_compare(lp_ref);
    CHECK_MESSAGE(e0.empty(), ("softmax_reference vs long double " + tag + ": " + e0));
    CHECK_MESSAGE(e1.empty(), ("log_softmax_reference vs long double " + tag + ": " + e1));
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      std::vector<float> p = c.x, lp(n);
      softmax(p.data(), n);
      std::string e = compare(p.data(), p_exact.data(), ptol, n);
      CHECK_MESSAGE(e.empty(), (fmt("softmax[%s] ", isa_name(isa)) + tag + ": " + e));
      log_softmax(lp.data(), c.x.data(), n);
      e = lp_compare(lp);
      CHECK_MESSAGE(e.empty(), (fmt("log_softmax[%s] ", isa_name(isa)) + tag + ": " + e));
      // log_softmax_at gives the row's element bit for bit (the greedy sampler reports it).
      for (int64_t i : {(int64_t)0, n / 2, n - 1}) {
        const float at = log_softmax_at(c.x.data(), n, i);
        CHECK_MESSAGE(std::memcmp(&at, &lp[i], 4) == 0,
                      fmt("log_softmax_at[%s] %s i=%lld: %a, log_softmax gave %a", isa_name(isa), tag.c_str(), (long long)i, at, lp[i]));
      }
    }
    for (int64_t i : {(int64_t)0, n / 2, n - 1}) {
      const float at = log_softmax_at_reference(c.x.data(), n, i);
      CHECK_MESSAGE(std::memcmp(&at, &lp_ref[i], 4) == 0, fmt("log_softmax_at_reference %s i=%lld", tag.c_str(), (long long)i));
    }
  }
  set_isa(detected_isa());
}

// ---------------------------------------------------------------- attention

struct SeqSpec { int64_t pos0, Tq; };

// Builds the sequences in padded buffers (strides wider than the rows) and checks
// the reference against long double and every variant against the reference.
void test_attention_case(const char* name, int64_t H, int64_t D, const std::vector<SeqSpec>& specs, float q_std,
                         int threads) {
  const int64_t C = H * D, kv_stride = C + 5, q_stride = C + 3, out_stride = C + 1;
  struct Bufs { std::vector<float> q, k, v; };
  std::vector<Bufs> bufs;
  for (const SeqSpec& sp : specs) {
    const int64_t T = sp.pos0 + sp.Tq;
    bufs.push_back({randn(sp.Tq * q_stride, 0, q_std), randn(T * kv_stride), randn(T * kv_stride)});
  }
  auto make = [&](std::vector<std::vector<float>>& outs) {
    std::vector<AttentionSeq> seqs;
    for (size_t i = 0; i < specs.size(); i++) {
      outs.emplace_back(specs[i].Tq * out_stride, NAN);
      seqs.push_back({outs.back().data(), out_stride, bufs[i].q.data(), q_stride, bufs[i].k.data(), bufs[i].v.data(),
                      kv_stride, specs[i].pos0, specs[i].Tq});
    }
    return seqs;
  };
  std::vector<std::vector<float>> ref_out;
  ref_out.reserve(specs.size());
  std::vector<AttentionSeq> ref_seqs = make(ref_out);
  attention_causal_reference(ref_seqs, H, D);

  // Long double truth, and a tolerance scaled by the values' size.
  std::string ref_err;
  std::vector<std::vector<double>> tols;
  for (size_t si = 0; si < specs.size(); si++) {
    const AttentionSeq& s = ref_seqs[si];
    std::vector<float> exact(s.Tq * out_stride, 0.f);
    std::vector<double> tol(s.Tq * out_stride, 0.0);
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < s.Tq; i++) {
        const int64_t n = s.pos0 + i + 1;
        std::vector<long double> sc(n);
        long double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; j++) {
          long double dot = 0;
          for (int64_t d = 0; d < D; d++) dot += (long double)s.q[i * q_stride + h * D + d] * bufs[si].k[j * kv_stride + h * D + d];
          sc[j] = dot / std::sqrt((long double)D);
          mx = std::max(mx, sc[j]);
        }
        for (int64_t j = 0; j < n; j++) sum += std::exp(sc[j] - mx);
        for (int64_t d = 0; d < D; d++) {
          long double acc = 0;
          for (int64_t j = 0; j < n; j++) acc += std::exp(sc[j] - mx) / sum * bufs[si].v[j * kv_stride + h * D + d];
          exact[i * out_stride + h * D + d] = (float)acc;
          // Score errors of a float dot product scale with |q||k|; they perturb the weights.
          tol[i * out_stride + h * D + d] = 2e-6 * (1 + q_std * std::sqrt((double)D)) * (1 + std::fabs((double)acc));
        }
      }
    std::vector<float> got = ref_out[si];
    for (int64_t i = 0; i < s.Tq; i++) got[i * out_stride + C] = 0;  // padding column
    std::string e = compare(got.data(), exact.data(), tol, exact.size());
    if (!e.empty() && ref_err.empty()) ref_err = fmt("seq %zu: ", si) + e;
    tols.push_back(tol);
  }
  std::string tag = fmt("%s H=%lld D=%lld", name, (long long)H, (long long)D);
  CHECK_MESSAGE(ref_err.empty(), ("attention_causal_reference vs long double " + tag + ": " + ref_err));

  for (Isa isa : supported_isas()) {
    set_isa(isa);
    std::vector<std::vector<float>> outs;
    outs.reserve(specs.size());
    std::vector<AttentionSeq> seqs = make(outs);
    attention_causal(seqs, H, D, pool_n(threads));
    std::string err;
    for (size_t si = 0; si < specs.size() && err.empty(); si++) {
      // Padding columns between rows must stay untouched (NaN).
      for (int64_t i = 0; i < specs[si].Tq && err.empty(); i++)
        if (!std::isnan(outs[si][i * out_stride + C])) err = fmt("seq %zu row %lld: wrote past C", si, (long long)i);
      std::vector<float> a = outs[si], b = ref_out[si];
      for (int64_t i = 0; i < specs[si].Tq; i++) a[i * out_stride + C] = b[i * out_stride + C] = 0;
      std::string e = compare(a.data(), b.data(), tols[si], a.size());
      if (!e.empty() && err.empty()) err = fmt("seq %zu: ", si) + e;
    }
    CHECK_MESSAGE(err.empty(), (fmt("attention_causal[%s, %d thr] ", isa_name(isa), threads) + tag + ": " + err));
  }
  set_isa(detected_isa());
}

// Prompt rows (pass_cut) cut into passes differently: the same 150 queries over
// a long context run as one pass, as 1 + 2 + 3 + 144, and as 64-row passes (the
// causal cache of the later passes holds the earlier ones), with other
// sequences beside them: every output row is bit-identical (docs/design.md).
void test_attention_cut_invariance() {
  const int64_t H = 3, D = 64, C = H * D, T0 = 700, Tq = 150, T = T0 + Tq;
  const std::vector<float> q = randn(Tq * C), k = randn(T * C), v = randn(T * C);
  const std::vector<float> oq = randn(5 * C), ok = randn(400 * C), ov = randn(400 * C);
  for (Isa isa : supported_isas()) {
    set_isa(isa);
    for (int threads : {1, 2}) {
      std::vector<std::vector<float>> outs;
      for (const std::vector<int64_t>& cuts : {std::vector<int64_t>{150}, {1, 2, 3, 144}, {64, 64, 22}, {5, 1, 144}}) {
        std::vector<float> out(Tq * C, NAN), other(5 * C);
        int64_t at = 0;
        for (size_t c = 0; c < cuts.size(); c++) {
          std::vector<AttentionSeq> seqs;
          if (c % 2 == 0) seqs.push_back({other.data(), C, oq.data(), C, ok.data(), ov.data(), C, 395, 5, true});
          seqs.push_back({out.data() + at * C, C, q.data() + at * C, C, k.data(), v.data(), C, T0 + at, cuts[c], true});
          attention_causal(seqs, H, D, pool_n(threads));
          at += cuts[c];
        }
        outs.push_back(out);
      }
      for (size_t c = 1; c < outs.size(); c++)
        CHECK_MESSAGE(std::memcmp(outs[c].data(), outs[0].data(), outs[0].size() * sizeof(float)) == 0,
                      fmt("attention[%s, %d thr]: cut %zu differs from one pass", isa_name(isa), threads, c));
      // The same keys as two spans that continue each other's positions (a
      // ring's rows, then a pass's own), split anywhere: the same bits.
      std::vector<float> whole;
      for (int64_t split : {int64_t{0}, int64_t{1}, int64_t{63}, int64_t{64}, int64_t{500}, T0 + 7}) {
        const KeySpan a{k.data(), v.data(), C, split, 0}, b{k.data() + split * C, v.data() + split * C, C, T - split, split};
        const KeySpan spans[2] = {a, b};
        std::vector<float> out(Tq * C, NAN);
        std::vector<SpanAttentionTask> tasks;
        for (int64_t h = 0; h < H; h++)
          tasks.push_back({out.data(), C, q.data(), C, Tq, T0, h, split == 0 ? spans + 1 : spans, split == 0 ? 1 : 2, true});
        attention_spans(tasks, D, pool_n(threads));
        if (whole.empty()) whole = out;
        CHECK_MESSAGE(std::memcmp(out.data(), whole.data(), whole.size() * sizeof(float)) == 0,
                      fmt("attention[%s, %d thr]: keys split at %lld differ from one span", isa_name(isa), threads,
                          (long long)split));
      }
    }
  }
  set_isa(detected_isa());
}

// An F16 KV cache: every kernel converts its rows exactly and then computes what it
// computes on float rows, so a step over half rows gives the same bits as the same
// step over those rows widened to float (decode and GEMM tiles, splits, tails of
// D, the plain loop of wide heads, several spans, T5's biased kernel).
void test_attention_f16_kv() {
  const std::vector<SeqSpec> mixed = {{0, 1}, {0, 5}, {7, 1}, {40, 33}, {100, 70}, {250, 2}, {2100, 1}};
  for (int64_t D : {64, 24, 136}) {
    const int64_t H = 3, C = H * D;
    struct Seq { std::vector<float> q, k, v; std::vector<uint16_t> k16, v16; };
    std::vector<Seq> seqs;
    for (const SeqSpec& sp : mixed) {
      const int64_t T = sp.pos0 + sp.Tq;
      Seq s{randn(sp.Tq * C), randn(T * C), randn(T * C), std::vector<uint16_t>(T * C), std::vector<uint16_t>(T * C)};
      to_f16_reference(s.k16.data(), s.k.data(), T * C);
      to_f16_reference(s.v16.data(), s.v.data(), T * C);
      for (int64_t i = 0; i < T * C; i++) s.k[i] = f16_to_f32(s.k16[i]), s.v[i] = f16_to_f32(s.v16[i]);
      seqs.push_back(std::move(s));
    }
    auto run = [&](bool half, bool reference, int threads, std::vector<std::vector<float>>& outs) {
      std::vector<AttentionSeq> list;
      for (size_t i = 0; i < mixed.size(); i++) {
        outs.emplace_back(mixed[i].Tq * C, NAN);
        const Seq& s = seqs[i];
        list.push_back({outs.back().data(), C, s.q.data(), C, half ? (const void*)s.k16.data() : s.k.data(),
                        half ? (const void*)s.v16.data() : s.v.data(), C, mixed[i].pos0, mixed[i].Tq, false,
                        half ? KvType::F16 : KvType::F32});
      }
      if (reference) attention_causal_reference(list, H, D);
      else attention_causal(list, H, D, pool_n(threads));
    };
    std::vector<std::vector<float>> ref32, ref16;
    run(false, true, 1, ref32);
    run(true, true, 1, ref16);
    CHECK_MESSAGE(ref16 == ref32, (fmt("attention_causal_reference, F16 K/V, D=%lld", (long long)D)));
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      for (int threads : {1, 2}) {
        std::vector<std::vector<float>> out32, out16;
        run(false, false, threads, out32);
        run(true, false, threads, out16);
        bool same = true;
        for (size_t i = 0; i < out32.size(); i++)
          same = same && std::memcmp(out32[i].data(), out16[i].data(), out32[i].size() * sizeof(float)) == 0;
        CHECK_MESSAGE(same, (fmt("attention_causal[%s, %d thr], F16 K/V, D=%lld", isa_name(isa), threads, (long long)D)));
      }
    }
    set_isa(detected_isa());

    // Two spans (a ring's halves, unmasked) and T5's biased kernel over the first sequence with keys.
    const Seq& s = seqs[4];
    const int64_t T = 170;
    std::vector<float> bias = randn(H * 9);
    auto spans_of = [&](bool half) {
      const void* k = half ? (const void*)s.k16.data() : s.k.data();
      const void* v = half ? (const void*)s.v16.data() : s.v.data();
      const KvType kv = half ? KvType::F16 : KvType::F32;
      return std::vector<KeySpan>{{kv_advance(k, 100 * C, kv), kv_advance(v, 100 * C, kv), C, T - 100, kSpanNoMask},
                                  {k, v, C, 100, kSpanNoMask}};
    };
    for (Isa isa : supported_isas()) {
      set_isa(isa);
      std::vector<float> outs[2][2];
      for (int half = 0; half < 2; half++) {
        const std::vector<KeySpan> sp = spans_of(half);
        const KvType kv = half ? KvType::F16 : KvType::F32;
        std::vector<SpanAttentionTask> tasks;
        std::vector<BiasedAttentionTask> biased;
        outs[half][0].assign(70 * C, NAN);
        outs[half][1].assign(70 * C, NAN);
        for (int64_t h = 0; h < H; h++) {
          tasks.push_back({outs[half][0].data(), C, s.q.data(), C, 70, 100, h, sp.data(), 2, false, kv});
          biased.push_back({{outs[half][1].data(), C, s.q.data(), C, 70, 100, h, sp.data(), 2, false, kv},
                            bias.data() + h * 9, 4, true});
        }
        attention_spans(tasks, D, pool_n(2));
        attention_biased(biased, D, pool_n(2));
      }
      CHECK_MESSAGE(outs[0][0] == outs[1][0], (fmt("attention_spans[%s], F16 K/V, D=%lld", isa_name(isa), (long long)D)));
      CHECK_MESSAGE(outs[0][1] == outs[1][1], (fmt("attention_biased[%s], F16 K/V, D=%lld", isa_name(isa), (long long)D)));
    }
    set_isa(detected_isa());
  }
}

void test_attention() {
  // A batch step: prompts, a continuing chunk and decodes, side by side.
  const std::vector<SeqSpec> mixed = {{0, 1}, {0, 5}, {7, 1}, {40, 33}, {100, 70}, {0, 64}, {250, 2}};
  test_attention_case("mixed batch", 4, 64, mixed, 1.f, 2);
  test_attention_case("mixed batch", 4, 64, mixed, 1.f, 1);
  test_attention_case("mixed batch", 3, 24, mixed, 1.f, 3);       // D not a multiple of the vector width
  test_attention_case("mixed batch", 2, 8, mixed, 1.f, 2);
  test_attention_case("mixed batch", 2, 128, mixed, 1.f, 2);
  test_attention_case("mixed batch", 1, 136, {{3, 4}, {20, 1}}, 1.f, 2);  // wider than the vector kernels
  test_attention_case("peaky scores", 2, 64, {{60, 9}, {0, 40}}, 4.f, 2);
  // Decode over a long context with few heads: the keys are split and merged.
  test_attention_case("long decode", 2, 64, {{3000, 1}}, 1.f, 2);
  test_attention_case("long decode", 1, 40, {{2100, 1}, {1500, 3}}, 1.f, 3);
  test_attention_case("long prefill chunk", 1, 64, {{1200, 40}}, 1.f, 2);
  // Enough items for the threads, but one long decode outweighs the rest: split it.
  test_attention_case("long among short", 4, 64, {{5, 3}, {2600, 1}, {10, 1}, {0, 8}}, 1.f, 2);
}

// ---------------------------------------------------------------- isa

void test_isa() {
  bool ok = std::string(isa_name(Isa::Reference)) == "reference" && std::string(isa_name(Isa::Avx2)) == "avx2" &&
            std::string(isa_name(Isa::Avx512)) == "avx512";
  CHECK_MESSAGE(ok, "isa_name");
  set_isa(Isa::Reference);
  bool set_ok = active_isa() == Isa::Reference;
  set_isa(detected_isa());
  set_ok = set_ok && active_isa() == detected_isa();
  CHECK_MESSAGE(set_ok, (fmt("set_isa (detected %s)", isa_name(detected_isa()))));
  if (detected_isa() != Isa::Avx512) {
    bool threw = false;
    try {
      set_isa(Isa::Avx512);
    } catch (const Error& e) {
      threw = e.code() == "E_ARGUMENT";
    }
    CHECK_MESSAGE(threw, "set_isa rejects an unsupported variant");
  }
}

}  // namespace

// First in this file, so first to run (doctest runs a file's test cases in
// order): the first active_isa() of the process reads ROOST_ISA, so no op may
// run before it.
TEST_CASE("ROOST_ISA is honoured") {
  const Isa forced = detected_isa() == Isa::Reference ? Isa::Reference : Isa::Avx2;
  setenv("ROOST_ISA", isa_name(forced), 1);
  CHECK_MESSAGE(active_isa() == forced, (fmt("ROOST_ISA=%s is honoured: active %s", isa_name(forced), isa_name(active_isa()))));
}

TEST_CASE("isa") { test_isa(); }
TEST_CASE("matmul") { test_matmul(); }
TEST_CASE("matrix_column") { test_matrix_column(); }
TEST_CASE("layernorm") { test_layernorm(); }
TEST_CASE("gelu") { test_gelu(); }
TEST_CASE("add_inplace") { test_add_inplace(); }
TEST_CASE("softmax") { test_softmax(); }
TEST_CASE("attention") { test_attention(); }
// Last: they draw from g_rng, and the cases above keep their data.
TEST_CASE("matmul: a row's result does not depend on the rows beside it") { test_matmul_batch_invariance(); }
TEST_CASE("attention: a prompt row's result does not depend on the pass cut") { test_attention_cut_invariance(); }
TEST_CASE("to_f16") { test_to_f16(); }
TEST_CASE("attention: an F16 KV cache") { test_attention_f16_kv(); }
