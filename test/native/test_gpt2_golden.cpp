// End-to-end engine check without Node: every test/fixtures/* checkpoint with a
// golden.json (gpt2-*, bigbird-*, perceiver-*, recurrent-*) against the golden
// log-probs, decode steps and greedy continuations written by the PyTorch
// reference (tools/reference/make_fixtures.py), on every kernel ISA this CPU
// has; plus KV-cache decode == full forward (where the case says it must:
// `decode_matches_forward`) and batched == alone. A null golden log-prob (no
// logits there: perceiver_ar before its latents) requires NaN from the engine.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "doctest.h"
#include "engine.h"
#include "json.h"
#include "ops/ops.h"

using namespace roost;
namespace fs = std::filesystem;

static std::vector<int32_t> ints(const json::Value& a) {
  std::vector<int32_t> v;
  for (const auto& x : a.items) v.push_back((int32_t)x.i64);
  return v;
}

// Largest |got - want| over entries; a NaN `got` against a number counts as
// infinitely wrong. A null `want` needs a NaN `got` when null_needs_nan (the
// forward has no logits there), else is skipped (decode has numbers the
// exact forward lacks: perceiver_ar).
static double logprob_error(const std::vector<float>& got, const std::vector<json::Value>& want, size_t from,
                            bool null_needs_nan = true) {
  double worst = 0;
  for (size_t t = from; t < want.size(); t++) {
    const bool want_null = want[t].is_null(), got_nan = std::isnan(got[t]);
    if (want_null && !null_needs_nan) continue;
    if (want_null || got_nan) {
      if (want_null != got_nan) worst = INFINITY;
      continue;
    }
    worst = std::max(worst, std::fabs(got[t] - want[t].number));
  }
  return worst;
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
    const auto& want = c.find("logprobs")->items;
    const double worst = logprob_error(r[0].prompt_logprobs, want, 1);
    CHECK_MESSAGE((std::isnan(r[0].prompt_logprobs[0]) && worst <= tol),
                  (name + " case " + c.find("name")->text + ": max |dlogprob| " + std::to_string(worst)));
    engine.free_sequence(seq);

    // Same tokens one at a time through the KV cache, where the serving decode
    // reproduces the forward (not perceiver_ar past its latents).
    const json::Value* dmf = c.find("decode_matches_forward");
    if (tokens.size() > 1 && tokens.size() <= 64 && (!dmf || dmf->boolean)) {
      int64_t s2 = engine.create_sequence(greedy);
      std::vector<float> got(tokens.size());
      for (size_t t = 0; t < tokens.size(); t++) {
        auto rr = engine.step({StepRequest{s2, {tokens[t]}, false, true}});
        got[t] = rr[0].prompt_logprobs[0];
      }
      const double worst2 = logprob_error(got, want, 1, /*null_needs_nan=*/false);
      CHECK_MESSAGE(worst2 <= tol, (name + " case " + c.find("name")->text + " token-by-token: " + std::to_string(worst2)));
      engine.free_sequence(s2);
    }
  }

  // Decode goldens: prefill the prompt, then teacher-forced decode steps;
  // logprobs[j] = log p(tokens[j] | prompt, tokens[..j]) as the serving decode sees it.
  if (const json::Value* decode = golden.find("decode")) {
    for (const auto& c : decode->items) {
      std::vector<int32_t> tokens = ints(*c.find("tokens"));
      SamplingParams greedy;
      greedy.temperature = 0;
      int64_t seq = engine.create_sequence(greedy);
      engine.step({StepRequest{seq, ints(*c.find("prompt_tokens")), false, false}});
      std::vector<float> got(tokens.size());
      for (size_t j = 0; j < tokens.size(); j++)
        got[j] = engine.step({StepRequest{seq, {tokens[j]}, false, true}})[0].prompt_logprobs[0];
      const double worst = logprob_error(got, c.find("logprobs")->items, 0);
      CHECK_MESSAGE(worst <= tol, (name + " decode " + c.find("name")->text + ": max |dlogprob| " + std::to_string(worst)));
      engine.free_sequence(seq);
    }
  }

  // Greedy continuations, all prompts in one batch (mixed lengths) and each alone.
  // (The serving procedure: prefill, then one cached decode step per token.)
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
    CHECK_MESSAGE(outs[i] == want, (name + " greedy (batched) case " + std::to_string(i)));
    engine.free_sequence(seqs[i]);
  }
  CHECK_MESSAGE(engine.stats().sequences == 0, (name + " every sequence freed"));
}

TEST_CASE("every fixture with a golden.json matches it, on every ISA") {
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
        FAIL_CHECK((std::string(isa_name(isa)) + " " + d.string() + ": " + e.what()));
      }
    }
  }
  set_isa(detected_isa());
}
