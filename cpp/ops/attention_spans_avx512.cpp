// AVX-512 span-attention tile, head dims up to 128 (ND = D/16 rounded up
// vectors, tail lanes masked). Two shapes:
//   - few queries (decode): each query folds 16-key sub-blocks straight from
//     the cache rows (dot products, one transpose-sum per sub-block);
//   - a tile of queries (prefill): per 64-key block of a span, K is packed
//     transposed and V padded, then the scores S[nq, 64] = Q K^T and the update
//     O[nq, D] += P V run as register-tiled FMA products with no horizontal
//     sums (the flash-attention shape; the same idea as attention_tile_avx512.cpp
//     of attention_causal, here over spans and their causal clips).
#include <algorithm>
#include <cmath>

#include "attention_spans_impl.h"
#include "simd_avx512_impl.h"

namespace roost::attention_spans_impl {

using namespace simd512;

namespace {

// Lane r of the result = sum of the lanes of v[r], r = 0..15.
inline __m512 transpose_sum16(const __m512* v) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; i++)  // per 128-bit lane: pairwise sums of v[2i], v[2i+1]
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; i++) {  // per 128-bit lane: one partial sum of each of 4 vectors
    __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; i++)  // fold the 128-bit lanes pairwise
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88), _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xdd));
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xdd));
}

template <int ND>
struct Query {
  __m512 q[ND];    // query * 1/sqrt(D)
  __m512 acc[ND];  // sum_j p_j v_j, scaled to the running max
  __m512 l;        // sum_j p_j, per lane
  float m;         // running max score
};

// Folds `cnt` (1..16) consecutive key rows into one query's state.
template <int ND, bool kFull>
inline void sub_block(Query<ND>& st, const float* k, const float* v, int64_t stride, int cnt, const __mmask16* dm) {
  __m512 dots[16];
#pragma GCC unroll 16
  for (int r = 0; r < 16; r++) {
    if (!kFull && r >= cnt) {
      dots[r] = _mm512_setzero_ps();
      continue;
    }
    const float* kr = k + r * stride;  // key row r of the sub-block, this head: [D]
    __m512 d = _mm512_mul_ps(st.q[0], _mm512_maskz_loadu_ps(dm[0], kr));
#pragma GCC unroll 8
    for (int c = 1; c < ND; c++) d = _mm512_fmadd_ps(st.q[c], _mm512_maskz_loadu_ps(dm[c], kr + 16 * c), d);
    dots[r] = d;
  }
  __m512 s = transpose_sum16(dots);  // [16] scores
  if (!kFull) s = _mm512_mask_blend_ps(head_mask(cnt), _mm512_set1_ps(-INFINITY), s);
  const float bm = hmax(s);
  if (bm > st.m) {  // rescale what was summed against the old max
    const __m512 corr = exp(_mm512_set1_ps(st.m - bm));
    st.m = bm;
    st.l = _mm512_mul_ps(st.l, corr);
#pragma GCC unroll 8
    for (int c = 0; c < ND; c++) st.acc[c] = _mm512_mul_ps(st.acc[c], corr);
  }
  const __m512 p = exp(_mm512_sub_ps(s, _mm512_set1_ps(st.m)));
  st.l = _mm512_add_ps(st.l, p);
  alignas(64) float pb[16];
  _mm512_store_ps(pb, p);
  __m512 odd[ND];  // a second accumulator set halves the FMA dependency chain
#pragma GCC unroll 8
  for (int c = 0; c < ND; c++) odd[c] = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int r = 0; r < 16; r++) {
    if (!kFull && r >= cnt) break;
    const float* vr = v + r * stride;
    const __m512 pr = _mm512_set1_ps(pb[r]);
#pragma GCC unroll 8
    for (int c = 0; c < ND; c++) {
      const __m512 vv = _mm512_maskz_loadu_ps(dm[c], vr + 16 * c);
      if (r & 1) odd[c] = _mm512_fmadd_ps(pr, vv, odd[c]);
      else st.acc[c] = _mm512_fmadd_ps(pr, vv, st.acc[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < ND; c++) st.acc[c] = _mm512_add_ps(st.acc[c], odd[c]);
}

template <int ND>
void tile(const SpanAttentionTask& t, int64_t D) {
  const __m512 scale = _mm512_set1_ps(1.f / std::sqrt((float)D));
  __mmask16 dm[ND];
  for (int c = 0; c < ND; c++) dm[c] = head_mask(D - 16 * c);
  Query<ND> states[kTile];
  for (int64_t b = 0; b < t.nq; b++) {
    const float* q = t.q + b * t.q_stride + t.head * D;  // [D]
    for (int c = 0; c < ND; c++) {
      states[b].q[c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(dm[c], q + 16 * c), scale);
      states[b].acc[c] = _mm512_setzero_ps();
    }
    states[b].l = _mm512_setzero_ps();
    states[b].m = -INFINITY;
  }
  const int64_t nq = t.nq, qpos0 = t.qpos0;
  for (int64_t s = 0; s < t.n_spans; s++) {
    const KeySpan sp = t.spans[s];  // a local copy: the stores below cannot alias it
    const int64_t stride = sp.stride;
    const float* kh = sp.k + t.head * D;  // key row r at kh + r * stride
    const float* vh = sp.v + t.head * D;
    const int64_t most = visible(sp, qpos0 + nq - 1);  // the last query sees the most rows
    for (int64_t kb0 = 0; kb0 < most; kb0 += kKeyBlock) {
      const int64_t kb1 = std::min(kb0 + kKeyBlock, most);
      for (int64_t b = 0; b < nq; b++) {
        const int64_t limit = std::min(kb1, visible(sp, qpos0 + b));  // rows < limit
        if (limit <= kb0) continue;
        Query<ND> st = states[b];
        for (int64_t j = kb0; j < limit; j += 16) {
          const int cnt = (int)std::min<int64_t>(16, limit - j);
          if (cnt == 16) sub_block<ND, true>(st, kh + j * stride, vh + j * stride, stride, 16, dm);
          else sub_block<ND, false>(st, kh + j * stride, vh + j * stride, stride, cnt, dm);
        }
        states[b] = st;
      }
    }
  }
  for (int64_t b = 0; b < t.nq; b++) {
    const float l = hsum(states[b].l);
    float* out = t.out + b * t.out_stride + t.head * D;
    const __m512 inv = _mm512_set1_ps(l > 0 ? 1.f / l : 0.f);
    for (int c = 0; c < ND; c++) _mm512_mask_storeu_ps(out + 16 * c, dm[c], _mm512_mul_ps(states[b].acc[c], inv));
  }
}


// ---- the tile shape (prefill) ----

constexpr int64_t kBlock = 64;   // keys per packed block: four 16-key vectors
constexpr int kQkRows = 6;       // queries per QK tile: 6 x 4 = 24 zmm accumulators
constexpr int64_t kMinGemmQueries = 4;

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
    const float* kt = KT + d * kBlock;  // [64]: element d of every key of the block
    const __m512 k0 = _mm512_load_ps(kt), k1 = _mm512_load_ps(kt + 16), k2 = _mm512_load_ps(kt + 32), k3 = _mm512_load_ps(kt + 48);
#pragma GCC unroll 8
    for (int b = 0; b < MR; b++) {
      const __m512 q = _mm512_set1_ps(Q[b * qs + d]);
      acc[b][0] = _mm512_fmadd_ps(q, k0, acc[b][0]);
      acc[b][1] = _mm512_fmadd_ps(q, k1, acc[b][1]);
      acc[b][2] = _mm512_fmadd_ps(q, k2, acc[b][2]);
      acc[b][3] = _mm512_fmadd_ps(q, k3, acc[b][3]);
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < MR; b++)
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) _mm512_store_ps(S + b * kBlock + 16 * g, acc[b][g]);
}

void qk_rows(int rows, float* S, const float* Q, int64_t qs, const float* KT, int64_t D) {
  switch (rows) {
    case 1: qk<1>(S, Q, qs, KT, D); break;
    case 2: qk<2>(S, Q, qs, KT, D); break;
    case 3: qk<3>(S, Q, qs, KT, D); break;
    case 4: qk<4>(S, Q, qs, KT, D); break;
    case 5: qk<5>(S, Q, qs, KT, D); break;
    case 6: qk<6>(S, Q, qs, KT, D); break;
  }
}

// O[MR][ND*16] = O * corr + P[MR][0..cnt) @ V[0..cnt)[ND*16]; P rows 64 floats.
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
      const __m512 p = _mm512_set1_ps(P[b * kBlock + j]);
#pragma GCC unroll 8
      for (int n = 0; n < ND; n++) acc[b][n] = _mm512_fmadd_ps(p, v[n], acc[b][n]);
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < MR; b++)
#pragma GCC unroll 8
    for (int n = 0; n < ND; n++) _mm512_store_ps(O + b * W + 16 * n, acc[b][n]);
}

template <int ND>
constexpr int pv_max_rows() { return std::max(1, std::min(8, 24 / ND)); }  // about 24 accumulators

template <int ND, int MR>
void pv_rows(int rows, float* O, const float* P, const float* corr, const float* V, int64_t cnt) {
  if constexpr (MR >= 1) {
    if (rows == MR) pv<MR, ND>(O, P, corr, V, cnt);
    else pv_rows<ND, MR - 1>(rows, O, P, corr, V, cnt);
  }
}

template <int ND>
void tile_gemm(const SpanAttentionTask& t, int64_t D) {
  constexpr int64_t W = ND * 16;  // padded head width: packed rows stay 64-byte aligned
  const int64_t nq = t.nq, qpos0 = t.qpos0;
  __mmask16 dm[ND];
  for (int c = 0; c < ND; c++) dm[c] = head_mask(D - 16 * c);
  alignas(64) float Q[kTile * W], O[kTile * W];  // [nq][W]
  alignas(64) float KT[W * kBlock], V[kBlock * W];  // [W][64], [64][W]
  alignas(64) float S[kTile * kBlock];              // scores, then probabilities [nq][64]
  float m[kTile], l[kTile], corr[kTile];
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
  for (int64_t s = 0; s < t.n_spans; s++) {
    const KeySpan sp = t.spans[s];
    const float* kh = sp.k + t.head * D;  // key row r at kh + r * stride
    const float* vh = sp.v + t.head * D;
    const int64_t most = visible(sp, qpos0 + nq - 1);  // visible rows grow with the query position
    for (int64_t kb0 = 0; kb0 < most; kb0 += kBlock) {
      const int64_t rows = std::min(kBlock, most - kb0);
      // Queries before b0 see none of this block (row kb0 sits at sp.pos0 + kb0).
      const int64_t b0 = std::clamp<int64_t>(sp.pos0 + kb0 - qpos0, 0, nq);
      // Pack: V rows as they are, K transposed 16 keys x 16 dims at a time; rows
      // past `rows` are zero so no stale value can become a NaN.
      for (int64_t g = 0; g < kBlock / 16; g++)
        for (int c = 0; c < ND; c++) {
          __m512 r[16];
          for (int64_t i = 0; i < 16; i++) {
            const int64_t j = 16 * g + i;
            const bool in = j < rows;
            r[i] = in ? _mm512_maskz_loadu_ps(dm[c], kh + (kb0 + j) * sp.stride + 16 * c) : _mm512_setzero_ps();
            _mm512_store_ps(V + j * W + 16 * c, in ? _mm512_maskz_loadu_ps(dm[c], vh + (kb0 + j) * sp.stride + 16 * c) : _mm512_setzero_ps());
          }
          transpose16(r);
          for (int i = 0; i < 16; i++) _mm512_store_ps(KT + (16 * c + i) * kBlock + 16 * g, r[i]);
        }
      for (int64_t b = b0; b < nq; b += kQkRows)
        qk_rows((int)std::min<int64_t>(kQkRows, nq - b), S + b * kBlock, Q + b * W, W, KT, D);
      // Online softmax per query; the rescale of O is folded into pv.
      for (int64_t b = b0; b < nq; b++) {
        const int64_t cnt = std::min(rows, visible(sp, qpos0 + b) - kb0);  // keys this query sees, >= 1
        __m512 sc[4];
        for (int g = 0; g < 4; g++)
          sc[g] = _mm512_mask_blend_ps(head_mask(std::max<int64_t>(0, cnt - 16 * g)), _mm512_set1_ps(-INFINITY),
                                       _mm512_load_ps(S + b * kBlock + 16 * g));
        const float bm = hmax(_mm512_max_ps(_mm512_max_ps(sc[0], sc[1]), _mm512_max_ps(sc[2], sc[3])));
        const float mn = std::max(m[b], bm);
        corr[b] = _mm512_cvtss_f32(exp(_mm512_set1_ps(m[b] - mn)));  // 0 on the query's first block
        const __m512 vm = _mm512_set1_ps(mn);
        __m512 sum = _mm512_setzero_ps();
        for (int g = 0; g < 4; g++) {
          const __m512 p = exp(_mm512_sub_ps(sc[g], vm));
          _mm512_store_ps(S + b * kBlock + 16 * g, p);
          sum = _mm512_add_ps(sum, p);
        }
        l[b] = l[b] * corr[b] + hsum(sum);
        m[b] = mn;
      }
      constexpr int R = pv_max_rows<ND>();
      for (int64_t b = b0; b < nq; b += R) {
        const int n = (int)std::min<int64_t>(R, nq - b);
        // The group's last query sees the most keys; the others have p = 0 past theirs.
        const int64_t cnt = std::min(rows, visible(sp, qpos0 + b + n - 1) - kb0);
        pv_rows<ND, R>(n, O + b * W, S + b * kBlock, corr + b, V, cnt);
      }
    }
  }
  for (int64_t b = 0; b < nq; b++) {
    float* out = t.out + b * t.out_stride + t.head * D;
    const __m512 inv = _mm512_set1_ps(l[b] > 0 ? 1.f / l[b] : 0.f);
    for (int c = 0; c < ND; c++) _mm512_mask_storeu_ps(out + 16 * c, dm[c], _mm512_mul_ps(_mm512_load_ps(O + b * W + 16 * c), inv));
  }
}

template <int ND>
void run(const SpanAttentionTask& t, int64_t D) {
  if (t.nq >= kMinGemmQueries) tile_gemm<ND>(t, D);
  else tile<ND>(t, D);
}

}  // namespace

void tile_avx512(const SpanAttentionTask& t, int64_t D) {
  switch ((D + 15) / 16) {
    case 1: run<1>(t, D); break;
    case 2: run<2>(t, D); break;
    case 3: run<3>(t, D); break;
    case 4: run<4>(t, D); break;
    case 5: run<5>(t, D); break;
    case 6: run<6>(t, D); break;
    case 7: run<7>(t, D); break;
    case 8: run<8>(t, D); break;
    default: tile_reference(t, D);
  }
}

}  // namespace roost::attention_spans_impl
