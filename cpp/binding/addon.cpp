// The addon entry: registers the classes and module functions, nothing else.
#include "engine_wrap.h"

namespace {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  roost::binding::EngineWrap::init(env, exports);
  roost::binding::init_isa(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(roost, init)
