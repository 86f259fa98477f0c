// Engine: argument conversion on the JS thread, synchronous bookkeeping calls,
// and the two Promise-returning calls (load, step) handed to workers.
// Argument checks here are minimal guards (a TypeError naming the argument);
// the real validation, with friendly messages, lives in TypeScript.
#include "engine_wrap.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ops/ops.h"

namespace roost::binding {

namespace {

struct AddonData {
  Napi::FunctionReference engine_class;
};

// Set by wrap() for the duration of the constructor call it makes; a JS
// `new Engine()` finds it null. Only the JS thread constructs, so one slot per thread.
thread_local std::shared_ptr<roost::Engine>* pending_engine = nullptr;

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1
constexpr double kTwoPow53 = 9007199254740992.0;

[[noreturn]] void type_error(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

std::string type_of(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_object: return v.IsArray() ? "array" : "object";
    case napi_function: return "function";
    case napi_external: return "external";
    case napi_bigint: return "bigint";
  }
  return "unknown";
}

bool absent(const Napi::Value& v) { return v.IsUndefined() || v.IsNull(); }

double number_arg(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (!v.IsNumber()) type_error(env, name + " must be a number (got " + type_of(v) + ")");
  return v.As<Napi::Number>().DoubleValue();
}

// An integral number within [lo, hi].
int64_t integer_arg(Napi::Env env, const Napi::Value& v, const std::string& name, double lo, double hi) {
  double d = number_arg(env, v, name);
  if (!std::isfinite(d) || d != std::floor(d) || d < lo || d > hi) {
    type_error(env, name + " must be an integer in [" + std::to_string(static_cast<int64_t>(lo)) + ", " +
                        std::to_string(static_cast<int64_t>(hi)) + "] (got " + v.ToString().Utf8Value() + ")");
  }
  return static_cast<int64_t>(d);
}

int64_t sequence_arg(Napi::Env env, const Napi::Value& v, const std::string& name) {
  return integer_arg(env, v, name, -kMaxSafeInteger, kMaxSafeInteger);
}

bool bool_arg(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (!v.IsBoolean()) type_error(env, name + " must be a boolean (got " + type_of(v) + ")");
  return v.As<Napi::Boolean>().Value();
}

Napi::Object object_arg(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (!v.IsObject() || v.IsArray() || v.IsFunction()) {
    type_error(env, name + " must be an object (got " + type_of(v) + ")");
  }
  return v.As<Napi::Object>();
}

// A seed is a number (an integer 0 .. 2^53) or a bigint that fits 64 bits unsigned.
uint64_t seed_arg(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t seed = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) type_error(env, name + " must fit in 64 bits unsigned");
    return seed;
  }
  return static_cast<uint64_t>(integer_arg(env, v, name, 0, kTwoPow53));
}

// tokens: Int32Array (copied as is) or an array of integer numbers. Range
// checks against the vocabulary are the engine's (E_ARGUMENT).
std::vector<int32_t> tokens_arg(Napi::Env env, const Napi::Value& v, const std::string& name) {
  std::vector<int32_t> tokens;
  if (v.IsTypedArray()) {
    Napi::TypedArray typed = v.As<Napi::TypedArray>();
    if (typed.TypedArrayType() != napi_int32_array) type_error(env, name + " must be an Int32Array or an array of numbers");
    Napi::Int32Array ints = v.As<Napi::Int32Array>();
    tokens.assign(ints.Data(), ints.Data() + ints.ElementLength());
    return tokens;
  }
  if (!v.IsArray()) type_error(env, name + " must be an Int32Array or an array of numbers (got " + type_of(v) + ")");
  Napi::Array array = v.As<Napi::Array>();
  uint32_t n = array.Length();
  tokens.reserve(n);
  for (uint32_t j = 0; j < n; j++) {
    const Napi::Value e = array.Get(j);
    if (e.IsNumber()) {  // the usual case, without building the element's name for a message
      const double d = e.As<Napi::Number>().DoubleValue();
      if (d == std::floor(d) && d >= -2147483648.0 && d <= 2147483647.0) {
        tokens.push_back(static_cast<int32_t>(d));
        continue;
      }
    }
    tokens.push_back(static_cast<int32_t>(integer_arg(env, e, name + "[" + std::to_string(j) + "]", -2147483648.0, 2147483647.0)));
  }
  return tokens;
}

roost::SamplingParams sampling_params_arg(Napi::Env env, const Napi::Value& v, int64_t vocab_size) {
  roost::SamplingParams params;
  if (absent(v)) return params;
  Napi::Object o = object_arg(env, v, "params");
  Napi::Value x;
  if (!absent(x = o.Get("temperature"))) params.temperature = number_arg(env, x, "params.temperature");
  if (!absent(x = o.Get("topK"))) params.top_k = integer_arg(env, x, "params.topK", 0, kMaxSafeInteger);
  if (!absent(x = o.Get("topP"))) params.top_p = number_arg(env, x, "params.topP");
  if (!absent(x = o.Get("seed"))) params.seed = seed_arg(env, x, "params.seed");
  if (!absent(x = o.Get("logprobs"))) params.n_logprobs = integer_arg(env, x, "params.logprobs", 0, kMaxSafeInteger);
  if (!absent(x = o.Get("minP"))) params.min_p = number_arg(env, x, "params.minP");
  if (!absent(x = o.Get("presencePenalty"))) params.presence_penalty = number_arg(env, x, "params.presencePenalty");
  if (!absent(x = o.Get("frequencyPenalty"))) params.frequency_penalty = number_arg(env, x, "params.frequencyPenalty");
  if (!absent(x = o.Get("repetitionPenalty"))) params.repetition_penalty = number_arg(env, x, "params.repetitionPenalty");
  if (!absent(x = o.Get("minTokens"))) params.min_tokens = integer_arg(env, x, "params.minTokens", 0, kMaxSafeInteger);
  // Range checks against the vocabulary are the engine's (E_ARGUMENT), as for step tokens.
  if (!absent(x = o.Get("stopTokenIds"))) params.stop_token_ids = tokens_arg(env, x, "params.stopTokenIds");
  if (!absent(x = o.Get("logitBias"))) {
    if (!x.IsArray()) type_error(env, "params.logitBias must be an array of [token, bias] pairs");
    Napi::Array pairs = x.As<Napi::Array>();
    for (uint32_t i = 0; i < pairs.Length(); i++) {
      std::string name = "params.logitBias[" + std::to_string(i) + "]";
      Napi::Value pair = pairs.Get(i);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2) type_error(env, name + " must be a [token, bias] pair");
      Napi::Array p = pair.As<Napi::Array>();
      // The sampler indexes logits by this id: out of range would be a memory error, not a bad result.
      int64_t token = integer_arg(env, p.Get(0u), name + "[0]", -2147483648.0, 2147483647.0);
      if (token < 0 || token >= vocab_size) {
        throw make_error(env, "E_ARGUMENT", name + ": token id " + std::to_string(token) +
                                                " is out of range [0, " + std::to_string(vocab_size) + ")");
      }
      double bias = number_arg(env, p.Get(1u), name + "[1]");
      params.logit_bias.emplace_back(static_cast<int32_t>(token), static_cast<float>(bias));
    }
  }
  return params;
}

Napi::Number num(Napi::Env env, double x) { return Napi::Number::New(env, x); }

// params.memory: {datastore?, k?, lambda?, temperature?, local?} (cpp/knn_memory.h); ranges are the engine's.
roost::MemoryParams memory_params_arg(Napi::Env env, const Napi::Value& params) {
  roost::MemoryParams m;
  if (absent(params)) return m;
  Napi::Value v = params.As<Napi::Object>().Get("memory");
  if (absent(v)) return m;
  Napi::Object o = object_arg(env, v, "params.memory");
  Napi::Value x;
  if (!absent(x = o.Get("datastore"))) {
    if (!x.IsString()) type_error(env, "params.memory.datastore must be a string (got " + type_of(x) + ")");
    m.datastore = x.As<Napi::String>().Utf8Value();
  }
  if (!absent(x = o.Get("k"))) m.k = integer_arg(env, x, "params.memory.k", 0, kMaxSafeInteger);
  if (!absent(x = o.Get("lambda"))) m.lambda = number_arg(env, x, "params.memory.lambda");
  if (!absent(x = o.Get("temperature"))) m.temperature = number_arg(env, x, "params.memory.temperature");
  if (!absent(x = o.Get("local"))) m.local = bool_arg(env, x, "params.memory.local");
  return m;
}

}  // namespace

void EngineWrap::init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = DefineClass(env, "Engine",
                                   {
                                       StaticMethod("load", &EngineWrap::load),
                                       InstanceMethod("info", &EngineWrap::info),
                                       InstanceMethod("createSequence", &EngineWrap::create_sequence),
                                       InstanceMethod("freeSequence", &EngineWrap::free_sequence),
                                       InstanceMethod("resetSequence", &EngineWrap::reset_sequence),
                                       InstanceMethod("setNeighbours", &EngineWrap::set_neighbours),
                                       InstanceMethod("sequenceLength", &EngineWrap::sequence_length),
                                       InstanceMethod("cachedPrefix", &EngineWrap::cached_prefix),
                                       InstanceMethod("step", &EngineWrap::step),
                                       InstanceMethod("stats", &EngineWrap::stats),
                                       InstanceMethod("loadAdapter", &EngineWrap::load_adapter),
                                       InstanceMethod("unloadAdapter", &EngineWrap::unload_adapter),
                                       InstanceMethod("adapters", &EngineWrap::adapters),
                                       InstanceMethod("loadMemory", &EngineWrap::load_memory),
                                       InstanceMethod("unloadMemory", &EngineWrap::unload_memory),
                                       InstanceMethod("searchMemory", &EngineWrap::search_memory),
                                   });
  auto* data = new AddonData();
  data->engine_class = Napi::Persistent(cls);
  env.SetInstanceData<AddonData>(data);  // deleted with the environment
  exports.Set("Engine", cls);
}

Napi::Object EngineWrap::wrap(Napi::Env env, std::shared_ptr<roost::Engine> engine) {
  AddonData* data = env.GetInstanceData<AddonData>();
  pending_engine = &engine;
  try {
    Napi::Object object = data->engine_class.New({});
    pending_engine = nullptr;
    return object;
  } catch (...) {
    pending_engine = nullptr;
    throw;
  }
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  if (pending_engine == nullptr) {
    throw Napi::TypeError::New(info.Env(), "Engine cannot be constructed directly: use Engine.load(dir)");
  }
  engine_ = std::move(*pending_engine);
  pending_engine = nullptr;
}

Napi::Value EngineWrap::load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) type_error(env, "dir must be a string (got " + type_of(info[0]) + ")");
  std::string dir = info[0].As<Napi::String>().Utf8Value();
  roost::EngineOptions options;
  if (!absent(info[1])) {
    Napi::Object opts = object_arg(env, info[1], "opts");
    Napi::Value x;
    if (!absent(x = opts.Get("threads"))) options.threads = static_cast<int>(integer_arg(env, x, "opts.threads", 0, 4096));
    if (!absent(x = opts.Get("maxStepTokens"))) {
      options.max_step_tokens = integer_arg(env, x, "opts.maxStepTokens", 1, kMaxSafeInteger);
    }
    if (!absent(x = opts.Get("kvMemory"))) options.kv_memory = integer_arg(env, x, "opts.kvMemory", 0, kMaxSafeInteger);
    if (!absent(x = opts.Get("prefixCache"))) options.prefix_cache = bool_arg(env, x, "opts.prefixCache");
    if (!absent(x = opts.Get("device"))) {
      if (!x.IsString()) type_error(env, "opts.device must be a string (got " + type_of(x) + ")");
      options.device = x.As<Napi::String>().Utf8Value();
    }
    if (!absent(x = opts.Get("quantize"))) {
      if (!x.IsString()) type_error(env, "opts.quantize must be a string (got " + type_of(x) + ")");
      options.quantize = x.As<Napi::String>().Utf8Value();
    }
    if (!absent(x = opts.Get("kvCacheDtype"))) {
      if (!x.IsString()) type_error(env, "opts.kvCacheDtype must be a string (got " + type_of(x) + ")");
      options.kv_cache_dtype = x.As<Napi::String>().Utf8Value();
    }
  }
  return queue(new_load_worker(env, std::move(dir), options));
}

Napi::Value EngineWrap::info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const roost::ModelConfig& c = engine_->config();
    Napi::Object o = Napi::Object::New(env);
    o.Set("modelType", c.model_type);
    o.Set("decodeDiffersFromPrefill", Napi::Boolean::New(env, engine_->decode_differs_from_prefill()));
    o.Set("retroChunkSize", num(env, static_cast<double>(c.chunk_size)));        // retro: m (0 elsewhere)
    o.Set("retroNeighbours", num(env, static_cast<double>(c.num_neighbours)));  // retro: k (0 elsewhere)
    o.Set("vocabSize", num(env, static_cast<double>(c.vocab_size)));
    o.Set("nEmbd", num(env, static_cast<double>(c.n_embd)));
    o.Set("nLayer", num(env, static_cast<double>(c.n_layer)));
    o.Set("nHead", num(env, static_cast<double>(c.n_head)));
    o.Set("maxContext", num(env, static_cast<double>(engine_->max_context())));
    o.Set("eosTokenId", num(env, static_cast<double>(c.eos_token_id)));
    o.Set("tokenizerClass", c.tokenizer_class);
    Napi::Object special = Napi::Object::New(env);
    for (const auto& [name, id] : c.special_tokens) special.Set(name, num(env, static_cast<double>(id)));
    o.Set("specialTokens", special);
    o.Set("threads", num(env, engine_->threads()));
    o.Set("isa", roost::isa_name(roost::active_isa()));
    o.Set("device", engine_->device());
    o.Set("kvCacheDtype", engine_->kv_type() == roost::KvType::F16 ? "f16" : "f32");
    return o;
  });
}

Napi::Value EngineWrap::create_sequence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    roost::SamplingParams params = sampling_params_arg(env, info[0], engine_->config().vocab_size);
    std::string adapter;
    if (!absent(info[0])) {
      Napi::Value a = info[0].As<Napi::Object>().Get("adapter");
      if (!absent(a)) {
        if (!a.IsString()) type_error(env, "params.adapter must be a string (got " + type_of(a) + ")");
        adapter = a.As<Napi::String>().Utf8Value();
      }
    }
    return num(env, static_cast<double>(engine_->create_sequence(params, adapter, memory_params_arg(env, info[0]))));
  });
}

Napi::Value EngineWrap::free_sequence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    int64_t seq = sequence_arg(env, info[0], "seq");
    if (in_flight_.count(seq)) {
      engine_->sequence_length(seq);  // unknown ids still throw E_ARGUMENT
      free_after_.insert(seq);        // freed when its steps settle
    } else {
      engine_->free_sequence(seq);
    }
    return env.Undefined();
  });
}

Napi::Value EngineWrap::reset_sequence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    int64_t seq = sequence_arg(env, info[0], "seq");
    if (in_flight_.count(seq)) throw roost::Error("E_STATE", "sequence " + std::to_string(seq) + " is in a step in flight");
    engine_->reset_sequence(seq);
    return env.Undefined();
  });
}

Napi::Value EngineWrap::set_neighbours(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    int64_t seq = sequence_arg(env, info[0], "seq");
    if (in_flight_.count(seq)) throw roost::Error("E_STATE", "sequence " + std::to_string(seq) + " is in a step in flight");
    engine_->set_neighbours(seq, integer_arg(env, info[1], "chunk", 0, kMaxSafeInteger), tokens_arg(env, info[2], "tokens"));
    return env.Undefined();
  });
}

Napi::Value EngineWrap::sequence_length(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    return num(env, static_cast<double>(engine_->sequence_length(sequence_arg(env, info[0], "seq"))));
  });
}

Napi::Value EngineWrap::cached_prefix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const int64_t seq = sequence_arg(env, info[0], "seq");
    if (in_flight_.count(seq)) return num(env, 0);  // its step runs: nothing to plan around
    return num(env, static_cast<double>(engine_->cached_prefix(seq, tokens_arg(env, info[1], "tokens"))));
  });
}

Napi::Value EngineWrap::step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) type_error(env, "reqs must be an array (got " + type_of(info[0]) + ")");
  Napi::Array reqs = info[0].As<Napi::Array>();
  std::vector<roost::StepRequest> requests(reqs.Length());
  for (uint32_t i = 0; i < reqs.Length(); i++) {
    std::string name = "reqs[" + std::to_string(i) + "]";
    Napi::Object r = object_arg(env, reqs.Get(i), name);
    roost::StepRequest& req = requests[i];
    req.seq = sequence_arg(env, r.Get("seq"), name + ".seq");
    req.tokens = tokens_arg(env, r.Get("tokens"), name + ".tokens");
    req.sample = bool_arg(env, r.Get("sample"), name + ".sample");
    Napi::Value pl = r.Get("promptLogprobs");
    req.prompt_logprobs = absent(pl) ? false : bool_arg(env, pl, name + ".promptLogprobs");
    Napi::Value hs = r.Get("hidden");
    req.hidden = absent(hs) ? false : bool_arg(env, hs, name + ".hidden");
    Napi::Value rp = r.Get("replay");
    req.replay = absent(rp) ? false : bool_arg(env, rp, name + ".replay");
  }
  for (const roost::StepRequest& req : requests) in_flight_[req.seq]++;
  return queue(new_step_worker(env, this, std::move(requests)));
}

void EngineWrap::step_settled(const std::vector<int64_t>& seqs) {
  for (int64_t seq : seqs) {
    auto it = in_flight_.find(seq);
    if (it == in_flight_.end() || --it->second > 0) continue;
    in_flight_.erase(it);
    if (free_after_.erase(seq)) {
      try {
        engine_->free_sequence(seq);
      } catch (const roost::Error&) {
        // already gone: nothing left to free
      }
    }
  }
}

namespace {
Napi::Object adapter_info(Napi::Env env, const roost::AdapterInfo& a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", a.name);
  o.Set("type", a.type);
  o.Set("promptTokens", num(env, static_cast<double>(a.prompt_tokens)));
  return o;
}
}  // namespace

Napi::Value EngineWrap::load_adapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) type_error(env, "name must be a string (got " + type_of(info[0]) + ")");
  if (!info[1].IsString()) type_error(env, "dir must be a string (got " + type_of(info[1]) + ")");
  return guard(env, [&]() -> Napi::Value {
    return adapter_info(env, engine_->load_adapter(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value()));
  });
}

Napi::Value EngineWrap::unload_adapter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) type_error(env, "name must be a string (got " + type_of(info[0]) + ")");
  return guard(env, [&]() -> Napi::Value { return Napi::Boolean::New(env, engine_->unload_adapter(info[0].As<Napi::String>().Utf8Value())); });
}

Napi::Value EngineWrap::adapters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::vector<roost::AdapterInfo> list = engine_->adapters();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (uint32_t i = 0; i < list.size(); i++) out.Set(i, adapter_info(env, list[i]));
    return out;
  });
}

Napi::Value EngineWrap::load_memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) type_error(env, "name must be a string (got " + type_of(info[0]) + ")");
  if (!info[1].IsString()) type_error(env, "dir must be a string (got " + type_of(info[1]) + ")");
  return guard(env, [&]() -> Napi::Value {
    return num(env, static_cast<double>(engine_->load_memory(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value())));
  });
}

Napi::Value EngineWrap::unload_memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) type_error(env, "name must be a string (got " + type_of(info[0]) + ")");
  return guard(env, [&]() -> Napi::Value { return Napi::Boolean::New(env, engine_->unload_memory(info[0].As<Napi::String>().Utf8Value())); });
}

Napi::Value EngineWrap::search_memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) type_error(env, "name must be a string (got " + type_of(info[0]) + ")");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    type_error(env, "queries must be a Float32Array");
  return guard(env, [&]() -> Napi::Value {
    Napi::Float32Array q = info[1].As<Napi::Float32Array>();
    const int64_t C = engine_->config().n_embd;
    if ((int64_t)q.ElementLength() % C != 0)
      throw roost::Error("E_ARGUMENT", "queries must hold whole rows of n_embd = " + std::to_string(C) + " floats");
    const int64_t k = integer_arg(env, info[2], "k", 1, kMaxSafeInteger);
    const int64_t M = (int64_t)q.ElementLength() / C;
    std::vector<roost::Neighbour> nb = engine_->search_memory(info[0].As<Napi::String>().Utf8Value(), q.Data(), M, k);
    Napi::Float32Array dist = Napi::Float32Array::New(env, nb.size());
    Napi::Int32Array value = Napi::Int32Array::New(env, nb.size());
    for (size_t i = 0; i < nb.size(); i++) {
      dist[i] = nb[i].dist;
      value[i] = nb[i].value;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("dist", dist);
    o.Set("value", value);
    return o;
  });
}

Napi::Value EngineWrap::stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    roost::EngineStats s = engine_->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("sequences", num(env, static_cast<double>(s.sequences)));
    o.Set("stateBytes", num(env, static_cast<double>(s.state_bytes)));
    o.Set("weightBytes", num(env, static_cast<double>(s.weight_bytes)));
    o.Set("kvBlocksUsed", num(env, static_cast<double>(s.kv_blocks_used)));
    o.Set("kvBlocksCached", num(env, static_cast<double>(s.kv_blocks_cached)));
    o.Set("kvBlocksFree", num(env, static_cast<double>(s.kv_blocks_free)));
    o.Set("kvBlockRows", num(env, static_cast<double>(s.kv_block_rows)));
    o.Set("kvBlockBytes", num(env, static_cast<double>(s.kv_block_bytes)));
    o.Set("prefixCache", Napi::Boolean::New(env, s.prefix_cache));
    o.Set("stateCacheBytes", num(env, static_cast<double>(s.state_cache_bytes)));
    return o;
  });
}

}  // namespace roost::binding
