// AVX-512 attention tile of one or a few queries (decode): each query walks each
// span's keys in 64-key blocks straight from the cache rows, online softmax per
// block. Tiles of more queries go to attention_tile_avx512.cpp. Head dims up to
// 128 (ND = D/16 rounded up vectors); the tail of D is masked on every load.
#include <algorithm>
#include <cmath>

#include "attention_impl.h"
#include "simd_avx512_impl.h"

namespace roost::attention_impl {

using namespace simd512;

namespace {

template <int ND>
struct Query {
  __m512 q[ND];    // query * 1/sqrt(D)
  __m512 acc[ND];  // sum_j p_j v_j, scaled to the running max
  __m512 l;        // sum_j p_j, per lane
  float m;         // running max score
};

// Prefetching. The rows of one head are short runs kv_stride apart, which the
// hardware prefetchers follow poorly, so the loops name the lines they will need.
// On a long span: kPrefetchRows rows ahead, two blocks, about the bytes in flight
// one core needs to stream K and V from DRAM. A short tile (at most that many
// keys: a decode step of many short sequences is hundreds of them, a few cold
// rows each) would only prefetch past its end; there decode() names all its
// keys before it starts and the score loop names value row r, which the same
// block reads once its scores are done, so the misses overlap instead of
// queuing. (On a long span that early value prefetch competes with the key
// stream.) Short spans of a longer tile are not prefetched (prefetch_mode).

// Folds one key block (cnt <= 64 valid rows from k, v, `stride` floats apart) into
// one query's state. The whole block is scored before the softmax update, so the
// max reduction and the rescale happen once per 64 keys. Everything lives in local
// registers: working on `st` in place makes GCC store the accumulators after every
// FMA (the vector type may alias the K/V loads).
// Rows are float or IEEE half (T = uint16_t, load_kv converts); kLine chunks of 16
// elements per 64-byte line, so each line is prefetched once.
template <typename T>
constexpr int kLine = 64 / (16 * (int)sizeof(T));

template <int ND, bool kFull, Prefetch P, typename T>
inline void block(Query<ND>& st, const T* k, const T* v, int64_t stride, int cnt, const __mmask16* dm) {
  static_assert(kKeyBlock == 64, "four score vectors per block");
  const int64_t pf = kPrefetchRows * stride;  // elements; a prefetch past the cache end is harmless
  const int groups = kFull ? 4 : (cnt + 15) / 16;
  __m512 q[ND];
#pragma GCC unroll 8
  for (int c = 0; c < ND; c++) q[c] = st.q[c];
  __m512 s[4];
  const T* kr = k;  // key row 16g + r
  const T* vp = v;  // value row 16g + r, prefetched
#pragma GCC unroll 4
  for (int g = 0; g < 4; g++) {
    if (g >= groups) {
      s[g] = _mm512_set1_ps(-INFINITY);
      continue;
    }
    __m512 dots[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++, kr += stride, vp += stride) {
      if (!kFull && 16 * g + r >= cnt) {
        dots[r] = _mm512_setzero_ps();
        continue;
      }
      // Opaque row pointers: otherwise GCC computes all 64 rows' addresses up front
      // and spills them, turning every load into two.
      asm("" : "+r"(kr));
      if constexpr (P == Prefetch::kShort) asm("" : "+r"(vp));
#pragma GCC unroll 8
      for (int c = 0; c < ND; c += kLine<T>)
        if (P != Prefetch::kNone) _mm_prefetch((const char*)((P == Prefetch::kShort ? vp : kr + pf) + 16 * c), _MM_HINT_T0);
      __m512 d = _mm512_mul_ps(q[0], load_kv(dm[0], kr));
#pragma GCC unroll 8
      for (int c = 1; c < ND; c++) d = _mm512_fmadd_ps(q[c], load_kv(dm[c], kr + 16 * c), d);
      dots[r] = d;
    }
    s[g] = transpose_reduce16<false>(dots);
    if (!kFull) s[g] = _mm512_mask_blend_ps(head_mask(cnt - 16 * g), _mm512_set1_ps(-INFINITY), s[g]);
  }

  __m512 acc[ND], odd[ND], l = st.l;
  float m = st.m;
#pragma GCC unroll 8
  for (int c = 0; c < ND; c++) {
    acc[c] = st.acc[c];
    odd[c] = _mm512_setzero_ps();
  }
  const float bm = hmax(_mm512_max_ps(_mm512_max_ps(s[0], s[1]), _mm512_max_ps(s[2], s[3])));
  if (bm > m) {  // rescale what was summed against the old max
    const __m512 corr = exp(_mm512_set1_ps(m - bm));
    m = bm;
    l = _mm512_mul_ps(l, corr);
#pragma GCC unroll 8
    for (int c = 0; c < ND; c++) acc[c] = _mm512_mul_ps(acc[c], corr);
  }
  const __m512 vm = _mm512_set1_ps(m);
  const __m512i one = _mm512_set1_epi32(1);
  const T* vr = v;  // value row 16g + r
#pragma GCC unroll 4
  for (int g = 0; g < 4; g++) {
    if (g >= groups) break;
    const __m512 p = exp(_mm512_sub_ps(s[g], vm));
    l = _mm512_add_ps(l, p);
    const int n = kFull ? 16 : std::min(16, cnt - 16 * g);
    __m512i idx = _mm512_setzero_si512();  // lane of p for row r
    int r = 0;
    // Two rows per step into two accumulator sets: one set would chain all 64 FMAs.
    for (; r + 2 <= n; r += 2, vr += 2 * stride) {
      const __m512 p0 = _mm512_permutexvar_ps(idx, p);
      idx = _mm512_add_epi32(idx, one);
      const __m512 p1 = _mm512_permutexvar_ps(idx, p);
      idx = _mm512_add_epi32(idx, one);
#pragma GCC unroll 8
      for (int c = 0; c < ND; c++) {
        if (P == Prefetch::kAhead && c % kLine<T> == 0) {
          _mm_prefetch((const char*)(vr + pf + 16 * c), _MM_HINT_T0);
          _mm_prefetch((const char*)(vr + stride + pf + 16 * c), _MM_HINT_T0);
        }
        acc[c] = _mm512_fmadd_ps(p0, load_kv(dm[c], vr + 16 * c), acc[c]);
        odd[c] = _mm512_fmadd_ps(p1, load_kv(dm[c], vr + stride + 16 * c), odd[c]);
      }
    }
    if (r < n) {
      const __m512 p0 = _mm512_permutexvar_ps(idx, p);
#pragma GCC unroll 8
      for (int c = 0; c < ND; c++) acc[c] = _mm512_fmadd_ps(p0, load_kv(dm[c], vr + 16 * c), acc[c]);
      vr += stride;
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < ND; c++) st.acc[c] = _mm512_add_ps(acc[c], odd[c]);
  st.l = l;
  st.m = m;
}

template <int ND, bool kFull, typename T>
inline void block_in(Prefetch mode, Query<ND>& st, const T* k, const T* v, int64_t stride, int cnt, const __mmask16* dm) {
  switch (mode) {
    case Prefetch::kNone: block<ND, kFull, Prefetch::kNone>(st, k, v, stride, cnt, dm); break;
    case Prefetch::kAhead: block<ND, kFull, Prefetch::kAhead>(st, k, v, stride, cnt, dm); break;
    case Prefetch::kShort: block<ND, kFull, Prefetch::kShort>(st, k, v, stride, cnt, dm); break;
  }
}

template <int ND, typename T>
void decode(const SpanAttentionTask& t, int64_t D, float* partial) {
  const int64_t nq = t.nq;
  const __m512 scale = _mm512_set1_ps(1.f / std::sqrt((float)D));
  __mmask16 dm[ND];
  for (int c = 0; c < ND; c++) dm[c] = head_mask(D - 16 * c);

  Query<ND> states[kMinTileQueries];  // nq < kMinTileQueries here
  for (int64_t b = 0; b < nq; b++) {
    const float* q = t.q + b * t.q_stride + t.head * D;  // [D]
    for (int c = 0; c < ND; c++) {
      states[b].q[c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(dm[c], q + 16 * c), scale);
      states[b].acc[c] = _mm512_setzero_ps();
    }
    states[b].l = _mm512_setzero_ps();
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
        for (int c = 0; c < ND; c += kLine<T>) _mm_prefetch((const char*)(kh + j * stride + 16 * c), _MM_HINT_T0);
    for (int64_t kb0 = 0; kb0 < most; kb0 += kKeyBlock) {
      const int64_t kb1 = std::min(kb0 + kKeyBlock, most);
      const T *kp = kh + kb0 * stride, *vp = vh + kb0 * stride;
      for (int64_t b = 0; b < nq; b++) {
        const int64_t limit = std::min(kb1, visible(sp, t.qpos0 + b));  // rows < limit
        if (limit <= kb0) continue;
        const int cnt = (int)(limit - kb0);
        if (cnt == kKeyBlock) block_in<ND, true>(mode, states[b], kp, vp, stride, cnt, dm);
        else block_in<ND, false>(mode, states[b], kp, vp, stride, cnt, dm);
      }
    }
  }

  for (int64_t b = 0; b < nq; b++) {
    const Query<ND>& st = states[b];
    const RowSink sink = row_sink(t, D, partial, b, st.m, hsum(st.l));
    const __m512 mul = _mm512_set1_ps(sink.mul);
    for (int c = 0; c < ND; c++) _mm512_mask_storeu_ps(sink.dst + 16 * c, dm[c], _mm512_mul_ps(st.acc[c], mul));
  }
}

}  // namespace

namespace {

template <typename T>
void decode_of(const SpanAttentionTask& t, int64_t D, float* partial) {
  switch ((D + 15) / 16) {
    case 1: decode<1, T>(t, D, partial); break;
    case 2: decode<2, T>(t, D, partial); break;
    case 3: decode<3, T>(t, D, partial); break;
    case 4: decode<4, T>(t, D, partial); break;
    case 5: decode<5, T>(t, D, partial); break;
    case 6: decode<6, T>(t, D, partial); break;
    case 7: decode<7, T>(t, D, partial); break;
    case 8: decode<8, T>(t, D, partial); break;
  }
}

}  // namespace

void tile_avx512(const SpanAttentionTask& t, int64_t D, float* partial) {
  if (t.nq >= kMinTileQueries || t.pass_cut) {
    gemm_tile_avx512(t, D, partial);
    return;
  }
  if (t.kv == KvType::F16) decode_of<uint16_t>(t, D, partial);
  else decode_of<float>(t, D, partial);
}

}  // namespace roost::attention_impl
