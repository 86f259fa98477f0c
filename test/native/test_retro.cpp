// retro (docs/retro.md) against tools/reference/retro.py: the log-probs of
// every golden case of test/fixtures/retro/* with its fixed neighbours, run as
// one prefill, token by token, in uneven passes and with two sequences in one
// batch; and the refusals of bad neighbours.
#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "doctest.h"
#include "json.h"
#include "models/model.h"
#include "threadpool.h"

using namespace roost;

namespace {

const char* kFixtures[] = {"every-layer", "period2", "period3", "chunk8"};  // test/fixtures/retro/

struct Case {
  std::string name;
  std::vector<int32_t> tokens;
  std::vector<std::vector<int32_t>> neighbours;  // per chunk, k*2m tokens; empty: none
  std::vector<double> logprobs;                  // [0] unused
};

std::vector<Case> read_cases(const std::string& dir, double* tol) {
  json::Value g = json::parse(json::read_file(dir + "/golden.json", 64u << 20));
  *tol = g.find("logprob_tolerance")->number;
  std::vector<Case> out;
  for (const json::Value& c : g.find("cases")->items) {
    Case k;
    k.name = c.find("name")->text;
    for (const auto& t : c.find("tokens")->items) k.tokens.push_back((int32_t)t.i64);
    for (const auto& u : c.find("neighbours")->items) {
      std::vector<int32_t> flat;
      if (!u.is_null())
        for (const auto& row : u.items)
          for (const auto& t : row.items) flat.push_back((int32_t)t.i64);
      k.neighbours.push_back(flat);
    }
    for (const auto& lp : c.find("logprobs")->items) k.logprobs.push_back(lp.is_null() ? 0.0 : lp.number);
    out.push_back(k);
  }
  return out;
}

std::unique_ptr<SequenceState> start(Model& model, const Case& c) {
  auto s = model.new_state();
  for (size_t u = 0; u < c.neighbours.size(); u++)
    if (!c.neighbours[u].empty()) s->set_neighbours((int64_t)u, c.neighbours[u]);
  return s;
}

double log_softmax_at(const float* logits, int64_t V, int32_t tok) {
  double mx = -1e300, sum = 0;
  for (int64_t v = 0; v < V; v++) mx = std::max(mx, (double)logits[v]);
  for (int64_t v = 0; v < V; v++) sum += std::exp((double)logits[v] - mx);
  return (double)logits[tok] - mx - std::log(sum);
}

// Runs several sequences (all cut into passes of the given sizes, cycling)
// together; returns each one's log-probs [1..n-1].
std::vector<std::vector<double>> run(Model& model, const std::vector<const Case*>& cases,
                                     const std::vector<int64_t>& cuts, ThreadPool& pool) {
  const int64_t V = model.config().vocab_size;
  std::vector<std::unique_ptr<SequenceState>> states;
  std::vector<std::vector<float>> logits;
  for (const Case* c : cases) {
    states.push_back(start(model, *c));
    logits.emplace_back(c->tokens.size() * V);
  }
  std::vector<int64_t> done(cases.size(), 0);
  for (size_t step = 0;; step++) {
    std::vector<ForwardItem> items;
    for (size_t i = 0; i < cases.size(); i++) {
      const int64_t total = (int64_t)cases[i]->tokens.size();
      if (done[i] == total) continue;
      const int64_t n = std::min(cuts[(step + i) % cuts.size()], total - done[i]);
      items.push_back(ForwardItem{states[i].get(), cases[i]->tokens.data() + done[i], n, true,
                                  logits[i].data() + done[i] * V});
      done[i] += n;
    }
    if (items.empty()) break;
    model.forward(items, pool);
  }
  std::vector<std::vector<double>> out;
  for (size_t i = 0; i < cases.size(); i++) {
    std::vector<double> lp(cases[i]->tokens.size(), 0.0);
    for (size_t t = 1; t < lp.size(); t++) lp[t] = log_softmax_at(logits[i].data() + (t - 1) * V, V, cases[i]->tokens[t]);
    out.push_back(lp);
  }
  return out;
}

double g_worst = 0;  // over every check, printed once

void check(const Case& c, const std::vector<double>& got, double tol, const std::string& how) {
  double worst = 0;
  for (size_t t = 1; t < c.tokens.size(); t++) worst = std::max(worst, std::fabs(got[t] - c.logprobs[t]));
  const std::string what = how + " " + c.name + ": worst abs(engine - reference) log-prob " + std::to_string(worst);
  CHECK_MESSAGE(worst <= tol, what);
  g_worst = std::max(g_worst, worst);
}

}  // namespace

TEST_CASE("retro: log-probs with fixed neighbours match tools/reference/retro.py (prefill, decode, passes, batch)") {
  ThreadPool pool(2);
  for (const char* name : kFixtures) {
    const std::string dir = std::string("test/fixtures/retro/") + name;
    double tol = 0;
    const std::vector<Case> cases = read_cases(dir, &tol);
    auto model = load_model(dir);
    for (const Case& c : cases) {
      check(c, run(*model, {&c}, {(int64_t)c.tokens.size()}, pool)[0], tol, std::string(name) + " prefill");
      check(c, run(*model, {&c}, {1}, pool)[0], tol, std::string(name) + " token by token");
      check(c, run(*model, {&c}, {3, 1, 7, 2}, pool)[0], tol, std::string(name) + " passes 3,1,7,2");
    }
    std::vector<const Case*> all;
    for (const Case& c : cases) all.push_back(&c);
    const auto got = run(*model, all, {5, 1, 2}, pool);
    for (size_t i = 0; i < cases.size(); i++) check(cases[i], got[i], tol, std::string(name) + " batched");
  }
  MESSAGE("retro fixtures: worst abs(engine - reference) log-prob " << g_worst);
}

TEST_CASE("retro: bad neighbours are refused naming what is wrong") {
  auto model = load_model("test/fixtures/retro/period2");  // m 4, k 2: 2 x 8 tokens
  auto s = model->new_state();
  auto msg = [&](int64_t chunk, std::vector<int32_t> t) {
    try {
      s->set_neighbours(chunk, std::move(t));
    } catch (const Error& e) {
      return e.code() + ": " + e.what();
    }
    return std::string("accepted");
  };
  CHECK(msg(0, std::vector<int32_t>(15, 1)) == "E_ARGUMENT: neighbours of chunk 0 must be 2 x 8 tokens (got 15)");
  CHECK(msg(0, std::vector<int32_t>(16, 260)) ==
        "E_ARGUMENT: neighbour token 260 is outside the vocabulary (0..259)");
  CHECK(msg(1, std::vector<int32_t>(16, 3)) == "accepted");
  ThreadPool pool(1);
  std::vector<int32_t> toks(8, 5);
  std::vector<float> logits(260);
  model->forward({ForwardItem{s.get(), toks.data(), 8, false, logits.data()}}, pool);
  CHECK(msg(1, std::vector<int32_t>(16, 3)) ==
        "E_ARGUMENT: neighbours of chunk 1 come too late: the sequence has 2 complete chunks");
  auto gpt2 = load_model("test/fixtures/gpt2-tiny");
  auto g = gpt2->new_state();
  try {
    g->set_neighbours(0, {});
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "neighbours are only taken by model_type retro");
  }
}
