// The sampler's stages against the PyTorch reference (tools/reference/sampling.py,
// golden test/fixtures/sampling.json): each penalty, min_p, min_tokens and
// their combinations on fixed logits, the whole distribution to 1e-6; draws
// only from that distribution's support; and through the engine, greedy
// continuations of gpt2-tiny with penalties token for token (the prompt
// counted once, fed-back samples not twice), alone and batched beside
// sequences without penalties, min_tokens holding eos back, and refusals.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "doctest.h"
#include "engine.h"
#include "fmt.h"
#include "json.h"

using namespace roost;

namespace {

json::Value golden() { return json::parse(json::read_file("test/fixtures/sampling.json", 1 << 20)); }

std::vector<int32_t> ints(const json::Value& a) {
  std::vector<int32_t> v;
  for (const auto& x : a.items) v.push_back((int32_t)x.i64);
  return v;
}

// A case's parameters (the reference's names; absent = neutral).
SamplingParams params_of(const json::Value& p) {
  SamplingParams s;
  auto num = [&](const char* k, double d) { const json::Value* v = p.find(k); return v ? v->number : d; };
  s.temperature = num("temperature", 1.0);
  s.top_k = (int64_t)num("top_k", 0);
  s.top_p = num("top_p", 1.0);
  s.min_p = num("min_p", 0.0);
  s.presence_penalty = num("presence_penalty", 0.0);
  s.frequency_penalty = num("frequency_penalty", 0.0);
  s.repetition_penalty = num("repetition_penalty", 1.0);
  s.min_tokens = (int64_t)num("min_tokens", 0);
  if (const json::Value* ids = p.find("stop_token_ids")) s.stop_token_ids = ints(*ids);
  if (const json::Value* bias = p.find("logit_bias"))
    for (const auto& [tok, b] : bias->members) s.logit_bias.emplace_back(std::stoi(tok), (float)b.number);
  return s;
}

}  // namespace

TEST_CASE("each stage's distribution equals the reference's on fixed logits") {
  json::Value g = golden();
  const auto& cases = g.find("distributions")->items;
  REQUIRE(cases.size() >= 10);
  for (const auto& c : cases) {
    const std::string name = c.find("name")->text;
    std::vector<float> logits;
    for (const auto& x : c.find("logits")->items) logits.push_back((float)x.number);
    const int64_t V = (int64_t)logits.size();
    Sampler s(params_of(*c.find("params")));
    std::vector<int32_t> prompt = ints(*c.find("prompt"));
    s.observe_input(prompt.data(), (int64_t)prompt.size());
    for (int32_t t : ints(*c.find("output"))) s.record_output(t);
    std::vector<double> got = s.distribution(logits.data(), V);
    const auto& want = c.find("expected")->items;
    REQUIRE(got.size() == want.size());
    double worst = 0;
    bool same_support = true;
    for (int64_t j = 0; j < V; j++) {
      worst = std::max(worst, std::fabs(got[j] - want[j].number));
      same_support &= (got[j] > 0) == (want[j].number > 0);
    }
    CHECK_MESSAGE(worst <= 1e-6, fmt("%s: max |dp| %.3g", name.c_str(), worst));
    CHECK_MESSAGE(same_support, fmt("%s: the kept tokens differ", name.c_str()));

    // A draw comes from that support and is recorded as output; where the
    // output does not change the distribution, 200 draws all do.
    const SamplingParams& sp = s.params();
    const bool stateless = sp.min_tokens == 0 && sp.presence_penalty == 0 && sp.frequency_penalty == 0 && sp.repetition_penalty == 1;
    const int64_t before = s.generated();
    for (int i = 0; i < (stateless ? 200 : 1); i++) {
      const int32_t t = s.sample(logits.data(), V).token;
      if (!(want[t].number > 0)) {
        FAIL_CHECK(fmt("%s: drew token %d outside the support", name.c_str(), t));
        break;
      }
    }
    CHECK(s.generated() == before + (stateless ? 200 : 1));
  }
}

TEST_CASE("penalties leave the reported log-probs raw") {
  std::vector<float> logits = {2.f, 1.f, 0.f, -1.f};
  SamplingParams p;
  p.temperature = 0;
  p.presence_penalty = 2;
  p.repetition_penalty = 2;
  p.n_logprobs = 2;
  Sampler s(p);
  s.record_output(0);
  SampledToken t = s.sample(logits.data(), 4);
  CHECK(t.token == 1);  // 2/2 - 2 = -1 < 1
  const double z = std::log(std::exp(2.0) + std::exp(1.0) + std::exp(0.0) + std::exp(-1.0));
  CHECK(t.logprob == doctest::Approx(1.0 - z).epsilon(1e-6));
  REQUIRE(t.top.size() == 2);
  CHECK(t.top[0].token == 0);
  CHECK(t.top[0].logprob == doctest::Approx(2.0 - z).epsilon(1e-6));
}

TEST_CASE("engine: greedy continuations with penalties match the reference, alone and batched") {
  json::Value g = golden();
  const json::Value& greedy = *g.find("greedy");
  Engine engine("test/fixtures/" + greedy.find("model")->text, EngineOptions{2, 512});
  const auto& cases = greedy.find("cases")->items;
  const int64_t n = (int64_t)cases[0].find("max_tokens")->number;

  // Every case in one batch, plus a penalty-free twin of each beside it: each
  // sequence carries its own penalties and history.
  std::vector<int64_t> seqs, plain;
  std::vector<StepRequest> reqs;
  for (const auto& c : cases) {
    SamplingParams p = params_of(*c.find("params"));
    p.temperature = 0;
    SamplingParams q;
    q.temperature = 0;
    seqs.push_back(engine.create_sequence(p));
    plain.push_back(engine.create_sequence(q));
    reqs.push_back(StepRequest{seqs.back(), ints(*c.find("prompt")), true, false});
    reqs.push_back(StepRequest{plain.back(), ints(*c.find("prompt")), true, false});
  }
  std::vector<std::vector<int32_t>> outs(reqs.size());
  for (int64_t step = 0; step < n; step++) {
    auto res = engine.step(reqs);
    for (size_t i = 0; i < res.size(); i++) {
      outs[i].push_back(res[i].token.token);
      reqs[i].tokens = {res[i].token.token};
    }
  }
  const std::vector<int32_t> unpenalized = ints(*cases[0].find("ids"));
  for (size_t i = 0; i < cases.size(); i++) {
    const std::string name = cases[i].find("name")->text;
    CHECK_MESSAGE(outs[2 * i] == ints(*cases[i].find("ids")), fmt("%s (batched)", name.c_str()));
    CHECK_MESSAGE(outs[2 * i + 1] == unpenalized, fmt("penalty-free twin of %s", name.c_str()));
    if (i > 0) CHECK_MESSAGE(outs[2 * i] != unpenalized, fmt("%s changes the output", name.c_str()));
    engine.free_sequence(seqs[i]);
    engine.free_sequence(plain[i]);
  }

  // One case alone, its prompt in two chunks (the prompt is observed as it arrives).
  const json::Value& rep = cases.back();
  SamplingParams p = params_of(*rep.find("params"));
  p.temperature = 0;
  int64_t seq = engine.create_sequence(p);
  std::vector<int32_t> prompt = ints(*rep.find("prompt"));
  engine.step({StepRequest{seq, std::vector<int32_t>(prompt.begin(), prompt.begin() + 3), false, false}});
  std::vector<int32_t> out;
  StepRequest r{seq, std::vector<int32_t>(prompt.begin() + 3, prompt.end()), true, false};
  for (int64_t step = 0; step < n; step++) {
    out.push_back(engine.step({r})[0].token.token);
    r.tokens = {out.back()};
  }
  CHECK(out == ints(*rep.find("ids")));
  engine.free_sequence(seq);
}

TEST_CASE("engine: min_tokens holds the stop ids back, then they come") {
  Engine engine("test/fixtures/gpt2-tiny", EngineOptions{1, 512});
  SamplingParams p;
  p.temperature = 0;
  p.logit_bias = {{511, 100.f}};  // eos is the argmax everywhere
  p.min_tokens = 3;
  p.stop_token_ids = {511};
  int64_t seq = engine.create_sequence(p);
  StepRequest r{seq, {72, 101, 108}, true, false};
  std::vector<int32_t> out;
  for (int i = 0; i < 5; i++) {
    out.push_back(engine.step({r})[0].token.token);
    r.tokens = {out.back()};
  }
  for (int i = 0; i < 3; i++) CHECK(out[i] != 511);
  CHECK(out[3] == 511);
  CHECK(out[4] == 511);
}

TEST_CASE("engine: out-of-range sampling fields are refused") {
  Engine engine("test/fixtures/gpt2-tiny", EngineOptions{1, 512});
  auto refused = [&](SamplingParams p, const char* what) {
    try {
      engine.create_sequence(p);
      FAIL_CHECK(fmt("%s was accepted", what));
    } catch (const Error& e) {
      CHECK(e.code() == "E_ARGUMENT");
      CHECK_MESSAGE(std::string(e.what()).find(what) != std::string::npos, e.what());
    }
  };
  SamplingParams p;
  p.min_p = 1.5;
  refused(p, "min_p");
  p = {};
  p.repetition_penalty = 0;
  refused(p, "repetition_penalty");
  p = {};
  p.presence_penalty = NAN;
  refused(p, "presence_penalty");
  p = {};
  p.frequency_penalty = INFINITY;
  refused(p, "frequency_penalty");
  p = {};
  p.min_tokens = -1;
  refused(p, "min_tokens");
  p = {};
  p.stop_token_ids = {512};
  refused(p, "stop token 512");
  CHECK(engine.stats().sequences == 0);
}

TEST_CASE("greedy: the first index of the maximum, NaNs passed over, at every vocabulary length") {
  // Against the one-pass scan it replaced (the first i with x[i] > every earlier
  // candidate), on vocabularies around the 16-lane split, the maximum at the front,
  // in the middle, in the ragged tail, tied, beside NaNs and infinities.
  auto scan = [](const std::vector<float>& x) {
    int32_t best = 0;
    for (size_t i = 1; i < x.size(); i++)
      if (x[i] > x[best]) best = (int32_t)i;
    return best;
  };
  SamplingParams greedy;
  greedy.temperature = 0.0;
  uint32_t state = 12345;
  auto next = [&]() { return (state = state * 1664525u + 1013904223u) >> 8; };
  int cases = 0;
  for (int64_t V : {1, 2, 15, 16, 17, 31, 33, 50257}) {
    for (int variant = 0; variant < 8; variant++) {
      std::vector<float> x(V);
      for (auto& v : x) v = (float)(next() % 1000) / 100.f - 5.f;
      const int64_t a = next() % V, b = next() % V;
      switch (variant) {
        case 1: x[a] = 50.f; x[b] = 50.f; break;                         // a tie: the lower index wins
        case 2: x[V - 1] = 60.f; break;                                  // in the tail
        case 3: x[0] = 70.f; break;                                      // at the front
        case 4: x[a] = NAN; x[b] = 80.f; break;                          // NaNs are passed over
        case 5: x[0] = NAN; break;                                       // ... except at index 0, never beaten
        case 6: for (auto& v : x) v = -INFINITY; break;                  // all -inf: index 0
        case 7: x[a] = INFINITY; x[b] = INFINITY; x[0] = -0.f; break;    // infinities tie too
        default: break;
      }
      Sampler s(greedy);
      const SampledToken plain = s.sample(x.data(), V);
      const int32_t got = plain.token;
      CHECK_MESSAGE(got == scan(x), fmt("V=%lld variant %d: token %d, the scan gives %d", (long long)V, variant, got, scan(x)));
      // Asking for alternatives takes the path that writes every log-prob: the same
      // token and, bit for bit, the same log-prob as plain greedy's log_softmax_at.
      SamplingParams with_top = greedy;
      with_top.n_logprobs = 1;
      Sampler t(with_top);
      const SampledToken full = t.sample(x.data(), V);
      CHECK(full.token == got);
      CHECK_MESSAGE(std::memcmp(&full.logprob, &plain.logprob, sizeof(float)) == 0,
                    fmt("V=%lld variant %d: log-prob %a, with alternatives %a", (long long)V, variant, plain.logprob, full.logprob));
      cases++;
    }
  }
  CHECK(cases == 64);
}
