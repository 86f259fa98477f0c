// AVX2 span-attention tile: the AVX-512 algorithm with 8-key sub-blocks and
// ymm vectors, head dims up to 128 (ND = D/8 rounded up, the tail masked).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "attention_spans_impl.h"
#include "simd_avx2_impl.h"

namespace roost::attention_spans_impl {

using namespace simd256;

namespace {

// Lane r of the result = sum of the lanes of v[r], r = 0..7.
inline __m256 transpose_sum8(const __m256* v) {
  __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);  // [v0..3 low-half sums | v0..3 high-half sums]
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Chunk c of a head row; the last may be partial (D not a multiple of 8).
struct Row {
  int full;      // whole chunks
  __m256i tail;  // lanes of the partial chunk
  __m256 load(const float* p, int c) const { return c < full ? _mm256_loadu_ps(p + 8 * c) : _mm256_maskload_ps(p + 8 * c, tail); }
};

template <int ND>
struct Query {
  __m256 q[ND];    // query * 1/sqrt(D)
  __m256 acc[ND];  // sum_j p_j v_j, scaled to the running max
  __m256 l;        // sum_j p_j, per lane
  float m;         // running max score
};

// Folds `cnt` (1..8) consecutive key rows into one query's state.
template <int ND, bool kFull>
inline void sub_block(Query<ND>& st, const float* k, const float* v, int64_t stride, int cnt, const Row& row) {
  __m256 dots[8];
#pragma GCC unroll 8
  for (int r = 0; r < 8; r++) {
    if (!kFull && r >= cnt) {
      dots[r] = _mm256_setzero_ps();
      continue;
    }
    const float* kr = k + r * stride;  // key row r of the sub-block, this head: [D]
    __m256 d = _mm256_mul_ps(st.q[0], row.load(kr, 0));
#pragma GCC unroll 16
    for (int c = 1; c < ND; c++) d = _mm256_fmadd_ps(st.q[c], row.load(kr, c), d);
    dots[r] = d;
  }
  __m256 s = transpose_sum8(dots);  // [8] scores
  if (!kFull) s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, _mm256_castsi256_ps(head_mask(cnt)));
  const float bm = hmax(s);
  if (bm > st.m) {  // rescale what was summed against the old max
    const __m256 corr = exp(_mm256_set1_ps(st.m - bm));
    st.m = bm;
    st.l = _mm256_mul_ps(st.l, corr);
#pragma GCC unroll 16
    for (int c = 0; c < ND; c++) st.acc[c] = _mm256_mul_ps(st.acc[c], corr);
  }
  const __m256 p = exp(_mm256_sub_ps(s, _mm256_set1_ps(st.m)));
  st.l = _mm256_add_ps(st.l, p);
  alignas(32) float pb[8];
  _mm256_store_ps(pb, p);
#pragma GCC unroll 8
  for (int r = 0; r < 8; r++) {
    if (!kFull && r >= cnt) break;
    const float* vr = v + r * stride;
    const __m256 pr = _mm256_broadcast_ss(pb + r);
#pragma GCC unroll 16
    for (int c = 0; c < ND; c++) st.acc[c] = _mm256_fmadd_ps(pr, row.load(vr, c), st.acc[c]);
  }
}

template <int ND>
void tile(const SpanAttentionTask& t, int64_t D) {
  const __m256 scale = _mm256_set1_ps(1.f / std::sqrt((float)D));
  const Row row{(int)(D / 8), head_mask(D % 8)};
  Query<ND> states[kTile];
  for (int64_t b = 0; b < t.nq; b++) {
    const float* q = t.q + b * t.q_stride + t.head * D;  // [D]
    for (int c = 0; c < ND; c++) {
      states[b].q[c] = _mm256_mul_ps(row.load(q, c), scale);
      states[b].acc[c] = _mm256_setzero_ps();
    }
    states[b].l = _mm256_setzero_ps();
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
        for (int64_t j = kb0; j < limit; j += 8) {
          const int cnt = (int)std::min<int64_t>(8, limit - j);
          if (cnt == 8) sub_block<ND, true>(st, kh + j * stride, vh + j * stride, stride, 8, row);
          else sub_block<ND, false>(st, kh + j * stride, vh + j * stride, stride, cnt, row);
        }
        states[b] = st;
      }
    }
  }
  for (int64_t b = 0; b < t.nq; b++) {
    const float l = hsum(states[b].l);
    float* out = t.out + b * t.out_stride + t.head * D;
    const __m256 inv = _mm256_set1_ps(l > 0 ? 1.f / l : 0.f);
    for (int c = 0; c < ND; c++) {
      const __m256 o = _mm256_mul_ps(states[b].acc[c], inv);
      if (c < row.full) _mm256_storeu_ps(out + 8 * c, o);
      else _mm256_maskstore_ps(out + 8 * c, row.tail, o);
    }
  }
}

}  // namespace

void tile_avx2(const SpanAttentionTask& t, int64_t D) {
  switch ((D + 7) / 8) {
    case 1: tile<1>(t, D); break;
    case 2: tile<2>(t, D); break;
    case 3: tile<3>(t, D); break;
    case 4: tile<4>(t, D); break;
    case 5: tile<5>(t, D); break;
    case 6: tile<6>(t, D); break;
    case 7: tile<7>(t, D); break;
    case 8: tile<8>(t, D); break;
    case 9: tile<9>(t, D); break;
    case 10: tile<10>(t, D); break;
    case 11: tile<11>(t, D); break;
    case 12: tile<12>(t, D); break;
    case 13: tile<13>(t, D); break;
    case 14: tile<14>(t, D); break;
    case 15: tile<15>(t, D); break;
    case 16: tile<16>(t, D); break;
    default: tile_reference(t, D);
  }
}

}  // namespace roost::attention_spans_impl
