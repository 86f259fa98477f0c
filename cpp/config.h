// config.json of a checkpoint folder, parsed and validated against
// docs/spec.md. Every refusal is an Error("E_CONFIG") whose message
// names the file and the field, e.g.
//   "<dir>/config.json: attention.block_size must be an integer >= 1 (got 0)".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace roost {

struct AttentionConfig {
  std::string kind = "dense";  // "dense" | "bigbird"
  // bigbird only (every field required when kind = "bigbird"):
  int64_t block_size = 0;      // b >= 1
  int64_t window_blocks = 0;   // w >= 1
  int64_t global_blocks = 0;   // g >= 0
  int64_t random_blocks = 0;   // r >= 0
  uint64_t seed = 0;           // 0 <= s < 2^53
};

struct ModelConfig {
  std::string dir;             // the checkpoint folder, for messages
  std::string model_type;      // "gpt2" | "perceiver_ar" | "block_recurrent" | "retro" | "llama" | "mistral" | "qwen2" | "opt" | "xglm"
  int64_t vocab_size = 0;
  int64_t n_embd = 0;          // C
  int64_t n_head = 0;          // H (divides C)
  int64_t n_layer = 0;
  int64_t n_inner = 0;         // null in JSON -> 4C
  int64_t n_positions = 0;     // 0 = no cap (rotary without n_positions); learned: wpe rows
  float layer_norm_epsilon = 1e-5f;
  std::string activation_function = "gelu_new";

  std::string position_embedding = "learned";  // "learned" | "rotary" | "sinusoidal" (xglm)
  int64_t rotary_dim = 0;      // even, <= D; default D
  double rotary_base = 10000.0;
  AttentionConfig attention;

  // The Llama family (llama, mistral, qwen2; docs/models.md), read from HF's
  // own keys (hidden_size -> n_embd, rms_norm_eps -> layer_norm_epsilon, ...).
  int64_t n_kv_head = 0;       // num_key_value_heads (divides n_head); 0 elsewhere
  int64_t explicit_head_dim = 0;  // config head_dim when given, else 0 (n_embd / n_head)
  bool qkv_bias = false;       // q/k/v_proj.bias (qwen2; llama attention_bias)
  bool o_bias = false;         // o_proj.bias (llama attention_bias)
  bool tie_word_embeddings = false;  // lm_head is embed_tokens
  int64_t sliding_window = 0;  // mistral: a query sees the last sliding_window keys (itself included); 0: all
  struct RopeScaling {
    std::string type;          // "" (none) | "linear" | "llama3"
    double factor = 1.0;
    double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
    int64_t original_max_position_embeddings = 0;          // llama3
  } rope_scaling;

  // OPT and XGLM (docs/models.md, "OPT and XGLM"), read from HF's own keys;
  // n_positions is max_position_embeddings (the position table has 2 more rows:
  // position p reads row p + 2), activation_function "relu" | "gelu" | "gelu_new",
  // tie_word_embeddings above (default true for both).
  bool pre_norm = true;         // opt do_layer_norm_before; xglm always
  bool final_norm = true;       // the model-level LayerNorm before the head exists
  int64_t word_embed_proj_dim = 0;  // opt: embedding width P when != n_embd (project_in/out); 0: none
  bool linear_bias = true;      // opt enable_bias: q/k/v/out_proj and fc1/fc2 biases
  double embed_scale = 1.0;     // xglm scale_embedding: sqrt(d_model)
  int64_t pad_token_id = -1;    // xglm: the sinusoid table's zeroed row (-1: none)

  // T5 (docs/t5.md), from HF's keys: d_model -> n_embd, num_heads -> n_head,
  // d_kv -> explicit_head_dim, d_ff -> n_inner, num_layers -> n_layer (the encoder).
  int64_t n_decoder_layer = 0;      // num_decoder_layers
  int64_t rel_buckets = 0;          // relative_attention_num_buckets
  int64_t rel_max_distance = 0;     // relative_attention_max_distance
  bool gated_gelu = false;          // feed_forward_proj "gated-gelu" (v1.1) rather than "relu"
  int64_t decoder_start_token_id = 0;

  int64_t num_latents = 0;     // perceiver_ar: N >= 1

  int64_t block_size = 0;      // block_recurrent: W >= 1
  int64_t num_states = 0;      // block_recurrent: S >= 1
  std::vector<int64_t> recurrent_layers;  // distinct, ascending, each < n_layer
  std::string gate = "fixed";

  // retro (docs/retro.md): chunk size m, k neighbours of 2m tokens, CCA layers
  // cca_start, cca_start + cca_period, .. < n_layer, the neighbour encoder's depth.
  int64_t chunk_size = 0;
  int64_t num_neighbours = 0;
  int64_t cca_start = 0;
  int64_t cca_period = 0;
  int64_t encoder_layers = 0;

  // Tokenizer facts the engine needs (the TS layer reads the rest itself).
  // "bytes", "" when absent, or an HF class name (e.g. "GPT2Tokenizer") that
  // the engine ignores: the TS layer picks the tokenizer from the files.
  std::string tokenizer_class;
  std::map<std::string, int64_t> special_tokens; // name -> id, each < vocab_size (>= 256 for bytes)
  // eos_token_id, else for the bytes tokenizer special_tokens["eos"]; -1 when unknown.
  int64_t eos_token_id = -1;

  int64_t head_dim() const { return explicit_head_dim ? explicit_head_dim : n_embd / n_head; }
  bool llama_family() const { return model_type == "llama" || model_type == "mistral" || model_type == "qwen2"; }
  bool opt_family() const { return model_type == "opt" || model_type == "xglm"; }
  bool encoder_decoder() const { return model_type == "t5"; }
};

// Reads <dir>/config.json. Throws Error("E_CONFIG") (or E_CHECKPOINT if the file
// is missing/unreadable) naming the file and field.
ModelConfig load_config(const std::string& dir);

// Parses config JSON text; `source` names the file in messages.
ModelConfig parse_config(const std::string& json_text, const std::string& source, const std::string& dir);

}  // namespace roost
