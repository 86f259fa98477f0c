// config.json -> ModelConfig, validated against docs/spec.md. Keys
// this file does not know are ignored: HF configs carry many (architectures,
// task_specific_params, ...). Messages read
//   "<dir>/config.json: <field> <what is wrong> (got <value>)".
#include "config.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "common.h"
#include "json.h"

namespace roost {

namespace {

constexpr size_t kMaxConfigBytes = 16u << 20;
// Model sizes multiply into buffer sizes; 2^31-1 keeps every product of two in int64.
constexpr int64_t kMaxSize = 2147483647;
constexpr uint64_t kTwoTo53 = uint64_t(1) << 53;

using json::Value;

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what, const Value* got = nullptr) const {
    std::string msg = source_ + ": " + field + " " + what;
    if (got) msg += " (got " + json::dump(*got) + ")";
    throw Error("E_CONFIG", msg);
  }

  // Absent and null both mean "not given" for optional fields (HF writes null for unset ones).
  static const Value* given(const Value& obj, const char* key) {
    const Value* v = obj.find(key);
    return v && !v->is_null() ? v : nullptr;
  }

  int64_t integer(const Value& v, const std::string& field, int64_t lo, int64_t hi) const {
    if (!v.is_number() || !v.has_i64 || v.i64 < lo) fail(field, "must be an integer >= " + std::to_string(lo), &v);
    if (v.i64 > hi) fail(field, "must be an integer <= " + std::to_string(hi), &v);
    return v.i64;
  }

  int64_t required_int(const Value& obj, const char* key, const std::string& field, int64_t lo, int64_t hi) const {
    const Value* v = obj.find(key);
    if (!v) fail(field, "is missing (expected an integer >= " + std::to_string(lo) + ")");
    return integer(*v, field, lo, hi);
  }

  int64_t size(const Value& obj, const char* key) const { return required_int(obj, key, key, 1, kMaxSize); }

  double positive_number(const Value& v, const std::string& field) const {
    if (!v.is_number() || !(v.number > 0) || !std::isfinite(v.number)) fail(field, "must be a number > 0", &v);
    return v.number;
  }

  std::string string(const Value& v, const std::string& field, const std::string& expected) const {
    if (!v.is_string()) fail(field, "must be " + expected, &v);
    return v.text;
  }

 private:
  std::string source_;
};

void read_attention(const Reader& r, const Value& root, ModelConfig& c) {
  const Value* a = Reader::given(root, "attention");
  if (!a) return;
  if (!a->is_object())
    r.fail("attention", "must be an object {\"kind\": \"dense\" | \"bigbird\", ...}", a);
  const Value* kind = a->find("kind");
  if (!kind) r.fail("attention.kind", "is missing (expected \"dense\" or \"bigbird\")");
  c.attention.kind = r.string(*kind, "attention.kind", "\"dense\" or \"bigbird\"");
  if (c.attention.kind == "dense") return;
  if (c.attention.kind != "bigbird") r.fail("attention.kind", "must be \"dense\" or \"bigbird\"", kind);
  if (c.model_type != "gpt2")
    r.fail("attention.kind", "\"bigbird\" is only supported by model_type gpt2, not " + c.model_type, kind);
  c.attention.block_size = r.required_int(*a, "block_size", "attention.block_size", 1, INT64_MAX);
  c.attention.window_blocks = r.required_int(*a, "window_blocks", "attention.window_blocks", 1, INT64_MAX);
  c.attention.global_blocks = r.required_int(*a, "global_blocks", "attention.global_blocks", 0, INT64_MAX);
  c.attention.random_blocks = r.required_int(*a, "random_blocks", "attention.random_blocks", 0, INT64_MAX);
  const Value* seed = a->find("seed");
  if (!seed) r.fail("attention.seed", "is missing (expected an integer >= 0 and < 2^53)");
  if (!seed->is_number() || !seed->has_u64 || seed->u64 >= kTwoTo53)
    r.fail("attention.seed", "must be an integer >= 0 and < 2^53", seed);
  c.attention.seed = seed->u64;
}

void read_positions(const Reader& r, const Value& root, ModelConfig& c) {
  const Value* pe = Reader::given(root, "position_embedding");
  if (c.model_type != "gpt2") {
    // perceiver_ar and block_recurrent have no wpe: say so rather than default to learned.
    if (!pe) r.fail("position_embedding", "is missing: model_type " + c.model_type + " requires \"rotary\"");
    if (!pe->is_string() || pe->text != "rotary")
      r.fail("position_embedding", "must be \"rotary\" for model_type " + c.model_type, pe);
  }
  if (pe) {
    c.position_embedding = r.string(*pe, "position_embedding", "\"learned\" or \"rotary\"");
    if (c.position_embedding != "learned" && c.position_embedding != "rotary")
      r.fail("position_embedding", "must be \"learned\" or \"rotary\"", pe);
  }

  // HF's older configs name the context n_ctx; n_positions wins when both are present.
  const char* ctx_key = Reader::given(root, "n_positions") ? "n_positions" : "n_ctx";
  const Value* ctx = Reader::given(root, ctx_key);
  if (c.position_embedding == "learned") {
    if (!ctx) r.fail("n_positions", "is missing (learned position embeddings need an integer >= 1)");
    c.n_positions = r.integer(*ctx, ctx_key, 1, kMaxSize);
    c.rotary_dim = 0;
    return;
  }
  c.n_positions = ctx ? r.integer(*ctx, ctx_key, 1, kMaxSize) : 0;  // 0: only memory caps the context
  const int64_t d = c.head_dim();
  c.rotary_dim = d;
  if (const Value* rd = Reader::given(root, "rotary_dim")) {
    c.rotary_dim = r.integer(*rd, "rotary_dim", 2, d);
    if (c.rotary_dim % 2 != 0) r.fail("rotary_dim", "must be even (rotate-half pairs channel i with i + rotary_dim/2)", rd);
  }
  if (const Value* rb = Reader::given(root, "rotary_base")) c.rotary_base = r.positive_number(*rb, "rotary_base");
}

void read_perceiver(const Reader& r, const Value& root, ModelConfig& c) {
  if (!root.find("num_latents")) r.fail("num_latents", "is missing (perceiver_ar requires an integer >= 1)");
  c.num_latents = r.required_int(root, "num_latents", "num_latents", 1, kMaxSize);
}

void read_block_recurrent(const Reader& r, const Value& root, ModelConfig& c) {
  c.block_size = r.required_int(root, "block_size", "block_size", 1, kMaxSize);
  c.num_states = r.required_int(root, "num_states", "num_states", 1, kMaxSize);
  const Value* layers = root.find("recurrent_layers");
  if (!layers) r.fail("recurrent_layers", "is missing (expected a list of layer indices)");
  if (!layers->is_array()) r.fail("recurrent_layers", "must be a list of layer indices", layers);
  std::set<int64_t> seen;
  for (size_t i = 0; i < layers->items.size(); ++i) {
    const std::string field = "recurrent_layers[" + std::to_string(i) + "]";
    int64_t l = r.integer(layers->items[i], field, 0, c.n_layer - 1);
    if (!seen.insert(l).second) r.fail(field, "repeats layer " + std::to_string(l), layers);
  }
  c.recurrent_layers.assign(seen.begin(), seen.end());  // ascending
  if (const Value* gate = Reader::given(root, "gate")) {
    if (!gate->is_string() || gate->text != "fixed") r.fail("gate", "must be \"fixed\" (the only gate)", gate);
  }
}

// retro (docs/retro.md): chunk size, neighbours per chunk, the CCA layers, the encoder's depth.
void read_retro(const Reader& r, const Value& root, ModelConfig& c) {
  c.chunk_size = r.required_int(root, "chunk_size", "chunk_size", 1, kMaxSize);
  c.num_neighbours = r.required_int(root, "num_neighbours", "num_neighbours", 1, kMaxSize);
  c.cca_start = r.required_int(root, "cca_start", "cca_start", 0, c.n_layer - 1);
  c.cca_period = r.required_int(root, "cca_period", "cca_period", 1, kMaxSize);
  c.encoder_layers = r.required_int(root, "encoder_layers", "encoder_layers", 1, kMaxSize);
}

bool boolean(const Reader& r, const Value& root, const char* key, bool dflt) {
  const Value* v = Reader::given(root, key);
  if (!v) return dflt;
  if (!v->is_bool()) r.fail(key, "must be true or false", v);
  return v->boolean;
}

void read_rope_scaling(const Reader& r, const Value& root, ModelConfig& c) {
  const Value* rs = Reader::given(root, "rope_scaling");
  if (!rs) return;
  if (!rs->is_object()) r.fail("rope_scaling", "must be an object {\"rope_type\": \"linear\" | \"llama3\", ...} or null", rs);
  const Value* type = Reader::given(*rs, "rope_type");  // HF's newer key; "type" in older configs
  if (!type) type = Reader::given(*rs, "type");
  if (!type) r.fail("rope_scaling.rope_type", "is missing (expected \"linear\" or \"llama3\")");
  auto& s = c.rope_scaling;
  s.type = r.string(*type, "rope_scaling.rope_type", "\"linear\" or \"llama3\"");
  if (s.type == "default") return s.type.clear();
  if (s.type != "linear" && s.type != "llama3")
    r.fail("rope_scaling.rope_type", "is not supported (supported: \"linear\", \"llama3\")", type);
  const Value* f = Reader::given(*rs, "factor");
  if (!f) r.fail("rope_scaling.factor", "is missing (expected a number > 0)");
  s.factor = r.positive_number(*f, "rope_scaling.factor");
  if (s.type == "linear") return;
  for (auto [key, out] : {std::pair{"low_freq_factor", &s.low_freq_factor}, std::pair{"high_freq_factor", &s.high_freq_factor}}) {
    const Value* v = Reader::given(*rs, key);
    if (!v) r.fail(std::string("rope_scaling.") + key, "is missing (llama3 scaling needs a number > 0)");
    *out = r.positive_number(*v, std::string("rope_scaling.") + key);
  }
  if (!(s.high_freq_factor > s.low_freq_factor))
    r.fail("rope_scaling.high_freq_factor", "must be greater than low_freq_factor", rs->find("high_freq_factor"));
  const Value* om = Reader::given(*rs, "original_max_position_embeddings");
  if (!om) r.fail("rope_scaling.original_max_position_embeddings", "is missing (llama3 scaling needs an integer >= 1)");
  s.original_max_position_embeddings = r.integer(*om, "rope_scaling.original_max_position_embeddings", 1, kMaxSize);
}

// llama / mistral / qwen2 from HF's own config keys (docs/models.md, "The Llama family").
void read_llama(const Reader& r, const Value& root, ModelConfig& c) {
  c.n_embd = r.size(root, "hidden_size");
  c.n_head = r.size(root, "num_attention_heads");
  c.n_layer = r.size(root, "num_hidden_layers");
  c.n_inner = r.size(root, "intermediate_size");
  const Value* kv = Reader::given(root, "num_key_value_heads");
  c.n_kv_head = kv ? r.integer(*kv, "num_key_value_heads", 1, c.n_head) : c.n_head;
  if (c.n_head % c.n_kv_head != 0)
    r.fail("num_key_value_heads", "must divide num_attention_heads = " + std::to_string(c.n_head), kv);
  if (const Value* hd = Reader::given(root, "head_dim")) {
    c.explicit_head_dim = r.integer(*hd, "head_dim", 2, kMaxSize);
  } else if (c.n_embd % c.n_head != 0) {
    r.fail("hidden_size", "must be divisible by num_attention_heads = " + std::to_string(c.n_head) +
                              " (or give head_dim)", root.find("hidden_size"));
  }
  if (c.head_dim() % 2 != 0) r.fail("head_dim", "must be even (rotary pairs channel i with i + head_dim/2)");
  const Value* mp = Reader::given(root, "max_position_embeddings");
  c.n_positions = mp ? r.integer(*mp, "max_position_embeddings", 1, kMaxSize) : 0;
  if (const Value* eps = Reader::given(root, "rms_norm_eps"))
    c.layer_norm_epsilon = float(r.positive_number(*eps, "rms_norm_eps"));
  else
    c.layer_norm_epsilon = 1e-6f;  // HF's LlamaConfig / MistralConfig / Qwen2Config default
  if (const Value* act = Reader::given(root, "hidden_act"); act && !(act->is_string() && act->text == "silu"))
    r.fail("hidden_act", "must be \"silu\" (the SwiGLU MLP; others are not supported)", act);
  c.position_embedding = "rotary";
  c.rotary_dim = c.head_dim();  // rotate-half over the whole head
  if (const Value* rt = Reader::given(root, "rope_theta")) c.rotary_base = r.positive_number(*rt, "rope_theta");
  read_rope_scaling(r, root, c);
  if (const Value* prf = Reader::given(root, "partial_rotary_factor"); prf && !(prf->is_number() && prf->number == 1.0))
    r.fail("partial_rotary_factor", "must be 1 (rotary over the whole head; partial rotary is not supported)", prf);
  if (boolean(r, root, "mlp_bias", false)) r.fail("mlp_bias", "must be false (MLP biases are not supported)", root.find("mlp_bias"));
  if (c.model_type == "qwen2") {
    c.qkv_bias = true;  // Qwen2 always has q/k/v biases and none on o_proj
    if (boolean(r, root, "use_sliding_window", false))
      r.fail("use_sliding_window", "must be false for qwen2 (its per-layer sliding window is not supported)",
             root.find("use_sliding_window"));
  } else {
    c.qkv_bias = c.o_bias = boolean(r, root, "attention_bias", false);
  }
  c.tie_word_embeddings = boolean(r, root, "tie_word_embeddings", false);
  if (c.model_type == "mistral") {
    if (const Value* sw = Reader::given(root, "sliding_window")) c.sliding_window = r.integer(*sw, "sliding_window", 1, kMaxSize);
    if (c.n_positions > 0 && c.sliding_window >= c.n_positions) c.sliding_window = 0;  // the window never binds
  }
  if (const Value* ad = Reader::given(root, "attention_dropout"); ad && !(ad->is_number() && ad->number == 0.0))
    r.fail("attention_dropout", "must be 0 (inference has no dropout)", ad);
}

// opt / xglm from HF's own config keys (docs/models.md, "OPT and XGLM"): the
// fairseq decoder with learned (opt) or sinusoidal (xglm) positions offset by 2.
void read_opt(const Reader& r, const Value& root, ModelConfig& c) {
  const bool opt = c.model_type == "opt";
  const char* width = opt ? "hidden_size" : "d_model";
  const char* heads = opt ? "num_attention_heads" : "attention_heads";
  c.n_embd = r.size(root, width);
  c.n_head = r.size(root, heads);
  c.n_layer = r.size(root, opt ? "num_hidden_layers" : "num_layers");
  c.n_inner = r.size(root, "ffn_dim");
  c.n_positions = r.size(root, "max_position_embeddings");
  if (c.n_positions > kMaxSize - 2) r.fail("max_position_embeddings", "must be an integer <= 2147483645", root.find("max_position_embeddings"));
  if (c.n_embd % c.n_head != 0)
    r.fail(width, std::string("must be divisible by ") + heads + " = " + std::to_string(c.n_head), root.find(width));
  c.layer_norm_epsilon = 1e-5f;  // nn.LayerNorm's default: neither config has a key for it
  c.tie_word_embeddings = boolean(r, root, "tie_word_embeddings", true);
  const Value* act = Reader::given(root, "activation_function");
  c.activation_function = act ? r.string(*act, "activation_function", "\"relu\", \"gelu\" or \"gelu_new\"") : (opt ? "relu" : "gelu");
  if (c.activation_function != "relu" && c.activation_function != "gelu" && c.activation_function != "gelu_new")
    r.fail("activation_function", "must be \"relu\", \"gelu\" or \"gelu_new\" (others are not supported)", act);
  if (opt) {
    c.position_embedding = "learned";
    c.pre_norm = boolean(r, root, "do_layer_norm_before", true);
    c.final_norm = c.pre_norm && !boolean(r, root, "_remove_final_layer_norm", false);
    c.linear_bias = boolean(r, root, "enable_bias", true);
    if (!boolean(r, root, "layer_norm_elementwise_affine", true))
      r.fail("layer_norm_elementwise_affine", "must be true (LayerNorms without weight and bias are not supported)",
             root.find("layer_norm_elementwise_affine"));
    if (const Value* p = Reader::given(root, "word_embed_proj_dim")) {
      c.word_embed_proj_dim = r.integer(*p, "word_embed_proj_dim", 1, kMaxSize);
      if (c.word_embed_proj_dim == c.n_embd) c.word_embed_proj_dim = 0;  // no projections
    }
    return;
  }
  c.position_embedding = "sinusoidal";
  if (c.n_embd < 4)  // fairseq's frequencies divide by d_model / 2 - 1
    r.fail("d_model", "must be an integer >= 4 (sinusoidal positions)", root.find("d_model"));
  if (boolean(r, root, "scale_embedding", true)) c.embed_scale = std::sqrt((double)c.n_embd);
  if (const Value* pad = Reader::given(root, "pad_token_id")) c.pad_token_id = r.integer(*pad, "pad_token_id", 0, kMaxSize);
  else if (!root.find("pad_token_id")) c.pad_token_id = 1;  // XGLMConfig's default; null: no padding row
  if (boolean(r, root, "add_cross_attention", false))
    r.fail("add_cross_attention", "must be false (cross-attention is not supported)", root.find("add_cross_attention"));
}

// t5 from HF's own keys (docs/t5.md).
void read_t5(const Reader& r, const Value& root, ModelConfig& c) {
  c.n_embd = r.size(root, "d_model");
  c.n_head = r.size(root, "num_heads");
  c.explicit_head_dim = r.size(root, "d_kv");
  c.n_inner = r.size(root, "d_ff");
  c.n_layer = r.size(root, "num_layers");
  const Value* dl = Reader::given(root, "num_decoder_layers");
  c.n_decoder_layer = dl ? r.integer(*dl, "num_decoder_layers", 1, kMaxSize) : c.n_layer;
  const Value* nb = Reader::given(root, "relative_attention_num_buckets");
  c.rel_buckets = nb ? r.integer(*nb, "relative_attention_num_buckets", 4, 4096) : 32;
  const Value* md = Reader::given(root, "relative_attention_max_distance");
  c.rel_max_distance = md ? r.integer(*md, "relative_attention_max_distance", 1, 1 << 20) : 128;
  if (const Value* eps = Reader::given(root, "layer_norm_epsilon"))
    c.layer_norm_epsilon = float(r.positive_number(*eps, "layer_norm_epsilon"));
  else
    c.layer_norm_epsilon = 1e-6f;
  const Value* ff = Reader::given(root, "feed_forward_proj");
  const std::string proj = ff ? r.string(*ff, "feed_forward_proj", "\"relu\" or \"gated-gelu\"") : "relu";
  if (proj != "relu" && proj != "gated-gelu")
    r.fail("feed_forward_proj", "must be \"relu\" (T5 v1.0) or \"gated-gelu\" (v1.1); others are not supported", ff);
  c.gated_gelu = proj == "gated-gelu";
  if (!boolean(r, root, "is_encoder_decoder", true))
    r.fail("is_encoder_decoder", "must be true (the decoder-only T5 stack is not supported)", root.find("is_encoder_decoder"));
  c.tie_word_embeddings = boolean(r, root, "tie_word_embeddings", true);
  int64_t pad = 0;
  if (const Value* p = Reader::given(root, "pad_token_id")) pad = r.integer(*p, "pad_token_id", 0, c.vocab_size - 1);
  const Value* ds = Reader::given(root, "decoder_start_token_id");
  c.decoder_start_token_id = ds ? r.integer(*ds, "decoder_start_token_id", 0, c.vocab_size - 1) : pad;
  c.position_embedding = "relative";
  c.n_positions = 0;  // relative positions: only memory bounds the input and output
}

void read_tokenizer(const Reader& r, const Value& root, ModelConfig& c) {
  if (const Value* tc = Reader::given(root, "tokenizer_class"))
    c.tokenizer_class = r.string(*tc, "tokenizer_class", "a string");
  const bool bytes = c.tokenizer_class == "bytes";
  if (bytes && c.vocab_size < 256)
    r.fail("vocab_size", "must be >= 256 with tokenizer_class \"bytes\" (ids 0..255 are the bytes)", root.find("vocab_size"));

  if (const Value* st = Reader::given(root, "special_tokens")) {
    if (!st->is_object()) r.fail("special_tokens", "must be an object {name: id}", st);
    const int64_t lo = bytes ? 256 : 0;  // byte ids 0..255 cannot double as special tokens
    for (const auto& [name, id] : st->members) {
      const std::string field = "special_tokens." + name;
      if (name.empty()) r.fail("special_tokens", "has an empty token name", st);
      c.special_tokens[name] = r.integer(id, field, lo, c.vocab_size - 1);
    }
  }

  const Value* eos = Reader::given(root, "eos_token_id");
  if (eos && eos->is_array() && c.llama_family()) {  // Llama 3 lists several; the first is the one the engine stops on
    if (eos->items.empty()) r.fail("eos_token_id", "must not be an empty list", eos);
    c.eos_token_id = r.integer(eos->items[0], "eos_token_id[0]", 0, c.vocab_size - 1);
  } else if (eos) {
    c.eos_token_id = r.integer(*eos, "eos_token_id", 0, c.vocab_size - 1);
  } else if (bytes) {
    auto it = c.special_tokens.find("eos");
    if (it != c.special_tokens.end()) c.eos_token_id = it->second;
  }
}

}  // namespace

ModelConfig parse_config(const std::string& json_text, const std::string& source, const std::string& dir) {
  Reader r(source);
  Value root;
  try {
    json::Limits limits;
    limits.max_bytes = kMaxConfigBytes;
    root = json::parse(json_text, limits);
  } catch (const json::ParseError& e) {
    throw Error("E_CONFIG", source + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error("E_CONFIG", source + ": must be a JSON object (got " + json::dump(root) + ")");

  ModelConfig c;
  c.dir = dir;
  const Value* mt = root.find("model_type");
  const char* kTypes = "\"gpt2\", \"perceiver_ar\", \"block_recurrent\", \"retro\", \"llama\", \"mistral\", \"qwen2\", \"opt\", \"xglm\" or \"t5\"";
  if (!mt) r.fail("model_type", std::string("is missing (expected ") + kTypes + ")");
  c.model_type = mt->is_string() ? mt->text : "";
  if (c.model_type != "gpt2" && c.model_type != "perceiver_ar" && c.model_type != "block_recurrent" &&
      c.model_type != "retro" && !c.llama_family() && !c.opt_family() && !c.encoder_decoder())
    r.fail("model_type", std::string("must be ") + kTypes, mt);

  c.vocab_size = r.size(root, "vocab_size");
  if (c.llama_family()) {
    read_llama(r, root, c);
    read_tokenizer(r, root, c);
    return c;
  }
  if (c.opt_family()) {
    read_opt(r, root, c);
    read_tokenizer(r, root, c);
    return c;
  }
  if (c.encoder_decoder()) {
    read_t5(r, root, c);
    read_tokenizer(r, root, c);
    if (c.eos_token_id < 0 && c.vocab_size > 1) c.eos_token_id = 1;  // T5's </s>
    return c;
  }
  c.n_embd = r.size(root, "n_embd");
  c.n_head = r.size(root, "n_head");
  c.n_layer = r.size(root, "n_layer");
  if (c.n_embd % c.n_head != 0)
    r.fail("n_embd", "must be divisible by n_head = " + std::to_string(c.n_head), root.find("n_embd"));
  const Value* inner = Reader::given(root, "n_inner");
  c.n_inner = inner ? r.integer(*inner, "n_inner", 1, kMaxSize) : 4 * c.n_embd;
  if (const Value* eps = Reader::given(root, "layer_norm_epsilon"))
    c.layer_norm_epsilon = float(r.positive_number(*eps, "layer_norm_epsilon"));
  if (const Value* act = Reader::given(root, "activation_function")) {
    if (!act->is_string() || act->text != "gelu_new")
      r.fail("activation_function", "must be \"gelu_new\" (the tanh approximation)", act);
  }
  // HF GPT-2 switches that change the math; the spec fixes the defaults.
  if (const Value* s = Reader::given(root, "scale_attn_weights"); s && !(s->is_bool() && s->boolean))
    r.fail("scale_attn_weights", "must be true (attention is scaled by 1/sqrt(D))", s);
  if (const Value* s = Reader::given(root, "scale_attn_by_inverse_layer_idx"); s && !(s->is_bool() && !s->boolean))
    r.fail("scale_attn_by_inverse_layer_idx", "must be false (not supported)", s);

  read_positions(r, root, c);
  read_attention(r, root, c);
  if (c.model_type == "perceiver_ar") read_perceiver(r, root, c);
  if (c.model_type == "block_recurrent") read_block_recurrent(r, root, c);
  if (c.model_type == "retro") read_retro(r, root, c);
  read_tokenizer(r, root, c);
  return c;
}

ModelConfig load_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  return parse_config(json::read_file(path, kMaxConfigBytes), path, dir);
}

}  // namespace roost
