// T5 (docs/t5.md) against tools/reference/t5.py: every test/fixtures/t5-*
// checkpoint's t5-golden.json (make_t5_fixtures.py: v1.0 and v1.1 shapes,
// tied and untied heads) through the engine: decoder log-probs of a target
// given an input (fed whole, in chunks over several steps, and cut into
// passes), greedy decoding token for token (batched and alone), and mixed
// batches (sequences at different stages, one cancelled) giving the tokens
// each gives alone, the cancelled one's encoder K/V freed (EngineStats).
// Also: the encoder in pieces (max_step_tokens rows) against one pass, and
// the shipped models/t5-kjv against its golden (test/fixtures/t5-kjv-golden.json).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "config.h"
#include "doctest.h"
#include "engine.h"
#include "json.h"
#include "ops/ops.h"

using namespace roost;
namespace fs = std::filesystem;

namespace {

std::vector<int32_t> ints(const json::Value& a) {
  std::vector<int32_t> v;
  for (const auto& x : a.items) v.push_back((int32_t)x.i64);
  return v;
}

std::vector<fs::path> t5_fixtures() {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator("test/fixtures"))
    if (fs::exists(e.path() / "t5-golden.json")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

json::Value golden_of(const fs::path& dir) {
  return json::parse(json::read_file((dir / "t5-golden.json").string(), 16 << 20));
}

EngineOptions options(int64_t max_step_tokens) {
  EngineOptions o;
  o.threads = 2;
  o.max_step_tokens = max_step_tokens;
  return o;
}

SamplingParams greedy() {
  SamplingParams g;
  g.temperature = 0;
  return g;
}

// log p(target t | input, target < t): the input ends with a sampling request
// (the encoder runs, its sample is dropped), then the target as prompt tokens
// with log-probs. chunk > 0 feeds the input in requests of that many tokens.
std::vector<float> score(Engine& e, const std::vector<int32_t>& input, const std::vector<int32_t>& target, size_t chunk) {
  const int64_t seq = e.create_sequence(greedy());
  size_t at = 0;
  if (chunk > 0)
    for (; at + chunk < input.size(); at += chunk)
      e.step({StepRequest{seq, std::vector<int32_t>(input.begin() + at, input.begin() + at + chunk), false, false}});
  e.step({StepRequest{seq, std::vector<int32_t>(input.begin() + at, input.end()), true, false}});
  auto r = e.step({StepRequest{seq, target, false, true}});
  e.free_sequence(seq);
  return r[0].prompt_logprobs;
}

double worst_error(const std::vector<float>& got, const std::vector<json::Value>& want) {
  double worst = 0;
  for (size_t t = 0; t < want.size(); t++)
    worst = std::isnan(got[t]) ? INFINITY : std::max(worst, std::fabs(got[t] - want[t].number));
  return worst;
}

// A greedy sequence from `input` for n tokens, alone.
std::vector<int32_t> decode_alone(Engine& e, const std::vector<int32_t>& input, size_t n) {
  const int64_t seq = e.create_sequence(greedy());
  std::vector<int32_t> out;
  std::vector<int32_t> feed = input;
  for (size_t i = 0; i < n; i++) {
    out.push_back(e.step({StepRequest{seq, feed, true, false}})[0].token.token);
    feed = {out.back()};
  }
  e.free_sequence(seq);
  return out;
}

}  // namespace

TEST_CASE("t5 fixtures: decoder log-probs of a target given an input match the reference to 1e-4, on every ISA") {
  const auto dirs = t5_fixtures();
  REQUIRE(dirs.size() >= 4);
  double overall = 0;
  size_t n_cases = 0;
  std::vector<Isa> isas = {Isa::Reference};
  if (detected_isa() != Isa::Reference) isas.push_back(Isa::Avx2);
  if (detected_isa() == Isa::Avx512) isas.push_back(Isa::Avx512);
  for (Isa isa : isas)
  for (const auto& dir : dirs) {
    set_isa(isa);
    const json::Value golden = golden_of(dir);
    Engine whole(dir.string(), options(512));
    Engine passes(dir.string(), options(5));  // long inputs and targets cut into passes of 5 tokens
    for (const auto& c : golden.find("score")->items) {
      const std::vector<int32_t> input = ints(*c.find("input")), target = ints(*c.find("target"));
      const auto& want = c.find("logprobs")->items;
      const std::string name = std::string(isa_name(isa)) + " " + dir.filename().string() + " " + c.find("name")->text;
      const double w1 = worst_error(score(whole, input, target, 0), want);
      const double w2 = worst_error(score(whole, input, target, 4), want);  // input over several steps
      const double w3 = worst_error(score(passes, input, target, 0), want);
      CHECK_MESSAGE(w1 <= 1e-4, (name + " whole: max |dlogprob| " + std::to_string(w1)));
      CHECK_MESSAGE(w2 <= 1e-4, (name + " input in chunks of 4: " + std::to_string(w2)));
      CHECK_MESSAGE(w3 <= 1e-4, (name + " passes of 5 tokens: " + std::to_string(w3)));
      overall = std::max({overall, w1, w2, w3});
      n_cases++;
    }
    CHECK(whole.stats().sequences == 0);
    CHECK(whole.stats().state_bytes == 0);
  }
  set_isa(detected_isa());
  MESSAGE((std::to_string(n_cases) + " cases x 3 feeds (every ISA), max |dlogprob| against the reference " + std::to_string(overall)));
}

TEST_CASE("t5 fixtures: greedy decoding matches the reference token for token, batched and alone") {
  for (const auto& dir : t5_fixtures()) {
    const json::Value golden = golden_of(dir);
    Engine e(dir.string(), options(512));
    const auto& cases = golden.find("greedy")->items;
    std::vector<StepRequest> reqs;
    std::vector<std::vector<int32_t>> outs(cases.size());
    for (const auto& c : cases) reqs.push_back(StepRequest{e.create_sequence(greedy()), ints(*c.find("input")), true, false});
    const size_t n = (size_t)cases[0].find("n")->i64;
    for (size_t step = 0; step < n; step++) {
      auto res = e.step(reqs);
      for (size_t i = 0; i < res.size(); i++) {
        outs[i].push_back(res[i].token.token);
        reqs[i].tokens = {res[i].token.token};
      }
    }
    for (size_t i = 0; i < cases.size(); i++) {
      const std::vector<int32_t> want = ints(*cases[i].find("tokens"));
      const std::string name = dir.filename().string() + " " + cases[i].find("name")->text;
      CHECK_MESSAGE(outs[i] == want, (name + " greedy, batched"));
      CHECK_MESSAGE(decode_alone(e, ints(*cases[i].find("input")), n) == want, (name + " greedy, alone"));
      e.free_sequence(reqs[i].seq);
    }
    CHECK(e.stats().state_bytes == 0);
  }
}

// Deterministic token ids in [lo, hi) (a 64-bit LCG): long inputs no fixture holds.
std::vector<int32_t> lcg_tokens(size_t n, int32_t lo, int32_t hi, uint64_t seed) {
  std::vector<int32_t> v;
  for (size_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    v.push_back(lo + (int32_t)((seed >> 33) % (uint64_t)(hi - lo)));
  }
  return v;
}

TEST_CASE("t5: a long input's encoder runs in pieces of max_step_tokens rows and gives the one-pass log-probs (1e-5)") {
  for (const char* name : {"t5-v1-untied", "t5-v11-untied"}) {
    const fs::path dir = fs::path("test/fixtures") / name;
    const json::Value cfg = json::parse(json::read_file((dir / "config.json").string(), 1 << 20));
    const int32_t V = (int32_t)cfg.find("vocab_size")->i64;
    const std::vector<int32_t> a = lcg_tokens(300, 3, V - 8, 1), b = lcg_tokens(170, 3, V - 8, 2);
    const std::vector<int32_t> ta = lcg_tokens(12, 3, V - 8, 3), tb = lcg_tokens(9, 3, V - 8, 4);
    Engine one(dir.string(), options(4096));  // the whole input in one encoder piece
    const std::vector<float> wa = score(one, a, ta, 0), wb = score(one, b, tb, 0);
    for (int64_t rows : {7, 64, 299}) {
      Engine pieces(dir.string(), options(rows));
      const std::string tag = std::string(name) + " pieces of " + std::to_string(rows);
      double worst = 0;
      const std::vector<float> ga = score(pieces, a, ta, 0);
      for (size_t t = 0; t < ta.size(); t++) worst = std::isnan(ga[t]) ? INFINITY : std::max(worst, (double)std::fabs(ga[t] - wa[t]));
      CHECK_MESSAGE(worst <= 1e-5, (tag + ": max |dlogprob| " + std::to_string(worst)));
      // Two inputs that end in the same pass: one encoder over both, a piece may hold rows of each.
      const int64_t s1 = pieces.create_sequence(greedy()), s2 = pieces.create_sequence(greedy());
      pieces.step({StepRequest{s1, std::vector<int32_t>(a.begin(), a.end() - 1), false, false},
                   StepRequest{s2, std::vector<int32_t>(b.begin(), b.end() - 1), false, false}});
      pieces.step({StepRequest{s1, {a.back()}, true, false}, StepRequest{s2, {b.back()}, true, false}});
      auto r = pieces.step({StepRequest{s1, ta, false, true}, StepRequest{s2, tb, false, true}});
      double worst2 = 0;
      for (size_t t = 0; t < ta.size(); t++) worst2 = std::max(worst2, (double)std::fabs(r[0].prompt_logprobs[t] - wa[t]));
      for (size_t t = 0; t < tb.size(); t++) worst2 = std::max(worst2, (double)std::fabs(r[1].prompt_logprobs[t] - wb[t]));
      CHECK_MESSAGE(worst2 <= 1e-5, (tag + ", two inputs in one encoder pass: max |dlogprob| " + std::to_string(worst2)));
      pieces.free_sequence(s1);
      pieces.free_sequence(s2);
      CHECK(pieces.stats().state_bytes == 0);
    }
  }
}

TEST_CASE("t5: mixed batches (stages differ, one cancelled) give each sequence's tokens alone; cancel frees its encoder K/V") {
  const fs::path dir = "test/fixtures/t5-v11-untied";
  const json::Value golden = golden_of(dir);
  const auto& cases = golden.find("greedy")->items;
  const json::Value cfg = json::parse(json::read_file((dir / "config.json").string(), 1 << 20));
  const int64_t W = cfg.find("num_heads")->i64 * cfg.find("d_kv")->i64, Ld = cfg.find("num_decoder_layers")->i64;
  Engine e(dir.string(), options(16));  // a 45-token input takes several passes of 16
  struct Seq {
    int64_t id = -1;
    std::vector<int32_t> input, out, want;
    size_t fed = 0;      // input tokens fed so far (in chunks of 6 per step)
    int start = 0;       // the step it joins
    int cancel_at = -1;  // the step it is cancelled at (-1: never)
  };
  std::vector<Seq> seqs(4);
  const char* names[4] = {"random-45", "text", "spans", "random-7"};
  for (size_t i = 0; i < 4; i++)
    for (const auto& c : cases)
      if (c.find("name")->text == names[i]) {
        seqs[i].input = ints(*c.find("input"));
        seqs[i].want = ints(*c.find("tokens"));
      }
  seqs[1].start = 2;
  seqs[2].start = 1;
  seqs[2].cancel_at = 9;  // mid-decode
  seqs[3].start = 4;
  for (int step = 0; step < 40; step++) {
    std::vector<StepRequest> reqs;
    std::vector<Seq*> who;
    for (Seq& s : seqs) {
      if (step < s.start || s.out.size() >= 12 || (s.cancel_at >= 0 && step > s.cancel_at)) continue;
      if (s.id < 0) s.id = e.create_sequence(greedy());
      if (step == s.cancel_at) {
        const size_t before = e.stats().state_bytes;
        const size_t cross = (size_t)Ld * 2 * s.input.size() * W * sizeof(float);  // the encoder output's K/V
        e.free_sequence(s.id);
        CHECK_MESSAGE(before - e.stats().state_bytes >= cross,
                      ("cancel frees the encoder K/V: " + std::to_string(before) + " -> " + std::to_string(e.stats().state_bytes)));
        continue;
      }
      if (s.fed < s.input.size()) {  // input in chunks of 6; the last chunk samples
        const size_t n = std::min<size_t>(6, s.input.size() - s.fed);
        std::vector<int32_t> chunk(s.input.begin() + s.fed, s.input.begin() + s.fed + n);
        s.fed += n;
        reqs.push_back(StepRequest{s.id, chunk, s.fed == s.input.size(), false});
      } else {
        reqs.push_back(StepRequest{s.id, {s.out.back()}, true, false});
      }
      who.push_back(&s);
    }
    if (reqs.empty()) break;
    auto res = e.step(reqs);
    for (size_t i = 0; i < res.size(); i++)
      if (res[i].sampled) who[i]->out.push_back(res[i].token.token);
  }
  for (size_t i = 0; i < 4; i++) {
    if (seqs[i].cancel_at >= 0) continue;
    std::vector<int32_t> want(seqs[i].want.begin(), seqs[i].want.begin() + 12);
    CHECK_MESSAGE(seqs[i].out == want, ("mixed batch: sequence " + std::to_string(i) + " as alone"));
    e.free_sequence(seqs[i].id);
  }
  CHECK(e.stats().sequences == 0);
  CHECK(e.stats().state_bytes == 0);
}

TEST_CASE("t5 config refusals name the field") {
  auto refusal = [](const std::string& json) {
    try {
      parse_config(json, "t5/config.json", "t5");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string base = R"({"model_type":"t5","vocab_size":50,"d_model":8,"num_heads":2,"d_kv":4,"d_ff":16,"num_layers":1)";
  CHECK(refusal(base + "}").empty());
  CHECK(refusal(base + R"(,"feed_forward_proj":"gated-silu"})").find("feed_forward_proj") != std::string::npos);
  CHECK(refusal(base + R"(,"is_encoder_decoder":false})").find("is_encoder_decoder") != std::string::npos);
  CHECK(refusal(R"({"model_type":"t5","vocab_size":50,"d_model":8,"num_heads":2,"d_ff":16,"num_layers":1})").find("d_kv") !=
        std::string::npos);
}

TEST_CASE("t5: the shipped models/t5-kjv (F16) gives tools/reference/t5.py's log-probs to 1e-4 (make_t5_kjv_golden.py)") {
  const json::Value golden = json::parse(json::read_file("test/fixtures/t5-kjv-golden.json", 1 << 20));
  Engine e(golden.find("model")->text, options(512));
  double worst = 0;
  size_t tokens = 0;
  for (const auto& c : golden.find("cases")->items) {
    const std::vector<int32_t> input = ints(*c.find("input")), target = ints(*c.find("target"));
    const double w = worst_error(score(e, input, target, 0), c.find("logprobs")->items);
    CHECK_MESSAGE(w <= 1e-4, (c.find("name")->text + ": max |dlogprob| " + std::to_string(w)));
    worst = std::max(worst, w);
    tokens += target.size();
  }
  MESSAGE(("models/t5-kjv: " + std::to_string(tokens) + " target tokens, max |dlogprob| " + std::to_string(worst)));
}
