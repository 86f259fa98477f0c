// Every CUDA op (cuda/ops.h) against the CPU reference ops (cpp/ops/*_ref)
// on random inputs of several shapes. Tolerances (docs/cuda.md):
//   - GEMM: the tensor-core paths (tiles, split-K) round x to the weight type
//     (F16/BF16) once; the GEMV (M <= 8) and SIMT paths keep x in float32, as
//     the CPU engine does. All sum in float32. The reference sums the same
//     (rounded or not) values in double, so the bound is accumulation order
//     only: 2e-5 * sum_k |x_k w_k| + 1e-6.
//   - LayerNorm, gelu, softmax, rotary: float32 vs the double references:
//     a few ulps (bounds below).
//   - Attention, SIMT kernel (float Q, F16 K/V as given): 2e-5 * max|v|.
//     Flash kernel: also rounds Q and the probabilities P to F16 (as
//     FlashAttention does): 4e-3 * max|v| + 1e-5.
//   - scale_columns, embed, row moves: exact.
// Attention runs through the CUDA backend's attention plan (cuda/backend.h),
// as the models run it. Without a CUDA device it prints "no CUDA device:
// skipped" and exits 0 (every TEST_CASE returns before checking). doctest
// (test/native/doctest_main.cpp) prints each failed check with its figures;
// --success (-s) prints the passing ones too. The host emulation
// (test/cuda/emu) builds it as test_cuda_ops_emulated: there it checks the
// test itself and the planning.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/backend.h"
#include "../../cuda/ops.h"
#include "../../cuda/runtime.h"
#include "../../cuda/weights_cuda.h"
#include "dtype.h"
#include "models/rotary.h"
#include "ops/attention_spans.h"
#include "ops/ops.h"
#include "doctest.h"
#include "../native/fmt.h"

using namespace roost;
using namespace roost::cuda;

namespace {

// Names cpp/backend.h and cuda/ops.h both define: the device ones here.
using cuda::AttnSpan;
using cuda::AttnTask;
using cuda::Epilogue;
using cuda::kNoMaskPos;
using cuda::RowMove;
using cuda::Scratch;

// One generator for the whole run: the TEST_CASEs draw from it in file order,
// so every run sees the same inputs.
std::mt19937 g_rng(20261201);

std::vector<float> randn(size_t n, float mean = 0.f, float sd = 1.f) {
  std::normal_distribution<float> d(mean, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(g_rng);
  return v;
}

uint16_t to_bf16_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}
float round_to(float f, WType t) { return t == WType::BF16 ? bf16_to_f32(to_bf16_bits(f)) : f16_to_f32(f32_to_f16(f)); }

// Device copies that free themselves.
struct Dev {
  std::shared_ptr<DeviceContext> ctx;
  template <typename T> DeviceBuffer put(const std::vector<T>& v) {
    DeviceBuffer b(ctx, std::max<size_t>(v.size() * sizeof(T), 16));
    if (!v.empty())
      ROOST_CUDA_CHECK(cudaMemcpyAsync(b.data(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, ctx->stream()));
    ctx->sync();
    return b;
  }
  template <typename T> std::vector<T> get(const DeviceBuffer& b, size_t n) {
    std::vector<T> v(n);
    ROOST_CUDA_CHECK(cudaMemcpyAsync(v.data(), b.data(), n * sizeof(T), cudaMemcpyDeviceToHost, ctx->stream()));
    ctx->sync();
    return v;
  }
};

// Worst |got - want| / bound; "" and ok when every entry is within its bound.
struct Cmp {
  double worst = 0, max_err = 0;
  size_t at = 0;
  double got = 0, want = 0;
  void add(size_t i, double g, double w, double bound) {
    const double e = std::fabs(g - w);
    const double r = std::isnan(g) != std::isnan(w) || std::isnan(e) ? INFINITY : e / bound;
    max_err = std::max(max_err, std::isnan(e) ? INFINITY : e);
    if (r > worst || (std::isinf(r) && !std::isinf(worst))) worst = r, at = i, got = g, want = w;
  }
  bool ok() const { return worst <= 1.0; }
  std::string str() const {
    return fmt("max err %.3g, worst %.3g of bound at %zu (got %.9g want %.9g)", max_err, worst, at, got, want);
  }
};

// ---------------------------------------------------------------- GEMM
void test_gemm(Dev& dev, Scratch& ws) {
  struct Shape { int64_t M, K, N; };
  const std::vector<Shape> shapes = {{1, 64, 96},    {3, 48, 260},   {8, 768, 2304}, {9, 64, 300},
                                     {17, 96, 200},  {64, 768, 768}, {32, 3072, 768}, {200, 96, 512},
                                     {300, 256, 1000}, {130, 36, 70},  {5, 36, 33},  {2100, 128, 2304}};
  for (WType wt : {WType::F16, WType::BF16}) {
    DeviceWeights up(dev.ctx, wt);
    for (const Shape& s : shapes) {
      const std::vector<float> w = randn(s.K * s.N, 0.f, 0.2f), x = randn(s.M * s.K), b = randn(s.N, 0.f, 0.1f),
                               y0 = randn(s.M * s.N);
      // The weight as the checkpoint holds it ([K, N] F32) and as the device rounds it.
      TensorView tv;
      tv.name = "w";
      tv.dtype = DType::F32;
      tv.shape = {s.K, s.N};
      tv.data = w.data();
      tv.nbytes = w.size() * 4;
      DeviceBuffer wbuf;
      const DevMatrix W = up.matrix(wbuf, tv, s.K, s.N, false);
      DeviceBuffer dx = dev.put(x), db = dev.put(b);
      // The reference sums once per shape and per treatment of x (index 1: rounded to the weight type,
      // as the tensor-core paths do; 0: float32, as GEMV and SIMT): sum_k x_k w_k and sum_k |x_k w_k|.
      std::vector<double> refs[2], mags[2];
      for (int rounded = 0; rounded < 2; rounded++) {
        std::vector<double>& ref = refs[rounded] = std::vector<double>(s.M * s.N);
        std::vector<double>& mag = mags[rounded] = std::vector<double>(s.M * s.N);
        std::vector<double> xr(s.K), wr(s.K * s.N);
        for (int64_t i = 0; i < s.K * s.N; i++) wr[i] = round_to(w[i], wt);
        for (int64_t m = 0; m < s.M; m++) {  // k outer, n inner: rows of w stream contiguously
          for (int64_t k = 0; k < s.K; k++) xr[k] = rounded ? round_to(x[m * s.K + k], wt) : x[m * s.K + k];
          double* acc = ref.data() + m * s.N;
          double* mg = mag.data() + m * s.N;
          for (int64_t k = 0; k < s.K; k++)
            for (int64_t n = 0; n < s.N; n++) {
              const double p = xr[k] * wr[k * s.N + n];
              acc[n] += p;
              mg[n] += std::fabs(p);
            }
        }
      }
      for (int epi = 0; epi < 5; epi++) {  // Store, Add, Gelu, Relu, GeluErf
        for (int path = 0; path < 2; path++) {  // 0: gemm (dispatch), 1: gemm_simt
          DeviceBuffer dy = dev.put(y0);
          if (path == 0)
            gemm(dy.as<float>(), s.N, dx.as<float>(), s.K, W, db.as<float>(), s.M, (Epilogue)epi, ws, *dev.ctx);
          else
            gemm_simt(dy.as<float>(), s.N, dx.as<float>(), s.K, W, db.as<float>(), s.M, (Epilogue)epi,
                      dev.ctx->stream());
          const std::vector<float> y = dev.get<float>(dy, s.M * s.N);
          // gemm's dispatch (cuda/gemm.cu): GEMV for M <= 8, SIMT when K % 8 != 0, else tensor cores.
          const bool tensor_cores = path == 0 && s.M > 8 && s.K % 8 == 0;
          const std::vector<double>&ref = refs[tensor_cores], &mag = mags[tensor_cores];
          Cmp c;
          for (int64_t m = 0; m < s.M; m++)
            for (int64_t n = 0; n < s.N; n++) {
              const double mg = mag[m * s.N + n];
              double want = ref[m * s.N + n] + b[n];
              if (epi == 1) want += y0[m * s.N + n];
              if (epi == 2) want = 0.5 * want * (1 + std::tanh(std::sqrt(2 / M_PI) * (want + 0.044715 * want * want * want)));
              if (epi == 3) want = std::max(want, 0.0);
              if (epi == 4) want = 0.5 * want * (1 + std::erf(want / std::sqrt(2.0)));
              c.add(m * s.N + n, y[m * s.N + n], want, 2e-5 * (mg + std::fabs(b[n])) + 1e-6 + (epi == 1 ? 1e-6 * std::fabs(y0[m * s.N + n]) : 0));
            }
          CHECK_MESSAGE((c.ok()), (fmt("gemm %s M=%lld K=%lld N=%lld epi=%d %s", wt == WType::BF16 ? "bf16" : "f16", (long long)s.M,
                     (long long)s.K, (long long)s.N, epi, path ? "simt" : "dispatch") + ": " + c.str()));
        }
      }
    }
  }
}

// ---------------------------------------------------------------- row ops
void test_rows(Dev& dev) {
  const cudaStream_t st = dev.ctx->stream();
  for (int64_t C : {32, 48, 768, 1000})
    for (int64_t M : {1, 7, 100}) {
      const std::vector<float> x = randn(M * C, 0.5f, 2.f), w = randn(C, 1.f, 0.2f), b = randn(C, 0.f, 0.1f);
      std::vector<float> want(M * C);
      layernorm_reference(want.data(), x.data(), w.data(), b.data(), M, C, 1e-5f);
      DeviceBuffer dx = dev.put(x), dw = dev.put(w), db = dev.put(b), dy(dev.ctx, M * C * 4);
      layernorm(dy.as<float>(), C, dx.as<float>(), C, nullptr, dw.as<float>(), db.as<float>(), M, C, 1e-5f, st);
      std::vector<float> got = dev.get<float>(dy, M * C);
      Cmp c;
      for (int64_t i = 0; i < M * C; i++) c.add(i, got[i], want[i], 2e-5 * (1 + std::fabs(want[i])));
      CHECK_MESSAGE((c.ok()), (fmt("layernorm M=%lld C=%lld", (long long)M, (long long)C) + ": " + c.str()));
      // Gather rows (reverse order) and in place.
      std::vector<int32_t> rows(M);
      for (int64_t m = 0; m < M; m++) rows[m] = (int32_t)(M - 1 - m);
      DeviceBuffer drows = dev.put(rows);
      layernorm(dy.as<float>(), C, dx.as<float>(), C, drows.as<int32_t>(), dw.as<float>(), db.as<float>(), M, C, 1e-5f, st);
      got = dev.get<float>(dy, M * C);
      Cmp g;
      for (int64_t m = 0; m < M; m++)
        for (int64_t c2 = 0; c2 < C; c2++)
          g.add(m * C + c2, got[m * C + c2], want[(M - 1 - m) * C + c2], 2e-5 * (1 + std::fabs(want[(M - 1 - m) * C + c2])));
      layernorm(dx.as<float>(), C, dx.as<float>(), C, nullptr, dw.as<float>(), db.as<float>(), M, C, 1e-5f, st);
      got = dev.get<float>(dx, M * C);
      for (int64_t i = 0; i < M * C; i++) g.add(i, got[i], want[i], 2e-5 * (1 + std::fabs(want[i])));
      CHECK_MESSAGE((g.ok()), (fmt("layernorm gather + in place M=%lld C=%lld", (long long)M, (long long)C) + ": " + g.str()));
    }

  {
    const int64_t n = 100003;
    std::vector<float> x = randn(n, 0.f, 3.f), want(n);
    x[0] = 0.f, x[1] = -20.f, x[2] = 20.f;
    gelu_reference(want.data(), x.data(), n);
    DeviceBuffer dx = dev.put(x), dy(dev.ctx, n * 4);
    gelu(dy.as<float>(), dx.as<float>(), n, st);
    const std::vector<float> got = dev.get<float>(dy, n);
    Cmp c;
    for (int64_t i = 0; i < n; i++) c.add(i, got[i], want[i], 2e-6 * (1 + std::fabs(x[i])));
    CHECK_MESSAGE((c.ok()), ("gelu_new: " + c.str()));
    std::vector<float> y0 = randn(n);
    DeviceBuffer dyy = dev.put(y0);
    add_inplace(dyy.as<float>(), dx.as<float>(), n, st);
    const std::vector<float> s = dev.get<float>(dyy, n);
    Cmp a;
    for (int64_t i = 0; i < n; i++) a.add(i, s[i], (double)(y0[i] + x[i]), 1e-7);
    CHECK_MESSAGE((a.ok()), ("add_inplace: " + a.str()));
  }

  for (int64_t n : {5, 260, 50257}) {
    const int64_t M = 3;
    std::vector<float> x = randn(M * n, 0.f, 4.f), sm(M * n), ls(M * n);
    for (int64_t m = 0; m < M; m++) {
      std::copy(x.begin() + m * n, x.begin() + (m + 1) * n, sm.begin() + m * n);
      softmax_reference(sm.data() + m * n, n);
      log_softmax_reference(ls.data() + m * n, x.data() + m * n, n);
    }
    DeviceBuffer dx = dev.put(x), dy(dev.ctx, M * n * 4), dl(dev.ctx, M * n * 4);
    softmax_rows(dy.as<float>(), dx.as<float>(), M, n, st);
    log_softmax_rows(dl.as<float>(), dx.as<float>(), M, n, st);
    const std::vector<float> g1 = dev.get<float>(dy, M * n), g2 = dev.get<float>(dl, M * n);
    Cmp c1, c2;
    for (int64_t i = 0; i < M * n; i++) {
      c1.add(i, g1[i], sm[i], 1e-6 * sm[i] + 1e-12);
      c2.add(i, g2[i], ls[i], 1e-6 * (1 + std::fabs(ls[i])));
    }
    CHECK_MESSAGE((c1.ok()), (fmt("softmax n=%lld", (long long)n) + ": " + c1.str()));
    CHECK_MESSAGE((c2.ok()), (fmt("log_softmax n=%lld", (long long)n) + ": " + c2.str()));
  }

  for (int64_t D : {8, 16, 64, 128})
    for (int64_t rot : {D, D / 2}) {
      const int64_t H = 3, M = 37, C = H * D, ld = 3 * C;
      const double base = rot == D ? 10000.0 : 500.0;
      std::vector<float> x = randn(M * ld);
      std::vector<int64_t> pos(M);
      std::uniform_int_distribution<int64_t> pd(0, 70000);
      for (auto& p : pos) p = pd(g_rng);
      std::vector<double> inv;
      for (int64_t i = 0; i < rot / 2; i++) inv.push_back(std::pow(base, -2.0 * (double)i / (double)rot));
      Rotary r(inv);
      std::vector<float> want = x, cs, sn;
      r.tables(cs, sn, pos.data(), M);
      r.apply(want.data(), ld, M, H, D, cs.data(), sn.data());
      r.apply(want.data() + C, ld, M, H, D, cs.data(), sn.data());
      DeviceBuffer dx = dev.put(x), dp = dev.put(pos), di = dev.put(inv);
      rotary(dx.as<float>(), ld, M, H, D, rot, 2, dp.as<int64_t>(), di.as<double>(), st);
      const std::vector<float> got = dev.get<float>(dx, M * ld);
      Cmp c;
      for (int64_t i = 0; i < M * ld; i++) c.add(i, got[i], want[i], 2e-6 * (1 + std::fabs(want[i])));
      CHECK_MESSAGE((c.ok()), (fmt("rotary D=%lld rotary_dim=%lld", (long long)D, (long long)rot) + ": " + c.str()));
    }

  for (WType wt : {WType::F16, WType::BF16}) {
    const int64_t V = 50, C = 40, M = 9;
    const std::vector<float> wte = randn(V * C), wpe = randn(20 * C);
    std::vector<uint16_t> bits(V * C);
    for (int64_t i = 0; i < V * C; i++) bits[i] = wt == WType::BF16 ? to_bf16_bits(wte[i]) : f32_to_f16(wte[i]);
    std::vector<int32_t> tok(M);
    std::vector<int64_t> pos(M);
    for (int64_t m = 0; m < M; m++) tok[m] = (int32_t)((m * 7 + 3) % V), pos[m] = (m * 5) % 20;
    DeviceBuffer dw = dev.put(bits), dp = dev.put(wpe), dt = dev.put(tok), dpos = dev.put(pos), dx(dev.ctx, M * C * 4);
    for (int learned = 0; learned < 2; learned++) {
      embed(dx.as<float>(), dw.data(), wt, learned ? dp.as<float>() : nullptr, dt.as<int32_t>(), dpos.as<int64_t>(), M, C, st);
      const std::vector<float> got = dev.get<float>(dx, M * C);
      Cmp c;
      for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < C; k++) {
          const uint16_t e = bits[tok[m] * C + k];
          const float want = (wt == WType::BF16 ? bf16_to_f32(e) : f16_to_f32(e)) + (learned ? wpe[pos[m] * C + k] : 0.f);
          c.add(m * C + k, got[m * C + k], want, 1e-7);
        }
      CHECK_MESSAGE((c.ok()), (fmt("embed %s %s", wt == WType::BF16 ? "bf16" : "f16", learned ? "learned" : "no positions") + ": " + c.str()));
    }
    // Rows with token -1 (a soft prompt moved in before) keep their values and get the position added.
    std::vector<int32_t> tok_soft = tok;
    tok_soft[0] = tok_soft[4] = -1;
    const std::vector<float> before = randn(M * C);
    DeviceBuffer dts = dev.put(tok_soft), dxs = dev.put(before);
    embed(dxs.as<float>(), dw.data(), wt, dp.as<float>(), dts.as<int32_t>(), dpos.as<int64_t>(), M, C, st);
    const std::vector<float> got = dev.get<float>(dxs, M * C);
    Cmp c;
    for (int64_t m = 0; m < M; m++)
      for (int64_t k = 0; k < C; k++) {
        const uint16_t e = bits[tok[m] * C + k];
        const float base = tok_soft[m] < 0 ? before[m * C + k] : (wt == WType::BF16 ? bf16_to_f32(e) : f16_to_f32(e));
        c.add(m * C + k, got[m * C + k], base + wpe[pos[m] * C + k], 1e-7);
      }
    CHECK_MESSAGE((c.ok()), (fmt("embed %s soft-prompt rows", wt == WType::BF16 ? "bf16" : "f16") + ": " + c.str()));
  }

  {  // rmsnorm (gathered rows, strides) and silu_mul against double loops (the Llama family)
    const int64_t M = 7, C = 300, ldx = 310, ldy = 305, F = 150;  // silu_mul reads gate | up = 2F <= ldx columns
    const std::vector<float> x = randn(M * ldx, 0.f, 3.f), w = randn(C);
    std::vector<int32_t> rows(M);
    for (int64_t m = 0; m < M; m++) rows[m] = (int32_t)((m * 3) % M);
    DeviceBuffer dx = dev.put(x), dw = dev.put(w), drows = dev.put(rows), dy(dev.ctx, M * ldy * 4);
    rmsnorm(dy.as<float>(), ldy, dx.as<float>(), ldx, drows.as<int32_t>(), dw.as<float>(), M, C, 1e-6f, st);
    std::vector<float> got = dev.get<float>(dy, M * ldy);
    Cmp c;
    for (int64_t m = 0; m < M; m++) {
      const float* xr = x.data() + rows[m] * ldx;
      double ss = 0;
      for (int64_t k = 0; k < C; k++) ss += (double)xr[k] * xr[k];
      const double inv = 1 / std::sqrt(ss / C + 1e-6);
      for (int64_t k = 0; k < C; k++) {
        const double want = xr[k] * inv * w[k];
        c.add(m * ldy + k, got[m * ldy + k], want, 2e-6 * (1 + std::fabs(want)));
      }
    }
    CHECK_MESSAGE((c.ok()), (std::string("rmsnorm gather + strides: ") + c.str()));
    DeviceBuffer dg(dev.ctx, M * F * 4);
    silu_mul(dg.as<float>(), F, dx.as<float>(), ldx, M, F, st);
    got = dev.get<float>(dg, M * F);
    Cmp s;
    for (int64_t m = 0; m < M; m++)
      for (int64_t f = 0; f < F; f++) {
        const double g = x[m * ldx + f], u = x[m * ldx + F + f], want = g / (1 + std::exp(-g)) * u;
        s.add(m * F + f, got[m * F + f], want, 2e-6 * (1 + std::fabs(want)));
      }
    CHECK_MESSAGE((s.ok()), (std::string("silu_mul: ") + s.str()));
  }

  {  // scale_columns ((IA)^3): the first `cols` columns of rows of stride ld
    const int64_t M = 5, cols = 37, ld = 50;
    const std::vector<float> x = randn(M * ld), scale = randn(cols);
    DeviceBuffer dx = dev.put(x), dsc = dev.put(scale);
    scale_columns(dx.as<float>(), ld, M, cols, dsc.as<float>(), st);
    const std::vector<float> got = dev.get<float>(dx, M * ld);
    Cmp c;
    for (int64_t m = 0; m < M; m++)
      for (int64_t k = 0; k < ld; k++)
        c.add(m * ld + k, got[m * ld + k], k < cols ? x[m * ld + k] * scale[k] : x[m * ld + k], 0.5e-9);
    CHECK_MESSAGE((c.ok()), ("scale_columns: " + c.str()));
  }

  {  // move_rows (float and F16, layer strides), to_half, gate_update
    const int64_t C = 24, rows = 6;
    const std::vector<float> src = randn(2 * rows * C);  // two "layers" of source rows
    DeviceBuffer ds = dev.put(src), dst(dev.ctx, 2 * rows * C * 4), dsth(dev.ctx, 2 * rows * C * 2);
    std::vector<RowMove> mv, mvh;
    for (int64_t r = 0; r < rows; r++) {
      mv.push_back({ds.as<float>() + r * C, dst.as<float>() + (rows - 1 - r) * C, rows * C, rows * C});
      mvh.push_back({ds.as<float>() + r * C, dsth.as<uint16_t>() + r * C, rows * C, rows * C});
    }
    DeviceBuffer dmv = dev.put(mv), dmvh = dev.put(mvh);
    move_rows(dmv.as<RowMove>(), rows, C, 1, false, st);
    move_rows(dmvh.as<RowMove>(), rows, C, 1, true, st);
    const std::vector<float> g = dev.get<float>(dst, 2 * rows * C);
    const std::vector<uint16_t> gh = dev.get<uint16_t>(dsth, 2 * rows * C);
    Cmp c;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t k = 0; k < C; k++) {
        c.add(r * C + k, g[rows * C + (rows - 1 - r) * C + k], src[rows * C + r * C + k], 0.5e-9);
        c.add(r * C + k, f16_to_f32(gh[rows * C + r * C + k]), f16_to_f32(f32_to_f16(src[rows * C + r * C + k])), 0.5e-9);
      }
    CHECK_MESSAGE((c.ok()), ("move_rows float / F16 with layer strides: " + c.str()));

    DeviceBuffer dh(dev.ctx, rows * C * 2);
    to_half(dh.as<uint16_t>(), C, ds.as<float>() + 1, 2 * C, rows, C - 1, st);  // odd width and offset
    const std::vector<uint16_t> th = dev.get<uint16_t>(dh, rows * C);
    Cmp t;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t k = 0; k < C - 1; k++)
        t.add(r * C + k, f16_to_f32(th[r * C + k]), f16_to_f32(f32_to_f16(src[r * 2 * C + 1 + k])), 0.5e-9);
    CHECK_MESSAGE((t.ok()), ("to_half: " + t.str()));

    const int64_t S = 3, count = 2;
    std::vector<float> s = randn(2 * count * S * C), y = randn(count * S * C), keep(C);
    for (auto& k : keep) k = std::uniform_real_distribution<float>(0, 1)(g_rng);
    DeviceBuffer dsb = dev.put(s), dy = dev.put(y), dk = dev.put(keep);
    // state i at dsb + i*2*S*C, layer stride S*C: layer 1 is the second half of each state block
    std::vector<float*> ptrs = {dsb.as<float>(), dsb.as<float>() + 2 * S * C};
    DeviceBuffer dp = dev.put(ptrs);
    gate_update(dp.as<float*>(), S * C, 1, dy.as<float>(), dk.as<float>(), count, S, C, st);
    const std::vector<float> gs = dev.get<float>(dsb, 2 * count * S * C);
    Cmp u;
    for (int64_t i = 0; i < count; i++)
      for (int64_t j = 0; j < S * C; j++) {
        const int64_t at = i * 2 * S * C + S * C + j, c2 = j % C;
        u.add(at, gs[at], s[at] * keep[c2] + y[i * S * C + j] * (1.f - keep[c2]), 1e-6);
        u.add(at, gs[at - S * C], s[at - S * C], 0.5e-9);  // layer 0 untouched
      }
    CHECK_MESSAGE((u.ok()), ("gate_update: " + u.str()));
  }
}

// ---------------------------------------------------------------- attention
// One attention case: spans over F16 K/V buffers (per layer), tasks per head;
// the CPU reference runs on the same values as float.
struct AttnCase {
  std::string name;
  int64_t H, D;
  int64_t layers = 1, layer = 0;
  // K/V storage: `rows` rows of C per layer, positions 0..rows-1 unless spans say otherwise
  int64_t rows;
  struct Span { int64_t r0, n, pos0; };         // rows r0.. of the storage, position of row 0 (or kNoMaskPos)
  struct Task { int64_t q0, nq, qpos0; std::vector<Span> spans; };
  std::vector<Task> tasks;
};

void run_attention_case(Dev& dev, CudaBackend& be, ThreadPool& pool, const AttnCase& ac) {
  const int64_t H = ac.H, D = ac.D, C = H * D;
  int64_t nq_total = 0;
  for (const auto& t : ac.tasks) nq_total = std::max(nq_total, t.q0 + t.nq);
  const std::vector<float> q = randn(nq_total * 3 * C);  // q rows with stride 3C, as in fused Q|K|V
  std::vector<float> kf = randn(ac.layers * ac.rows * C), vf = randn(ac.layers * ac.rows * C, 0.f, 2.f);
  std::vector<uint16_t> kh(kf.size()), vh(vf.size());
  for (size_t i = 0; i < kf.size(); i++) {
    kh[i] = f32_to_f16(kf[i]), kf[i] = f16_to_f32(kh[i]);
    vh[i] = f32_to_f16(vf[i]), vf[i] = f16_to_f32(vh[i]);
  }
  float vmax = 0;
  for (float v : vf) vmax = std::max(vmax, std::fabs(v));
  DeviceBuffer dq = dev.put(q), dk = dev.put(kh), dv = dev.put(vh), dout(dev.ctx, nq_total * C * 4);

  // CPU reference for the chosen layer.
  std::vector<float> want(nq_total * C, 0.f);
  SpanBatch cpu;
  const float* kl = kf.data() + ac.layer * ac.rows * C;
  const float* vl = vf.data() + ac.layer * ac.rows * C;
  std::unique_ptr<roost::AttentionPlan> made = be.attention_plan();
  auto& plan = static_cast<CudaAttentionPlan&>(*made);
  for (const auto& t : ac.tasks) {
    for (int64_t h = 0; h < H; h++) {
      for (const auto& s : t.spans) {
        cpu.add_span(KeySpan{kl + s.r0 * C, vl + s.r0 * C, C, s.n, s.pos0 == kNoMaskPos ? kSpanNoMask : s.pos0});
        plan.add_span(roost::AttnSpan{dk.as<uint16_t>() + s.r0 * C, dv.as<uint16_t>() + s.r0 * C, C, s.n, s.pos0, ac.rows * C});
      }
      cpu.add_task(SpanAttentionTask{want.data() + t.q0 * C, C, q.data() + t.q0 * 3 * C, 3 * C, t.nq, t.qpos0, h, nullptr, 0});
      plan.add_task(roost::AttnTask{dout.as<float>() + t.q0 * C, C, dq.as<float>() + t.q0 * 3 * C, 3 * C, t.nq, t.qpos0, (int32_t)h});
    }
  }
  attention_spans_reference(cpu.tasks(), D);

  for (int force = 0; force < 3; force++) {
    if (force == 1 && !flash_supported(D, 64)) continue;
    be.begin_step(pool);
    plan.force = force;
    plan.prepare(D);
    ROOST_CUDA_CHECK(cudaMemsetAsync(dout.data(), 0xff, nq_total * C * 4, dev.ctx->stream()));  // NaN: unwritten rows show
    plan.run(ac.layer);
    const std::vector<float> got = dev.get<float>(dout, nq_total * C);
    const bool flash = plan.flash_tasks() > 0;
    if (force == 2 && flash)
      FAIL_CHECK(fmt("attention %s D=%lld force %d kernel choice: %zu flash and %zu SIMT tasks", ac.name.c_str(),
                     (long long)D, force, plan.flash_tasks(), plan.simt_tasks()));
    const double bound = flash ? 4e-3 * vmax + 1e-5 : 2e-5 * vmax + 1e-6;
    Cmp c;
    for (const auto& t : ac.tasks)
      for (int64_t i = t.q0 * C; i < (t.q0 + t.nq) * C; i++) c.add(i, got[i], want[i], bound);
    CHECK_MESSAGE((c.ok()), (fmt("attention %s H=%lld D=%lld %s", ac.name.c_str(), (long long)H, (long long)D,
               force == 0 ? "auto" : force == 1 ? "flash" : "simt") + ": " + c.str()));
  }
}

void test_attention(Dev& dev, CudaBackend& be, ThreadPool& pool) {
  for (int64_t D : {8, 12, 16, 32, 64, 96, 128, 256}) {
    const int64_t H = D >= 128 ? 2 : 3;
    // Dense causal prefill of several sequences (the gpt2 layout): queries at
    // past .. past+T-1 over rows 0 .. past+T-1 of their own cache region.
    {
      AttnCase ac{"dense causal batch", H, D, 2, 1, 0, {}};
      int64_t q0 = 0, r0 = 0;
      for (auto [past, T] : std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {0, 17}, {50, 64}, {0, 130}, {7, 300}, {333, 1}}) {
        ac.tasks.push_back({q0, T, past, {{r0, past + T, 0}}});
        q0 += T;
        r0 += past + T;
      }
      ac.rows = r0;
      run_attention_case(dev, be, pool, ac);
    }
    // Block-sparse: several blocks per task (BigBird lists), a partial last
    // block, causal clip inside the query's own block.
    {
      const int64_t b = 32;
      AttnCase ac{"block-sparse", H, D, 1, 0, 10 * b, {}};
      for (int64_t i : {0, 3, 9}) {
        std::vector<AttnCase::Span> sp;
        for (int64_t j : {(int64_t)0, (int64_t)1, i - 4, i - 2, i - 1, i})
          if (j >= 0 && j <= i && (sp.empty() || sp.back().r0 < j * b)) sp.push_back({j * b, b, j * b});
        const int64_t nq = i == 9 ? 20 : b;  // partial last block
        ac.tasks.push_back({i * b, nq, i * b, sp});
      }
      run_attention_case(dev, be, pool, ac);
    }
    // Unmasked spans (state keys, rings), a wrapped ring (two spans), a span
    // of 0 rows, and a query that sees nothing (zeros).
    {
      AttnCase ac{"unmasked + empty", H, D, 1, 0, 200, {}};
      ac.tasks.push_back({0, 5, 0, {{100, 4, kNoMaskPos}}});
      ac.tasks.push_back({5, 20, 60, {{150, 50, kNoMaskPos}, {0, 0, kNoMaskPos}, {10, 30, 30}}});
      ac.tasks.push_back({25, 3, 5, {{40, 10, 100}}});  // every key after every query: zeros
      ac.tasks.push_back({28, 70, 1000, {{0, 100, 940}, {120, 7, kNoMaskPos}}});
      run_attention_case(dev, be, pool, ac);
    }
    // Long decode: one query over thousands of keys (split over keys).
    {
      AttnCase ac{"long decode", H, D, 1, 0, 5000, {}};
      ac.tasks.push_back({0, 1, 4999, {{0, 5000, 0}}});
      ac.tasks.push_back({1, 1, 2500, {{0, 5000, 0}}});  // the tail is masked
      run_attention_case(dev, be, pool, ac);
    }
  }
}

// Whether device 0 exists; without one the first call prints the skip line
// and every TEST_CASE returns before it checks anything (exit 0).
bool have_device() {
  static const bool have = [] {
    std::string why;
    if (device_count(&why) == 0) {
      std::printf("no CUDA device: skipped (%s)\n", why.c_str());
      return false;
    }
    std::printf("device: %s\n", device_name(0).c_str());
    return true;
  }();
  return have;
}

// What a TEST_CASE runs on: the CUDA backend of device 0 (its context, a GEMM
// scratch and the attention plans), made and freed inside the TEST_CASE.
struct Gpu {
  std::shared_ptr<CudaBackend> be = std::make_shared<CudaBackend>(0, WType::F16);
  Dev dev{be->shared_context()};
  Scratch ws{dev.ctx};
  ThreadPool pool{1};
};

}  // namespace

TEST_CASE("gemm: dispatch and SIMT, F16 and BF16 weights, every epilogue") {
  if (!have_device()) return;
  Gpu gpu;
  test_gemm(gpu.dev, gpu.ws);
}

TEST_CASE("row ops: layernorm, gelu, softmax, rotary, embed, row moves") {
  if (!have_device()) return;
  Gpu gpu;
  test_rows(gpu.dev);
}

TEST_CASE("attention through the backend's plan: auto, flash and SIMT kernels") {
  if (!have_device()) return;
  Gpu gpu;
  test_attention(gpu.dev, *gpu.be, gpu.pool);
}
