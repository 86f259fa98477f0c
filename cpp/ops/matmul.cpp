// Packing, column lookup and the matmul entry: picks the variant, packs x for the
// tile kernels and splits the panels across the pool.
#include <cpuid.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "matmul_impl.h"
#include "ops.h"

namespace roost {

using namespace matmul_impl;

namespace {

// Weights a thread claims at a time. The decode GEMV (a few rows) is a stream from
// memory and likes long ones: 2 MB chunks against 512 KB read batch 1 at 0.985x (F32),
// 0.972x (F16) and 0.975x (Q8_0) the time a step (decode-ab, 64 tokens, same tokens).
// The compute-bound tiles keep shorter chunks, so the threads finish together.
constexpr int64_t kChunkBytes = 512 << 10, kGemvChunkBytes = 2048 << 10;

// Copies raw elements (4 or 2 bytes) into the panel layout without converting.
template <typename E>
void pack_elements(E* dst, const E* src, int64_t K, int64_t N, bool src_is_nk) {
  const int64_t P = panel_count(N);
  for (int64_t p = 0; p < P; p++) {
    int64_t n0 = p * kPanel, valid = std::min(kPanel, N - n0);
    E* panel = dst + p * K * kPanel;  // [K][16]
    if (src_is_nk) {
      // src [N, K]: read rows sequentially, scatter into the L1-sized panel.
      for (int64_t j = 0; j < valid; j++) {
        const E* row = src + (n0 + j) * K;
        for (int64_t k = 0; k < K; k++) panel[k * kPanel + j] = row[k];
      }
    } else {
      // src [K, N]
      for (int64_t k = 0; k < K; k++) std::memcpy(panel + k * kPanel, src + k * N + n0, valid * sizeof(E));
    }
  }
}

// x [M, K] -> blocks of mr rows, block b = [K][rows] at offset b*mr*K, so the tile
// kernel broadcasts its rows' x[., k] from one cache line.
void pack_x(float* dst, const float* x, int64_t M, int64_t K, int mr, ThreadPool& pool) {
  int64_t blocks = (M + mr - 1) / mr;
  auto pack_blocks = [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      int64_t m0 = b * mr, rows = std::min<int64_t>(mr, M - m0);
      float* d = dst + m0 * K;
      for (int64_t r = 0; r < rows; r++) {
        const float* s = x + (m0 + r) * K;
        for (int64_t k = 0; k < K; k++) d[k * rows + r] = s[k];
      }
    }
  };
  // Small copies are not worth waking the pool for.
  if (M * K < (1 << 16)) pack_blocks(0, blocks);
  else pool.parallel_for(blocks, pack_blocks);
}

// Writes column n's block b (scale d as F16 bits, 32 int8) into the Q8_0 panels.
void put_q8_block(uint8_t* dst, int64_t K, int64_t b, int64_t n, uint16_t d, const int8_t* q) {
  std::memcpy(dst + q8_scale_offset(K, b, n), &d, 2);
  for (int i = 0; i < kQ8Block; i++) dst[q8_weight_offset(K, b * kQ8Block + i, n)] = (uint8_t)q[i];
}

// GGUF Q8_0 rows (src [N][K / 32 blocks]) into the panels, values unchanged.
void pack_q8_blocks(uint8_t* dst, const uint8_t* src, int64_t K, int64_t N) {
  const int64_t nb = K / kQ8Block;
  for (int64_t n = 0; n < N; n++)
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t* block = src + (n * nb + b) * kQ8BlockBytes;
      uint16_t d;
      std::memcpy(&d, block, 2);
      put_q8_block(dst, K, b, n, d, reinterpret_cast<const int8_t*>(block + 2));
    }
}

// Float weights (either layout) quantized column by column along K; the tail of the
// last block is zero, which quantizes to zero and adds nothing to a dot product.
void quantize_q8_columns(uint8_t* dst, const void* src, DType src_dtype, int64_t K, int64_t N, bool src_is_nk) {
  const int64_t nb = q8_blocks(K);
  float x[kQ8Block];
  int8_t q[kQ8Block];
  for (int64_t n = 0; n < N; n++)
    for (int64_t b = 0; b < nb; b++) {
      for (int64_t i = 0; i < kQ8Block; i++) {
        const int64_t k = b * kQ8Block + i;
        x[i] = k < K ? load_as_f32(src, src_dtype, (size_t)(src_is_nk ? n * K + k : k * N + n)) : 0.f;
      }
      put_q8_block(dst, K, b, n, f32_to_f16(quantize_block_q8_0(q, x)), q);
    }
}

PackedMatrix pack_q8_0(const void* src, DType src_dtype, int64_t K, int64_t N, bool src_is_nk) {
  if (src_dtype == DType::Q8_0 && (!src_is_nk || K % kQ8Block != 0))
    throw Error("E_ARGUMENT", "pack_matrix: Q8_0 blocks run along K, so the source must be [N, K] with K a multiple of 32 (K=" +
                                  std::to_string(K) + (src_is_nk ? ")" : ", given [K, N])"));
  PackedMatrix W;
  W.K = K;
  W.N = N;
  W.dtype = DType::Q8_0;
  W.data.resize((size_t)(panel_count(N) * q8_blocks(K) * kQ8PanelBlockBytes));  // zeroed: padding is 0 with scale 0
  if (src_dtype == DType::Q8_0) pack_q8_blocks(W.data.as<uint8_t>(), static_cast<const uint8_t*>(src), K, N);
  else quantize_q8_columns(W.data.as<uint8_t>(), src, src_dtype, K, N, src_is_nk);
  return W;
}

bool detect_vnni() {
  unsigned a, b, c, d;
  return detected_isa() == Isa::Avx512 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11));  // AVX512_VNNI
}

std::atomic<bool>& vnni_on() {
  static std::atomic<bool> on{cpu_has_avx512_vnni()};
  return on;
}

// Bytes of one packed panel (16 columns, all of K).
int64_t panel_bytes(const PackedMatrix& W) {
  return W.dtype == DType::Q8_0 ? q8_blocks(W.K) * kQ8PanelBlockBytes : W.K * kPanel * (int64_t)dtype_size(W.dtype);
}

}  // namespace

bool cpu_has_avx512_vnni() {
  static const bool has = detect_vnni();
  return has;
}

void set_q8_vnni(bool on) {
  if (on && !cpu_has_avx512_vnni()) throw Error("E_ARGUMENT", "AVX-512 VNNI is not supported by this CPU");
  vnni_on().store(on, std::memory_order_relaxed);
}

bool q8_vnni_active() { return vnni_on().load(std::memory_order_relaxed); }

PackedMatrix pack_matrix(const void* src, DType src_dtype, int64_t K, int64_t N, bool src_is_nk, WeightFormat format) {
  if (K <= 0 || N <= 0)
    throw Error("E_ARGUMENT", "pack_matrix: bad shape K=" + std::to_string(K) + " N=" + std::to_string(N));
  if (src_dtype == DType::Q8_0 || format == WeightFormat::Q8_0) return pack_q8_0(src, src_dtype, K, N, src_is_nk);
  PackedMatrix W;
  W.K = K;
  W.N = N;
  W.dtype = src_dtype;
  W.data.resize((size_t)(panel_count(N) * K * kPanel) * dtype_size(src_dtype));  // zeroed: padding columns are 0
  if (src_dtype == DType::F32)
    pack_elements(W.data.as<uint32_t>(), static_cast<const uint32_t*>(src), K, N, src_is_nk);
  else
    pack_elements(W.data.as<uint16_t>(), static_cast<const uint16_t*>(src), K, N, src_is_nk);
  return W;
}

void matrix_column(float* out, const PackedMatrix& W, int64_t n) {
  if (n < 0 || n >= W.N)
    throw Error("E_ARGUMENT", "matrix_column: column " + std::to_string(n) + " out of range [0, " + std::to_string(W.N) + ")");
  if (W.dtype == DType::Q8_0) {
    const uint8_t* w = W.data.as<uint8_t>();
    for (int64_t k = 0; k < W.K; k++) {
      uint16_t d;
      std::memcpy(&d, w + q8_scale_offset(W.K, k / kQ8Block, n), 2);
      out[k] = f16_to_f32(d) * (float)(int8_t)w[q8_weight_offset(W.K, k, n)];
    }
    return;
  }
  for (int64_t k = 0; k < W.K; k++) out[k] = load_as_f32(W.data.data(), W.dtype, packed_index(W.K, k, n));
}

void matmul(float* y, const float* x, const PackedMatrix& W, const float* bias, int64_t M, ThreadPool& pool,
            Activation act) {
  if (M <= 0) return;
  const Isa isa = active_isa();
  if (isa == Isa::Reference) {
    matmul_reference(y, x, W, bias, M);
    if (act) act(y, y, M * W.N);
    return;
  }
  const bool avx512 = isa == Isa::Avx512;
  const bool q8 = W.dtype == DType::Q8_0;
  const Plan plan = q8 ? Plan{} : avx512 ? plan_avx512(M) : plan_avx2(M);
  Params p{y, x, nullptr, plan.mr, W.data.data(), W.dtype, bias, M, W.K, W.N};
  if (q8) {
    // Per calling thread, kept between calls, as xbuf below.
    thread_local AlignedBuffer qbuf, dbuf, sbuf;
    const int64_t nb = q8_blocks(W.K);
    const bool vnni = avx512 && q8_vnni_active();
    if (qbuf.bytes() < (size_t)(M * nb * kQ8Block)) qbuf.resize((size_t)(M * nb * kQ8Block));
    if (dbuf.bytes() < (size_t)(M * nb) * sizeof(float)) dbuf.resize((size_t)(M * nb) * sizeof(float));
    if (vnni && sbuf.bytes() < (size_t)(M * nb) * sizeof(int32_t)) sbuf.resize((size_t)(M * nb) * sizeof(int32_t));
    quantize_rows_q8_0(qbuf.as<int8_t>(), dbuf.as<float>(), x, M, W.K, &pool, vnni ? sbuf.as<int32_t>() : nullptr,
                       vnni ? kQ8VnniRows : 1);
    p.xq = qbuf.as<int8_t>();
    p.xd = dbuf.as<float>();
    if (vnni) p.xs = sbuf.as<int32_t>();
  } else if (plan.pack_x) {
    // Per calling thread, kept between calls: steps reuse the same sizes.
    thread_local AlignedBuffer xbuf;
    size_t need = (size_t)(M * W.K) * sizeof(float);
    if (xbuf.bytes() < need) xbuf.resize(need);
    pack_x(xbuf.as<float>(), x, M, W.K, plan.mr, pool);
    p.xpack = xbuf.as<float>();
  }
  auto* kernel = q8 ? (avx512 ? (q8_vnni_active() ? panels_q8_avx512vnni : panels_q8_avx512bw) : panels_q8_avx2)
                    : avx512 ? panels_avx512 : panels_avx2;
  // Threads claim chunks of panels from a counter rather than fixed halves: a thread
  // that starts late (a worker waking up, or one sharing its core) takes fewer chunks
  // instead of holding up the call with a fixed half. A chunk is a few hundred KB of
  // weights, long enough to stream (contiguous panels are one forward stream) and
  // few enough that claiming them costs nothing.
  const int64_t P = panel_count(W.N);
  int64_t chunk = std::max<int64_t>(1, (M <= 3 ? kGemvChunkBytes : kChunkBytes) / panel_bytes(W));
  // Enough chunks per thread that the threads finish together: more for the
  // compute-bound tiles, fewer for the GEMV, whose chunks are better long streams.
  const int64_t per_thread = plan.pack_x ? 8 : 4;
  chunk = std::min(chunk, (P + per_thread * pool.size() - 1) / (per_thread * pool.size()));
  chunk = (chunk + plan.grain - 1) / plan.grain * plan.grain;
  const int64_t n_chunks = (P + chunk - 1) / chunk;
  // Panels [p0, p1), then the activation on their columns of every row.
  auto run = [&](int64_t p0, int64_t p1) {
    kernel(p, p0, p1);
    if (!act) return;
    const int64_t c0 = p0 * kPanel, c1 = std::min(W.N, p1 * kPanel);
    if (c0 == 0 && c1 == W.N) act(y, y, M * W.N);
    else
      for (int64_t m = 0; m < M; m++) act(y + m * W.N + c0, y + m * W.N + c0, c1 - c0);
  };
  if (n_chunks == 1 || pool.size() == 1 || serial_is_cheaper(2.0 * (double)M * (double)W.K * (double)W.N, (double)W.data.bytes())) {
    run(0, P);
    return;
  }
  std::atomic<int64_t> next{0};
  pool.run([&](int, int) {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < n_chunks;) run(c * chunk, std::min(P, (c + 1) * chunk));
  });
}

}  // namespace roost
