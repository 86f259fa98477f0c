// Packing, column lookup and the matmul entry: picks the variant, packs x for the
// tile kernels and splits the panels across the pool.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "matmul_impl.h"
#include "ops.h"

namespace roost {

using namespace matmul_impl;

namespace {

constexpr int64_t kChunkBytes = 512 << 10;

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

}  // namespace

PackedMatrix pack_matrix(const void* src, DType src_dtype, int64_t K, int64_t N, bool src_is_nk) {
  if (K <= 0 || N <= 0)
    throw Error("E_ARGUMENT", "pack_matrix: bad shape K=" + std::to_string(K) + " N=" + std::to_string(N));
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
  for (int64_t k = 0; k < W.K; k++) out[k] = load_as_f32(W.data.data(), W.dtype, packed_index(W.K, k, n));
}

void matmul(float* y, const float* x, const PackedMatrix& W, const float* bias, int64_t M, ThreadPool& pool) {
  if (M <= 0) return;
  const Isa isa = active_isa();
  if (isa == Isa::Reference) {
    matmul_reference(y, x, W, bias, M);
    return;
  }
  const bool avx512 = isa == Isa::Avx512;
  const Plan plan = avx512 ? plan_avx512(M) : plan_avx2(M);
  Params p{y, x, nullptr, plan.mr, W.data.data(), W.dtype, bias, M, W.K, W.N};
  if (plan.pack_x) {
    // Per calling thread, kept between calls: steps reuse the same sizes.
    thread_local AlignedBuffer xbuf;
    size_t need = (size_t)(M * W.K) * sizeof(float);
    if (xbuf.bytes() < need) xbuf.resize(need);
    pack_x(xbuf.as<float>(), x, M, W.K, plan.mr, pool);
    p.xpack = xbuf.as<float>();
  }
  auto* kernel = avx512 ? panels_avx512 : panels_avx2;
  // Threads claim chunks of panels from a counter rather than fixed halves: a thread
  // that starts late (a worker waking up, or one sharing its core) takes fewer chunks
  // instead of holding up the call with a fixed half. A chunk is a few hundred KB of
  // weights, long enough to stream (contiguous panels are one forward stream) and
  // few enough that claiming them costs nothing.
  const int64_t P = panel_count(W.N);
  const int64_t panel_bytes = W.K * kPanel * (int64_t)dtype_size(W.dtype);
  int64_t chunk = std::max<int64_t>(1, kChunkBytes / panel_bytes);
  // Enough chunks per thread that the threads finish together: more for the
  // compute-bound tiles, fewer for the GEMV, whose chunks are better long streams.
  const int64_t per_thread = plan.pack_x ? 8 : 4;
  chunk = std::min(chunk, (P + per_thread * pool.size() - 1) / (per_thread * pool.size()));
  chunk = (chunk + plan.grain - 1) / plan.grain * plan.grain;
  const int64_t n_chunks = (P + chunk - 1) / chunk;
  if (n_chunks == 1 || pool.size() == 1 || serial_is_cheaper(2.0 * (double)M * (double)W.K * (double)W.N, (double)W.data.bytes())) {
    kernel(p, 0, P);
    return;
  }
  std::atomic<int64_t> next{0};
  pool.run([&](int, int) {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < n_chunks;)
      kernel(p, c * chunk, std::min(P, (c + 1) * chunk));
  });
}

}  // namespace roost
