// Memory-mapped GGUF files (llama.cpp's format, versions 2 and 3): header, metadata
// key/values, tensor infos and the aligned data section, all validated before any
// tensor is handed out, with the rigour of safetensors.cpp: every count, length and
// offset is bounded by the file, sizes are computed without overflow, tensors must be
// aligned, inside the data section and not overlap, and only F32, F16, BF16 and Q8_0
// tensors are accepted. A lie gives Error("E_CHECKPOINT") naming the file and the
// key or tensor.
//
// Tensor shapes are given row-major (slowest dimension first), the reverse of GGUF's
// own fastest-first order, so a GGUF matrix of n_out rows of n_in is [n_out, n_in].
// Q8_0 tensors keep their blocks as stored (dtype.h: 34 bytes per 32 weights along
// the last dimension).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "safetensors.h"

namespace roost {

// One metadata value. Scalars of every GGUF type are kept (integers widened to
// int64/uint64, floats to double); arrays keep their element type and length, and
// string arrays their strings.
struct GgufValue {
  enum Type : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12
  };
  Type type = UINT8;
  uint64_t u = 0;   // unsigned integers and BOOL
  int64_t i = 0;    // signed integers
  double f = 0;     // FLOAT32, FLOAT64
  std::string s;    // STRING
  Type elem = UINT8;                 // ARRAY: element type
  uint64_t count = 0;                // ARRAY: element count
  std::vector<std::string> strings;  // ARRAY of STRING
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const GgufValue* find_kv(const std::string& key) const;
  // The value as an unsigned integer: any integer type with a non-negative value;
  // throws E_CHECKPOINT naming the key if missing or of another type.
  uint64_t get_uint(const std::string& key) const;
  double get_float(const std::string& key) const;  // FLOAT32 or FLOAT64
  const std::string& get_string(const std::string& key) const;

  // Tensors under their GGUF names, in file order.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;

 private:
  GgufFile() = default;
  struct Mapping;
  std::unique_ptr<Mapping> map_;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<TensorView> tensors_;
};

// llama.cpp's `gpt2` tensor names mapped to Roost's checkpoint names (as HF GPT-2
// safetensors name them, docs/models.md): token_embd -> wte, position_embd -> wpe,
// blk.N.attn_norm -> h.N.ln_1, attn_qkv -> attn.c_attn, attn_output -> attn.c_proj,
// ffn_norm -> ln_2, ffn_up -> mlp.c_fc, ffn_down -> mlp.c_proj, output_norm -> ln_f,
// output -> lm_head (each .weight/.bias). `transposed`: the GGUF matrix is the
// transpose of Roost's (HF Conv1D weights are [in, out]; GGUF stores [out, in]), so it
// packs with src_is_nk = true. Empty name for a tensor outside the architecture.
struct Gpt2TensorName {
  std::string name;
  bool transposed = false;
};
Gpt2TensorName gpt2_name_from_gguf(const std::string& gguf_name);

// The GPT-2 tensors of a GGUF file under Roost's names (TensorView::name is Roost's;
// shape as stored, i.e. [out, in] where `transposed`). Throws E_CHECKPOINT if
// general.architecture is not gpt2 or a tensor has no Roost name.
struct Gpt2Tensor {
  TensorView view;
  bool transposed = false;
};
std::map<std::string, Gpt2Tensor> gpt2_tensors(const GgufFile& f);

}  // namespace roost

namespace roost {

// config.json text for a GGUF file of llama.cpp's gpt2 architecture, from its metadata:
// gpt2.context_length -> n_positions, embedding_length -> n_embd, block_count ->
// n_layer, attention.head_count -> n_head, feed_forward_length -> n_inner,
// attention.layer_norm_epsilon, vocab_size from token_embd's rows (checked against
// tokenizer.ggml.tokens when present) and eos_token_id from tokenizer.ggml.eos_token_id.
// parse_config (cpp/config.h) then validates it as it validates any config.json.
// Throws E_CHECKPOINT naming the file and the key that is missing or out of range.
std::string gpt2_config_json(const GgufFile& f);

}  // namespace roost
