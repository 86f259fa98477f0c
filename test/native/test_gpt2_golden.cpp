// End-to-end engine check without Node: every test/fixtures/gpt2-* checkpoint
// against the golden log-probs and greedy continuations written by the PyTorch
// reference (tools/reference/make_fixtures.py), on every kernel ISA this CPU
// has; plus KV-cache decode == full forward and batched == alone.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "engine.h"
#include "json.h"
#include "ops/ops.h"

using namespace roost;
namespace fs = std::filesystem;

static int passed = 0, failed = 0;
static void check(bool ok, const std::string& what) {
  if (ok) passed++;
  else { failed++; std::printf("FAIL %s\n", what.c_str()); }
}

static std::vector<int32_t> ints(const json::Value& a) {
  std::vector<int32_t> v;
  for (const auto& x : a.items) v.push_back((int32_t)x.i64);
  return v;
}

static void check_fixture(const fs::path& dir, const std::string& tag) {
  json::Value golden = json::parse(json::read_file((dir / "golden.json").string(), 16 << 20));
  const double tol = golden.find("logprob_tolerance")->number;
  Engine engine(dir.string(), EngineOptions{2, 512});
  const std::string name = tag + " " + dir.filename().string();

  for (const auto& c : golden.find("cases")->items) {
    std::vector<int32_t> tokens = ints(*c.find("tokens"));
    SamplingParams greedy;
    greedy.temperature = 0;
    int64_t seq = engine.create_sequence(greedy);
    auto r = engine.step({StepRequest{seq, tokens, false, true}});
    double worst = 0;
    const auto& want = c.find("logprobs")->items;
    for (size_t t = 1; t < tokens.size(); t++) worst = std::max(worst, std::fabs(r[0].prompt_logprobs[t] - want[t].number));
    check(std::isnan(r[0].prompt_logprobs[0]) && worst <= tol,
          name + " case " + c.find("name")->text + ": max |dlogprob| " + std::to_string(worst));
    engine.free_sequence(seq);

    // Same tokens one at a time through the KV cache.
    if (tokens.size() > 1 && tokens.size() <= 64) {
      int64_t s2 = engine.create_sequence(greedy);
      double worst2 = 0;
      for (size_t t = 0; t < tokens.size(); t++) {
        auto rr = engine.step({StepRequest{s2, {tokens[t]}, false, true}});
        if (t > 0) worst2 = std::max(worst2, std::fabs(rr[0].prompt_logprobs[0] - want[t].number));
      }
      check(worst2 <= tol, name + " case " + c.find("name")->text + " token-by-token: " + std::to_string(worst2));
      engine.free_sequence(s2);
    }
  }

  // Greedy continuations, all prompts in one batch (mixed lengths) and each alone.
  const auto& greedy_cases = golden.find("greedy")->items;
  std::vector<int64_t> seqs;
  std::vector<std::vector<int32_t>> outs(greedy_cases.size());
  std::vector<StepRequest> reqs;
  SamplingParams g;
  g.temperature = 0;
  for (const auto& c : greedy_cases) {
    seqs.push_back(engine.create_sequence(g));
    reqs.push_back(StepRequest{seqs.back(), ints(*c.find("prompt_tokens")), true, false});
  }
  for (size_t step = 0; step < 16; step++) {
    auto res = engine.step(reqs);
    for (size_t i = 0; i < res.size(); i++) {
      outs[i].push_back(res[i].token.token);
      reqs[i].tokens = {res[i].token.token};
    }
  }
  for (size_t i = 0; i < greedy_cases.size(); i++) {
    std::vector<int32_t> want = ints(*greedy_cases[i].find("tokens"));
    outs[i].resize(want.size());
    check(outs[i] == want, name + " greedy (batched) case " + std::to_string(i));
    engine.free_sequence(seqs[i]);
  }
  check(engine.stats().sequences == 0, name + " every sequence freed");
}

int main() {
  fs::path root = "test/fixtures";
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && fs::exists(e.path() / "golden.json") && fs::exists(e.path() / "config.json")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  std::vector<Isa> isas = {Isa::Reference};
  if (detected_isa() != Isa::Reference) isas.push_back(Isa::Avx2);
  if (detected_isa() == Isa::Avx512) isas.push_back(Isa::Avx512);
  for (Isa isa : isas) {
    set_isa(isa);
    for (const auto& d : dirs) {
      try {
        check_fixture(d, isa_name(isa));
      } catch (const std::exception& e) {
        check(false, std::string(isa_name(isa)) + " " + d.string() + ": " + e.what());
      }
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
