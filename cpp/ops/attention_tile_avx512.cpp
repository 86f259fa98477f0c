// AVX-512 attention for a tile of several queries (prefill): per key block of a span the
// scores are a small GEMM, S[nq, 64] = Q[nq, D] K^T, and the output update another,
// O[nq, D] += P[nq, 64] V[64, D], both as register-tiled FMA kernels with no
// horizontal sums. The block's keys are packed first (K transposed), which also
// keeps them off the few L1 sets that rows kv_stride apart map to.
#include <algorithm>
#include <cmath>

#include "attention_impl.h"
#include "simd_avx512_impl.h"

namespace roost::attention_impl {

using namespace simd512;

namespace {

static_assert(kKeyBlock == 64, "four 16-key vectors per block");
constexpr int kQkRows = 6;  // queries per QK tile: 6 x 4 = 24 zmm accumulators

// r[c] becomes column c of the 16x16 matrix whose rows were r[0..15].
inline void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {  // r[4i+k], lane L: column 4L+k of rows 4i..4i+3
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 4; k++) {
      t[8 * i + k] = _mm512_shuffle_f32x4(r[8 * i + k], r[8 * i + 4 + k], 0x88);
      t[8 * i + 4 + k] = _mm512_shuffle_f32x4(r[8 * i + k], r[8 * i + 4 + k], 0xdd);
    }
  for (int k = 0; k < 8; k++) {
    r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
    r[k + 8] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xdd);
  }
}

// S[MR][64] = Q[MR][D] @ KT[D][64]; Q rows qs floats apart.
template <int MR>
void qk(float* S, const float* Q, int64_t qs, const float* KT, int64_t D) {
  __m512 acc[MR][4];
#pragma GCC unroll 8
  for (int b = 0; b < MR; b++)
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) acc[b][g] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; d++) {
    const float* kt = KT + d * kKeyBlock;  // [64] keys' d-th element
    __m512 k0 = _mm512_load_ps(kt), k1 = _mm512_load_ps(kt + 16), k2 = _mm512_load_ps(kt + 32), k3 = _mm512_load_ps(kt + 48);
#pragma GCC unroll 8
    for (int b = 0; b < MR; b++) {
      __m512 q = _mm512_set1_ps(Q[b * qs + d]);
      acc[b][0] = _mm512_fmadd_ps(q, k0, acc[b][0]);
      acc[b][1] = _mm512_fmadd_ps(q, k1, acc[b][1]);
      acc[b][2] = _mm512_fmadd_ps(q, k2, acc[b][2]);
      acc[b][3] = _mm512_fmadd_ps(q, k3, acc[b][3]);
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < MR; b++)
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) _mm512_store_ps(S + b * kKeyBlock + 16 * g, acc[b][g]);
}

// O[MR][ND*16] = O * corr + P[MR][0..cnt) @ V[0..cnt)[ND*16]; rows of O and V are
// ND*16 floats, rows of P 64.
template <int MR, int ND>
void pv(float* O, const float* P, const float* corr, const float* V, int64_t cnt) {
  constexpr int64_t W = ND * 16;
  __m512 acc[MR][ND];
#pragma GCC unroll 8
  for (int b = 0; b < MR; b++) {
    const __m512 c = _mm512_set1_ps(corr[b]);
#pragma GCC unroll 8
    for (int n = 0; n < ND; n++) acc[b][n] = _mm512_mul_ps(_mm512_load_ps(O + b * W + 16 * n), c);
  }
  for (int64_t j = 0; j < cnt; j++) {
    __m512 v[ND];
#pragma GCC unroll 8
    for (int n = 0; n < ND; n++) v[n] = _mm512_load_ps(V + j * W + 16 * n);
#pragma GCC unroll 8
    for (int b = 0; b < MR; b++) {
      const __m512 p = _mm512_set1_ps(P[b * kKeyBlock + j]);
#pragma GCC unroll 8
      for (int n = 0; n < ND; n++) acc[b][n] = _mm512_fmadd_ps(p, v[n], acc[b][n]);
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < MR; b++)
#pragma GCC unroll 8
    for (int n = 0; n < ND; n++) _mm512_store_ps(O + b * W + 16 * n, acc[b][n]);
}

// Rows per PV tile: about 24 accumulators.
template <int ND>
constexpr int pv_rows() { return std::max(1, std::min(8, 24 / ND)); }

template <int ND, int MR>
void pv_rows_dispatch(int rows, float* O, const float* P, const float* corr, const float* V, int64_t cnt) {
  if constexpr (MR >= 1) {
    if (rows == MR) pv<MR, ND>(O, P, corr, V, cnt);
    else pv_rows_dispatch<ND, MR - 1>(rows, O, P, corr, V, cnt);
  }
}

void qk_dispatch(int rows, float* S, const float* Q, int64_t qs, const float* KT, int64_t D) {
  switch (rows) {
    case 1: qk<1>(S, Q, qs, KT, D); break;
    case 2: qk<2>(S, Q, qs, KT, D); break;
    case 3: qk<3>(S, Q, qs, KT, D); break;
    case 4: qk<4>(S, Q, qs, KT, D); break;
    case 5: qk<5>(S, Q, qs, KT, D); break;
    case 6: qk<6>(S, Q, qs, KT, D); break;
  }
}

template <int ND, typename T>
void gemm_tile(const SpanAttentionTask& t, int64_t D, float* partial) {
  constexpr int64_t W = ND * 16;  // padded head width: packed rows stay 64-byte aligned
  const int64_t nq = t.nq, qpos0 = t.qpos0;
  __mmask16 dm[ND];
  for (int c = 0; c < ND; c++) dm[c] = head_mask(D - 16 * c);

  // Scratch per thread, kept between calls (up to ~150 KB: too much for the stack
  // of a thread we did not create, and thread_local arrays would bloat static TLS).
  thread_local AlignedBuffer scratch;
  const size_t floats = 2 * kQueryTile * W + 2 * W * kKeyBlock + kQueryTile * kKeyBlock;
  if (scratch.bytes() < floats * sizeof(float)) scratch.resize(floats * sizeof(float));
  float* Q = scratch.as<float>();           // [nq][W] queries * 1/sqrt(D)
  float* O = Q + kQueryTile * W;            // [nq][W] unnormalized outputs
  float* KT = O + kQueryTile * W;           // [W][64] the block's keys, transposed
  float* V = KT + W * kKeyBlock;            // [64][W] the block's values
  float* S = V + kKeyBlock * W;             // [nq][64] scores, then probabilities
  float m[kQueryTile], l[kQueryTile], corr[kQueryTile];
  const __m512 scale = _mm512_set1_ps(1.f / std::sqrt((float)D));
  for (int64_t b = 0; b < nq; b++) {
    const float* q = t.q + b * t.q_stride + t.head * D;  // [D]
    for (int c = 0; c < ND; c++) {
      _mm512_store_ps(Q + b * W + 16 * c, _mm512_mul_ps(_mm512_maskz_loadu_ps(dm[c], q + 16 * c), scale));
      _mm512_store_ps(O + b * W + 16 * c, _mm512_setzero_ps());
    }
    m[b] = -INFINITY;
    l[b] = 0;
  }

  const T* krows[2][kKeyBlock];  // this block's and the next one's key rows (head columns)
  const T* vrows[2][kKeyBlock];
  for (int64_t si = 0, se; si < t.n_spans; si = se) {
    se = run_end(t.spans, t.n_spans, si);
    const KeySpan sp = run_span(t.spans, si, se);  // the run's positions
    RunCursor<T> cursor{t.spans + si};
    const int64_t most = visible(sp, qpos0 + nq - 1);  // rows < most are used by some query
    if (most > 0) cursor.take(std::min(kKeyBlock, most), t.head * D, krows[0], vrows[0]);
    for (int64_t kb0 = 0, cur = 0; kb0 < most; kb0 += kKeyBlock, cur ^= 1) {
      const T** kr = krows[cur];
      const T** vr = vrows[cur];
      const int64_t rows = std::min<int64_t>(kKeyBlock, most - kb0);  // valid keys in the block
      // Queries before b0 see none of this block (row kb0 sits at sp.pos0 + kb0).
      const int64_t b0 = std::clamp<int64_t>(sp.pos0 + kb0 - qpos0, 0, nq);

      // Pack (as float, whatever the cache holds): V rows as they are, K transposed 16 keys x 16 dims at a time. Rows past
      // `rows` are zero so no stale value can become a NaN.
      for (int64_t g = 0; g < kKeyBlock / 16; g++) {
        for (int c = 0; c < ND; c++) {
          __m512 r[16];
          for (int64_t i = 0; i < 16; i++) {
            const int64_t j = 16 * g + i;
            r[i] = j < rows ? load_kv(dm[c], kr[j] + 16 * c) : _mm512_setzero_ps();
            _mm512_store_ps(V + j * W + 16 * c, j < rows ? load_kv(dm[c], vr[j] + 16 * c) : _mm512_setzero_ps());
          }
          transpose16(r);
          for (int i = 0; i < 16; i++) _mm512_store_ps(KT + (16 * c + i) * kKeyBlock + 16 * g, r[i]);
        }
      }

      // The next block loads while this one computes.
      const int64_t next_rows = std::min(kKeyBlock, most - (kb0 + kKeyBlock));
      if (next_rows > 0) {
        cursor.take(next_rows, t.head * D, krows[cur ^ 1], vrows[cur ^ 1]);
        for (int64_t j = 0; j < next_rows; j++) {
          prefetch_rows(krows[cur ^ 1][j], 0, 1, D);
          prefetch_rows(vrows[cur ^ 1][j], 0, 1, D);
        }
      }

      for (int64_t b = b0; b < nq; b += kQkRows)
        qk_dispatch((int)std::min<int64_t>(kQkRows, nq - b), S + b * kKeyBlock, Q + b * W, W, KT, D);

      // Online softmax per query; the rescale of O is folded into the PV kernel.
      for (int64_t b = b0; b < nq; b++) {
        const int64_t cnt = std::min(rows, visible(sp, qpos0 + b) - kb0);  // keys this query sees, >= 1
        __m512 sc[4];
        for (int g = 0; g < 4; g++)
          sc[g] = _mm512_mask_blend_ps(head_mask(std::max<int64_t>(0, cnt - 16 * g)), _mm512_set1_ps(-INFINITY),
                                       _mm512_load_ps(S + b * kKeyBlock + 16 * g));
        const float bm = hmax(_mm512_max_ps(_mm512_max_ps(sc[0], sc[1]), _mm512_max_ps(sc[2], sc[3])));
        const float mn = std::max(m[b], bm);
        corr[b] = _mm512_cvtss_f32(exp(_mm512_set1_ps(m[b] - mn)));  // exp(-inf) = 0 on the query's first block
        const __m512 vm = _mm512_set1_ps(mn);
        __m512 sum = _mm512_setzero_ps();
        for (int g = 0; g < 4; g++) {
          __m512 p = exp(_mm512_sub_ps(sc[g], vm));
          _mm512_store_ps(S + b * kKeyBlock + 16 * g, p);
          sum = _mm512_add_ps(sum, p);
        }
        l[b] = l[b] * corr[b] + hsum(sum);
        m[b] = mn;
      }

      constexpr int R = pv_rows<ND>();
      for (int64_t b = b0; b < nq; b += R) {
        const int rows_pv = (int)std::min<int64_t>(R, nq - b);
        // The group's last query sees the most keys; the others have p = 0 past theirs.
        const int64_t cnt = std::min(rows, visible(sp, qpos0 + b + rows_pv - 1) - kb0);
        pv_rows_dispatch<ND, R>(rows_pv, O + b * W, S + b * kKeyBlock, corr + b, V, cnt);
      }
    }
  }

  for (int64_t b = 0; b < nq; b++) {
    const RowSink sink = row_sink(t, D, partial, b, m[b], l[b]);
    const __m512 mul = _mm512_set1_ps(sink.mul);
    for (int c = 0; c < ND; c++) _mm512_mask_storeu_ps(sink.dst + 16 * c, dm[c], _mm512_mul_ps(_mm512_load_ps(O + b * W + 16 * c), mul));
  }
}

}  // namespace

namespace {

template <typename T>
void gemm_tile_of(const SpanAttentionTask& t, int64_t D, float* partial) {
  switch ((D + 15) / 16) {
    case 1: gemm_tile<1, T>(t, D, partial); break;
    case 2: gemm_tile<2, T>(t, D, partial); break;
    case 3: gemm_tile<3, T>(t, D, partial); break;
    case 4: gemm_tile<4, T>(t, D, partial); break;
    case 5: gemm_tile<5, T>(t, D, partial); break;
    case 6: gemm_tile<6, T>(t, D, partial); break;
    case 7: gemm_tile<7, T>(t, D, partial); break;
    case 8: gemm_tile<8, T>(t, D, partial); break;
  }
}

}  // namespace

void gemm_tile_avx512(const SpanAttentionTask& t, int64_t D, float* partial) {
  if (t.kv == KvType::F16) gemm_tile_of<uint16_t>(t, D, partial);
  else gemm_tile_of<float>(t, D, partial);
}

}  // namespace roost::attention_impl
