// Every architecture end to end on the CUDA backend against the CPU backend:
// the same model code (cpp/models, load_model(dir, backend factory)) on both.
// The committed fixtures (test/fixtures/*, also against their PyTorch golden
// log-probs), the adapters (test/fixtures/adapters/*: soft prompts and (IA)^3,
// against their goldens and, mixed with plain sequences in one batch, against
// the CPU) and random checkpoints (test/native/random_checkpoint.h) that
// reach the kernels the fixtures do not (head size 64 through the flash
// kernel, long BigBird prompts, block_recurrent across many blocks). Per model:
//   prompt:  one forward of T tokens, logits of every position;
//   decode:  a prefill, then single-token steps through the device KV cache;
//   batch:   one forward of sequences of mixed lengths, fresh and continued.
// Compared as log-probs: max |dlogprob| over the vocabulary entries the CPU
// gives log-prob > -10 (rows without logits, perceiver_ar before its latents,
// must be NaN on both).
// Tolerances (docs/cuda.md): F16 weights (F32 checkpoints are rounded to F16)
// and F16 activations at the tensor cores: 3e-2, against the CPU and against
// the golden next-token log-probs; BF16 checkpoints (activations rounded to
// BF16 too): 1e-1. An emulation of that rounding in float64 NumPy gave at most
// 1.1e-2 (F16) and 4.5e-2 (BF16) on these fixtures, the host emulation of the
// backend (test/cuda/emu) at most 1.9e-2 and 3.2e-2.
// Also: load_model_for_device ("cpu", "cuda", "auto", and a bad name).
// Without a CUDA device it prints "no CUDA device: skipped" and exits 0 (every
// TEST_CASE returns before checking). doctest (test/native/doctest_main.cpp)
// prints each failed check with its figures; --success (-s) prints the passing
// ones too. The host emulation (test/cuda/emu) builds it as
// test_cuda_models_emulated.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/backend.h"
#include "../native/random_checkpoint.h"
#include "common.h"
#include "device.h"
#include "json.h"
#include "models/adapter.h"
#include "models/model.h"
#include "doctest.h"

using namespace roost;
namespace fs = std::filesystem;

namespace {

// The shared model code on the CUDA backend (device 0).
std::unique_ptr<Model> load_cuda(const std::string& dir) {
  return load_model(dir, [](const Checkpoint& ckpt) -> std::shared_ptr<Backend> { return cuda::make_cuda_backend(0, ckpt); });
}

// Largest |dlogprob| between two logits rows over entries with CPU log-prob > -10.
// NaN rows must be NaN on both sides (returns 0 then, INFINITY when only one is).
double row_error(const float* cpu, const float* gpu, int64_t V) {
  const bool nc = std::isnan(cpu[0]), ng = std::isnan(gpu[0]);
  if (nc || ng) return nc && ng ? 0.0 : INFINITY;
  auto lse = [&](const float* x) {
    double mx = -INFINITY, s = 0;
    for (int64_t v = 0; v < V; v++) mx = std::max(mx, (double)x[v]);
    for (int64_t v = 0; v < V; v++) s += std::exp((double)x[v] - mx);
    return mx + std::log(s);
  };
  const double a = lse(cpu), b = lse(gpu);
  double worst = 0;
  for (int64_t v = 0; v < V; v++) {
    const double lc = cpu[v] - a, lg = gpu[v] - b;
    if (lc > -10) worst = std::max(worst, std::isnan(lg) ? INFINITY : std::fabs(lc - lg));
  }
  return worst;
}

struct Pair {
  std::unique_ptr<Model> cpu, gpu;
  std::string name;
  double tol;
  int64_t V;
};

// Runs the same items on both models; returns the worst row error. Item i
// runs through adapters[i] when given; an empty token list with an adapter
// runs the adapter's soft prompt (its embeddings in place of tokens).
double run_both(Pair& m, const std::vector<std::vector<int32_t>>& toks, std::vector<std::unique_ptr<SequenceState>>& sc,
                std::vector<std::unique_ptr<SequenceState>>& sg, bool all_logits,
                const std::vector<const Adapter*>& adapters = {}) {
  std::vector<std::vector<float>> lc(toks.size()), lg(toks.size());
  std::vector<ForwardItem> ic, ig;
  for (size_t i = 0; i < toks.size(); i++) {
    const Adapter* a = i < adapters.size() ? adapters[i] : nullptr;
    const bool soft = a && toks[i].empty();
    const int64_t n = soft ? a->prompt_tokens : (int64_t)toks[i].size(), rows = all_logits ? n : 1;
    const float* embeds = soft ? a->prompt.data() : nullptr;
    lc[i].assign(rows * m.V, 0.f);
    lg[i].assign(rows * m.V, -12345.f);
    ic.push_back({sc[i].get(), toks[i].data(), n, all_logits, lc[i].data(), a, embeds});
    ig.push_back({sg[i].get(), toks[i].data(), n, all_logits, lg[i].data(), a, embeds});
  }
  ThreadPool pool(2);
  m.cpu->forward(ic, pool);
  m.gpu->forward(ig, pool);
  double worst = 0;
  for (size_t i = 0; i < toks.size(); i++) {
    for (size_t r = 0; r * m.V < lc[i].size(); r++) worst = std::max(worst, row_error(&lc[i][r * m.V], &lg[i][r * m.V], m.V));
    if (sc[i]->length() != sg[i]->length()) worst = INFINITY;
  }
  return worst;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, (int32_t)std::min<int64_t>(V, 256) - 1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = d(rng);
  return t;
}

std::string fmt_err(double e, double tol) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "max |dlogprob| %.3g (tol %.3g)", e, tol);
  return buf;
}

void compare_model(const std::string& dir, const std::string& name, double tol, int64_t prompt_len) {
  Pair m{load_model(dir), load_cuda(dir), name, tol, 0};
  m.V = m.cpu->config().vocab_size;
  const int64_t ctx = m.cpu->max_context();
  const int64_t T = ctx > 0 ? std::min(prompt_len, ctx) : prompt_len;
  auto fresh = [&](size_t n, std::vector<std::unique_ptr<SequenceState>>& c, std::vector<std::unique_ptr<SequenceState>>& g) {
    c.clear(), g.clear();
    for (size_t i = 0; i < n; i++) c.push_back(m.cpu->new_state()), g.push_back(m.gpu->new_state());
  };
  std::vector<std::unique_ptr<SequenceState>> sc, sg;

  // prompt
  fresh(1, sc, sg);
  double e = run_both(m, {random_tokens(T, m.V, 1)}, sc, sg, true);
  CHECK_MESSAGE((e <= tol), (name + " prompt of " + std::to_string(T) + " tokens: " + fmt_err(e, tol)));

  // decode: prefill P tokens, then single tokens
  const int64_t P = std::max<int64_t>(2, T / 2), steps = std::min<int64_t>(12, T - P);
  fresh(1, sc, sg);
  e = run_both(m, {random_tokens(P, m.V, 2)}, sc, sg, false);
  const std::vector<int32_t> more = random_tokens(steps, m.V, 3);
  for (int64_t s = 0; s < steps; s++) e = std::max(e, run_both(m, {{more[s]}}, sc, sg, true));
  CHECK_MESSAGE((e <= tol), (name + " prefill " + std::to_string(P) + " + " + std::to_string(steps) + " decode steps: " + fmt_err(e, tol)));

  // batch of mixed lengths: fresh sequences of 1, 9 and 33 tokens and one
  // continued (20 tokens first, then 17 in the batch)
  fresh(4, sc, sg);
  std::vector<std::unique_ptr<SequenceState>> c1, g1;
  c1.push_back(std::move(sc[3])), g1.push_back(std::move(sg[3]));
  e = run_both(m, {random_tokens(std::min<int64_t>(20, T / 2), m.V, 4)}, c1, g1, false);
  sc[3] = std::move(c1[0]), sg[3] = std::move(g1[0]);
  const int64_t cap = ctx > 0 ? ctx - 20 : 64;
  e = std::max(e, run_both(m,
                           {random_tokens(1, m.V, 5), random_tokens(std::min<int64_t>(9, cap), m.V, 6),
                            random_tokens(std::min<int64_t>(33, cap), m.V, 7), random_tokens(std::min<int64_t>(17, cap), m.V, 8)},
                           sc, sg, true));
  // and one more decode step for all of them at once
  e = std::max(e, run_both(m, {{1}, {2}, {3}, {4}}, sc, sg, true));
  CHECK_MESSAGE((e <= tol), (name + " mixed batch: " + fmt_err(e, tol)));
}

// Golden next-token log-probs of a fixture (the PyTorch reference) on the GPU model.
void check_golden(const fs::path& dir, double tol) {
  json::Value golden = json::parse(json::read_file((dir / "golden.json").string(), 16 << 20));
  auto gpu = load_cuda(dir.string());
  const int64_t V = gpu->config().vocab_size;
  ThreadPool pool(1);
  double worst = 0;
  for (const auto& c : golden.find("cases")->items) {
    std::vector<int32_t> toks;
    for (const auto& x : c.find("tokens")->items) toks.push_back((int32_t)x.i64);
    auto st = gpu->new_state();
    std::vector<float> logits(toks.size() * V);
    gpu->forward({ForwardItem{st.get(), toks.data(), (int64_t)toks.size(), true, logits.data()}}, pool);
    const auto& want = c.find("logprobs")->items;
    for (size_t t = 1; t < toks.size() && t < want.size(); t++) {
      const float* row = logits.data() + (t - 1) * V;
      if (want[t].is_null() || std::isnan(row[0])) {
        if (want[t].is_null() != std::isnan(row[0])) worst = INFINITY;
        continue;
      }
      double mx = -INFINITY, s = 0;
      for (int64_t v = 0; v < V; v++) mx = std::max(mx, (double)row[v]);
      for (int64_t v = 0; v < V; v++) s += std::exp((double)row[v] - mx);
      worst = std::max(worst, std::fabs(row[toks[t]] - mx - std::log(s) - want[t].number));
    }
  }
  CHECK_MESSAGE((worst <= tol), ("golden " + dir.filename().string() + ": " + fmt_err(worst, tol)));
}

double logprob_of(const float* row, int64_t V, int32_t tok) {
  double mx = -INFINITY, s = 0;
  for (int64_t v = 0; v < V; v++) mx = std::max(mx, (double)row[v]);
  for (int64_t v = 0; v < V; v++) s += std::exp((double)row[v] - mx);
  return row[tok] - mx - std::log(s);
}

// An adapter fixture (test/fixtures/adapters/<name>: golden.json names its
// base model) on the CUDA backend: the golden log-probs of every case (entry
// t: log p(tokens[t] | soft prompt, tokens[..t-1]); entry 0 is the soft
// prompt's prediction, null for (IA)^3), then a batch that mixes the adapter's
// sequences (soft prompt first, then tokens) with plain ones, against the CPU.
void check_adapter(const fs::path& dir, double tol) {
  json::Value golden = json::parse(json::read_file((dir / "golden.json").string(), 16 << 20));
  const std::string base = "test/fixtures/" + golden.find("base")->text, name = dir.filename().string();
  Pair m{load_model(base), load_cuda(base), "adapter " + name, tol, 0};
  m.V = m.cpu->config().vocab_size;
  const Adapter a = load_adapter(name, dir.string(), m.gpu->config());
  ThreadPool pool(1);
  double worst = 0;
  for (const auto& c : golden.find("cases")->items) {
    std::vector<int32_t> toks;
    for (const auto& x : c.find("tokens")->items) toks.push_back((int32_t)x.i64);
    auto st = m.gpu->new_state();
    std::vector<float> first(m.V, NAN), logits(toks.size() * m.V);
    if (a.prompt_tokens > 0)
      m.gpu->forward({ForwardItem{st.get(), nullptr, a.prompt_tokens, false, first.data(), &a, a.prompt.data()}}, pool);
    m.gpu->forward({ForwardItem{st.get(), toks.data(), (int64_t)toks.size(), true, logits.data(), &a, nullptr}}, pool);
    const auto& want = c.find("logprobs")->items;
    for (size_t t = 0; t < toks.size() && t < want.size(); t++) {
      const float* row = t == 0 ? first.data() : logits.data() + (t - 1) * m.V;
      if (want[t].is_null() || std::isnan(row[0])) {
        if (want[t].is_null() != std::isnan(row[0])) worst = INFINITY;
        continue;
      }
      worst = std::max(worst, std::fabs(logprob_of(row, m.V, toks[t]) - want[t].number));
    }
  }
  CHECK_MESSAGE((worst <= tol), ("golden adapter " + name + ": " + fmt_err(worst, tol)));

  std::vector<std::unique_ptr<SequenceState>> sc, sg;
  for (int i = 0; i < 3; i++) sc.push_back(m.cpu->new_state()), sg.push_back(m.gpu->new_state());
  const std::vector<const Adapter*> with = {&a, nullptr, &a};
  double e = 0;
  if (a.prompt_tokens > 0)  // the soft prompts of sequences 0 and 2, beside a plain prompt
    e = run_both(m, {{}, random_tokens(9, m.V, 11), {}}, sc, sg, true, with);
  e = std::max(e, run_both(m, {random_tokens(13, m.V, 12), random_tokens(5, m.V, 13), random_tokens(1, m.V, 14)}, sc, sg,
                           true, with));
  e = std::max(e, run_both(m, {{7}, {8}, {9}}, sc, sg, true, with));
  CHECK_MESSAGE((e <= tol), ("adapter " + name + " mixed with plain sequences in one batch: " + fmt_err(e, tol)));
}

// ROOST_TEST_FILTER=substring runs only the models whose name contains it.
bool selected(const std::string& name) {
  const char* f = std::getenv("ROOST_TEST_FILTER");
  return !f || name.find(f) != std::string::npos;
}

// Whether device 0 exists (the CUDA backend registered first, as the addon
// does); without one the first call prints the skip line and every TEST_CASE
// returns before it checks anything (exit 0).
bool have_device() {
  static const bool have = [] {
    register_cuda_backend();
    std::string why;
    if (cuda::device_count(&why) == 0) {
      std::printf("no CUDA device: skipped (%s)\n", why.c_str());
      return false;
    }
    std::printf("device: %s\n", cuda::device_name(0).c_str());
    return true;
  }();
  return have;
}

}  // namespace

// Through cpp/device.h and the backend registry, as the addon loads models.
TEST_CASE("load_model_for_device: cpu, cuda, auto and a bad name") {
  if (!have_device()) return;
  auto cpu = load_model_for_device("test/fixtures/gpt2-tiny", "cpu");
  auto gpu = load_model_for_device("test/fixtures/gpt2-tiny", "cuda");
  auto any = load_model_for_device("test/fixtures/gpt2-tiny", "auto");
  CHECK_MESSAGE((cpu && gpu && any && cuda_available() && !cuda_device_name().empty()), ("load_model_for_device cpu / cuda / auto"));
  CHECK_MESSAGE((resolve_device("auto") == "cuda"), ("--device auto picks CUDA when a device is present"));
  bool threw = false;
  try {
    load_model_for_device("test/fixtures/gpt2-tiny", "gpu");
  } catch (const Error& e) {
    threw = e.code() == "E_ARGUMENT";
  }
  CHECK_MESSAGE((threw), ("--device gpu is refused with E_ARGUMENT"));
}

// 8-bit weights have no CUDA kernel yet: --quantize q8_0 is refused at load, naming the op and the way out.
TEST_CASE("q8_0 weights are refused by the CUDA backend at load") {
  if (!have_device()) return;
  std::string msg;
  try {
    load_model_for_device("test/fixtures/gpt2-tiny", "cuda", WeightFormat::Q8_0);
  } catch (const Error& e) {
    msg = e.code() + ": " + e.what();
  }
  CHECK_MESSAGE((msg.find("E_CONFIG: ") == 0 && msg.find("the cuda backend cannot run gemm over Q8_0 weights") != std::string::npos &&
                 msg.find("no Q8_0 kernel on CUDA") != std::string::npos && msg.find("use --device cpu") != std::string::npos),
                ("--quantize q8_0 on cuda: " + msg));
}

TEST_CASE("committed fixtures: against the CPU and their PyTorch goldens") {
  if (!have_device()) return;
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator("test/fixtures"))
    if (e.is_directory() && fs::exists(e.path() / "config.json") && fs::exists(e.path() / "golden.json")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) {
    const bool bf16 = d.filename().string().find("bf16") != std::string::npos;
    const double tol = bf16 ? 1e-1 : 3e-2, gtol = tol;
    if (!selected(d.filename().string())) continue;
    try {
      compare_model(d.string(), d.filename().string(), tol, 64);
      check_golden(d, gtol);
    } catch (const std::exception& e) {
      FAIL_CHECK((d.string() + ": " + e.what()));
    }
  }
}

// Soft prompts and (IA)^3 on their committed base models.
TEST_CASE("adapters: their goldens, and mixed with plain sequences against the CPU") {
  if (!have_device()) return;
  std::vector<fs::path> adapter_dirs;
  for (const auto& e : fs::directory_iterator("test/fixtures/adapters"))
    if (e.is_directory() && fs::exists(e.path() / "golden.json")) adapter_dirs.push_back(e.path());
  std::sort(adapter_dirs.begin(), adapter_dirs.end());
  for (const auto& d : adapter_dirs) {
    if (!selected(d.filename().string())) continue;
    try {
      check_adapter(d, 3e-2);
    } catch (const std::exception& e) {
      FAIL_CHECK((d.string() + ": " + e.what()));
    }
  }
}

TEST_CASE("random checkpoints: the kernel paths the fixtures miss") {
  if (!have_device()) return;
  using roost_test::ModelShape;
  struct R { std::string name; ModelShape s; int64_t T; };
  std::vector<R> rs;
  {
    ModelShape s;  // rotary, D = 16, flash through Br 64
    rs.push_back({"gpt2-rotary-d16", s, 100});
  }
  {
    ModelShape s;  // learned positions, D = 64 (flash Br 128), realistic weight scale
    s.C = 256, s.H = 4, s.L = 2, s.rotary = false, s.n_positions = 512, s.std = 0.02;
    rs.push_back({"gpt2-learned-d64", s, 300});
  }
  {
    ModelShape s;  // D = 128
    s.C = 256, s.H = 2, s.L = 2, s.std = 0.02;
    rs.push_back({"gpt2-rotary-d128", s, 200});
  }
  {
    ModelShape s;  // D = 12: SIMT kernel only
    s.C = 48, s.H = 4;
    rs.push_back({"gpt2-rotary-d12", s, 80});
  }
  {
    ModelShape s;  // BigBird, D = 64, long prompt: block lists per layer/head
    s.C = 128, s.H = 2, s.L = 2, s.std = 0.02;
    s.attention = R"({"kind":"bigbird","block_size":32,"window_blocks":2,"global_blocks":1,"random_blocks":2,"seed":7})";
    rs.push_back({"gpt2-bigbird-d64", s, 400});
  }
  {
    ModelShape s;  // BigBird, D = 16, small blocks
    s.attention = R"({"kind":"bigbird","block_size":4,"window_blocks":1,"global_blocks":1,"random_blocks":1,"seed":3})";
    rs.push_back({"gpt2-bigbird-d16", s, 90});
  }
  {
    ModelShape s;
    s.type = "perceiver_ar", s.L = 3, s.latents = 16;
    rs.push_back({"perceiver-ar-n16", s, 70});
  }
  {
    ModelShape s;
    s.type = "perceiver_ar", s.C = 128, s.H = 2, s.L = 3, s.latents = 40, s.std = 0.02;
    rs.push_back({"perceiver-ar-d64", s, 150});
  }
  {
    ModelShape s;
    s.type = "block_recurrent", s.L = 3, s.block = 8, s.states = 4, s.recurrent = {1};
    rs.push_back({"block-recurrent-w8", s, 70});
  }
  {
    ModelShape s;
    s.type = "block_recurrent", s.C = 128, s.H = 2, s.L = 3, s.block = 32, s.states = 20, s.recurrent = {0, 2}, s.std = 0.02;
    rs.push_back({"block-recurrent-d64", s, 150});
  }
  const std::string root = "/tmp/roost-test-cuda-models";
  for (const R& r : rs) {
    if (!selected(r.name)) continue;
    try {
      const std::string dir = roost_test::write_random_model(root + "/" + r.name, r.s);
      compare_model(dir, r.name, 3e-2, r.T);
    } catch (const std::exception& e) {
      FAIL_CHECK((r.name + ": " + e.what()));
    }
  }
}
