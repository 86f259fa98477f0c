// AVX2 attention tile of one or a few queries (decode): the online softmax of
// attention_avx512.cpp with 8-key sub-blocks and ymm vectors, head dims up to 128
// (ND = D/8 rounded up). K/V rows are float or IEEE half (T = uint16_t), widened
// by F16C as they are loaded. Tiles of more queries go to attention_tile_avx2.cpp.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "attention_impl.h"
#include "simd_avx2_impl.h"

namespace roost::attention_impl {

using namespace simd256;

namespace {

// Lane r of the result = sum of the lanes of v[r], r = 0..7.
inline __m256 transpose_sum8(const __m256* v) {
  __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);  // [v0..3 low half sums | v0..3 high half sums]
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Chunk c of a head row of ND chunks: the last one may be partial (D not a multiple
// of 8). Either element type gives the same floats (half -> float is exact), masked
// lanes 0.
struct Row {
  int full;       // chunks that are whole
  __m256i tail;   // lanes of the partial chunk
  int rest;       // elements in the partial chunk (D % 8)
  template <int ND>
  __m256 load(const float* p, int c) const { return c < full ? _mm256_loadu_ps(p + 8 * c) : _mm256_maskload_ps(p + 8 * c, tail); }
  // Only chunk ND - 1 can be partial: for the others (c unrolled) the test folds
  // away, so the inserts are not inlined at every chunk of every row.
  template <int ND>
  __m256 load(const uint16_t* p, int c) const {
    return c + 1 < ND || c < full ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + 8 * c))) : load_f16_head(p + 8 * c, rest);
  }
};

// Chunks of 8 elements per 64-byte line: a prefetch loop over a row's chunks steps
// by this (2 for float, 4 for half).
template <typename T>
constexpr int kLineChunks = 64 / (8 * (int)sizeof(T));

template <int ND>
struct Query {
  __m256 q[ND];    // query * 1/sqrt(D)
  __m256 acc[ND];  // sum_j p_j v_j, scaled to the running max
  __m256 l;        // sum_j p_j, per lane
  float m;         // running max score
};

// Prefetching as in attention_avx512.cpp (prefetch_mode).

template <typename T, int ND, bool kFull, Prefetch P>
inline void sub_block(Query<ND>& st, const T* k, const T* v, int64_t stride, int cnt, const Row& row) {
  const int64_t pf = kPrefetchRows * stride;  // elements; prefetching past the cache end is harmless
  __m256 dots[8];
#pragma GCC unroll 8
  for (int r = 0; r < 8; r++) {
    if (!kFull && r >= cnt) {
      dots[r] = _mm256_setzero_ps();
      continue;
    }
    const T* kr = k + r * stride;  // key row j0 + r, this head
#pragma GCC unroll 16
    for (int c = 0; c < ND; c += kLineChunks<T>)  // one per line
      if (P != Prefetch::kNone) _mm_prefetch((const char*)((P == Prefetch::kShort ? v + r * stride : kr + pf) + 8 * c), _MM_HINT_T0);
    __m256 d = _mm256_mul_ps(st.q[0], row.load<ND>(kr, 0));
#pragma GCC unroll 16
    for (int c = 1; c < ND; c++) d = _mm256_fmadd_ps(st.q[c], row.load<ND>(kr, c), d);
    dots[r] = d;
  }
  __m256 s = transpose_sum8(dots);
  if (!kFull) s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, _mm256_castsi256_ps(head_mask(cnt)));
  const float bm = hmax(s);
  if (bm > st.m) {  // rescale what was summed against the old max
    __m256 corr = exp(_mm256_set1_ps(st.m - bm));
    st.m = bm;
    st.l = _mm256_mul_ps(st.l, corr);
#pragma GCC unroll 16
    for (int c = 0; c < ND; c++) st.acc[c] = _mm256_mul_ps(st.acc[c], corr);
  }
  __m256 p = exp(_mm256_sub_ps(s, _mm256_set1_ps(st.m)));
  st.l = _mm256_add_ps(st.l, p);
  alignas(32) float pb[8];
  _mm256_store_ps(pb, p);
#pragma GCC unroll 8
  for (int r = 0; r < 8; r++) {
    if (!kFull && r >= cnt) break;
    const T* vr = v + r * stride;
#pragma GCC unroll 16
    for (int c = 0; c < ND; c += kLineChunks<T>)
      if (P == Prefetch::kAhead) _mm_prefetch((const char*)(vr + pf + 8 * c), _MM_HINT_T0);
    __m256 pr = _mm256_broadcast_ss(pb + r);
#pragma GCC unroll 16
    for (int c = 0; c < ND; c++) st.acc[c] = _mm256_fmadd_ps(pr, row.load<ND>(vr, c), st.acc[c]);
  }
}

template <typename T, int ND, bool kFull>
inline void sub_block_in(Prefetch mode, Query<ND>& st, const T* k, const T* v, int64_t stride, int cnt, const Row& row) {
  switch (mode) {
    case Prefetch::kNone: sub_block<T, ND, kFull, Prefetch::kNone>(st, k, v, stride, cnt, row); break;
    case Prefetch::kAhead: sub_block<T, ND, kFull, Prefetch::kAhead>(st, k, v, stride, cnt, row); break;
    case Prefetch::kShort: sub_block<T, ND, kFull, Prefetch::kShort>(st, k, v, stride, cnt, row); break;
  }
}

// Flattened: with a float and a half copy of every kernel the file outgrows GCC's
// inlining budget, which then leaves exp() and sub_block() as calls in the loop
// over keys (every ymm register is caller-saved).
template <typename T, int ND>
[[gnu::flatten]] void decode(const SpanAttentionTask& t, int64_t D, float* partial) {
  const int64_t nq = t.nq;
  const __m256 scale = _mm256_set1_ps(1.f / std::sqrt((float)D));
  const Row row{(int)(D / 8), head_mask(D % 8), (int)(D % 8)};

  Query<ND> states[kMinTileQueries];  // nq < kMinTileQueries here
  for (int64_t b = 0; b < nq; b++) {
    const float* q = t.q + b * t.q_stride + t.head * D;  // [D]
    for (int c = 0; c < ND; c++) {
      states[b].q[c] = _mm256_mul_ps(row.load<ND>(q, c), scale);
      states[b].acc[c] = _mm256_setzero_ps();
    }
    states[b].l = _mm256_setzero_ps();
    states[b].m = -INFINITY;
  }

  int64_t keys = 0;  // rows the tile reads
  for (int64_t si = 0; si < t.n_spans; si++) keys += visible(t.spans[si], t.qpos0 + nq - 1);
  for (int64_t si = 0; si < t.n_spans; si++) {
    const KeySpan sp = t.spans[si];  // a local copy: the stores below cannot alias it
    const T* kh = kv_rows<T>(sp.k) + t.head * D;  // key row r at kh + r * stride
    const T* vh = kv_rows<T>(sp.v) + t.head * D;
    const int64_t stride = sp.stride;
    const int64_t most = visible(sp, t.qpos0 + nq - 1);  // the last query sees the most rows
    const Prefetch mode = prefetch_mode(keys, most);
    if (mode == Prefetch::kShort)
      for (int64_t j = 0; j < most; j++)
        for (int c = 0; c < ND; c += kLineChunks<T>) _mm_prefetch((const char*)(kh + j * stride + 8 * c), _MM_HINT_T0);
    for (int64_t kb0 = 0; kb0 < most; kb0 += kKeyBlock) {
      const int64_t kb1 = std::min(kb0 + kKeyBlock, most);
      for (int64_t b = 0; b < nq; b++) {
        const int64_t limit = std::min(kb1, visible(sp, t.qpos0 + b));  // rows < limit
        if (limit <= kb0) continue;
        Query<ND> st = states[b];
        for (int64_t j = kb0; j < limit; j += 8) {
          const int cnt = (int)std::min<int64_t>(8, limit - j);
          const T *kr = kh + j * stride, *vr = vh + j * stride;
          if (cnt == 8) sub_block_in<T, ND, true>(mode, st, kr, vr, stride, 8, row);
          else sub_block_in<T, ND, false>(mode, st, kr, vr, stride, cnt, row);
        }
        states[b] = st;
      }
    }
  }

  for (int64_t b = 0; b < nq; b++) {
    const Query<ND>& st = states[b];
    const RowSink sink = row_sink(t, D, partial, b, st.m, hsum(st.l));
    const __m256 mul = _mm256_set1_ps(sink.mul);
    for (int c = 0; c < ND; c++) {
      const __m256 r = _mm256_mul_ps(st.acc[c], mul);
      if (c < row.full) _mm256_storeu_ps(sink.dst + 8 * c, r);
      else _mm256_maskstore_ps(sink.dst + 8 * c, row.tail, r);
    }
  }
}

template <typename T>
void decode_of(const SpanAttentionTask& t, int64_t D, float* partial) {
  switch ((D + 7) / 8) {
    case 1: decode<T, 1>(t, D, partial); break;
    case 2: decode<T, 2>(t, D, partial); break;
    case 3: decode<T, 3>(t, D, partial); break;
    case 4: decode<T, 4>(t, D, partial); break;
    case 5: decode<T, 5>(t, D, partial); break;
    case 6: decode<T, 6>(t, D, partial); break;
    case 7: decode<T, 7>(t, D, partial); break;
    case 8: decode<T, 8>(t, D, partial); break;
    case 9: decode<T, 9>(t, D, partial); break;
    case 10: decode<T, 10>(t, D, partial); break;
    case 11: decode<T, 11>(t, D, partial); break;
    case 12: decode<T, 12>(t, D, partial); break;
    case 13: decode<T, 13>(t, D, partial); break;
    case 14: decode<T, 14>(t, D, partial); break;
    case 15: decode<T, 15>(t, D, partial); break;
    case 16: decode<T, 16>(t, D, partial); break;
  }
}

}  // namespace

void tile_avx2(const SpanAttentionTask& t, int64_t D, float* partial) {
  if (t.nq >= kMinTileQueries || t.pass_cut) {
    gemm_tile_avx2(t, D, partial);
    return;
  }
  if (t.kv == KvType::F16) decode_of<uint16_t>(t, D, partial);
  else decode_of<float>(t, D, partial);
}

}  // namespace roost::attention_impl
