// Attention over lists of key ranges ("spans"): the one kernel behind dense
// causal attention (one span per sequence) and every restricted attention of
// the long-context models (docs/spec.md):
//   - BigBird: a query block's selected key blocks, one span per block;
//   - block_recurrent: the previous + current block window, the S state
//     keys (a_cross), and state queries over state + block keys (the update);
//   - perceiver_ar: decode over the ring of the last N latent keys.
// Cost per query is the number of keys its spans hold, never the context length.
// Softmax order does not matter, so spans may come in any order (a ring's two
// halves, blocks from different buffers) as long as no key appears twice.
#pragma once

#include <cstdint>
#include <vector>

#include "ops.h"

namespace roost {

// `n` key/value rows; row r is k + r * stride elements (head h at columns h*D ..
// h*D+D-1) and sits at position pos0 + r. A query at position qpos sees row r iff
// pos0 + r <= qpos (causal clip); pos0 = kSpanNoMask makes every row visible.
// The elements are float or IEEE half, as the task's kv says.
struct KeySpan {
  const void* k;
  const void* v;
  int64_t stride;
  int64_t n;
  int64_t pos0;
};
constexpr int64_t kSpanNoMask = INT64_MIN / 4;  // far below any position, no overflow in qpos - pos0

// Queries 0..nq-1 of one head (row t at q + t * q_stride, position qpos0 + t)
// against the union of spans[0 .. n_spans). Output rows like the queries.
// A query that sees no key gets zeros.
struct SpanAttentionTask {
  float* out;
  int64_t out_stride;
  const float* q;
  int64_t q_stride;
  int64_t nq;
  int64_t qpos0;
  int64_t head;
  const KeySpan* spans;
  int64_t n_spans;
  // Rows whose grouping follows how the scheduler cut a prompt into passes (a
  // cached prefix or another sequence's chunk moves the cut). They always take
  // the GEMM-shaped tile and are never split, so each row's result does not
  // depend on the cut (docs/design.md, "Batch invariance"). False: rows that
  // are the same task whatever the cut (a decode token, one task per query),
  // which take the few-query kernel when nq is small.
  bool pass_cut = false;
  KvType kv = KvType::F32;  // the element type of every span's rows
};

// p moved by `elems` elements of type kv.
inline const void* kv_advance(const void* p, int64_t elems, KvType kv) {
  return static_cast<const char*>(p) + elems * (int64_t)kv_type_size(kv);
}
// One K/V element as float: the plain kernels' read (T = float or uint16_t half bits).
inline float kv_to_float(float x) { return x; }
inline float kv_to_float(uint16_t h) { return f16_to_f32(h); }

// Scale 1/sqrt(D). Tasks of any size; the entry cuts them into query tiles,
// splits the keys of a tile worth more than its share of the work (merging the
// parts after), and runs the tiles over the pool, costliest first. It is also
// what attention_causal (ops.h) runs, with one span per sequence.
void attention_spans(const std::vector<SpanAttentionTask>& tasks, int64_t D, ThreadPool& pool);
void attention_spans_reference(const std::vector<SpanAttentionTask>& tasks, int64_t D);

// Builds a task list whose spans share one growing vector: add a task's spans,
// then the task (its spans/n_spans are filled in by tasks()).
class SpanBatch {
 public:
  void clear() { tasks_.clear(), spans_.clear(), first_.clear(), mark_ = 0; }
  void add_span(const KeySpan& s) { spans_.push_back(s); }
  void add_task(const SpanAttentionTask& t) {
    tasks_.push_back(t);
    first_.push_back(mark_);
    tasks_.back().n_spans = (int64_t)(spans_.size() - mark_);
    mark_ = spans_.size();
  }
  // Another task over the same spans as the previous one (the next head, say).
  void add_task_again(const SpanAttentionTask& t) {
    const size_t first = first_.back();
    const int64_t n = tasks_.back().n_spans;
    tasks_.push_back(t);
    tasks_.back().n_spans = n;
    first_.push_back(first);
  }
  const std::vector<SpanAttentionTask>& tasks() {
    for (size_t i = 0; i < tasks_.size(); i++) tasks_[i].spans = spans_.data() + first_[i];
    return tasks_;
  }
  bool empty() const { return tasks_.empty(); }

 private:
  std::vector<SpanAttentionTask> tasks_;
  std::vector<KeySpan> spans_;
  std::vector<size_t> first_;
  size_t mark_ = 0;
};

}  // namespace roost
