#include "engine.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>
#include <unistd.h>

#include "common.h"
#include "device.h"
#include "kv_pool.h"
#include "models/model_base.h"
#include "ops/ops.h"

namespace roost {

namespace {
std::string seq_name(int64_t id) { return "sequence " + std::to_string(id); }

// MemAvailable of /proc/meminfo (what Node's os.freemem() reports), else free pages.
int64_t available_memory() {
  std::ifstream f("/proc/meminfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream in(line.substr(13));
      int64_t kb = 0;
      if (in >> kb) return kb * 1024;
    }
  return (int64_t)sysconf(_SC_AVPHYS_PAGES) * (int64_t)sysconf(_SC_PAGESIZE);
}
}  // namespace

Engine::Engine(const std::string& model_dir, EngineOptions options) : options_(options) {
  if (options_.threads < 0) throw Error("E_ARGUMENT", "threads must be >= 0 (got " + std::to_string(options_.threads) + ")");
  if (options_.max_step_tokens < 1) throw Error("E_ARGUMENT", "max_step_tokens must be >= 1");
  if (!options_.quantize.empty() && options_.quantize != "q8_0")
    throw Error("E_ARGUMENT", "quantize must be q8_0 or absent (got \"" + options_.quantize + "\")");
  std::optional<KvType> kv;
  if (options_.kv_cache_dtype == "f32") kv = KvType::F32;
  else if (options_.kv_cache_dtype == "f16") kv = KvType::F16;
  else if (options_.kv_cache_dtype != "auto")
    throw Error("E_ARGUMENT", "--kv-cache-dtype must be auto, f32 or f16 (got \"" + options_.kv_cache_dtype + "\")");
  device_ = resolve_device(options_.device);
  model_ = load_model_for_device(model_dir, device_, options_.quantize == "q8_0" ? WeightFormat::Q8_0 : WeightFormat::Keep, kv);
  model_->set_pass_tokens(options_.max_step_tokens);
  pool_ = std::make_unique<ThreadPool>(options_.threads > 0 ? options_.threads : default_thread_count());
  if (options_.kv_memory < 0) throw Error("E_ARGUMENT", "kv_memory must be >= 0 bytes (0: the default)");
  if (KvPool* kv = model_->kv_pool()) {
    const int64_t bytes = options_.kv_memory > 0 ? options_.kv_memory : (int64_t)(kDefaultKvShare * available_memory());
    const int64_t blocks = bytes / (int64_t)kv->block_bytes();
    if (blocks < 1)
      throw Error("E_ARGUMENT", "kv_memory " + std::to_string(bytes) + " bytes holds no KV block (one block of " +
                                    std::to_string(kv->block_rows()) + " positions takes " +
                                    std::to_string(kv->block_bytes()) + " bytes for this model)");
    kv->set_max_blocks(blocks);
    kv->set_caching(options_.prefix_cache);
  } else if (model_->copies_state() && options_.prefix_cache) {
    const int64_t bytes = options_.kv_memory > 0 ? options_.kv_memory : (int64_t)(kDefaultKvShare * available_memory());
    state_cache_ = std::make_unique<StateCache>((size_t)bytes);
  }
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
  adapter_serial_[a.get()] = next_adapter_serial_++;  // a fresh identity even at a reused address
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

int64_t Engine::load_memory(const std::string& name, const std::string& dir) {
  if (name.empty()) throw Error("E_ARGUMENT", "a kNN memory needs a non-empty name");
  if (!model_->exposes_hidden())
    throw Error("E_ARGUMENT", "kNN memory \"" + name + "\": model_type " + model_->config().model_type +
                                  " does not expose its final layer norm's output (gpt2 does)");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (memories_.count(name)) throw Error("E_ARGUMENT", "a kNN memory named \"" + name + "\" is already loaded");
  }
  auto store = KnnStore::load(dir, model_->config().n_embd, model_->config().vocab_size);
  std::lock_guard<std::mutex> lock(mu_);
  if (!memories_.emplace(name, store).second) throw Error("E_ARGUMENT", "a kNN memory named \"" + name + "\" is already loaded");
  return store->size();
}

bool Engine::unload_memory(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return memories_.erase(name) > 0;
}

std::vector<Neighbour> Engine::search_memory(const std::string& name, const float* queries, int64_t M, int64_t k) {
  if (k < 1 || k > kMaxMemoryK) throw Error("E_ARGUMENT", "memory k must be an integer from 1 to " + std::to_string(kMaxMemoryK));
  std::shared_ptr<const KnnStore> store;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = memories_.find(name);
    if (it == memories_.end()) throw Error("E_ARGUMENT", "unknown kNN memory \"" + name + "\"");
    if (stepping_) throw Error("E_STATE", "a step is running on this engine");
    store = it->second;
    stepping_ = true;  // the pool is not reentrant: no step meanwhile
  }
  struct Done {
    Engine* e;
    ~Done() {
      std::lock_guard<std::mutex> lock(e->mu_);
      e->stepping_ = false;
    }
  } done{this};
  std::vector<Neighbour> out;
  store->search(queries, M, k, *pool_, out);
  return out;
}

int64_t Engine::create_sequence(const SamplingParams& p, const std::string& adapter, const MemoryParams& memory) {
  const int64_t V = model_->config().vocab_size;
  if (!(p.temperature >= 0.0) || !std::isfinite(p.temperature))
    throw Error("E_ARGUMENT", "temperature must be a finite number >= 0");
  if (p.top_k < 0) throw Error("E_ARGUMENT", "top_k must be >= 0");
  if (!(p.top_p > 0.0 && p.top_p <= 1.0)) throw Error("E_ARGUMENT", "top_p must be in (0, 1]");
  if (p.n_logprobs < 0 || p.n_logprobs > V) throw Error("E_ARGUMENT", "logprobs must be between 0 and the vocabulary size");
  if (!(p.min_p >= 0.0 && p.min_p <= 1.0)) throw Error("E_ARGUMENT", "min_p must be in [0, 1]");
  if (!std::isfinite(p.presence_penalty)) throw Error("E_ARGUMENT", "presence_penalty must be a finite number");
  if (!std::isfinite(p.frequency_penalty)) throw Error("E_ARGUMENT", "frequency_penalty must be a finite number");
  if (!(p.repetition_penalty > 0.0) || !std::isfinite(p.repetition_penalty))
    throw Error("E_ARGUMENT", "repetition_penalty must be a finite number > 0");
  if (p.min_tokens < 0) throw Error("E_ARGUMENT", "min_tokens must be >= 0");
  for (int32_t tok : p.stop_token_ids) {
    if (tok < 0 || tok >= V)
      throw Error("E_ARGUMENT", "stop token " + std::to_string(tok) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
  }
  for (const auto& [tok, bias] : p.logit_bias) {
    if (tok < 0 || tok >= V)
      throw Error("E_ARGUMENT", "logit_bias token " + std::to_string(tok) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
    if (std::isnan(bias)) throw Error("E_ARGUMENT", "logit_bias value for token " + std::to_string(tok) + " is NaN");
  }
  if (memory.enabled()) {
    if (!model_->exposes_hidden())
      throw Error("E_ARGUMENT", "kNN memory: model_type " + model_->config().model_type +
                                    " does not expose its final layer norm's output (gpt2 does)");
    if (memory.k < 1 || memory.k > kMaxMemoryK)
      throw Error("E_ARGUMENT", "memory k must be an integer from 1 to " + std::to_string(kMaxMemoryK) + " (got " + std::to_string(memory.k) + ")");
    if (!(memory.lambda >= 0.0 && memory.lambda <= 1.0)) throw Error("E_ARGUMENT", "memory lambda must be in [0, 1]");
    if (!(memory.temperature > 0.0) || !std::isfinite(memory.temperature))
      throw Error("E_ARGUMENT", "memory temperature must be a finite number > 0");
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<const KnnStore> store;
  if (!memory.datastore.empty()) {
    auto it = memories_.find(memory.datastore);
    if (it == memories_.end()) throw Error("E_ARGUMENT", "unknown kNN memory \"" + memory.datastore + "\"");
    store = it->second;
  }
  std::shared_ptr<const Adapter> a;
  if (!adapter.empty()) {
    auto it = adapters_.find(adapter);
    if (it == adapters_.end()) throw Error("E_ARGUMENT", "unknown adapter \"" + adapter + "\"");
    a = it->second;
  }
  const int32_t serial[2] = {a ? (int32_t)adapter_serial_[a.get()] : 0, a ? (int32_t)(adapter_serial_[a.get()] >> 32) : 0};
  auto seq = std::make_unique<Sequence>(Sequence{model_->new_state(), Sampler(p), std::move(a), {}, false, false, 0, 0, 0, {}, {}});
  seq->root_key = seq->key = kv_block_hash(0, serial, 2);
  seq->memory = memory;
  seq->store = std::move(store);
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

void Engine::reset_sequence(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sequences_.find(id);
  if (it == sequences_.end() || it->second->free_after_step) throw Error("E_ARGUMENT", "unknown " + seq_name(id));
  Sequence& s = *it->second;
  if (s.in_step) throw Error("E_STATE", seq_name(id) + " is in the running step");
  s.state = model_->new_state();  // the old state's blocks go back to the pool
  s.last_logits.clear();
  s.key = s.root_key;
  s.keyed_blocks = 0;
  s.tail.clear();
  s.consumed.clear();
  s.local_keys.clear();  // the fed-again tokens rebuild local memory
  s.local_values.clear();
}

void Engine::set_neighbours(int64_t id, int64_t chunk, std::vector<int32_t> tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sequences_.find(id);
  if (it == sequences_.end() || it->second->free_after_step) throw Error("E_ARGUMENT", "unknown " + seq_name(id));
  if (it->second->in_step) throw Error("E_STATE", seq_name(id) + " is in the running step");
  if (chunk < 0) throw Error("E_ARGUMENT", "chunk must be >= 0 (got " + std::to_string(chunk) + ")");
  it->second->state->set_neighbours(chunk, std::move(tokens));
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
  if (state_cache_) {
    s.prefix_cache = true;
    s.state_cache_bytes = state_cache_->bytes();
  }
  if (const KvPool* kv = model_->kv_pool()) {
    const KvPoolStats p = kv->stats();
    s.kv_blocks_used = p.used;
    s.kv_blocks_cached = p.cached;
    s.kv_blocks_free = p.free;
    s.kv_block_rows = kv->block_rows();
    s.kv_block_bytes = kv->block_bytes();
    s.prefix_cache = kv->caching();
  }
  return s;
}

int64_t Engine::cached_prefix(int64_t id, const std::vector<int32_t>& tokens) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sequences_.find(id);
  if (it == sequences_.end() || it->second->free_after_step) throw Error("E_ARGUMENT", "unknown " + seq_name(id));
  if (stepping_) return 0;  // the step owns the sequences and the caches
  const Sequence& s = *it->second;
  const int64_t B = kKvBlockRows, len = s.state->length();
  // The ids take_cached_prefix / take_cached_state walk, and where the request's tokens start in them.
  std::vector<int32_t> ids;
  int64_t first = 0;
  if (state_cache_) {
    if (s.adapter || len % B != 0 || len != (int64_t)s.consumed.size()) return 0;
    ids = s.consumed;
    first = len;
  } else {
    KvPool* kv = model_->kv_pool();
    if (!kv || !kv->caching() || !s.state->paged()) return 0;
    ids = s.tail;
    for (int64_t j = 0, soft = soft_prompt_left(s); j < soft; j++) ids.push_back(-1 - (int32_t)j);
    first = (int64_t)ids.size();
  }
  ids.insert(ids.end(), tokens.begin(), tokens.end());
  int64_t covered = 0;
  uint64_t key = s.key;
  for (int64_t o = state_cache_ ? len : 0; o + B <= (int64_t)ids.size(); o += B) {
    const uint64_t next = kv_block_hash(key, ids.data() + o, B);
    if (state_cache_) {  // the deepest copy
      if (state_cache_->contains(next, s.root_key, ids.data(), o + B)) covered = o + B;
    } else {  // the blocks found one after the other
      if (!model_->kv_pool()->contains(next, key, ids.data() + o)) break;
      covered = o + B;
    }
    key = next;
  }
  return std::max<int64_t>(0, covered - first);
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
  // Final-LN rows of the items that want them (ForwardItem::hidden), per request.
  std::vector<std::vector<float>> hidden;
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
    if (r.replay && r.tokens.size() != 1) throw Error("E_ARGUMENT", seq_name(r.seq) + ": a replayed step feeds exactly one token");
    if (r.hidden && !model_->exposes_hidden())
      throw Error("E_ARGUMENT", "hidden states: model_type " + model_->config().model_type + " does not expose its final layer norm's output (gpt2 does)");
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
  if (KvPool* kv = model_->kv_pool()) {  // every new position's block, counted as if nothing were cached
    int64_t need = 0;
    for (size_t i = 0; i < requests.size(); i++)
      if (PagedKv* t = seqs[i]->state->paged())
        need += t->blocks_needed(seqs[i]->state->length() + soft_prompt_left(*seqs[i]) + (int64_t)requests[i].tokens.size());
    if (need > kv->available())
      throw Error("E_KV_FULL", "the KV memory is full: this step needs " + std::to_string(need) + " more blocks of " +
                                   std::to_string(kv->block_rows()) + " positions and " +
                                   std::to_string(kv->available()) + " are available (raise --kv-memory)");
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
    // A state cache copies states at block boundaries: passes end on them.
    if (state_cache_) n = std::min(n, kKvBlockRows - seq.state->length() % kKvBlockRows);
    // Never leave one lone token for the next pass: perceiver_ar runs a
    // one-token pass as its sliding decode (src/engine/chunking.ts, same rule).
    if (left - n == 1 && n > 1) n--;
    if (r.prompt_logprobs && model_->prompt_logprobs_need_one_pass()) n = left;
    budget -= n;
    // Every row: log-probs, hidden states asked for, and local memory (which
    // keeps every position's key).
    const bool all = r.prompt_logprobs || r.hidden || seq.memory.local;
    float* out;
    if (all) {
      run.logits[i].resize(n * V);
      out = run.logits[i].data();
    } else {
      seq.last_logits.resize(V);
      out = seq.last_logits.data();
    }
    ForwardItem it{seq.state.get(), r.tokens.data() + run.cursor[i], n, all, out};
    it.adapter = adapter;
    if (r.hidden || seq.memory.enabled()) {
      run.hidden[i].resize((all ? n : 1) * model_->config().n_embd);
      it.hidden = run.hidden[i].data();
    }
    it.interim = !r.prompt_logprobs && left > n;
    it.input_ends = r.sample && left == n;
    it.decode = (seq.sampled_last || r.replay) && r.tokens.size() == 1;
    pass.items.push_back(it);
    pass.owner.push_back(i);
  }
  return pass;
}

void Engine::take_cached_prefix(StepRun& run, size_t i) const {
  if (state_cache_) return take_cached_state(run, i);
  Sequence& s = *run.seqs[i];
  const StepRequest& r = run.requests[i];
  PagedKv* t = s.state->paged();
  KvPool* kv = model_->kv_pool();
  // Log-probs, hidden states and local memory keys of cached positions: recomputed.
  if (!t || !kv || !kv->caching() || r.prompt_logprobs || r.hidden || s.memory.local || r.replay) return;
  const int64_t B = kv->block_rows();
  // The ids after the last keyed block: those of a partly filled block (a
  // chunk cut mid-block), the soft prompt's rows, then the request's tokens.
  std::vector<int32_t> ids = s.tail;
  const int64_t soft = soft_prompt_left(s), held = (int64_t)s.tail.size();
  for (int64_t j = 0; j < soft; j++) ids.push_back(-1 - (int32_t)j);
  ids.insert(ids.end(), r.tokens.begin(), r.tokens.end());
  const int64_t usable = (int64_t)ids.size() - (r.sample ? 1 : 0);  // sampling needs the last token's logits
  std::vector<int32_t> got;
  uint64_t key = s.key;
  for (int64_t o = 0; o + B <= usable; o += B) {
    const uint64_t next = kv_block_hash(key, ids.data() + o, B);
    const int32_t b = kv->lookup(next, key, ids.data() + o);
    if (b < 0) break;
    got.push_back(b);
    key = next;
  }
  const int64_t keyed = (int64_t)got.size();
  int64_t rows = keyed * B;  // positions after the keyed blocks the hit covers
  // The request ends a cached block and samples: that block's rows but the
  // last are copied into a block of its own, so only the last token runs
  // (the 2nd.. choices of n on a prompt of whole blocks prefill nothing else).
  // The copy is its, unkeyed: the last token completes it (published then
  // under the same key, which keeps the cached block).
  if (r.sample && rows + B == (int64_t)ids.size()) {
    const uint64_t next = kv_block_hash(key, ids.data() + rows, B);
    const int32_t b = kv->lookup(next, key, ids.data() + rows);
    if (b >= 0 && kv->available() == 0) kv->release(b);  // no block to copy into: the block runs
    else if (b >= 0) {
      const int32_t mine = kv->allocate();
      kv->copy_rows(mine, b, B - 1);
      kv->release(b);
      got.push_back(mine);
      rows += B - 1;
    }
  }
  const int64_t hit = rows - held;  // soft rows and tokens the hit covers
  if (got.empty() || hit < soft) {  // a soft prompt is run whole or taken whole
    for (int32_t b : got) kv->release(b);
    return;
  }
  s.state->adopt_prefix(got, s.keyed_blocks * B + rows, ids.data() + held);
  s.key = key;
  s.keyed_blocks += keyed;
  s.tail.assign(ids.begin() + keyed * B, ids.begin() + rows);
  run.cursor[i] = hit - soft;
  run.results[i].cached_tokens = hit - soft;
}

void Engine::take_cached_state(StepRun& run, size_t i) const {
  Sequence& s = *run.seqs[i];
  const StepRequest& r = run.requests[i];
  const int64_t B = kKvBlockRows, len = s.state->length();
  // Log-probs of cached positions are recomputed; a state that did not come
  // from its ids alone (a soft prompt) or sits mid-block has no key.
  if (r.prompt_logprobs || s.adapter || len % B != 0 || len != (int64_t)s.consumed.size()) return;
  std::vector<int32_t> ids = s.consumed;
  ids.insert(ids.end(), r.tokens.begin(), r.tokens.end());
  const int64_t usable = (int64_t)ids.size() - (r.sample ? 1 : 0);  // sampling needs the last token's logits
  const SequenceState* best = nullptr;
  int64_t end = 0;
  uint64_t key = s.key, best_key = 0;
  for (int64_t o = len; o + B <= usable; o += B) {  // the deepest copy along the chain
    key = kv_block_hash(key, ids.data() + o, B);
    if (const SequenceState* st = state_cache_->find(key, s.root_key, ids.data(), o + B)) best = st, end = o + B, best_key = key;
  }
  if (!best) return;
  s.state = model_->copy_state(*best);
  s.consumed.assign(ids.begin(), ids.begin() + end);
  s.key = best_key;
  s.keyed_blocks = end / B;
  run.cursor[i] = end - len;
  run.results[i].cached_tokens = end - len;
}

void Engine::publish_states(StepRun& run, const Pass& pass) const {
  const int64_t B = kKvBlockRows;
  for (size_t k = 0; k < pass.items.size(); k++) {
    Sequence& s = *run.seqs[pass.owner[k]];
    const ForwardItem& it = pass.items[k];
    if (it.embeds || s.adapter) continue;
    s.consumed.insert(s.consumed.end(), it.tokens, it.tokens + it.n);
    const int64_t n = (int64_t)s.consumed.size();
    while ((s.keyed_blocks + 1) * B <= n) {
      s.key = kv_block_hash(s.key, s.consumed.data() + s.keyed_blocks * B, B);
      s.keyed_blocks++;
      if (s.keyed_blocks * B == n && !state_cache_->has(s.key))
        state_cache_->put(s.key, s.root_key, s.consumed.data(), n, model_->copy_state(*s.state));
    }
  }
}

void Engine::publish_blocks(StepRun& run, const Pass& pass) const {
  if (state_cache_) return publish_states(run, pass);
  KvPool* kv = model_->kv_pool();
  if (!kv || !kv->caching()) return;
  const int64_t B = kv->block_rows();
  for (size_t k = 0; k < pass.items.size(); k++) {
    const size_t i = pass.owner[k];
    Sequence& s = *run.seqs[i];
    PagedKv* t = s.state->paged();
    if (!t) continue;
    const ForwardItem& it = pass.items[k];
    if (it.embeds) {  // soft-prompt rows: their row index names them
      const int64_t first = s.adapter->prompt_tokens - run.soft[i];
      for (int64_t j = 0; j < it.n; j++) s.tail.push_back(-1 - (int32_t)(first + j));
    } else {
      s.tail.insert(s.tail.end(), it.tokens, it.tokens + it.n);
    }
    while ((int64_t)s.tail.size() >= B) {
      const uint64_t next = kv_block_hash(s.key, s.tail.data(), B);
      kv->publish(t->table()[s.keyed_blocks], next, s.key, s.tail.data());
      s.key = next;
      s.keyed_blocks++;
      s.tail.erase(s.tail.begin(), s.tail.begin() + B);
    }
  }
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
    if (!r.prompt_logprobs && pass.items[k].all_logits) {  // every row was computed; the last one is the next token's
      s.last_logits.assign(run.logits[i].begin() + (n - 1) * V, run.logits[i].begin() + n * V);
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

void Engine::apply_memory(StepRun& run, const Pass& pass) const {
  const int64_t V = model_->config().vocab_size, C = model_->config().n_embd;
  // The rows to rewrite: (item, position in the item) of each prompt position
  // asking for its log-prob, else of the item's last position.
  struct Row {
    size_t k;
    int64_t pos;
  };
  std::vector<Row> rows;
  for (size_t k = 0; k < pass.items.size(); k++) {
    const ForwardItem& it = pass.items[k];
    const size_t i = pass.owner[k];
    if (it.embeds) continue;  // soft-prompt rows have no token to remember
    if (run.requests[i].hidden)
      run.results[i].hidden.insert(run.results[i].hidden.end(), it.hidden, it.hidden + it.n * C);
    if (!run.seqs[i]->memory.enabled()) continue;
    if (run.requests[i].prompt_logprobs)
      for (int64_t j = 0; j < it.n; j++) rows.push_back({k, j});
    else
      rows.push_back({k, it.n - 1});
  }
  if (rows.empty()) return;
  auto row_of = [&](const Row& r) { return pass.items[r.k].all_logits ? r.pos : 0; };
  auto seq_of = [&](const Row& r) -> Sequence& { return *run.seqs[pass.owner[r.k]]; };
  // External memory: one batched search per store for every row that uses it.
  std::vector<std::vector<Neighbour>> nb(rows.size());
  std::map<const KnnStore*, std::vector<size_t>> by_store;
  for (size_t r = 0; r < rows.size(); r++)
    if (const KnnStore* st = seq_of(rows[r]).store.get()) by_store[st].push_back(r);
  for (const auto& [store, list] : by_store) {
    int64_t kmax = 0;
    std::vector<float> q(list.size() * C);
    for (size_t m = 0; m < list.size(); m++) {
      const Row& r = rows[list[m]];
      kmax = std::max(kmax, seq_of(r).memory.k);
      std::memcpy(q.data() + m * C, pass.items[r.k].hidden + row_of(r) * C, C * sizeof(float));
    }
    std::vector<Neighbour> found;
    store->search(q.data(), (int64_t)list.size(), kmax, *pool_, found);
    for (size_t m = 0; m < list.size(); m++) {
      const Neighbour* f = found.data() + m * kmax;
      nb[list[m]].assign(f, f + seq_of(rows[list[m]]).memory.k);
    }
  }
  // In position order per item: local memory (the keys of earlier positions,
  // whose next tokens are known by then), the interpolation, then the
  // position's own key joins local memory.
  size_t r = 0;
  for (size_t k = 0; k < pass.items.size() && r < rows.size(); k++) {
    const ForwardItem& it = pass.items[k];
    Sequence& s = *run.seqs[pass.owner[k]];
    if (it.embeds || !s.memory.enabled()) continue;
    const MemoryParams& mp = s.memory;
    for (int64_t j = 0; j < it.n; j++) {
      const bool pending = mp.local && (int64_t)s.local_values.size() * C < (int64_t)s.local_keys.size();
      if (pending) s.local_values.push_back(it.tokens[j]);  // the successor of the last remembered position
      const int64_t row = it.all_logits ? j : 0;
      if (r < rows.size() && rows[r].k == k && rows[r].pos == j) {
        if (mp.local)
          nearest_local(it.hidden + row * C, s.local_keys.data(), s.local_values.data(), (int64_t)s.local_values.size(), C,
                        mp.k, nb[r]);
        interpolate_memory(it.logits + row * V, V, nb[r].data(), (int64_t)nb[r].size(), mp.lambda, mp.temperature);
        r++;
      }
      if (mp.local) s.local_keys.insert(s.local_keys.end(), it.hidden + row * C, it.hidden + (row + 1) * C);
    }
  }
}

void Engine::sample(StepRun& run) const {
  const int64_t V = model_->config().vocab_size;
  std::vector<size_t> todo;
  for (size_t i = 0; i < run.requests.size(); i++) {
    run.seqs[i]->sampled_last = run.requests[i].sample;
    if (run.requests[i].sample) {
      run.results[i].sampled = true;
      todo.push_back(i);
    }
  }
  // Each sampler belongs to one sequence and a step lists a sequence once, so the
  // sequences sample in parallel: one sample is a log-softmax, a copy and a scan of
  // all V logits (tens of microseconds at GPT-2's 50257), and a serial loop over a
  // batch of 32 held the whole pool for milliseconds of every step.
  std::exception_ptr failed;
  std::mutex failed_mu;
  auto some = [&](int64_t a, int64_t b) {
    try {
      for (int64_t k = a; k < b; k++) {
        const size_t i = todo[k];
        run.results[i].token = run.seqs[i]->sampler.sample(run.seqs[i]->last_logits.data(), V);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(failed_mu);
      if (!failed) failed = std::current_exception();
    }
  };
  if (todo.size() < 2 || pool_->size() == 1) some(0, (int64_t)todo.size());
  else pool_->parallel_for((int64_t)todo.size(), some);
  if (failed) std::rethrow_exception(failed);
}

std::vector<StepResult> Engine::step(const std::vector<StepRequest>& requests) {
  StepRun run{requests, validate(requests), {}, {}, {}, {}, {}, {}};
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
  run.hidden.resize(n);
  for (size_t i = 0; i < n; i++) {
    // The penalties' history: prompt tokens as they arrive (the sampler skips its own fed-back samples).
    run.seqs[i]->sampler.observe_input(requests[i].tokens.data(), (int64_t)requests[i].tokens.size());
    run.results[i].seq = requests[i].seq;
    take_cached_prefix(run, i);
    run.soft[i] = soft_prompt_left(*run.seqs[i]);
    if (requests[i].prompt_logprobs) {
      run.results[i].prompt_logprobs.assign(requests[i].tokens.size(), std::numeric_limits<float>::quiet_NaN());
      if (run.seqs[i]->sampler.params().n_logprobs > 0) run.results[i].prompt_top.resize(requests[i].tokens.size());
      run.lp.resize(model_->config().vocab_size);
    }
  }
  for (Pass pass; !(pass = plan_pass(run)).items.empty();) {
    model_->forward(pass.items, *pool_);
    apply_memory(run, pass);
    publish_blocks(run, pass);
    prompt_logprobs(run, pass);
  }
  sample(run);
  return std::move(run.results);
}

}  // namespace roost
