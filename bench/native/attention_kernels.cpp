// Attention kernel timings on fixed shapes, through the entries the models call
// (attention_causal, attention_spans), one engine thread: the minimum and median
// process CPU time of N calls per case. CPU time leaves out the time the process
// waits descheduled, so old and new builds compare on a shared machine where wall
// time swings by several times; build this file against each and alternate runs.
//   bench_attention_kernels [reps]        (default 20)
// Shapes: H 4, D 64 (bench/native/attention.cpp's model); K/V of 16k rows.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <vector>

#include "ops/attention_spans.h"
#include "threadpool.h"

using namespace roost;

namespace {

double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

template <class F>
void time_case(const char* name, int reps, F f) {
  std::vector<double> ms;
  f();  // warm
  for (int i = 0; i < reps; i++) {
    const double t0 = cpu_s();
    f();
    ms.push_back((cpu_s() - t0) * 1e3);
  }
  std::sort(ms.begin(), ms.end());
  std::printf("%-36s min %9.4f ms  median %9.4f ms\n", name, ms[0], ms[ms.size() / 2]);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  const int64_t H = 4, D = 64, C = H * D, T = 16384;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> k(T * C), v(T * C), q(T * C), out(T * C);  // [T, C] each
  for (auto* b : {&k, &v, &q})
    for (float& x : *b) x = 0.5f * normal(rng);
  ThreadPool pool(1);
  std::printf("isa %s, 1 thread, %d calls per case (process CPU time)\n", isa_name(active_isa()), reps);

  std::vector<AttentionSeq> prompt = {{out.data(), C, q.data(), C, k.data(), v.data(), C, 0, 2048}};
  time_case("dense prefill 2048", std::max(3, reps / 3), [&] { attention_causal(prompt, H, D, pool); });
  std::vector<AttentionSeq> chunk = {{out.data(), C, q.data(), C, k.data(), v.data(), C, 8192, 512}};
  time_case("dense chunk 512 after 8192", std::max(3, reps / 3), [&] { attention_causal(chunk, H, D, pool); });
  std::vector<AttentionSeq> decode = {{out.data(), C, q.data(), C, k.data(), v.data(), C, T - 1, 1}};
  time_case("dense decode 1 at 16384", reps * 4, [&] { attention_causal(decode, H, D, pool); });
  std::vector<AttentionSeq> batch;  // 96 sequences at 576: the attention of a batch-32 decode of 12 heads
  for (int i = 0; i < 96; i++) {
    const int64_t r0 = (i % 24) * 600;  // each sequence's cache rows
    batch.push_back({out.data() + i * C, C, q.data() + i * C, C, k.data() + r0 * C, v.data() + r0 * C, C, 575, 1});
  }
  time_case("dense decode 96 seqs at 576", reps * 4, [&] { attention_causal(batch, H, D, pool); });

  // BigBird-like: query blocks of 64 over 8 scattered 64-key blocks.
  std::vector<KeySpan> blocks;
  for (int j : {0, 1, 40, 77, 130, 200, 254, 255}) blocks.push_back({k.data() + j * 64 * C, v.data() + j * 64 * C, C, 64, j * 64});
  std::vector<SpanAttentionTask> bb_prefill, bb_decode;
  for (int64_t h = 0; h < H; h++) {
    for (int qb = 0; qb < 32; qb++)
      bb_prefill.push_back({out.data() + qb * 64 * C, C, q.data() + qb * 64 * C, C, 64, 255 * 64, h, blocks.data(), 8});
    bb_decode.push_back({out.data(), C, q.data(), C, 1, 256 * 64 - 1, h, blocks.data(), 8});
  }
  time_case("spans bigbird prefill 32 blocks", reps, [&] { attention_spans(bb_prefill, D, pool); });
  time_case("spans bigbird decode", reps * 8, [&] { attention_spans(bb_decode, D, pool); });

  // Perceiver-like latent decode: a ring of 256 in two halves, plus the new row.
  std::vector<KeySpan> ring = {{k.data() + 100 * C, v.data() + 100 * C, C, 156, kSpanNoMask},
                               {k.data(), v.data(), C, 99, kSpanNoMask},
                               {k.data() + 5000 * C, v.data() + 5000 * C, C, 1, kSpanNoMask}};
  std::vector<SpanAttentionTask> ring_decode;
  for (int64_t h = 0; h < H; h++) ring_decode.push_back({out.data(), C, q.data(), C, 1, 9999, h, ring.data(), 3});
  time_case("spans ring decode 256", reps * 8, [&] { attention_spans(ring_decode, D, pool); });

  // Block-recurrent-like: a 512-query block over previous + current block (causal) and 64 states.
  std::vector<KeySpan> window = {{k.data(), v.data(), C, 1024, 0}, {k.data() + 2000 * C, v.data() + 2000 * C, C, 64, kSpanNoMask}};
  std::vector<SpanAttentionTask> window_tasks;
  for (int64_t h = 0; h < H; h++) window_tasks.push_back({out.data(), C, q.data(), C, 512, 512, h, window.data(), 2});
  time_case("spans window 512 over 1024+64", reps, [&] { attention_spans(window_tasks, D, pool); });

  // One query over a long unmasked span (a cross-attend decode).
  std::vector<KeySpan> all = {{k.data(), v.data(), C, T, kSpanNoMask}};
  std::vector<SpanAttentionTask> cross;
  for (int64_t h = 0; h < H; h++) cross.push_back({out.data(), C, q.data(), C, 1, 0, h, all.data(), 1});
  time_case("spans decode 1 over 16384", reps * 4, [&] { attention_spans(cross, D, pool); });
  return 0;
}
