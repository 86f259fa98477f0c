// The binding's shared basics: node-addon-api with C++ exceptions, the
// roost::Error -> JS Error conversion (err.code is the roost code, err.message
// the C++ message), and the Promise-returning worker that every heavy call
// goes through.
#pragma once

// The engine throws: CMakeLists.txt defines NAPI_CPP_EXCEPTIONS so that
// node-addon-api cooperates with C++ exceptions.
#include <napi.h>

#include <new>
#include <string>

#include "common.h"

namespace roost::binding {

// A JS Error with .code = code.
Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message);

// Runs fn on the JS thread; a roost::Error (or any C++ exception) becomes a
// thrown JS Error with its code, so no exception leaves the addon untranslated.
template <typename F>
auto guard(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;  // already a JS error (TypeError from argument checks, ...)
  } catch (const roost::Error& e) {
    throw make_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, "E_INTERNAL", "out of memory");
  } catch (const std::exception& e) {
    throw make_error(env, "E_INTERNAL", e.what());
  }
}

// An AsyncWorker that settles a Promise. run() executes on a libuv pool thread
// and must not touch JS; everything it needs was copied into plain members by
// the constructor on the JS thread. result() builds the JS value on the JS thread.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  PromiseWorker(Napi::Env env, const char* resource_name);
  virtual void run() = 0;
  virtual Napi::Value result(Napi::Env env) = 0;
  // JS thread, once the work is done, before the promise settles (success or not).
  virtual void settled(Napi::Env env) {}

 private:
  void Execute() final;
  void OnOK() final;
  void OnError(const Napi::Error& error) final;
  void fail(const std::string& code, const std::string& message);

  Napi::Promise::Deferred deferred_;
  std::string code_ = "E_INTERNAL";
};

// Queues the worker (which deletes itself when settled) and returns its promise.
inline Napi::Value queue(PromiseWorker* worker) {
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace roost::binding
