// Long-context models and their kernels (docs/spec.md), without Node:
//   - attention_spans (BigBird blocks, block_recurrent windows and states,
//     perceiver_ar latent ring) against its reference on every ISA this CPU has,
//     also with a costly tile's keys split across several spans and merged;
//   - BigBird reads only the selected blocks (every other key row is NaN);
//   - BigBird == dense attention up to (w+g+r)*b tokens, different beyond;
//     decode and any chunking == prefill;
//   - block_recurrent: decode over 20+ blocks and chunks cut anywhere ==
//     prefill; the state carries what the window forgets; constant memory;
//   - perceiver_ar: decode == prefill for T <= N; NaN before the latents;
//     a multi-token step leaves the exact prefill state;
//   - every config in test/fixtures/bad-configs is refused naming its field.
// Run from the repository root (test/fixtures paths are relative to it).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>
#include <string>
#include <vector>

#include "doctest.h"
#include "engine.h"
#include "json.h"
#include "models/bigbird_pattern.h"
#include "models/bigbird_attention.h"
#include "ops/attention_spans.h"
#include "ops/ops.h"
#include "random_checkpoint.h"

using namespace roost;
namespace fs = std::filesystem;

static std::vector<Isa> isas() {
  std::vector<Isa> v = {Isa::Reference};
  if (detected_isa() != Isa::Reference) v.push_back(Isa::Avx2);
  if (detected_isa() == Isa::Avx512) v.push_back(Isa::Avx512);
  return v;
}

static std::vector<float> randn(size_t n, std::mt19937& rng, float sd = 1.f) {
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// ------------------------------------------------------------------ kernels

// attention_spans on every ISA against attention_spans_reference: masked and
// unmasked spans from buffers of different strides, empty spans, query tiles
// longer than the kernel's, heads of sizes that are not a vector multiple, and
// queries that see nothing (zeros).
static void test_span_kernel(ThreadPool& pool) {
  std::mt19937 rng(11);
  for (int64_t D : {8, 16, 20, 64, 72, 128, 136}) {
    const int64_t H = 3, C = H * D;
    std::vector<float> kv1 = randn(200 * C, rng), vv1 = randn(200 * C, rng);          // [200, C]
    std::vector<float> kv2 = randn(40 * 2 * C, rng);                                   // [40, 2C] = K | V
    std::vector<float> q = randn(70 * 2 * C, rng);                                     // [70, 2C]
    std::vector<KeySpan> spans = {
        {kv1.data(), vv1.data(), C, 90, 100},                   // positions 100..189, causal clip
        {kv2.data(), kv2.data() + C, 2 * C, 33, kSpanNoMask},  // every row visible
        {kv1.data() + 150 * C, vv1.data() + 150 * C, C, 0, 0},  // empty
        {kv1.data() + 10 * C, vv1.data() + 10 * C, C, 7, 96},   // positions 96..102
    };
    for (int64_t nq : {1, 5, 37, 70}) {
      for (bool with_unmasked : {true, false}) {
        std::vector<SpanAttentionTask> tasks;
        std::vector<KeySpan> use = spans;
        if (!with_unmasked) use.erase(use.begin() + 1);
        std::vector<float> ref(nq * C * 2, 0.f), got(nq * C * 2, 0.f);
        // Queries from position 95 on: the first ones see nothing of span 0.
        for (int64_t h = 0; h < H; h++)
          tasks.push_back({ref.data(), 2 * C, q.data() + 1, 2 * C, nq, 95, h, use.data(), (int64_t)use.size()});
        attention_spans_reference(tasks, D);
        for (auto& t : tasks) t.out = got.data();
        for (Isa isa : isas()) {
          set_isa(isa);
          std::fill(got.begin(), got.end(), -7.f);
          for (auto& t : tasks) t.out = got.data();
          attention_spans(tasks, D, pool);
          double worst = 0;
          for (int64_t i = 0; i < nq; i++)
            for (int64_t c = 0; c < C; c++) worst = std::max(worst, (double)std::fabs(got[i * 2 * C + c] - ref[i * 2 * C + c]));
          CHECK_MESSAGE(worst <= 2e-5, (std::string("attention_spans ") + isa_name(isa) + " D=" + std::to_string(D) + " nq=" +
                                           std::to_string(nq) + (with_unmasked ? " +unmasked" : "") + ": max diff " + std::to_string(worst)));
        }
        if (!with_unmasked) {  // query at 95..99 sees no key at all: zeros
          bool zero = true;
          for (int64_t c = 0; c < C; c++) zero &= ref[c] == 0.f;
          CHECK_MESSAGE(zero, ("attention_spans: a query with no visible key gives zeros (D=" + std::to_string(D) + ")"));
        }
      }
    }
  }
}

// The key split across spans: a tile worth more than its share of the work
// (here each of two heads is half the call, and sees over 1024 keys) has its
// keys cut into parts of whole key blocks that cross span boundaries, run as
// tiles of their own and merged after; a pool of one thread never splits. The
// spans are uneven, from buffers of different strides, one masked by position
// (partly visible, the clip moving inside a 64-query tile), one always visible,
// one empty and one wholly after every query.
static void test_span_key_split() {
  std::mt19937 rng(23);
  const int64_t H = 2, qpos0 = 2000;
  for (int64_t D : {40, 64, 136}) {
    const int64_t C = H * D;
    std::vector<float> k1 = randn(1500 * C, rng), v1 = randn(1500 * C, rng);  // [1500, C]
    std::vector<float> kv2 = randn(400 * 2 * C, rng);                          // [400, 2C] = K | V
    std::vector<float> q = randn(64 * 3 * C, rng);                             // [64, 3C]
    const std::vector<KeySpan> spans = {
        {k1.data(), v1.data(), C, 700, 0},                             // positions 0..699: all seen
        {kv2.data(), kv2.data() + C, 2 * C, 333, kSpanNoMask},         // every row visible
        {k1.data() + 700 * C, v1.data() + 700 * C, C, 0, 0},           // empty
        {k1.data() + 710 * C, v1.data() + 710 * C, C, 517, qpos0 - 480},  // query t sees 481 + t rows
        {k1.data() + 1300 * C, v1.data() + 1300 * C, C, 129, 5000},    // after every query: unseen
        {kv2.data() + 340 * 2 * C, kv2.data() + 340 * 2 * C + C, 2 * C, 50, qpos0 + 3},  // from query 3 on
    };
    for (int64_t nq : {1, 2, 3, 5, 7, 64}) {
      std::vector<SpanAttentionTask> tasks;
      std::vector<float> ref(nq * C, 0.f), got(nq * C, 0.f);
      for (int64_t h = 0; h < H; h++)
        tasks.push_back({ref.data(), C, q.data() + 2, 3 * C, nq, qpos0, h, spans.data(), (int64_t)spans.size()});
      attention_spans_reference(tasks, D);
      for (auto& t : tasks) t.out = got.data();
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        for (Isa isa : isas()) {
          set_isa(isa);
          std::fill(got.begin(), got.end(), -7.f);
          attention_spans(tasks, D, pool);
          double worst = 0;
          for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, (double)std::fabs(got[i] - ref[i]));
          CHECK_MESSAGE(worst <= 2e-5, (std::string("attention_spans key split ") + isa_name(isa) + " threads=" + std::to_string(threads) +
                                           " D=" + std::to_string(D) + " nq=" + std::to_string(nq) + ": max diff " + std::to_string(worst)));
        }
      }
    }
  }
}

// BigBird through bigbird_tasks on a cache whose unselected rows are NaN (per
// head: patterns differ per head), against a naive masked softmax in double.
static void test_bigbird_reads_only_selected(ThreadPool& pool) {
  AttentionConfig a;
  a.kind = "bigbird";
  a.block_size = 4, a.window_blocks = 2, a.global_blocks = 1, a.random_blocks = 2, a.seed = 7;
  const int64_t b = 4, H = 4, D = 16, C = H * D, L = 3, l = 1, i = 29, T = (i + 1) * b, pos0 = i * b, Tq = 3;
  std::mt19937 rng(5);
  std::vector<float> k = randn(T * C, rng), v = randn(T * C, rng), q = randn(Tq * C, rng);
  std::vector<std::vector<double>> want(Tq, std::vector<double>(C));
  bool heads_differ = false;
  for (int64_t h = 0; h < H; h++) {
    const std::vector<int64_t> blocks = bigbird_blocks(a, l, h, i);
    if (blocks != bigbird_blocks(a, l, 0, i)) heads_differ = true;
    std::vector<bool> sel(i + 1, false);
    for (int64_t j : blocks) sel[j] = true;
    for (int64_t t = 0; t < Tq; t++) {  // naive: the selected keys <= position, softmax in double
      const int64_t p = pos0 + t;
      std::vector<double> s;
      std::vector<int64_t> idx;
      double mx = -INFINITY;
      for (int64_t kp = 0; kp <= p; kp++) {
        if (!sel[kp / b]) continue;
        double dot = 0;
        for (int64_t d = 0; d < D; d++) dot += (double)q[t * C + h * D + d] * k[kp * C + h * D + d];
        s.push_back(dot / std::sqrt((double)D));
        idx.push_back(kp);
        mx = std::max(mx, s.back());
      }
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int64_t d = 0; d < D; d++) {
        double acc = 0;
        for (size_t n = 0; n < s.size(); n++) acc += s[n] * v[idx[n] * C + h * D + d];
        want[t][h * D + d] = acc / sum;
      }
    }
    for (int64_t kp = 0; kp < T; kp++)  // poison what this head must not read
      if (!sel[kp / b])
        for (int64_t d = 0; d < D; d++) k[kp * C + h * D + d] = v[kp * C + h * D + d] = NAN;
  }
  CHECK_MESSAGE(heads_differ, "bigbird: the random blocks differ between heads");
  BigBirdBlocks bb;
  bigbird_prepare(bb, a, L, H, i, i + 1);
  for (Isa isa : isas()) {
    set_isa(isa);
    std::vector<float> out(Tq * C, -1.f);
    SpanBatch batch;
    bigbird_tasks(batch, bb, AttentionSeq{out.data(), C, q.data(), C, k.data(), v.data(), C, pos0, Tq}, b, l, L, H);
    attention_spans(batch.tasks(), D, pool);
    double worst = 0;
    for (int64_t t = 0; t < Tq; t++)
      for (int64_t c = 0; c < C; c++) worst = std::isfinite(out[t * C + c]) ? std::max(worst, std::fabs(out[t * C + c] - want[t][c])) : INFINITY;
    CHECK_MESSAGE(worst <= 2e-5, (std::string("bigbird ") + isa_name(isa) + " reads only the selected blocks: max diff " + std::to_string(worst)));
  }
}

// ------------------------------------------------------------------ models

// Prompt log-probs of `tokens` fed in steps of `chunk` tokens (the engine's own
// pass is larger than any chunk here, so a step is one forward).
static std::vector<float> logprobs(Engine& e, const std::vector<int32_t>& tokens, size_t chunk, size_t* state_bytes = nullptr) {
  SamplingParams p;
  p.temperature = 0;
  const int64_t seq = e.create_sequence(p);
  std::vector<float> out;
  for (size_t at = 0; at < tokens.size(); at += chunk) {
    std::vector<int32_t> part(tokens.begin() + at, tokens.begin() + std::min(tokens.size(), at + chunk));
    auto r = e.step({StepRequest{seq, part, false, true}});
    out.insert(out.end(), r[0].prompt_logprobs.begin(), r[0].prompt_logprobs.end());
  }
  if (state_bytes) *state_bytes = e.stats().state_bytes;
  e.free_sequence(seq);
  return out;
}

// max |a - b| over [from, to); NaN must meet NaN.
static double diff(const std::vector<float>& a, const std::vector<float>& b, size_t from, size_t to) {
  double worst = 0;
  for (size_t t = from; t < to && t < a.size() && t < b.size(); t++) {
    if (std::isnan(a[t]) || std::isnan(b[t])) {
      if (std::isnan(a[t]) != std::isnan(b[t])) return INFINITY;
      continue;
    }
    worst = std::max(worst, (double)std::fabs(a[t] - b[t]));
  }
  return worst;
}

static std::vector<int32_t> random_tokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = (int32_t)(rng() % 260);
  return t;
}

static std::string tmp_dir(const std::string& name) {
  return (fs::temp_directory_path() / ("roost-test-long-context-" + std::to_string(::getpid()) + "-" + name)).string();
}

// One step mixing a decode token of one sequence with a prompt of another
// gives what each gets alone (every model batches rows of all items).
static void check_batched(Engine& e, const std::string& what) {
  const auto a = random_tokens(37, 8), b = random_tokens(23, 9);
  SamplingParams p;
  p.temperature = 0;
  const auto alone_a = logprobs(e, a, 36), alone_b = logprobs(e, b, 23);  // a: 36 then 1
  const int64_t sa = e.create_sequence(p), sb = e.create_sequence(p);
  e.step({StepRequest{sa, std::vector<int32_t>(a.begin(), a.end() - 1), false, false}});
  auto r = e.step({StepRequest{sa, {a.back()}, false, true}, StepRequest{sb, b, false, true}});
  e.free_sequence(sa);
  e.free_sequence(sb);
  std::vector<float> got_a(a.size(), NAN);
  got_a.back() = r[0].prompt_logprobs[0];
  CHECK_MESSAGE((diff(alone_a, got_a, a.size() - 1, a.size()) <= 1e-5 && diff(alone_b, r[1].prompt_logprobs, 1, b.size()) <= 1e-5),
                (what + ": a decode token and a prompt batched in one step == each alone"));
}

static void test_bigbird_model(const std::string& tag) {
  roost_test::ModelShape m;
  m.C = 32, m.H = 4, m.L = 2, m.seed = 3;
  const std::string dense_dir = roost_test::write_random_model(tmp_dir("dense"), m);
  // b 4, w 2, g 1, r 1: dense-equivalent up to (2+1+1)*4 = 16 tokens.
  m.attention = R"({"kind":"bigbird","block_size":4,"window_blocks":2,"global_blocks":1,"random_blocks":1,"seed":99})";
  const std::string bb_dir = roost_test::write_random_model(tmp_dir("bigbird"), m);
  Engine dense(dense_dir, EngineOptions{2, 4096});
  Engine bb(bb_dir, EngineOptions{2, 4096});
  const auto toks = random_tokens(120, 1);
  const std::vector<int32_t> first16(toks.begin(), toks.begin() + 16);
  CHECK_MESSAGE(diff(logprobs(dense, first16, 16), logprobs(bb, first16, 16), 1, 16) <= 1e-4,
                (tag + " bigbird == dense for a sequence of (w+g+r)*b = 16 tokens"));
  const auto d = logprobs(dense, toks, 120), s = logprobs(bb, toks, 120);
  CHECK_MESSAGE(diff(d, s, 1, 17) <= 1e-4, (tag + " bigbird == dense on the first 16 positions of 120"));
  CHECK_MESSAGE(diff(d, s, 17, 120) > 1e-2, (tag + " bigbird != dense past 16 tokens: " + std::to_string(diff(d, s, 17, 120))));
  CHECK_MESSAGE(diff(s, logprobs(bb, toks, 1), 1, 120) <= 1e-4, (tag + " bigbird token-by-token decode == prefill (120 tokens, 30 blocks)"));
  CHECK_MESSAGE(diff(s, logprobs(bb, toks, 7), 1, 120) <= 1e-4, (tag + " bigbird chunks of 7 == prefill"));
  check_batched(bb, tag + " bigbird");
  fs::remove_all(dense_dir);
  fs::remove_all(bb_dir);
}

static void test_block_recurrent_model(const std::string& tag) {
  roost_test::ModelShape m;
  m.type = "block_recurrent";
  m.C = 32, m.H = 2, m.L = 3, m.block = 4, m.states = 3, m.recurrent = {0, 2}, m.seed = 4;
  const std::string dir = roost_test::write_random_model(tmp_dir("recurrent"), m);
  m.recurrent = {};
  const std::string plain_dir = roost_test::write_random_model(tmp_dir("windowed"), m);
  Engine e(dir, EngineOptions{2, 4096});
  const auto toks = random_tokens(4 * 22 + 3, 2);  // 22 full blocks and a partial one
  size_t bytes_all = 0, bytes_short = 0;
  const auto pre = logprobs(e, toks, toks.size(), &bytes_all);
  CHECK_MESSAGE(diff(pre, logprobs(e, toks, 1), 1, toks.size()) <= 1e-4, (tag + " block_recurrent decode over 23 blocks == prefill"));
  for (size_t chunk : {3, 5, 7, 9})
    CHECK_MESSAGE(diff(pre, logprobs(e, toks, chunk), 1, toks.size()) <= 1e-4,
                  (tag + " block_recurrent chunks of " + std::to_string(chunk) + " == prefill"));
  check_batched(e, tag + " block_recurrent");
  logprobs(e, std::vector<int32_t>(toks.begin(), toks.begin() + 10), 10, &bytes_short);
  CHECK_MESSAGE(bytes_short == bytes_all, (tag + " block_recurrent memory after 91 tokens == after 10 (" + std::to_string(bytes_all) +
                                              " vs " + std::to_string(bytes_short) + " bytes)"));

  // Token 0 reaches one block further per layer through the windows: past
  // position (L+1)W = 16 only the state remembers it.
  auto other = toks;
  other[0] = (toks[0] + 1) % 256;
  CHECK_MESSAGE(diff(pre, logprobs(e, other, other.size()), 17, toks.size()) > 1e-3, (tag + " block_recurrent: the state carries token 0 past the window"));
  Engine plain(plain_dir, EngineOptions{2, 4096});
  CHECK_MESSAGE(diff(logprobs(plain, toks, toks.size()), logprobs(plain, other, other.size()), 17, toks.size()) == 0,
                (tag + " block_recurrent without recurrent layers: token 0 is invisible past the window"));
  fs::remove_all(dir);
  fs::remove_all(plain_dir);
}

static void test_perceiver_model(const std::string& tag) {
  roost_test::ModelShape m;
  m.type = "perceiver_ar";
  m.C = 32, m.H = 4, m.L = 3, m.latents = 8, m.seed = 5;
  const std::string dir = roost_test::write_random_model(tmp_dir("perceiver"), m);
  Engine e(dir, EngineOptions{2, 4096});
  const auto toks = random_tokens(30, 3);
  const std::vector<int32_t> first8(toks.begin(), toks.begin() + 8);
  const auto pre8 = logprobs(e, first8, 8);
  CHECK_MESSAGE(diff(pre8, logprobs(e, first8, 1), 1, 8) <= 1e-4, (tag + " perceiver_ar decode == prefill for T = N = 8"));
  bool finite = true;
  for (size_t t = 1; t < 8; t++) finite &= std::isfinite(pre8[t]);
  CHECK_MESSAGE(finite, (tag + " perceiver_ar: every entry after the first is a number for T <= N"));

  const auto pre = logprobs(e, toks, 30);  // latents 22..29: entries t <= 22 have no logits
  bool layout = true;
  for (size_t t = 0; t < 30; t++) layout &= std::isnan(pre[t]) == (t <= 22);
  CHECK_MESSAGE(layout, (tag + " perceiver_ar: NaN exactly for entries t <= T - N (T = 30, N = 8)"));
  check_batched(e, tag + " perceiver_ar");
  const auto dec = logprobs(e, toks, 1);
  CHECK_MESSAGE(diff(pre, dec, 23, 30) > 1e-3, (tag + " perceiver_ar: the sliding decode differs from the exact forward past N"));
  // A 20 + 10 split: the second step recomputes the window exactly, so its
  // positions 20..29 (entries 21..29) match the one-pass prefill.
  std::vector<float> split = logprobs(e, std::vector<int32_t>(toks.begin(), toks.begin() + 20), 20);
  {
    SamplingParams p;
    p.temperature = 0;
    const int64_t seq = e.create_sequence(p);
    e.step({StepRequest{seq, std::vector<int32_t>(toks.begin(), toks.begin() + 20), false, false}});
    auto r = e.step({StepRequest{seq, std::vector<int32_t>(toks.begin() + 20, toks.end()), false, true}});
    split.assign(20, NAN);
    split.insert(split.end(), r[0].prompt_logprobs.begin(), r[0].prompt_logprobs.end());
    // ... and leaves the exact state: the next decode step agrees with one after a one-pass prefill.
    auto after_split = e.step({StepRequest{seq, {7}, false, true}})[0].prompt_logprobs[0];
    e.free_sequence(seq);
    const int64_t s2 = e.create_sequence(p);
    e.step({StepRequest{s2, toks, false, false}});
    auto after_full = e.step({StepRequest{s2, {7}, false, true}})[0].prompt_logprobs[0];
    e.free_sequence(s2);
    CHECK_MESSAGE(std::fabs(after_split - after_full) <= 1e-4, (tag + " perceiver_ar: a multi-token step leaves the exact prefill state"));
  }
  CHECK_MESSAGE(diff(pre, split, 21, 30) <= 1e-4, (tag + " perceiver_ar: prefill in steps of 20 + 10 == one pass on the last step's window"));

  // Engine passes of 5 tokens cut the prompts (the second sequence's passes of
  // 1, 5, 4 and 2 tokens): every pass but the last skips the latent window, and
  // the last rebuilds it from the cached K/V and the token ring, so the sampled
  // token and the next decode step equal one-pass prefills.
  {
    Engine e5(dir, EngineOptions{2, 5});
    const auto ta = random_tokens(9, 11), tb = random_tokens(12, 12);
    auto after = [&](Engine& eng, bool together) {
      SamplingParams p;
      p.temperature = 0;
      const int64_t sa = eng.create_sequence(p), sb = eng.create_sequence(p);
      std::vector<StepResult> r;
      if (together) {
        r = eng.step({StepRequest{sa, ta, true, false}, StepRequest{sb, tb, true, false}});
      } else {
        r = eng.step({StepRequest{sa, ta, true, false}});
        r.push_back(eng.step({StepRequest{sb, tb, true, false}})[0]);
      }
      auto d = eng.step({StepRequest{sa, {7}, false, true}, StepRequest{sb, {7}, false, true}});
      eng.free_sequence(sa), eng.free_sequence(sb);
      return std::vector<double>{(double)r[0].token.token, (double)r[1].token.token, r[0].token.logprob, r[1].token.logprob,
                                 d[0].prompt_logprobs[0], d[1].prompt_logprobs[0]};
    };
    const auto one = after(e, false), passes = after(e5, true);
    bool same = one[0] == passes[0] && one[1] == passes[1];
    for (size_t i = 2; i < one.size(); i++) same &= std::fabs(one[i] - passes[i]) <= 1e-4;
    CHECK_MESSAGE(same, (tag + " perceiver_ar: prompts cut into 5-token engine passes sample and decode as one-pass prefills"));
  }

  // Entries without logits get no top list.
  SamplingParams p;
  p.temperature = 0;
  p.n_logprobs = 3;
  const int64_t seq = e.create_sequence(p);
  auto r = e.step({StepRequest{seq, toks, false, true}});
  CHECK_MESSAGE((r[0].prompt_top.size() == 30 && r[0].prompt_top[10].empty() && r[0].prompt_top[25].size() == 3),
                (tag + " perceiver_ar: no top log-probs where there are no logits"));
  e.free_sequence(seq);
  fs::remove_all(dir);
}

// ------------------------------------------------------------------ configs

static void test_bad_configs() {
  const fs::path root = "test/fixtures/bad-configs";
  if (!fs::exists(root / "cases.json")) {
    FAIL_CHECK("test/fixtures/bad-configs/cases.json is missing (run from the repository root)");
    return;
  }
  json::Value cases = json::parse(json::read_file((root / "cases.json").string(), 1 << 20));
  const std::string dir = tmp_dir("config");
  fs::create_directories(dir);
  for (const auto& c : cases.find("refused")->items) {
    const std::string file = c.find("file")->text, field = c.find("field")->text;
    fs::copy_file(root / file, fs::path(dir) / "config.json", fs::copy_options::overwrite_existing);
    std::string got = "accepted";
    try {
      load_model(dir);
    } catch (const Error& e) {
      got = e.code() + ": " + e.what();
    }
    CHECK_MESSAGE((got.rfind("E_CONFIG: ", 0) == 0 && got.find(field) != std::string::npos),
                  ("bad config " + file + " refused naming " + field + " (got \"" + got + "\")"));
  }
  for (const auto& c : cases.find("accepted")->items) {  // only config.json is given: parse, no weights
    std::string got = "ok";
    try {
      parse_config(json::read_file((root / c.text).string(), 1 << 20), c.text, root.string());
    } catch (const std::exception& e) {
      got = e.what();
    }
    CHECK_MESSAGE(got == "ok", ("valid config " + c.text + " is accepted (" + got + ")"));
  }
  fs::remove_all(dir);
}

TEST_CASE("attention_spans: every ISA against the reference") {
  ThreadPool pool(2);
  test_span_kernel(pool);
  set_isa(detected_isa());
}

TEST_CASE("attention_spans: keys split across several spans, merged, on every ISA and pool size") {
  test_span_key_split();
  set_isa(detected_isa());
}

TEST_CASE("bigbird reads only the selected blocks") {
  ThreadPool pool(2);
  test_bigbird_reads_only_selected(pool);
  set_isa(detected_isa());
}

TEST_CASE("bigbird, block_recurrent and perceiver_ar models, on every ISA") {
  for (Isa isa : isas()) {
    set_isa(isa);
    const std::string tag = isa_name(isa);
    try {
      test_bigbird_model(tag);
      test_block_recurrent_model(tag);
      test_perceiver_model(tag);
    } catch (const std::exception& e) {
      FAIL_CHECK((tag + ": " + e.what()));
    }
  }
  set_isa(detected_isa());
}

TEST_CASE("every config in test/fixtures/bad-configs is refused naming its field") { test_bad_configs(); }
