// --device cpu|cuda|auto (cpp/device.h) on whatever machine runs the tests:
// "cpu" always loads; "auto" is CUDA exactly when a device is usable and the
// CPU otherwise; "cuda" without a usable device (or in a build without nvcc)
// is refused with E_ARGUMENT naming the reason; any other name is refused.
#include <cstdio>
#include <string>

#include "common.h"
#include "device.h"
#include "doctest.h"

using namespace roost;

static const std::string dir = "test/fixtures/gpt2-tiny";

TEST_CASE("cpu and auto load; auto is cuda exactly when a device is usable") {
  std::printf("built with CUDA: %s; CUDA available: %s%s\n", built_with_cuda() ? "yes" : "no",
              cuda_available() ? "yes, " : "no", cuda_available() ? cuda_device_name().c_str() : "");
  if (!cuda_available()) std::printf("  (%s)\n", cuda_unavailable_reason().c_str());

  try {
    auto m = load_model_for_device(dir, "cpu");
    CHECK_MESSAGE((m && m->config().model_type == "gpt2"), "cpu loads");
  } catch (const std::exception& e) {
    FAIL_CHECK((std::string("cpu: ") + e.what()));
  }

  CHECK_MESSAGE(resolve_device("auto") == (cuda_available() ? "cuda" : "cpu"), "auto resolves to cuda iff a device is usable");
  try {
    auto m = load_model_for_device(dir, "auto");
    CHECK_MESSAGE(m != nullptr, "auto loads");
  } catch (const std::exception& e) {
    FAIL_CHECK((std::string("auto: ") + e.what()));
  }
}

TEST_CASE("--device cuda without a usable device is refused, naming why") {
  if (!cuda_available()) {
    std::string msg, code;
    try {
      load_model_for_device(dir, "cuda");
    } catch (const Error& e) {
      code = e.code(), msg = e.what();
    }
    CHECK_MESSAGE((code == "E_ARGUMENT" && msg.rfind("--device cuda: ", 0) == 0), ("cuda without a device is refused: " + msg));
    if (!built_with_cuda())
      CHECK_MESSAGE(msg == "--device cuda: this build of Roost has no CUDA support (nvcc was not found at build time)",
                    "the no-CUDA-build message");
    CHECK_MESSAGE(cuda_device_name().empty(), "no device name without a device");
  }
}

TEST_CASE("an unknown device name is refused") {
  std::string code;
  try {
    resolve_device("gpu");
  } catch (const Error& e) {
    code = e.code();
  }
  CHECK_MESSAGE(code == "E_ARGUMENT", "an unknown device name is refused");
}
