#include "napi_common.h"

namespace roost::binding {

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Value().Set("code", Napi::String::New(env, code));
  return error;
}

PromiseWorker::PromiseWorker(Napi::Env env, const char* resource_name)
    : Napi::AsyncWorker(env, resource_name), deferred_(Napi::Promise::Deferred::New(env)) {}

void PromiseWorker::fail(const std::string& code, const std::string& message) {
  code_ = code;
  // AsyncWorker treats an empty error message as success: never pass one.
  SetError(message.empty() ? code : message);
}

void PromiseWorker::Execute() {
  try {
    run();
  } catch (const roost::Error& e) {
    fail(e.code(), e.what());
  } catch (const std::bad_alloc&) {
    fail("E_INTERNAL", "out of memory");
  } catch (const std::exception& e) {
    fail("E_INTERNAL", e.what());
  } catch (...) {
    fail("E_INTERNAL", "unknown C++ exception");
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  // Building the result can fail too (a JS allocation, say); reject then,
  // rather than letting the exception escape into the event loop.
  try {
    settled(env);
    deferred_.Resolve(result(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (const roost::Error& e) {
    deferred_.Reject(make_error(env, e.code(), e.what()).Value());
  } catch (const std::exception& e) {
    deferred_.Reject(make_error(env, "E_INTERNAL", e.what()).Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& error) {
  try {
    settled(Env());
  } catch (...) {
    // the rejection below matters more
  }
  deferred_.Reject(make_error(Env(), code_, error.Message()).Value());
}

}  // namespace roost::binding
