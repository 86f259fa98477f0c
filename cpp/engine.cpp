#include "engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "common.h"
#include "device.h"
#include "ops/ops.h"

namespace roost {

namespace {
std::string seq_name(int64_t id) { return "sequence " + std::to_string(id); }
}  // namespace

Engine::Engine(const std::string& model_dir, EngineOptions options) : options_(options) {
  if (options_.threads < 0) throw Error("E_ARGUMENT", "threads must be >= 0 (got " + std::to_string(options_.threads) + ")");
  if (options_.max_step_tokens < 1) throw Error("E_ARGUMENT", "max_step_tokens must be >= 1");
  if (!options_.quantize.empty() && options_.quantize != "q8_0")
    throw Error("E_ARGUMENT", "quantize must be q8_0 or absent (got \"" + options_.quantize + "\")");
  device_ = resolve_device(options_.device);
  model_ = load_model_for_device(model_dir, device_, options_.quantize == "q8_0" ? WeightFormat::Q8_0 : WeightFormat::Keep);
  pool_ = std::make_unique<ThreadPool>(options_.threads > 0 ? options_.threads : default_thread_count());
}

Engine::~Engine() = default;

AdapterInfo Engine::load_adapter(const std::string& name, const std::string& dir) {
  if (name.empty()) throw Error("E_ARGUMENT", "an adapter needs a non-empty name");
  if (!model_->supports_adapters()) {
    if (device_ != "cpu")
      throw Error("E_ARGUMENT", "adapter \"" + name + "\": adapters run on the CPU engine only, and this model runs on " +
                                    device_ + " (use --device cpu)");
    throw Error("E_ARGUMENT", "adapter \"" + name + "\": model_type " + model_->config().model_type +
                                  " does not support adapters (gpt2 does)");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (adapters_.count(name)) throw Error("E_ARGUMENT", "an adapter named \"" + name + "\" is already loaded");
  }
  auto a = std::make_shared<const Adapter>(roost::load_adapter(name, dir, model_->config()));
  std::lock_guard<std::mutex> lock(mu_);
  if (!adapters_.emplace(name, a).second) throw Error("E_ARGUMENT", "an adapter named \"" + name + "\" is already loaded");
  return {a->name, a->type, a->prompt_tokens};
}

bool Engine::unload_adapter(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return adapters_.erase(name) > 0;
}

std::vector<AdapterInfo> Engine::adapters() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<AdapterInfo> out;
  for (const auto& [name, a] : adapters_) out.push_back({a->name, a->type, a->prompt_tokens});
  return out;
}

int64_t Engine::create_sequence(const SamplingParams& p, const std::string& adapter) {
  const int64_t V = model_->config().vocab_size;
  if (!(p.temperature >= 0.0) || !std::isfinite(p.temperature))
    throw Error("E_ARGUMENT", "temperature must be a finite number >= 0");
  if (p.top_k < 0) throw Error("E_ARGUMENT", "top_k must be >= 0");
  if (!(p.top_p > 0.0 && p.top_p <= 1.0)) throw Error("E_ARGUMENT", "top_p must be in (0, 1]");
  if (p.n_logprobs < 0 || p.n_logprobs > V) throw Error("E_ARGUMENT", "logprobs must be between 0 and the vocabulary size");
  for (const auto& [tok, bias] : p.logit_bias) {
    if (tok < 0 || tok >= V)
      throw Error("E_ARGUMENT", "logit_bias token " + std::to_string(tok) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
    if (std::isnan(bias)) throw Error("E_ARGUMENT", "logit_bias value for token " + std::to_string(tok) + " is NaN");
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<const Adapter> a;
  if (!adapter.empty()) {
    auto it = adapters_.find(adapter);
    if (it == adapters_.end()) throw Error("E_ARGUMENT", "unknown adapter \"" + adapter + "\"");
    a = it->second;
  }
  auto seq = std::make_unique<Sequence>(Sequence{model_->new_state(), Sampler(p), std::move(a), {}, false, false});
  int64_t id = next_id_++;
  sequences_.emplace(id, std::move(seq));
  return id;
}

void Engine::free_sequence(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;  // already gone: freeing twice is harmless (cancel races)
  if (it->second->in_step) {
    it->second->free_after_step = true;
  } else {
    sequences_.erase(it);
  }
}

int64_t Engine::sequence_length(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sequences_.find(id);
  if (it == sequences_.end()) throw Error("E_ARGUMENT", "unknown " + seq_name(id));
  return it->second->state->length();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s;
  s.weight_bytes = model_->weight_bytes();
  for (const auto& [id, seq] : sequences_) {
    if (seq->free_after_step) continue;
    s.sequences++;
    s.state_bytes += seq->state->bytes() + seq->last_logits.capacity() * sizeof(float);
  }
  return s;
}

int64_t Engine::soft_prompt_left(const Sequence& s) {
  return s.adapter && s.state->length() == 0 ? s.adapter->prompt_tokens : 0;
}

// One step's working state, shared by the named steps below.
struct Engine::StepRun {
  const std::vector<StepRequest>& requests;
  std::vector<Sequence*> seqs;       // requests[i]'s sequence
  std::vector<StepResult> results;
  std::vector<int64_t> cursor;       // tokens of requests[i] run so far
  std::vector<int64_t> soft;         // soft-prompt rows still to run, before the tokens
  // Logits of every position of a prompt that asks for log-probs; other items
  // write their one row straight into the sequence's last_logits (no per-step
  // allocation or copy of a vocabulary-sized row).
  std::vector<std::vector<float>> logits;
  std::vector<float> lp;             // one row of log-probs
};

struct Engine::Pass {
  std::vector<ForwardItem> items;
  std::vector<size_t> owner;  // items[k] serves requests[owner[k]]
};

std::vector<Engine::Sequence*> Engine::validate(const std::vector<StepRequest>& requests) {
  const int64_t V = model_->config().vocab_size;
  const int64_t max_ctx = model_->max_context();
  std::vector<Sequence*> seqs;
  std::lock_guard<std::mutex> lock(mu_);
  if (stepping_) throw Error("E_STATE", "a step is already running on this engine");
  std::set<int64_t> seen;
  for (const auto& r : requests) {
    auto it = sequences_.find(r.seq);
    if (it == sequences_.end() || it->second->free_after_step) throw Error("E_ARGUMENT", "unknown " + seq_name(r.seq));
    if (!seen.insert(r.seq).second) throw Error("E_ARGUMENT", seq_name(r.seq) + " is listed twice in one step");
    if (r.tokens.empty() && !r.sample) throw Error("E_ARGUMENT", seq_name(r.seq) + ": a step needs tokens or sample");
    const int64_t soft = soft_prompt_left(*it->second);
    if (r.tokens.empty() && it->second->last_logits.empty() && soft == 0)
      throw Error("E_ARGUMENT", seq_name(r.seq) + ": nothing to sample from before any token");
    for (int32_t t : r.tokens)
      if (t < 0 || t >= V)
        throw Error("E_ARGUMENT", "token id " + std::to_string(t) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
    const int64_t total = it->second->state->length() + soft + (int64_t)r.tokens.size();
    if (max_ctx > 0 && total > max_ctx)
      throw Error("E_ARGUMENT", seq_name(r.seq) + " would hold " + std::to_string(total) +
                                    " tokens; the model's context is " + std::to_string(max_ctx));
    seqs.push_back(it->second.get());
  }
  for (Sequence* s : seqs) s->in_step = true;
  stepping_ = true;
  return seqs;
}

// Every sequence with input left contributes its next chunk, first come first
// served within the budget of max_step_tokens; empty when all input has run.
Engine::Pass Engine::plan_pass(StepRun& run) const {
  const int64_t V = model_->config().vocab_size;
  Pass pass;
  int64_t budget = options_.max_step_tokens;
  for (size_t i = 0; i < run.requests.size() && budget > 0; i++) {
    Sequence& seq = *run.seqs[i];
    const StepRequest& r = run.requests[i];
    const Adapter* adapter = seq.adapter.get();
    if (run.soft[i] > 0) {  // a new sequence's soft prompt runs first, as its own item
      const int64_t n = std::min(run.soft[i], budget);
      budget -= n;
      seq.last_logits.resize(V);
      ForwardItem it{seq.state.get(), nullptr, n, false, seq.last_logits.data()};
      it.adapter = adapter;
      it.embeds = adapter->prompt.data() + (adapter->prompt_tokens - run.soft[i]) * model_->config().n_embd;
      pass.items.push_back(it);
      pass.owner.push_back(i);
      continue;
    }
    const int64_t left = (int64_t)r.tokens.size() - run.cursor[i];
    if (left <= 0) continue;
    int64_t n = std::min(left, budget);
    // Never leave one lone token for the next pass: perceiver_ar runs a
    // one-token pass as its sliding decode (src/engine/chunking.ts, same rule).
    if (left - n == 1 && n > 1) n--;
    if (r.prompt_logprobs && model_->prompt_logprobs_need_one_pass()) n = left;
    budget -= n;
    float* out;
    if (r.prompt_logprobs) {
      run.logits[i].resize(n * V);
      out = run.logits[i].data();
    } else {
      seq.last_logits.resize(V);
      out = seq.last_logits.data();
    }
    ForwardItem it{seq.state.get(), r.tokens.data() + run.cursor[i], n, r.prompt_logprobs, out};
    it.adapter = adapter;
    pass.items.push_back(it);
    pass.owner.push_back(i);
  }
  return pass;
}

// After a pass: the log-prob (and top alternatives) of each prompt token that
// asked for them, then every item's cursor moves past what it ran.
void Engine::prompt_logprobs(StepRun& run, const Pass& pass) const {
  const int64_t V = model_->config().vocab_size;
  for (size_t k = 0; k < pass.items.size(); k++) {
    const size_t i = pass.owner[k];
    Sequence& s = *run.seqs[i];
    const StepRequest& r = run.requests[i];
    const int64_t n = pass.items[k].n;
    if (pass.items[k].embeds) {  // soft-prompt rows: their last logits (in last_logits) predict the first token
      run.soft[i] -= n;
      continue;
    }
    if (r.prompt_logprobs) {
      const int64_t top_n = s.sampler.params().n_logprobs;
      const std::vector<float>& logits = run.logits[i];
      for (int64_t j = 0; j < n; j++) {
        // Token cursor+j is predicted by the logits of the position before it.
        const float* prev = j == 0 ? (s.last_logits.empty() ? nullptr : s.last_logits.data()) : logits.data() + (j - 1) * V;
        // No previous logit, or a NaN row (perceiver_ar has no logits before its
        // latents): the entry stays NaN and gets no top list.
        if (!prev || std::isnan(prev[0])) continue;
        log_softmax(run.lp.data(), prev, V);
        const int64_t t = run.cursor[i] + j;
        run.results[i].prompt_logprobs[t] = run.lp[r.tokens[t]];
        if (top_n > 0) run.results[i].prompt_top[t] = top_logprobs(run.lp.data(), V, top_n);
      }
      s.last_logits.assign(logits.end() - V, logits.end());
    }
    run.cursor[i] += n;
  }
}

void Engine::sample(StepRun& run) const {
  const int64_t V = model_->config().vocab_size;
  for (size_t i = 0; i < run.requests.size(); i++) {
    if (!run.requests[i].sample) continue;
    run.results[i].sampled = true;
    run.results[i].token = run.seqs[i]->sampler.sample(run.seqs[i]->last_logits.data(), V);
  }
}

std::vector<StepResult> Engine::step(const std::vector<StepRequest>& requests) {
  StepRun run{requests, validate(requests), {}, {}, {}, {}, {}};
  // Whatever happens below, the flags are cleared and deferred frees run.
  struct Finish {
    Engine* e;
    ~Finish() {
      std::lock_guard<std::mutex> lock(e->mu_);
      for (auto it = e->sequences_.begin(); it != e->sequences_.end();) {
        it->second->in_step = false;
        if (it->second->free_after_step) it = e->sequences_.erase(it);
        else ++it;
      }
      e->stepping_ = false;
    }
  } finish{this};

  const size_t n = requests.size();
  run.results.resize(n);
  run.cursor.assign(n, 0);
  run.soft.resize(n);
  run.logits.resize(n);
  for (size_t i = 0; i < n; i++) {
    run.soft[i] = soft_prompt_left(*run.seqs[i]);
    run.results[i].seq = requests[i].seq;
    if (requests[i].prompt_logprobs) {
      run.results[i].prompt_logprobs.assign(requests[i].tokens.size(), std::numeric_limits<float>::quiet_NaN());
      if (run.seqs[i]->sampler.params().n_logprobs > 0) run.results[i].prompt_top.resize(requests[i].tokens.size());
      run.lp.resize(model_->config().vocab_size);
    }
  }
  for (Pass pass; !(pass = plan_pass(run)).items.empty();) {
    model_->forward(pass.items, *pool_);
    prompt_logprobs(run, pass);
  }
  sample(run);
  return std::move(run.results);
}

}  // namespace roost
