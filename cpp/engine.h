// The engine: one model, a thread pool, the live sequences. One step() runs a
// batched forward for every listed sequence plus sampling, and returns tokens
// and log-probs. The scheduler (TypeScript) decides between steps who runs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "knn_memory.h"
#include "models/model.h"
#include "sampler.h"
#include "state_cache.h"
#include "threadpool.h"

namespace roost {

struct EngineOptions {
  int threads = 0;               // 0 = every core this process may use
  int64_t max_step_tokens = 512; // tokens per forward pass; longer inputs run in several
  std::string device = "cpu";    // "cpu" | "cuda" | "auto" (cpp/device.h)
  // Bytes of the paged models' KV pool (cpp/kv_pool.h); 0: kDefaultKvShare of
  // the memory available (MemAvailable) once the weights are loaded.
  int64_t kv_memory = 0;
  bool prefix_cache = true;      // reuse cached full blocks of a shared prefix
  std::string quantize;          // "" (weights as stored) | "q8_0" (matrices quantized at load)
  std::string kv_cache_dtype = "auto";  // "auto" | "f32" | "f16" (load_model_for_device)
};
constexpr double kDefaultKvShare = 0.5;

struct StepRequest {
  int64_t seq = 0;
  std::vector<int32_t> tokens;   // new tokens to append (prompt chunk, or the last sampled token)
  bool sample = true;            // sample the next token after them
  bool prompt_logprobs = false;  // log p(tokens[j] | everything before), j = 0..n-1
  bool hidden = false;           // the final layer norm's output at every token (StepResult::hidden)
  // One token this sequence sampled before a preemption, fed again: it runs
  // as the decode row it was (the same kernels; perceiver_ar: its sliding
  // decode) and never from the prefix cache (adopting a block would rebuild
  // perceiver_ar's window as a prefill).
  bool replay = false;
};

struct StepResult {
  int64_t seq = 0;
  bool sampled = false;
  SampledToken token;                  // when sampled
  // When prompt_logprobs: one entry per input token; NaN where there is no
  // previous logit (the very first token of a sequence).
  std::vector<float> prompt_logprobs;
  std::vector<std::vector<TokenLogprob>> prompt_top;  // top n_logprobs at each input token
  // Leading tokens of the request taken from the prefix cache (not computed).
  int64_t cached_tokens = 0;
  // When hidden: [tokens.size(), n_embd], row j the head's input at tokens[j]
  // (the key kNN memory stores for the token after it).
  std::vector<float> hidden;
};

struct AdapterInfo {
  std::string name;
  std::string type;           // "prompt_tuning" | "ia3"
  int64_t prompt_tokens = 0;  // positions a soft prompt takes before the first token
};

struct EngineStats {
  int64_t sequences = 0;
  size_t state_bytes = 0;   // KV caches and recurrent states in use
  size_t weight_bytes = 0;
  // The KV pool of a paged model (all 0 otherwise): blocks used by sequences,
  // cached (prefix cache, unreferenced), free; positions per block.
  int64_t kv_blocks_used = 0, kv_blocks_cached = 0, kv_blocks_free = 0, kv_block_rows = 0;
  size_t kv_block_bytes = 0;
  // The engine reuses cached prefixes (a paged model or one whose states are
  // copied, with the cache on); the state copies' bytes (cpp/state_cache.h).
  bool prefix_cache = false;
  size_t state_cache_bytes = 0;
};

class Engine {
 public:
  // model_dir: a model folder or a GGUF file (models/model.h load_model).
  Engine(const std::string& model_dir, EngineOptions options);
  ~Engine();

  const ModelConfig& config() const { return model_->config(); }
  int64_t max_context() const { return model_->max_context(); }
  KvType kv_type() const { return model_->kv_type(); }
  bool decode_differs_from_prefill() const { return model_->decode_differs_from_prefill(); }
  int threads() const { return pool_->size(); }
  const std::string& device() const { return device_; }  // "cpu" or "cuda": where the model runs

  // Loads the adapter folder <dir> under <name> (models/adapter.h). Throws
  // E_ARGUMENT for a name in use or a model without adapter support, and the
  // loader's E_CONFIG / E_CHECKPOINT for a bad or mismatched folder.
  AdapterInfo load_adapter(const std::string& name, const std::string& dir);
  // Forgets an adapter (false if unknown); sequences using it keep it until they end.
  bool unload_adapter(const std::string& name);
  std::vector<AdapterInfo> adapters() const;

  // Loads a kNN memory store (cpp/knn_memory.h) from <dir> under <name>:
  // E_ARGUMENT for a name in use or a model that does not expose its hidden
  // state, E_CHECKPOINT for a bad folder. Returns its entries.
  int64_t load_memory(const std::string& name, const std::string& dir);
  // Forgets a store (false if unknown); sequences using it keep it until they end.
  bool unload_memory(const std::string& name);
  // The k nearest entries of store `name` to each of M queries [M, n_embd]
  // (KnnStore::search on this engine's threads; E_STATE during a step).
  // roost eval's exact search (src/cli/eval.ts).
  std::vector<Neighbour> search_memory(const std::string& name, const float* queries, int64_t M, int64_t k);

  // adapter: "" for none, else a loaded adapter's name (E_ARGUMENT if unknown).
  // memory: kNN memory (its datastore a loaded store's name, or "" for local
  // memory alone); E_ARGUMENT for an unknown store or a value out of range.
  int64_t create_sequence(const SamplingParams& params, const std::string& adapter = "", const MemoryParams& memory = {});
  // Frees at once, or right after the running step if the sequence is in it.
  void free_sequence(int64_t seq);
  int64_t sequence_length(int64_t seq) const;

  // Throws E_ARGUMENT (unknown sequence, token out of range, context exceeded,
  // a sequence listed twice) and E_KV_FULL (the KV pool cannot hold the
  // step's new positions) before touching any state, E_STATE if a step is
  // running. A request's leading full blocks found in the prefix cache are
  // taken, not computed (never for prompt_logprobs requests, and never the
  // last token of a request that samples).
  std::vector<StepResult> step(const std::vector<StepRequest>& requests);
  // Drops a sequence's KV state (its blocks go back to the pool) but keeps its
  // sampler, adapter and id: the scheduler's preemption, which feeds the
  // sequence's tokens again later (E_ARGUMENT if unknown, E_STATE in a step).
  void reset_sequence(int64_t seq);
  // retro (docs/retro.md): the k neighbours of the sequence's chunk `chunk`
  // (k * 2m tokens), before the step that completes that chunk. E_ARGUMENT:
  // unknown sequence, another model type, a chunk already complete, a wrong
  // count or a token outside the vocabulary; E_STATE in a step.
  void set_neighbours(int64_t seq, int64_t chunk, std::vector<int32_t> tokens);

  EngineStats stats() const;
  // Leading tokens of `tokens`, appended to the sequence, that the next step
  // would take from the prefix cache as it stands (0 while a step runs): the
  // scheduler feeds them beyond its per-step token budget, as they cost no
  // compute. E_ARGUMENT for an unknown sequence.
  int64_t cached_prefix(int64_t seq, const std::vector<int32_t>& tokens) const;

 private:
  struct Sequence {
    std::unique_ptr<SequenceState> state;
    Sampler sampler;
    std::shared_ptr<const Adapter> adapter;  // null: none; shared so unloading never frees it under a sequence
    std::vector<float> last_logits;  // logits after the last consumed token (for the next chunk's first log-prob)
    bool in_step = false;
    bool free_after_step = false;
    bool sampled_last = false;  // its last step sampled: a next request of one token is that token (a decode row)
    // Prefix-cache key chain of a paged state: the key of its last full block
    // (root: the adapter's identity), full blocks keyed, and the ids of the
    // positions after them (soft-prompt rows as -1 - row).
    uint64_t root_key = 0, key = 0;
    int64_t keyed_blocks = 0;
    std::vector<int32_t> tail;
    // A model with a state cache instead (cpp/state_cache.h): every id the
    // state consumed, its full blocks keyed by `key` as above.
    std::vector<int32_t> consumed;
    // kNN memory: its parameters and store (null: local memory only, or none);
    // local memory: the keys of the consumed positions [n, C] and the tokens
    // that followed them (one fewer while the last position's successor is unknown).
    MemoryParams memory = {};
    std::shared_ptr<const KnnStore> store = {};
    std::vector<float> local_keys = {};
    std::vector<int32_t> local_values = {};
  };

  // Soft-prompt positions a sequence has yet to run (its adapter's P before its first token, else 0).
  static int64_t soft_prompt_left(const Sequence& s);

  // The named steps of step(), in order (engine.cpp): validate the requests and
  // claim their sequences; plan each forward pass (cut the inputs into passes of
  // at most max_step_tokens); after each pass, read the prompt log-probs and
  // advance the cursors; finally sample.
  struct StepRun;  // one step's requests, sequences, cursors and results
  struct Pass;     // one forward pass: its items and the request each serves
  std::vector<Sequence*> validate(const std::vector<StepRequest>& requests);
  Pass plan_pass(StepRun& run) const;
  void prompt_logprobs(StepRun& run, const Pass& pass) const;
  // After each pass, before the log-probs: the kNN memory of every item whose
  // sequence has it rewrites the item's logits rows (knn_memory.h).
  void apply_memory(StepRun& run, const Pass& pass) const;
  // Before the passes: a request's leading cached blocks; after each pass:
  // publishes the blocks it filled.
  void take_cached_prefix(StepRun& run, size_t i) const;
  void publish_blocks(StepRun& run, const Pass& pass) const;
  // The same for a model whose state is copied at block boundaries.
  void take_cached_state(StepRun& run, size_t i) const;
  void publish_states(StepRun& run, const Pass& pass) const;
  void sample(StepRun& run) const;

  std::unique_ptr<Model> model_;
  std::unique_ptr<ThreadPool> pool_;
  // The prefix cache of a model that copies states (copies_state()), when caching is on.
  std::unique_ptr<StateCache> state_cache_;
  EngineOptions options_;
  std::string device_;
  mutable std::mutex mu_;        // guards sequences_ and the flags; not held during compute
  std::map<int64_t, std::unique_ptr<Sequence>> sequences_;
  std::map<std::string, std::shared_ptr<const Adapter>> adapters_;
  std::map<std::string, std::shared_ptr<const KnnStore>> memories_;
  std::map<const Adapter*, uint64_t> adapter_serial_;  // prefix-cache identity of each load
  uint64_t next_adapter_serial_ = 1;
  int64_t next_id_ = 1;
  bool stepping_ = false;
};

}  // namespace roost
