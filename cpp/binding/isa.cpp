// Module functions over the kernel dispatch of cpp/ops: which instruction set
// the fast paths use, and forcing one (tests and benchmarks compare them).
#include "device.h"
#include "engine_wrap.h"
#include "ops/ops.h"

namespace roost::binding {

namespace {

Napi::Value isa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), roost::isa_name(roost::active_isa()));
}

Napi::Value detected_isa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), roost::isa_name(roost::detected_isa()));
}

// setIsa(name): name as isa_name() spells it. Unknown names and ISAs this CPU
// lacks throw an Error with code E_ARGUMENT. Process-wide: affects every engine.
Napi::Value set_isa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "name must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  return guard(env, [&]() -> Napi::Value {
    std::string known;
    for (roost::Isa isa : {roost::Isa::Reference, roost::Isa::Avx2, roost::Isa::Avx512}) {
      if (name == roost::isa_name(isa)) {
        roost::set_isa(isa);
        return env.Undefined();
      }
      known += (known.empty() ? "" : ", ") + std::string(roost::isa_name(isa));
    }
    throw roost::Error("E_ARGUMENT", "unknown ISA '" + name + "' (known: " + known + ")");
  });
}

// cuda(): what this build and machine offer for --device cuda.
Napi::Value cuda(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("built", roost::built_with_cuda());
  o.Set("available", roost::cuda_available());
  o.Set("device", roost::cuda_device_name());
  o.Set("reason", roost::cuda_unavailable_reason());
  return o;
}

}  // namespace

void init_isa(Napi::Env env, Napi::Object exports) {
  exports.Set("isa", Napi::Function::New(env, isa, "isa"));
  exports.Set("detectedIsa", Napi::Function::New(env, detected_isa, "detectedIsa"));
  exports.Set("setIsa", Napi::Function::New(env, set_isa, "setIsa"));
  exports.Set("cuda", Napi::Function::New(env, cuda, "cuda"));
}

}  // namespace roost::binding
