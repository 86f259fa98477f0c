// The interface every architecture implements: per-sequence state and one
// batched forward step over many sequences of different lengths.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../backend.h"
#include "../config.h"
#include "../threadpool.h"
#include "adapter.h"

namespace roost {

class KvPool;
class PagedKv;

// What a sequence keeps between steps (KV cache, recurrent state). Each model
// defines its own; the engine only asks how many tokens it holds and its size.
class SequenceState {
 public:
  virtual ~SequenceState() = default;
  virtual int64_t length() const = 0;   // tokens consumed so far
  virtual size_t bytes() const = 0;     // memory held now
  // The block table of a state whose K/V live in the model's KvPool (null: not paged).
  virtual PagedKv* paged() { return nullptr; }
  // Prefix-cache hit on a paged state: drops its partly filled last block (if
  // any), appends these retained blocks, which hold the positions of that
  // block and the next ones up to `length` (the last may be partly filled), and
  // sets length() to it. ids: the ids of the adopted positions length() ..
  // length - 1 (soft-prompt rows negative), for a state that keeps some.
  virtual void adopt_prefix(const std::vector<int32_t>& blocks, int64_t length, const int32_t* ids);
  // retro (docs/retro.md): the k neighbours of chunk `chunk` (k rows of 2m
  // tokens, row-major), encoded by the pass that completes that chunk. Other
  // models refuse (E_ARGUMENT).
  virtual void set_neighbours(int64_t chunk, std::vector<int32_t> tokens);
};

// One sequence's share of a forward step.
struct ForwardItem {
  SequenceState* state;
  const int32_t* tokens;   // the new tokens, appended at positions length() ..
  int64_t n;               // >= 1
  bool all_logits;         // true: logits for every new token; false: the last one only
  float* logits;           // [all_logits ? n : 1, V], written by forward()
  // The sequence's adapter (null: none); only models with supports_adapters().
  const Adapter* adapter = nullptr;
  // When set, the n new positions take these input embeddings [n, C] instead
  // of tokens' (a soft prompt); tokens is then unused.
  const float* embeds = nullptr;
  // True when more of this sequence's prompt follows in a later pass of the
  // same step and these logits are discarded (no prompt log-probs asked): a
  // model may skip work that only the logits need (perceiver_ar's latent
  // window, rebuilt by the last pass).
  bool interim = false;
  // True when the item's last token ends the sequence's input and the next
  // token is sampled from its logits (the request samples and this pass runs
  // its last token). An encoder-decoder model (t5) runs its encoder then; the
  // others ignore it.
  bool input_ends = false;
  // When set (models with exposes_hidden()), the final layer norm's output
  // (the head's input) of the rows whose logits are written: [all_logits ? n : 1, C].
  // kNN memory's keys (cpp/knn_memory.h).
  float* hidden = nullptr;
  // True when the item is the one token sampled from the sequence's previous
  // logits (a decode row); false for input rows, whose grouping into passes
  // depends on the scheduler (AttnTask::pass_cut).
  bool decode = false;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::unique_ptr<SequenceState> new_state() const = 0;
  // Largest total length a sequence may reach (0 = bounded only by memory).
  virtual int64_t max_context() const = 0;
  // Runs every item's new tokens, appends them to its state, writes logits.
  virtual void forward(const std::vector<ForwardItem>& items, ThreadPool& pool) = 0;
  virtual size_t weight_bytes() const = 0;
  virtual KvType kv_type() const = 0;  // the element type of its KV cache (the backend's)
  // True when the log-probs of a prompt's tokens are exact only if the whole
  // prompt runs in one forward (perceiver_ar: each pass has its own latent
  // window). The engine then never splits a step's prompt that asks for them.
  virtual bool prompt_logprobs_need_one_pass() const { return false; }
  // True when a one-token forward after a sampled token is a decode that
  // differs from prefilling the same token (perceiver_ar's sliding window):
  // a preempted sequence's sampled tokens are then replayed one step each
  // (StepRequest::replay) to leave the state its decode had.
  virtual bool decode_differs_from_prefill() const { return false; }
  // True when forward() honours ForwardItem::adapter and ::embeds.
  virtual bool supports_adapters() const { return false; }
  // True when forward() writes ForwardItem::hidden.
  virtual bool exposes_hidden() const { return false; }
  // The pool every paged state of this model allocates from (null: the model
  // keeps per-sequence buffers; cpp/kv_pool.h).
  virtual KvPool* kv_pool() { return nullptr; }
  // A copy of `state` (of this model) that continues exactly as it would;
  // null when the model's state is not copied so. The prefix cache keeps
  // such copies at block boundaries for models that are not paged
  // (cpp/state_cache.h): block_recurrent.
  virtual std::unique_ptr<SequenceState> copy_state(const SequenceState& state) const { return nullptr; }
  virtual bool copies_state() const { return false; }
  // The most tokens one forward pass runs (the engine's max_step_tokens, set
  // once after load). A model whose own work in a pass can exceed the tokens
  // fed (t5's encoder, which runs over the whole input at its end) splits that
  // work into pieces of this many rows, as a prefill is split into steps.
  virtual void set_pass_tokens(int64_t n) {}
};

// Opens a model and builds what its model_type names on the CPU backend. `path` is a
// folder (config.json + model.safetensors, its shards, or model.gguf) or a GGUF file
// of llama.cpp's gpt2 architecture (config from its metadata: gguf.h gpt2_config_json).
// weights = Q8_0: matrices quantized to Q8_0 at load (--quantize q8_0). kv: the
// element type of the KV cache; unset (--kv-cache-dtype auto): F16 when the
// matrices are Q8_0 (quantized at load or stored so), F32 otherwise.
std::unique_ptr<Model> load_model(const std::string& path, WeightFormat weights = WeightFormat::Keep,
                                  std::optional<KvType> kv = std::nullopt);
// The same on the backend make_backend returns for the opened checkpoint (the
// one model-type dispatch of every device: cpp/models/load_model.cpp). `weights`
// is what the factory's backend was asked for: Q8_0 (or a Q8_0 tensor in the
// checkpoint) requires Op::GemmQ8, so a backend without it refuses the model.
using BackendFactory = std::function<std::shared_ptr<Backend>(const Checkpoint&)>;
std::unique_ptr<Model> load_model(const std::string& path, const BackendFactory& make_backend,
                                  WeightFormat weights = WeightFormat::Keep);

}  // namespace roost
