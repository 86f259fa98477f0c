// The CPU kernels of T5's two ops (docs/t5.md): attention with a relative
// position bias (AttnTask::bias of cpp/backend.h) and the gated GELU of v1.1.
#pragma once

#include <cstdint>
#include <vector>

#include "../threadpool.h"
#include "attention_spans.h"

namespace roost {

// A span-attention task plus its head's bias table over clamped relative
// distance kpos - qpos in [-bias_max, bias_max]; unmasked: every key visible.
struct BiasedAttentionTask {
  SpanAttentionTask t;
  const float* bias;
  int64_t bias_max;
  bool unmasked;
};

// Scale 1/sqrt(D) then the bias, a max-subtracted softmax kept in double; one
// pool task per (task, query). A query that sees no key gets zeros.
void attention_biased(const std::vector<BiasedAttentionTask>& tasks, int64_t D, ThreadPool& pool);

// y[m, f] = gelu_new(x[m, f]) * x[m, F + f].
void gelu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F, ThreadPool& pool);

}  // namespace roost
