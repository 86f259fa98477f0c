// The addon entry: registers the classes and module functions, and the CUDA
// backend in builds that have it (cpp/backend.h's registry; cpp/ includes no
// cuda/ header: the function is declared in backend.h and defined in cuda/).
#include "backend.h"
#include "engine_wrap.h"

namespace {

Napi::Object init(Napi::Env env, Napi::Object exports) {
#ifdef ROOST_WITH_CUDA
  roost::register_cuda_backend();
#endif
  roost::binding::EngineWrap::init(env, exports);
  roost::binding::init_isa(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(roost, init)
