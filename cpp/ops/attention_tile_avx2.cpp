// AVX2 attention for a tile of several queries: the two small GEMMs of
// attention_tile_avx512.cpp (S = Q K^T, O += P V per 64-key block of a span) with ymm
// vectors, sized for 16 registers. K/V rows are float or IEEE half (T = uint16_t):
// packing widens them to float, so the kernels see float blocks either way.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "attention_impl.h"
#include "simd_avx2_impl.h"

namespace roost::attention_impl {

using namespace simd256;

namespace {

static_assert(kKeyBlock == 64, "eight 8-key vectors per block");
constexpr int kQkRows = 2;  // queries per QK tile: 2 x 4 = 8 ymm accumulators over 32 keys

// r[c] becomes column c of the 8x8 matrix whose rows were r[0..7].
inline void transpose8(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++) {  // per 128-bit half: u[4i+k] holds column k (or 4+k) of rows 4i..4i+3
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int k = 0; k < 4; k++) {
    r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
    r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
  }
}

// S[MR][32] = Q[MR][D] @ KT[D][32 of the block's 64]; Q rows qs floats apart.
template <int MR>
void qk(float* S, const float* Q, int64_t qs, const float* KT, int64_t D) {
  __m256 acc[MR][4];
  for (int b = 0; b < MR; b++)
    for (int g = 0; g < 4; g++) acc[b][g] = _mm256_setzero_ps();
  for (int64_t d = 0; d < D; d++) {
    const float* kt = KT + d * kKeyBlock;
    __m256 k0 = _mm256_load_ps(kt), k1 = _mm256_load_ps(kt + 8), k2 = _mm256_load_ps(kt + 16), k3 = _mm256_load_ps(kt + 24);
    for (int b = 0; b < MR; b++) {
      __m256 q = _mm256_broadcast_ss(Q + b * qs + d);
      acc[b][0] = _mm256_fmadd_ps(q, k0, acc[b][0]);
      acc[b][1] = _mm256_fmadd_ps(q, k1, acc[b][1]);
      acc[b][2] = _mm256_fmadd_ps(q, k2, acc[b][2]);
      acc[b][3] = _mm256_fmadd_ps(q, k3, acc[b][3]);
    }
  }
  for (int b = 0; b < MR; b++)
    for (int g = 0; g < 4; g++) _mm256_store_ps(S + b * kKeyBlock + 8 * g, acc[b][g]);
}

// O[MR][32 dims from o0] = O * corr + P[MR][0..cnt) @ V[0..cnt)[same dims]; rows of O
// and V are w floats, rows of P 64. NC = 8-float chunks of dims (<= 4).
template <int MR, int NC>
void pv(float* O, int64_t w, const float* P, const float* corr, const float* V, int64_t cnt) {
  __m256 acc[MR][NC];
  for (int b = 0; b < MR; b++) {
    const __m256 c = _mm256_set1_ps(corr[b]);
    for (int n = 0; n < NC; n++) acc[b][n] = _mm256_mul_ps(_mm256_load_ps(O + b * w + 8 * n), c);
  }
  for (int64_t j = 0; j < cnt; j++) {
    __m256 v[NC];
    for (int n = 0; n < NC; n++) v[n] = _mm256_load_ps(V + j * w + 8 * n);
    for (int b = 0; b < MR; b++) {
      const __m256 p = _mm256_broadcast_ss(P + b * kKeyBlock + j);
      for (int n = 0; n < NC; n++) acc[b][n] = _mm256_fmadd_ps(p, v[n], acc[b][n]);
    }
  }
  for (int b = 0; b < MR; b++)
    for (int n = 0; n < NC; n++) _mm256_store_ps(O + b * w + 8 * n, acc[b][n]);
}

template <int MR>
void pv_chunks(int nc, float* O, int64_t w, const float* P, const float* corr, const float* V, int64_t cnt) {
  switch (nc) {
    case 1: pv<MR, 1>(O, w, P, corr, V, cnt); break;
    case 2: pv<MR, 2>(O, w, P, corr, V, cnt); break;
    case 3: pv<MR, 3>(O, w, P, corr, V, cnt); break;
    case 4: pv<MR, 4>(O, w, P, corr, V, cnt); break;
  }
}

template <typename T>
void gemm_tile(const SpanAttentionTask& t, int64_t D, float* partial) {
  const int64_t nd = (D + 7) / 8, W = nd * 8;  // padded head width in 8-float chunks
  const int64_t nq = t.nq, qpos0 = t.qpos0;
  const __m256i tail = head_mask(D % 8 ? D % 8 : 8);
  auto load_row = [&](const float* p, int64_t c) {  // chunk c of a head row, zero past D
    return c + 1 < nd ? _mm256_loadu_ps(p + 8 * c) : _mm256_maskload_ps(p + 8 * c, tail);
  };
  // The same for a K/V row of T: half -> float is exact, so a half row packs to the
  // floats its float copy would.
  auto load_kv = [&](const T* p, int64_t c) {
    if constexpr (std::is_same_v<T, float>) return load_row(p, c);
    else return c + 1 < nd || D % 8 == 0 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + 8 * c))) : load_f16_head(p + 8 * c, D % 8);
  };

  // Per-thread scratch, as in the AVX-512 tile.
  thread_local AlignedBuffer scratch;
  const size_t floats = 2 * kQueryTile * W + 2 * W * kKeyBlock + kQueryTile * kKeyBlock;
  if (scratch.bytes() < floats * sizeof(float)) scratch.resize(floats * sizeof(float));
  float* Q = scratch.as<float>();  // [nq][W] queries * 1/sqrt(D)
  float* O = Q + kQueryTile * W;   // [nq][W] unnormalized outputs
  float* KT = O + kQueryTile * W;  // [W][64] the block's keys, transposed
  float* V = KT + W * kKeyBlock;   // [64][W] the block's values
  float* S = V + kKeyBlock * W;    // [nq][64] scores, then probabilities
  float m[kQueryTile], l[kQueryTile], corr[kQueryTile];
  const __m256 scale = _mm256_set1_ps(1.f / std::sqrt((float)D));
  for (int64_t b = 0; b < nq; b++) {
    const float* q = t.q + b * t.q_stride + t.head * D;  // [D]
    for (int64_t c = 0; c < nd; c++) {
      _mm256_store_ps(Q + b * W + 8 * c, _mm256_mul_ps(load_row(q, c), scale));
      _mm256_store_ps(O + b * W + 8 * c, _mm256_setzero_ps());
    }
    m[b] = -INFINITY;
    l[b] = 0;
  }

  const T* kr[kKeyBlock];  // the block's key and value rows (head columns)
  const T* vr[kKeyBlock];
  for (int64_t si = 0, se; si < t.n_spans; si = se) {
    se = run_end(t.spans, t.n_spans, si);
    const KeySpan sp = run_span(t.spans, si, se);  // the run's positions
    RunCursor<T> cursor{t.spans + si};
    const int64_t most = visible(sp, qpos0 + nq - 1);  // rows < most are used by some query
    for (int64_t kb0 = 0; kb0 < most; kb0 += kKeyBlock) {
      const int64_t rows = std::min<int64_t>(kKeyBlock, most - kb0);   // valid keys in the block
      const int64_t b0 = std::clamp<int64_t>(sp.pos0 + kb0 - qpos0, 0, nq);  // queries before b0 see none of it
      cursor.take(rows, t.head * D, kr, vr);

      // Pack (as float, whatever the cache holds) V rows and K transposed 8 x 8 at a
      // time; rows past `rows` are zero.
      for (int64_t g = 0; g < kKeyBlock / 8; g++) {
        for (int64_t c = 0; c < nd; c++) {
          __m256 r[8];
          for (int64_t i = 0; i < 8; i++) {
            const int64_t j = 8 * g + i;
            r[i] = j < rows ? load_kv(kr[j], c) : _mm256_setzero_ps();
            _mm256_store_ps(V + j * W + 8 * c, j < rows ? load_kv(vr[j], c) : _mm256_setzero_ps());
          }
          transpose8(r);
          for (int i = 0; i < 8; i++) _mm256_store_ps(KT + (8 * c + i) * kKeyBlock + 8 * g, r[i]);
        }
      }

      for (int64_t b = b0; b < nq; b += kQkRows) {
        const int rq = (int)std::min<int64_t>(kQkRows, nq - b);
        for (int h = 0; h < 2; h++) {  // key halves
          if (rq == 2) qk<2>(S + b * kKeyBlock + 32 * h, Q + b * W, W, KT + 32 * h, D);
          else qk<1>(S + b * kKeyBlock + 32 * h, Q + b * W, W, KT + 32 * h, D);
        }
      }

      // Online softmax per query; the rescale of O is folded into the PV kernel.
      for (int64_t b = b0; b < nq; b++) {
        const int64_t cnt = std::min(rows, visible(sp, qpos0 + b) - kb0);  // keys this query sees, >= 1
        __m256 sc[8], mx = _mm256_set1_ps(-INFINITY);
        for (int g = 0; g < 8; g++) {
          const __m256 valid = _mm256_castsi256_ps(head_mask(std::max<int64_t>(0, cnt - 8 * g)));
          sc[g] = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_load_ps(S + b * kKeyBlock + 8 * g), valid);
          mx = _mm256_max_ps(mx, sc[g]);
        }
        const float mn = std::max(m[b], hmax(mx));
        corr[b] = _mm256_cvtss_f32(exp(_mm256_set1_ps(m[b] - mn)));  // exp(-inf) = 0 on the query's first block
        const __m256 vm = _mm256_set1_ps(mn);
        __m256 sum = _mm256_setzero_ps();
        for (int g = 0; g < 8; g++) {
          __m256 p = exp(_mm256_sub_ps(sc[g], vm));
          _mm256_store_ps(S + b * kKeyBlock + 8 * g, p);
          sum = _mm256_add_ps(sum, p);
        }
        l[b] = l[b] * corr[b] + hsum(sum);
        m[b] = mn;
      }

      for (int64_t b = b0; b < nq; b += 2) {
        const int rq = (int)std::min<int64_t>(2, nq - b);
        // The pair's last query sees the most keys; the other has p = 0 past its own.
        const int64_t cnt = std::min(rows, visible(sp, qpos0 + b + rq - 1) - kb0);
        for (int64_t c0 = 0; c0 < nd; c0 += 4) {
          const int nc = (int)std::min<int64_t>(4, nd - c0);
          if (rq == 2) pv_chunks<2>(nc, O + b * W + 8 * c0, W, S + b * kKeyBlock, corr + b, V + 8 * c0, cnt);
          else pv_chunks<1>(nc, O + b * W + 8 * c0, W, S + b * kKeyBlock, corr + b, V + 8 * c0, cnt);
        }
      }
    }
  }

  for (int64_t b = 0; b < nq; b++) {
    const RowSink sink = row_sink(t, D, partial, b, m[b], l[b]);
    for (int64_t d = 0; d < D; d++) sink.dst[d] = O[b * W + d] * sink.mul;
  }
}

}  // namespace

void gemm_tile_avx2(const SpanAttentionTask& t, int64_t D, float* partial) {
  if (t.kv == KvType::F16) gemm_tile<uint16_t>(t, D, partial);
  else gemm_tile<float>(t, D, partial);
}

}  // namespace roost::attention_impl
