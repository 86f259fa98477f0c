// Tests of the Q8_0 weights (docs/models.md, "8-bit weights"): the block quantizer
// against values worked out by hand, packing (quantized at pack time and GGUF blocks
// as stored), and the matmul: every kernel (AVX2, AVX-512BW, AVX-512 VNNI) equal to
// matmul_reference bit for bit, and the reference within the quantization error of
// the float product.
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "doctest.h"
#include "fmt.h"
#include "ops/ops.h"
#include "threadpool.h"

using namespace roost;

namespace {

std::mt19937 g_rng(20261207);

std::vector<float> randn(size_t n, float std = 1.f) {
  std::normal_distribution<float> d(0.f, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g_rng);
  return v;
}

ThreadPool& pool_n(int n) {
  static std::unique_ptr<ThreadPool> pools[4];
  if (!pools[n]) pools[n] = std::make_unique<ThreadPool>(n);
  return *pools[n];
}

// Every Q8_0 kernel this CPU runs: set_isa plus the VNNI switch.
struct Variant {
  Isa isa;
  bool vnni;
  std::string name() const { return std::string(isa_name(isa)) + (isa == Isa::Avx512 ? (vnni ? "+vnni" : "bw") : ""); }
};
std::vector<Variant> variants() {
  std::vector<Variant> out = {{Isa::Reference, false}};
  if ((int)detected_isa() >= (int)Isa::Avx2) out.push_back({Isa::Avx2, false});
  if ((int)detected_isa() >= (int)Isa::Avx512) {
    out.push_back({Isa::Avx512, false});
    if (cpu_has_avx512_vnni()) out.push_back({Isa::Avx512, true});
  }
  return out;
}
void use(const Variant& v) {
  set_isa(v.isa);
  set_q8_vnni(v.vnni);
}
void restore() {
  set_isa(detected_isa());
  set_q8_vnni(cpu_has_avx512_vnni());
}

// A GGUF Q8_0 row: blocks of (F16 d, 32 int8).
void append_block(std::vector<uint8_t>& out, uint16_t d, const int8_t* q) {
  out.push_back((uint8_t)(d & 0xff));
  out.push_back((uint8_t)(d >> 8));
  for (int i = 0; i < 32; i++) out.push_back((uint8_t)q[i]);
}

}  // namespace

TEST_CASE("quantize_block_q8_0: llama.cpp's rounding on worked values") {
  // max |x| = 127 makes d = 1 and q = roundf(x): halves go away from zero
  // (nearest-even would give 0, 0, 2, 2, -2 for the first five halves).
  float x[32] = {0.5f, -0.5f, 1.5f, 2.5f, -2.5f, -127.f, 126.6f, 3.49f, -3.51f, 0.f};
  for (int i = 10; i < 32; i++) x[i] = (float)(i - 20);
  int8_t q[32];
  const float d = quantize_block_q8_0(q, x);
  CHECK(d == 1.f);
  CHECK(f32_to_f16(d) == 0x3c00);
  const int8_t want[10] = {1, -1, 2, 3, -3, -127, 127, 3, -4, 0};
  for (int i = 0; i < 10; i++) CHECK_MESSAGE(q[i] == want[i], fmt("q[%d] = %d, want %d", i, q[i], want[i]));
  for (int i = 10; i < 32; i++) CHECK(q[i] == i - 20);

  // max |x| = 2: d = 2/127 (F16 0x2408 after rounding), q = roundf(x * 63.5).
  float y[32] = {};
  y[0] = 2.f;
  y[1] = -1.f;     // -63.5 -> -64
  y[2] = 0.01f;    // 0.635 -> 1
  y[3] = -0.007f;  // -0.4445 -> 0
  const float dy = quantize_block_q8_0(q, y);
  CHECK(dy == 2.f / 127.f);
  CHECK(f32_to_f16(dy) == 0x2408);  // 2^-6 * (1 + 8/1024)
  CHECK(q[0] == 127);
  CHECK(q[1] == -64);
  CHECK(q[2] == 1);
  CHECK(q[3] == 0);
  for (int i = 4; i < 32; i++) CHECK(q[i] == 0);

  // All zeros: d = 0 and no division by it.
  float z[32] = {};
  CHECK(quantize_block_q8_0(q, z) == 0.f);
  for (int i = 0; i < 32; i++) CHECK(q[i] == 0);
}

TEST_CASE("quantize_rows_q8_0: padding and F16-rounded scales") {
  // K = 40: two blocks, the second holds 8 values and 24 zeros.
  std::vector<float> x(2 * 40);
  for (int i = 0; i < 80; i++) x[i] = (float)((i * 7) % 23) - 11.f;
  std::vector<int8_t> q(2 * 64, 99);
  std::vector<float> d(4);
  quantize_rows_q8_0(q.data(), d.data(), x.data(), 2, 40, nullptr);
  for (int m = 0; m < 2; m++)
    for (int b = 0; b < 2; b++) {
      float block[32] = {};
      for (int i = 0; i < 32 && b * 32 + i < 40; i++) block[i] = x[m * 40 + b * 32 + i];
      int8_t want[32];
      const float dw = quantize_block_q8_0(want, block);
      CHECK(d[m * 2 + b] == f16_to_f32(f32_to_f16(dw)));
      for (int i = 0; i < 32; i++) CHECK(q[m * 64 + b * 32 + i] == want[i]);
    }
  for (int i = 8; i < 32; i++) CHECK(q[32 + i] == 0);  // the padding of row 0's second block
}

TEST_CASE("quantize_rows_q8_0: every ISA gives the scalar rule's bytes, scales and block sums") {
  // Ragged K (the last block padded), halves at every scale, all-zero blocks, tiny and
  // huge magnitudes; each variant must give quantize_block_q8_0's bytes exactly, and
  // the sums the VNNI kernel starts from must be -128 * each block's sum of q.
  for (int64_t K : {32, 40, 100, 768}) {
    const int64_t M = 5, nb = (K + 31) / 32;
    std::vector<float> x = randn(M * K, 2.f);
    for (int64_t k = 0; k < K; k += 3) x[k] = (float)(k % 9) - 4.5f;    // halves where d = 1 (max |x| 127 below)
    for (int64_t k = 0; k < K; k += 32) x[k + std::min<int64_t>(1, K - 1 - k)] = 127.f;
    for (int64_t k = 0; k < std::min<int64_t>(32, K); k++) x[K + k] = 0.f;  // row 1's first block: all zero
    for (int64_t k = 0; k < K; k++) x[2 * K + k] *= 1e-30f;               // row 2: tiny scales
    for (int64_t k = 0; k < K; k++) x[3 * K + k] *= 1e30f;                // row 3: huge ones
    std::vector<int8_t> want(M * nb * 32);
    std::vector<float> want_d(M * nb);
    std::vector<int32_t> want_s(M * nb);
    for (int64_t m = 0; m < M; m++)
      for (int64_t b = 0; b < nb; b++) {
        float block[32] = {};
        for (int64_t i = 0; i < 32 && b * 32 + i < K; i++) block[i] = x[m * K + b * 32 + i];
        want_d[m * nb + b] = f16_to_f32(f32_to_f16(quantize_block_q8_0(&want[(m * nb + b) * 32], block)));
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) sum += want[(m * nb + b) * 32 + i];
        want_s[m * nb + b] = -128 * sum;
      }
    for (const Variant& v : variants()) {
      use(v);
      std::vector<int8_t> q(M * nb * 32, 99);
      std::vector<float> d(M * nb, NAN);
      std::vector<int32_t> sums(M * nb, 12345);
      quantize_rows_q8_0(q.data(), d.data(), x.data(), M, K, nullptr, sums.data());
      const std::string tag = fmt("%s K=%lld", v.name().c_str(), (long long)K);
      int bad_q = 0, bad_d = 0, bad_s = 0;
      for (size_t i = 0; i < q.size(); i++) bad_q += q[i] != want[i];
      for (size_t i = 0; i < d.size(); i++) bad_d += std::memcmp(&d[i], &want_d[i], 4) != 0;
      for (size_t i = 0; i < sums.size(); i++) bad_s += sums[i] != want_s[i];
      CHECK_MESSAGE(bad_q == 0, fmt("%s: %d bytes differ from quantize_block_q8_0", tag.c_str(), bad_q));
      CHECK_MESSAGE(bad_d == 0, fmt("%s: %d scales differ", tag.c_str(), bad_d));
      CHECK_MESSAGE(bad_s == 0, fmt("%s: %d block sums differ", tag.c_str(), bad_s));
      // The VNNI kernel's tile layout (here tiles of 3 rows: 3, then 2): row m of the
      // tile from m0, block b, byte k at m0 * Kq + b * 32 * R + (k / 4) * 4 * R +
      // (m - m0) * 4 + k % 4 for a tile of R rows; scale and sum at m0 * nb + b * R + m - m0.
      const int64_t T = 3, Kq = nb * 32;
      std::fill(q.begin(), q.end(), 99);
      std::fill(d.begin(), d.end(), NAN);
      std::fill(sums.begin(), sums.end(), 12345);
      quantize_rows_q8_0(q.data(), d.data(), x.data(), M, K, nullptr, sums.data(), T);
      bad_q = bad_d = bad_s = 0;
      for (int64_t m = 0; m < M; m++) {
        const int64_t m0 = m / T * T, R = std::min<int64_t>(T, M - m0), r = m - m0;
        for (int64_t b = 0; b < nb; b++) {
          for (int64_t k = 0; k < 32; k++)
            bad_q += q[m0 * Kq + b * 32 * R + (k / 4) * 4 * R + r * 4 + k % 4] != want[(m * nb + b) * 32 + k];
          const int64_t at = m0 * nb + b * R + r;
          bad_d += std::memcmp(&d[at], &want_d[m * nb + b], 4) != 0;
          bad_s += sums[at] != want_s[m * nb + b];
        }
      }
      CHECK_MESSAGE(bad_q + bad_d + bad_s == 0,
                    fmt("%s, tiles of 3 rows: %d bytes, %d scales, %d sums misplaced", tag.c_str(), bad_q, bad_d, bad_s));
    }
    restore();
  }
}

TEST_CASE("quantize_rows_q8_0: threads write what one thread writes") {
  // A batch of 32 rows goes to the pool in whole tiles (quantize.cpp); every byte,
  // scale and sum must equal the one-thread result, in row order and in tiles of 12.
  ThreadPool pool(2);
  for (int64_t K : {768, 3072, 1000}) {
    const int64_t M = 32, nb = (K + 31) / 32;
    const std::vector<float> x = randn(M * K, 3.f);
    for (int64_t tile : {1, 12}) {
      std::vector<int8_t> q1(M * nb * 32), q2(M * nb * 32, 99);
      std::vector<float> d1(M * nb), d2(M * nb, NAN);
      std::vector<int32_t> s1(M * nb), s2(M * nb, 12345);
      quantize_rows_q8_0(q1.data(), d1.data(), x.data(), M, K, nullptr, s1.data(), tile);
      quantize_rows_q8_0(q2.data(), d2.data(), x.data(), M, K, &pool, s2.data(), tile);
      CHECK_MESSAGE(q1 == q2, fmt("K=%lld tile %lld: bytes differ", (long long)K, (long long)tile));
      CHECK_MESSAGE(std::memcmp(d1.data(), d2.data(), d1.size() * 4) == 0, fmt("K=%lld tile %lld: scales differ", (long long)K, (long long)tile));
      CHECK_MESSAGE(s1 == s2, fmt("K=%lld tile %lld: sums differ", (long long)K, (long long)tile));
    }
  }
}

TEST_CASE("Q8_0 packing: GGUF blocks kept as stored, float sources quantized per column") {
  // A GGUF Q8_0 tensor [N = 3 rows][K = 64]: block (n, b) has d = 0.5 * (n + 1) + b and
  // q[0] = -127, q[i] = (i * 5 + n * 3 + b) % 255 - 127 (and one -128 by hand).
  const int64_t K = 64, N = 3;
  std::vector<uint8_t> raw;
  for (int64_t n = 0; n < N; n++)
    for (int64_t b = 0; b < 2; b++) {
      int8_t q[32];
      for (int i = 0; i < 32; i++) q[i] = (int8_t)(i == 0 ? -127 : (i * 5 + n * 3 + b) % 255 - 127);
      if (n == 2 && b == 1) q[7] = -128;
      append_block(raw, f32_to_f16(0.5f * (n + 1) + b), q);
    }
  PackedMatrix W = pack_matrix(raw.data(), DType::Q8_0, K, N, true);
  CHECK(W.dtype == DType::Q8_0);
  CHECK(W.bytes() == 2 * 544);  // one 16-column panel, two blocks
  std::vector<float> col(K);
  for (int64_t n = 0; n < N; n++) {
    matrix_column(col.data(), W, n);
    for (int64_t k = 0; k < K; k++) {
      const float want = load_as_f32(raw.data(), DType::Q8_0, (size_t)(n * K + k));
      CHECK_MESSAGE(col[k] == want, fmt("column %lld k %lld: %g want %g", (long long)n, (long long)k, col[k], want));
    }
  }
  CHECK(col[32 + 7] == -320.f);  // n = 2, b = 1: d = 2.5, q = -128
  CHECK(load_as_f32(raw.data(), DType::Q8_0, 0) == 0.5f * -127.f);

  // The same tensor as F32 values, quantized at pack time, gives the same weights back:
  // each block's max |q| is 127, so quantizing d * q reproduces q (up to F16 rounding
  // of d, which is exact here).
  std::vector<float> f(N * K);
  for (int64_t i = 0; i < N * K; i++) f[i] = load_as_f32(raw.data(), DType::Q8_0, (size_t)i);
  f[2 * K + 32 + 7] = 2.5f * -127.f;  // -128 would set max |x| = 128 * d: keep it symmetric
  PackedMatrix Wq = pack_matrix(f.data(), DType::F32, K, N, true, WeightFormat::Q8_0);
  for (int64_t n = 0; n < N; n++) {
    matrix_column(col.data(), Wq, n);
    for (int64_t k = 0; k < K; k++) CHECK(col[k] == f[n * K + k]);
  }
  // [K, N] sources quantize along K too.
  std::vector<float> kn(K * N);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) kn[k * N + n] = f[n * K + k];
  PackedMatrix Wkn = pack_matrix(kn.data(), DType::F32, K, N, false, WeightFormat::Q8_0);
  CHECK(std::memcmp(Wkn.data.data(), Wq.data.data(), Wq.bytes()) == 0);

  // Q8_0 blocks run along K: a [K, N] Q8_0 source or a ragged K is refused.
  CHECK_THROWS_WITH_AS(pack_matrix(raw.data(), DType::Q8_0, K, N, false), doctest::Contains("multiple of 32"), Error);
  CHECK_THROWS_WITH_AS(pack_matrix(raw.data(), DType::Q8_0, 48, N, true), doctest::Contains("K=48"), Error);
}

// y for every variant and thread count equal to matmul_reference bit for bit; the
// reference within the quantization error of the float64 product.
void check_q8_matmul(DType src_t, int64_t K, int64_t N, bool nk, const std::vector<int64_t>& Ms, bool with_bias, int& case_no) {
  std::vector<float> wf = randn(K * N, 0.05f);
  std::vector<uint16_t> wh(K * N);
  const void* src = wf.data();
  if (src_t == DType::F16) {
    for (int64_t i = 0; i < K * N; i++) wh[i] = f32_to_f16(wf[i]);
    src = wh.data();
  }
  PackedMatrix W = pack_matrix(src, src_t, K, N, nk, WeightFormat::Q8_0);
  // The dequantized weights [K, N], and the source's own values.
  std::vector<float> wq(K * N), w(K * N), col(K);
  for (int64_t n = 0; n < N; n++) {
    matrix_column(col.data(), W, n);
    for (int64_t k = 0; k < K; k++) {
      wq[k * N + n] = col[k];
      w[k * N + n] = load_as_f32(src, src_t, (size_t)(nk ? n * K + k : k * N + n));
    }
  }
  std::vector<float> bias = randn(N);
  const float* b = with_bias ? bias.data() : nullptr;
  const int64_t nb = (K + 31) / 32;
  for (int64_t M : Ms) {
    std::vector<float> x = randn(M * K);
    std::vector<int8_t> xq(M * nb * 32);
    std::vector<float> xd(M * nb);
    quantize_rows_q8_0(xq.data(), xd.data(), x.data(), M, K, nullptr);
    std::vector<float> ref(M * N);
    matmul_reference(ref.data(), x.data(), W, b, M);
    const std::string tag = fmt("%s->Q8_0 K=%lld N=%lld %s M=%lld bias=%d", dtype_name(src_t), (long long)K, (long long)N,
                                nk ? "nk" : "kn", (long long)M, with_bias ? 1 : 0);
    // The reference against float64 sums: of the dequantized operands within float
    // rounding (1e-6 sqrt(K) of sum |x^ w^|), and of the original operands within the
    // quantization error sum(|x| |w - w^| + |w^| |x - x^|) plus that rounding.
    int bad_round = 0, bad_quant = 0;
    double worst_rel = 0;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double yq = 0, absq = 0, y = 0, qerr = 0;
        for (int64_t k = 0; k < K; k++) {
          const double xh = (double)xq[m * nb * 32 + k] * xd[m * nb + k / 32], wh_ = wq[k * N + n];
          const double xv = x[m * K + k], wv = w[k * N + n];
          yq += xh * wh_;
          absq += std::fabs(xh * wh_);
          y += xv * wv;
          qerr += std::fabs(xv) * std::fabs(wv - wh_) + std::fabs(wh_) * std::fabs(xv - xh);
        }
        const double bn = b ? b[n] : 0.0, got = ref[m * N + n];
        const double round_tol = 1e-6 * std::sqrt((double)K) * (absq + std::fabs(bn)) + 1e-30;
        if (!(std::fabs(got - (yq + bn)) <= round_tol)) bad_round++;
        if (!(std::fabs(got - (y + bn)) <= qerr + round_tol)) bad_quant++;
        worst_rel = std::max(worst_rel, std::fabs(got - (y + bn)) / (qerr + round_tol));
      }
    CHECK_MESSAGE(bad_round == 0, fmt("%s: %d outputs differ from the dequantized float64 product", tag.c_str(), bad_round));
    CHECK_MESSAGE(bad_quant == 0,
                  fmt("%s: %d outputs outside the quantization error (worst %.3g of it)", tag.c_str(), bad_quant, worst_rel));
    for (const Variant& v : variants()) {
      use(v);
      const int threads = 1 + case_no++ % 3;
      std::vector<float> y(M * N, NAN);
      matmul(y.data(), x.data(), W, b, M, pool_n(threads));
      int64_t diff = 0, first = -1;
      for (int64_t i = 0; i < M * N; i++)
        if (std::memcmp(&y[i], &ref[i], 4) != 0 && diff++ == 0) first = i;
      CHECK_MESSAGE(diff == 0, fmt("matmul[%s, %d thr] %s: %lld outputs differ from matmul_reference (first at %lld: %.9g "
                                   "want %.9g)",
                                   v.name().c_str(), threads, tag.c_str(), (long long)diff, (long long)first,
                                   first >= 0 ? y[first] : 0.f, first >= 0 ? ref[first] : 0.f));
    }
    restore();
  }
}

TEST_CASE("Q8_0 matmul: every kernel equals the reference; the reference within the quantization error") {
  int case_no = 0;
  const std::vector<int64_t> all_m = {1, 2, 3, 4, 5, 8, 9, 12, 13, 17, 25, 33};  // row tiles of 12 (VNNI), 8 (BW), 4 (AVX2) and their tails
  for (bool nk : {false, true}) {
    check_q8_matmul(DType::F32, 32, 1, nk, all_m, true, case_no);
    check_q8_matmul(DType::F32, 40, 17, nk, all_m, false, case_no);  // K padded to 64, N to 32
    check_q8_matmul(DType::F16, 100, 33, nk, all_m, true, case_no);
  }
  // The GPT-2-124M shapes at decode and batch sizes.
  check_q8_matmul(DType::F32, 768, 2304, false, {1, 8, 31, 32}, true, case_no);
  check_q8_matmul(DType::F16, 3072, 768, false, {1, 3}, true, case_no);
}

TEST_CASE("Q8_0 matmul: GGUF blocks as stored, the tied head's 50257 columns, extreme bytes") {
  // Random bytes (q over all of -128..127, also -128) with random F16 scales: the
  // kernels' tricks (|w| with w's sign on x, the +128 offset of VNNI) must hold for all.
  const int64_t K = 768, N = 50257;
  std::vector<uint8_t> raw;
  raw.reserve((size_t)(N * (K / 32) * 34));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.f, 0.01f);
  for (int64_t i = 0; i < N * (K / 32); i++) {
    int8_t q[32];
    for (int j = 0; j < 32; j++) q[j] = (int8_t)byte(g_rng);
    if (i % 7 == 0)
      for (int j = 0; j < 32; j++) q[j] = j % 2 ? -128 : 127;  // the saturation corner of vpmaddubsw
    append_block(raw, f32_to_f16(scale(g_rng)), q);
  }
  PackedMatrix W = pack_matrix(raw.data(), DType::Q8_0, K, N, true);
  int case_no = 0;
  for (int64_t M : {1, 2, 9}) {
    std::vector<float> x = randn(M * K, 3.f);
    for (int64_t k = 0; k < K; k += 2) x[k] = k % 4 ? 100.f : -100.f;  // |x q| = 127 in every block
    std::vector<float> ref(M * N);
    matmul_reference(ref.data(), x.data(), W, nullptr, M);
    // One column in full through float64, so the reference itself is checked here too.
    std::vector<int8_t> xq(M * K);
    std::vector<float> xd(M * (K / 32)), col(K);
    quantize_rows_q8_0(xq.data(), xd.data(), x.data(), M, K, nullptr);
    matrix_column(col.data(), W, 12345);
    double want = 0, absdot = 0;
    for (int64_t k = 0; k < K; k++) {
      want += (double)xq[k] * xd[k / 32] * col[k];
      absdot += std::fabs((double)xq[k] * xd[k / 32] * col[k]);
    }
    CHECK_MESSAGE(std::fabs(ref[12345] - want) <= 1e-6 * std::sqrt((double)K) * absdot,
                  fmt("reference column 12345: %.9g want %.9g", ref[12345], want));
    for (const Variant& v : variants()) {
      use(v);
      const int threads = 1 + case_no++ % 3;
      std::vector<float> y(M * N, NAN);
      matmul(y.data(), x.data(), W, nullptr, M, pool_n(threads));
      int64_t diff = 0;
      for (int64_t i = 0; i < M * N; i++) diff += std::memcmp(&y[i], &ref[i], 4) != 0;
      CHECK_MESSAGE(diff == 0, fmt("matmul[%s, %d thr] M=%lld: %lld of %lld outputs differ from matmul_reference",
                                   v.name().c_str(), threads, (long long)M, (long long)diff, (long long)(M * N)));
    }
    restore();
  }
}

TEST_CASE("set_q8_vnni refuses what the CPU lacks") {
  if (cpu_has_avx512_vnni()) {
    set_q8_vnni(false);
    CHECK_FALSE(q8_vnni_active());
    set_q8_vnni(true);
    CHECK(q8_vnni_active());
  } else {
    CHECK_THROWS_AS(set_q8_vnni(true), Error);
  }
}
