// kNN memory (cpp/knn_memory.h) against the reference (tools/reference/knn_memory.py,
// golden test/fixtures/knn-memory.json, gpt2-tiny): the engine's hidden
// states equal the reference's ln_f output; a store built from them gives the
// reference's log-probs to 1e-4 for external, local and both memories; the
// decode path (one token per step, local memory growing) reports the same
// log-probs as one prompt pass; a sequence with memory batched beside one
// without leaves the other unchanged; bad parameters and folders are refused.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

#include "common.h"
#include "doctest.h"
#include "dtype.h"
#include "engine.h"
#include "fmt.h"
#include "json.h"
#include "knn_memory.h"

using namespace roost;
namespace fs = std::filesystem;

namespace {

json::Value golden() { return json::parse(json::read_file("test/fixtures/knn-memory.json", 1 << 22)); }

std::vector<int32_t> ints(const json::Value& a) {
  std::vector<int32_t> v;
  for (const auto& x : a.items) v.push_back((int32_t)x.i64);
  return v;
}

// A store folder (keys.f16, values.i32) from float keys [n, C].
std::string write_store(const std::string& name, const std::vector<float>& keys, const std::vector<int32_t>& values) {
  const fs::path dir = fs::temp_directory_path() / fmt("roost-knn-%s-%d", name.c_str(), (int)getpid());
  fs::create_directories(dir);
  std::vector<uint16_t> half(keys.size());
  for (size_t i = 0; i < keys.size(); i++) half[i] = f32_to_f16(keys[i]);
  std::ofstream((dir / "keys.f16").string(), std::ios::binary).write(reinterpret_cast<const char*>(half.data()), half.size() * 2);
  std::ofstream((dir / "values.i32").string(), std::ios::binary).write(reinterpret_cast<const char*>(values.data()), values.size() * 4);
  return dir.string();
}

struct Fixture {
  json::Value g = golden();
  Engine engine{"test/fixtures/gpt2-tiny", EngineOptions{2, 512, "cpu", 0, true, ""}};
  std::vector<int32_t> corpus = ints(*g.find("corpus")), query = ints(*g.find("query"));
  int64_t C = engine.config().n_embd;
  std::vector<float> hidden;  // the engine's, over the corpus
  std::string dir;

  Fixture() {
    const int64_t seq = engine.create_sequence({});
    StepRequest r{seq, corpus, false, false};
    r.hidden = true;
    hidden = engine.step({r})[0].hidden;
    engine.free_sequence(seq);
    // The store holds the reference's keys (F16 of its hidden states), so the
    // memory checks below compare the interpolation alone; the engine's own
    // hidden states are checked against the same rows in the first test case.
    std::vector<float> keys;
    const auto& rows = g.find("hidden_corpus")->items;
    for (size_t t = 0; t + 1 < rows.size(); t++)
      for (const auto& x : rows[t].items) keys.push_back((float)x.number);
    dir = write_store("fixture", keys, std::vector<int32_t>(corpus.begin() + 1, corpus.end()));
    engine.load_memory("corpus", dir);
  }
  ~Fixture() { fs::remove_all(dir); }

  MemoryParams params(const json::Value& c) const {
    MemoryParams m;
    m.datastore = c.find("external")->boolean ? "corpus" : "";
    m.k = c.find("k")->i64;
    m.lambda = c.find("lambda")->number;
    m.temperature = c.find("temperature")->number;
    m.local = c.find("local")->boolean;
    return m;
  }
};

void check_logprobs(const std::vector<float>& got, const json::Value& want, const std::string& what, double tol = 1e-4) {
  REQUIRE(got.size() == want.items.size());
  for (size_t j = 1; j < got.size(); j++)
    CHECK_MESSAGE(std::fabs(got[j] - want.items[j].number) < tol,
                  fmt("%s: position %d: %.6f, reference %.6f", what.c_str(), (int)j, got[j], want.items[j].number));
}

}  // namespace

TEST_CASE("kNN memory: hidden states and memory log-probs equal the reference's") {
  Fixture f;
  const auto& want_hidden = f.g.find("hidden_corpus")->items;
  REQUIRE((int64_t)f.hidden.size() == (int64_t)f.corpus.size() * f.C);
  for (size_t t = 0; t < want_hidden.size(); t++)
    for (int64_t c = 0; c < f.C; c++)
      REQUIRE_MESSAGE(std::fabs(f.hidden[t * f.C + c] - want_hidden[t].items[c].number) < 1e-4, fmt("hidden[%d][%d]", (int)t, (int)c));

  for (const auto& c : f.g.find("cases")->items) {
    const MemoryParams m = f.params(c);
    const std::string what = fmt("k=%d lambda=%g T=%g external=%d local=%d", (int)m.k, m.lambda, m.temperature,
                                 (int)!m.datastore.empty(), (int)m.local);
    // One prompt pass with echo log-probs, in chunks of 16 (chunked prefill keeps local memory in order).
    Engine chunked("test/fixtures/gpt2-tiny", EngineOptions{1, 16, "cpu", 0, true, ""});
    chunked.load_memory("corpus", f.dir);
    const int64_t seq = chunked.create_sequence({}, "", m);
    StepRequest r{seq, f.query, false, true};
    check_logprobs(chunked.step({r})[0].prompt_logprobs, *c.find("logprobs"), what + " (prompt)");
  }
}

TEST_CASE("kNN memory: decode steps report the prompt pass's log-probs, batched beside a sequence without memory") {
  Fixture f;
  for (const auto& c : f.g.find("cases")->items) {
    if (!c.find("local")->boolean) continue;
    const MemoryParams m = f.params(c);
    SamplingParams greedy;
    greedy.temperature = 0;
    const int64_t mem = f.engine.create_sequence(greedy, "", m), plain = f.engine.create_sequence(greedy);
    // Both read the query token by token: the log-prob of each fed token is the sampled-step's
    // distribution at it, read through a one-token prompt-logprob request.
    std::vector<float> got(1, NAN), got_plain(1, NAN);
    for (size_t t = 0; t < f.query.size(); t++) {
      StepRequest a{mem, {f.query[t]}, false, true}, b{plain, {f.query[t]}, false, true};
      auto res = f.engine.step({a, b});
      if (t > 0) {
        got.push_back(res[0].prompt_logprobs[0]);
        got_plain.push_back(res[1].prompt_logprobs[0]);
      }
    }
    // One token per step: the cached-KV forward's hidden states differ from a
    // prompt pass's in the last float digits, which 1 / temperature (here up
    // to 2) amplifies in the local distances.
    check_logprobs(got, *c.find("logprobs"), "decode with memory", 5e-4);
    check_logprobs(got_plain, *f.g.find("plain_logprobs"), "decode without memory");
    f.engine.free_sequence(mem);
    f.engine.free_sequence(plain);
  }
}

TEST_CASE("kNN memory: the sampled token's log-prob is the interpolated one") {
  Fixture f;
  const json::Value& c = f.g.find("cases")->items[1];  // external + local
  SamplingParams greedy;
  greedy.temperature = 0;
  const int64_t seq = f.engine.create_sequence(greedy, "", f.params(c));
  const std::vector<int32_t> head(f.query.begin(), f.query.end() - 1);
  auto res = f.engine.step({StepRequest{seq, head, true, false}});
  // Greedy: the argmax of the interpolated distribution; its log-prob is the reference's where it is the query's last token.
  const double want_last = c.find("logprobs")->items.back().number;
  if (res[0].token.token == f.query.back()) CHECK(res[0].token.logprob == doctest::Approx(want_last).epsilon(1e-4));
  CHECK(res[0].token.logprob <= 0.f);
}

TEST_CASE("kNN memory: search returns the exact nearest keys across chunks") {
  // 70000 keys (two chunks) on a line: key i = i * e_0 / 1024, so the nearest to x are known.
  const int64_t n = 70000, C = 8;
  std::vector<float> keys(n * C, 0.f);
  std::vector<int32_t> values(n);
  for (int64_t i = 0; i < n; i++) {
    keys[i * C] = (float)(i % 2048) / 64.f;  // exact in F16; every distance twice or more (ties by index)
    values[i] = (int32_t)(i % 7);
  }
  auto store = KnnStore::from_keys(keys.data(), values.data(), n, C);
  ThreadPool pool(2);
  std::vector<float> q(C, 0.f);
  q[0] = 10.0f;  // key 640 (and 640 + 2048 m)
  std::vector<Neighbour> out;
  store->search(q.data(), 1, 5, pool, out);
  REQUIRE(out.size() == 5);
  for (int j = 0; j < 5; j++) CHECK(out[j].dist == 0.f);
  CHECK(out[0].value == 640 % 7);
  CHECK(out[1].value == (640 + 2048) % 7);
}

TEST_CASE("kNN memory: bad parameters and folders are refused with the reason") {
  Fixture f;
  auto refused = [&](MemoryParams m, const char* what) {
    try {
      f.engine.create_sequence({}, "", m);
      FAIL_CHECK(fmt("%s was accepted", what));
    } catch (const Error& e) {
      CHECK(e.code() == "E_ARGUMENT");
      CHECK_MESSAGE(std::string(e.what()).find(what) != std::string::npos, e.what());
    }
  };
  MemoryParams m;
  m.datastore = "nope";
  refused(m, "unknown kNN memory \"nope\"");
  m.datastore = "corpus";
  m.k = 0;
  refused(m, "k must be an integer from 1 to 1024");
  m.k = 1000000;
  refused(m, "k must be an integer from 1 to 1024");
  m.k = 4;
  m.lambda = 1.5;
  refused(m, "lambda must be in [0, 1]");
  m.lambda = 0.2;
  m.temperature = 0;
  refused(m, "temperature must be a finite number > 0");

  try {
    f.engine.load_memory("missing", "/nonexistent/roost-knn");
    FAIL_CHECK("a missing folder was accepted");
  } catch (const Error& e) {
    CHECK(e.code() == "E_CHECKPOINT");
    CHECK(std::string(e.what()).find("/nonexistent/roost-knn/values.i32") != std::string::npos);
  }
  // A keys file cut short.
  const std::string bad = write_store("bad", std::vector<float>(3 * f.C, 0.f), {1, 2, 3});
  fs::resize_file(fs::path(bad) / "keys.f16", 3 * f.C * 2 - 2);
  try {
    f.engine.load_memory("bad", bad);
    FAIL_CHECK("a truncated keys file was accepted");
  } catch (const Error& e) {
    CHECK(e.code() == "E_CHECKPOINT");
    CHECK(std::string(e.what()).find("keys.f16 holds") != std::string::npos);
  }
  // A value outside the vocabulary.
  const std::string oov = write_store("oov", std::vector<float>(2 * f.C, 0.f), {1, 512});
  try {
    f.engine.load_memory("oov", oov);
    FAIL_CHECK("a token outside the vocabulary was accepted");
  } catch (const Error& e) {
    CHECK(e.code() == "E_CHECKPOINT");
    CHECK(std::string(e.what()).find("outside the model's vocabulary") != std::string::npos);
  }
  fs::remove_all(bad);
  fs::remove_all(oov);
  CHECK_THROWS(f.engine.load_memory("corpus", f.dir));  // the name is taken
}
