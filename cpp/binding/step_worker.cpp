// The two asynchronous calls. Each worker holds plain C++ values only: the
// request structs were built on the JS thread, run() touches no JS, and the
// JS result is built back on the JS thread in result().
#include <cmath>
#include <cstring>
#include <utility>

#include "engine_wrap.h"

namespace roost::binding {

namespace {

// Engine.load(dir, opts): reads config, maps safetensors, packs weights.
class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, std::string dir, roost::EngineOptions options)
      : PromiseWorker(env, "roost.Engine.load"), dir_(std::move(dir)), options_(options) {}

 private:
  void run() override { engine_ = std::make_shared<roost::Engine>(dir_, options_); }
  Napi::Value result(Napi::Env env) override { return EngineWrap::wrap(env, std::move(engine_)); }

  std::string dir_;
  roost::EngineOptions options_;
  std::shared_ptr<roost::Engine> engine_;
};

Napi::Array top_array(Napi::Env env, const std::vector<roost::TokenLogprob>& top) {
  Napi::Array out = Napi::Array::New(env, top.size());
  for (size_t k = 0; k < top.size(); k++) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::Number::New(env, top[k].token));
    pair.Set(1u, Napi::Number::New(env, top[k].logprob));
    out.Set(static_cast<uint32_t>(k), pair);
  }
  return out;
}

// engine.step(reqs): one batched forward plus sampling.
class StepWorker : public PromiseWorker {
 public:
  // Holds a reference to the JS Engine object until settled: the wrap (and so
  // the engine) outlives the step even if JS drops every other reference.
  StepWorker(Napi::Env env, EngineWrap* wrap, std::vector<roost::StepRequest> requests)
      : PromiseWorker(env, "roost.Engine.step"),
        wrap_(wrap),
        self_(Napi::Persistent(wrap->Value())),
        engine_(wrap->engine()),
        requests_(std::move(requests)) {}

 private:
  void run() override { results_ = engine_->step(requests_); }

  void settled(Napi::Env env) override {
    std::vector<int64_t> seqs;
    seqs.reserve(requests_.size());
    for (const roost::StepRequest& req : requests_) seqs.push_back(req.seq);
    wrap_->step_settled(seqs);
  }

  Napi::Value result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); i++) {
      const roost::StepResult& r = results_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("seq", Napi::Number::New(env, static_cast<double>(r.seq)));
      o.Set("sampled", Napi::Boolean::New(env, r.sampled));
      o.Set("cachedTokens", Napi::Number::New(env, static_cast<double>(r.cached_tokens)));
      if (r.sampled) {
        o.Set("token", Napi::Number::New(env, r.token.token));
        o.Set("logprob", Napi::Number::New(env, r.token.logprob));
        o.Set("top", top_array(env, r.token.top));
      }
      if (!r.prompt_logprobs.empty()) {
        // NaN (no previous logit) crosses as NaN; TS maps it to null where JSON needs it.
        Napi::Float64Array lp = Napi::Float64Array::New(env, r.prompt_logprobs.size());
        for (size_t j = 0; j < r.prompt_logprobs.size(); j++) lp[j] = static_cast<double>(r.prompt_logprobs[j]);
        o.Set("promptLogprobs", lp);
      }
      if (!r.hidden.empty()) {
        Napi::Float32Array h = Napi::Float32Array::New(env, r.hidden.size());
        std::memcpy(h.Data(), r.hidden.data(), r.hidden.size() * sizeof(float));
        o.Set("hidden", h);
      }
      if (!r.prompt_top.empty()) {
        Napi::Array tops = Napi::Array::New(env, r.prompt_top.size());
        for (size_t j = 0; j < r.prompt_top.size(); j++) tops.Set(static_cast<uint32_t>(j), top_array(env, r.prompt_top[j]));
        o.Set("promptTop", tops);
      }
      out.Set(static_cast<uint32_t>(i), o);
    }
    return out;
  }

  EngineWrap* wrap_;
  Napi::ObjectReference self_;
  std::shared_ptr<roost::Engine> engine_;
  std::vector<roost::StepRequest> requests_;
  std::vector<roost::StepResult> results_;
};

}  // namespace

PromiseWorker* new_load_worker(Napi::Env env, std::string dir, roost::EngineOptions options) {
  return new LoadWorker(env, std::move(dir), options);
}

PromiseWorker* new_step_worker(Napi::Env env, EngineWrap* wrap, std::vector<roost::StepRequest> requests) {
  return new StepWorker(env, wrap, std::move(requests));
}

}  // namespace roost::binding
