// The JS class `Engine`: one ObjectWrap over roost::Engine.
// The TypeScript description of this surface is src/native/index.ts.
#pragma once

#include <map>
#include <memory>
#include <set>

#include "engine.h"
#include "napi_common.h"

namespace roost::binding {

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  // Defines the class and sets exports.Engine.
  static void init(Napi::Env env, Napi::Object exports);
  // A new JS Engine object owning `engine` (JS thread only; used by the load worker).
  static Napi::Object wrap(Napi::Env env, std::shared_ptr<roost::Engine> engine);

  // Only wrap() may construct: `new Engine()` from JS throws a TypeError.
  explicit EngineWrap(const Napi::CallbackInfo& info);

  const std::shared_ptr<roost::Engine>& engine() const { return engine_; }
  // JS thread: a step over `seqs` has settled; runs the frees that waited for it.
  void step_settled(const std::vector<int64_t>& seqs);

 private:
  static Napi::Value load(const Napi::CallbackInfo& info);  // Engine.load(dir, opts?) -> Promise<Engine>
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value create_sequence(const Napi::CallbackInfo& info);
  Napi::Value free_sequence(const Napi::CallbackInfo& info);
  Napi::Value reset_sequence(const Napi::CallbackInfo& info);
  Napi::Value set_neighbours(const Napi::CallbackInfo& info);  // retro: a chunk's neighbours (docs/retro.md)  // preemption: drops the KV state, keeps the sampler
  Napi::Value sequence_length(const Napi::CallbackInfo& info);
  Napi::Value cached_prefix(const Napi::CallbackInfo& info);  // leading tokens the prefix cache holds
  Napi::Value step(const Napi::CallbackInfo& info);        // -> Promise<StepResult[]>
  Napi::Value stats(const Napi::CallbackInfo& info);
  Napi::Value load_adapter(const Napi::CallbackInfo& info);  // loadAdapter(name, dir) -> AdapterInfo
  Napi::Value unload_adapter(const Napi::CallbackInfo& info);  // unloadAdapter(name) -> boolean
  Napi::Value adapters(const Napi::CallbackInfo& info);      // -> AdapterInfo[]
  Napi::Value load_memory(const Napi::CallbackInfo& info);   // loadMemory(name, dir) -> entries
  Napi::Value unload_memory(const Napi::CallbackInfo& info); // unloadMemory(name) -> boolean
  Napi::Value search_memory(const Napi::CallbackInfo& info); // searchMemory(name, queries, k) -> {dist, value}

  // Shared with running workers, so a step in flight keeps the engine alive
  // even if the JS object is collected meanwhile.
  std::shared_ptr<roost::Engine> engine_;

  // JS-thread bookkeeping of steps from the caller's point of view: a step is
  // in flight from engine.step() until its promise settles, even while its
  // worker still waits in libuv's queue (where the engine does not know it yet).
  // freeSequence() of a sequence in flight waits for those steps, so the step
  // always gets to run and report on it, whatever the thread timing.
  std::map<int64_t, int> in_flight_;  // sequence -> steps in flight
  std::set<int64_t> free_after_;      // freed by JS while in flight
};

// The workers behind the two asynchronous calls (step_worker.cpp). Their
// constructors run on the JS thread and take plain C++ values only.
PromiseWorker* new_load_worker(Napi::Env env, std::string dir, roost::EngineOptions options);
PromiseWorker* new_step_worker(Napi::Env env, EngineWrap* wrap, std::vector<roost::StepRequest> requests);

// Module functions isa(), detectedIsa(), setIsa(name) (isa.cpp).
void init_isa(Napi::Env env, Napi::Object exports);

}  // namespace roost::binding
