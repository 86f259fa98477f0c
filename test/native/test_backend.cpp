// The backend interface (cpp/backend.h) as the models and cpp/device.cpp use it:
//   - a backend that refuses an op makes load_model refuse the model, naming
//     the backend, the op and why (no fallback to another device);
//   - gpt2 runs adapters exactly when its backend has scale_columns;
//   - a backend registered as "cuda" is what --device cuda|auto resolves to and
//     loads on (cpp/device.cpp reaches CUDA only through the registry); one
//     that delegates every op to the CPU backend gives the CPU's logits exactly;
//   - AttentionPlan's task list (spans since the last task, heads).
#include <cmath>
#include <cstdio>
#include <set>
#include <string>

#include "backend.h"
#include "common.h"
#include "device.h"
#include "doctest.h"
#include "models/model.h"

using namespace roost;

namespace {

// Every op through the CPU backend, except the refused ones; counts GEMMs.
class FakeBackend : public Backend {
 public:
  explicit FakeBackend(std::set<Op> refused) : refused_(std::move(refused)) {}
  int gemms = 0;

  std::string name() const override { return "fake"; }
  KvType kv_type() const override { return cpu_->kv_type(); }
  std::string unsupported(Op op, const ModelConfig&) const override {
    return refused_.count(op) ? std::string("the test refuses ") + op_name(op) : "";
  }
  const Matrix* matrix(const TensorView& t, int64_t K, int64_t N, bool nk) override { return cpu_->matrix(t, K, N, nk); }
  const float* floats(const std::vector<float>& v) override { return cpu_->floats(v); }
  size_t weight_bytes() const override { return cpu_->weight_bytes(); }
  std::unique_ptr<Buffer> alloc(size_t bytes) override { return cpu_->alloc(bytes); }
  std::unique_ptr<Scratch> scratch() override { return cpu_->scratch(); }
  std::unique_ptr<AttentionPlan> attention_plan() override { return cpu_->attention_plan(); }
  void copy(void* d, const void* s, size_t n) override { cpu_->copy(d, s, n); }
  void copy_2d(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t h) override { cpu_->copy_2d(d, dp, s, sp, w, h); }
  void begin_step(ThreadPool& pool) override { cpu_->begin_step(pool); }
  const void* upload(const void* data, size_t bytes) override { return cpu_->upload(data, bytes); }
  const Positions* positions(const std::vector<int64_t>& pos, const std::vector<double>& inv_freq) override {
    return cpu_->positions(pos, inv_freq);
  }
  void read_rows(const std::vector<float*>& dest, const float* x, int64_t width) override { cpu_->read_rows(dest, x, width); }
  void finish() override { cpu_->finish(); }
  void embed(float* x, const Matrix& wte, const float* wpe, const int32_t* tok, const Positions& pos, int64_t M,
             int64_t C) override {
    cpu_->embed(x, wte, wpe, tok, pos, M, C);
  }
  void layernorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, const float* b,
                 int64_t M, int64_t C, float eps) override {
    cpu_->layernorm(y, ldy, x, ldx, rows, w, b, M, C, eps);
  }
  void rmsnorm(float* y, int64_t ldy, const float* x, int64_t ldx, const int32_t* rows, const float* w, int64_t M,
               int64_t C, float eps) override {
    cpu_->rmsnorm(y, ldy, x, ldx, rows, w, M, C, eps);
  }
  void silu_mul(float* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t F) override {
    cpu_->silu_mul(y, ldy, x, ldx, M, F);
  }
  void gemm(float* y, int64_t ldy, const float* x, int64_t ldx, const Matrix& W, const float* bias, int64_t M,
            Epilogue epi) override {
    gemms++;
    cpu_->gemm(y, ldy, x, ldx, W, bias, M, epi);
  }
  void rotary(float* x, int64_t ld, int64_t M, int64_t H, int64_t D, int parts, const Positions& pos) override {
    cpu_->rotary(x, ld, M, H, D, parts, pos);
  }
  void move_rows(const RowMove* m, int64_t count, int64_t C, int64_t layer, bool to_kv) override {
    cpu_->move_rows(m, count, C, layer, to_kv);
  }
  void to_kv(void* y, int64_t ldy, const float* x, int64_t ldx, int64_t M, int64_t C) override {
    cpu_->to_kv(y, ldy, x, ldx, M, C);
  }
  void gate_update(float* const* s, int64_t ls, int64_t layer, const float* y, const float* keep, int64_t count,
                   int64_t S, int64_t C) override {
    cpu_->gate_update(s, ls, layer, y, keep, count, S, C);
  }
  void scale_columns(float* x, int64_t ld, int64_t M, int64_t cols, const float* scale) override {
    cpu_->scale_columns(x, ld, M, cols, scale);
  }

 private:
  std::shared_ptr<Backend> cpu_ = make_cpu_backend();
  std::set<Op> refused_;
};

// Logits [n, V] of one prompt through `model`.
std::vector<float> logits(Model& model, const std::vector<int32_t>& tokens) {
  ThreadPool pool(1);
  auto state = model.new_state();
  std::vector<float> out(tokens.size() * model.config().vocab_size);
  model.forward({ForwardItem{state.get(), tokens.data(), (int64_t)tokens.size(), true, out.data()}}, pool);
  return out;
}

// Equal entries, NaN where the other has NaN (perceiver_ar: no logits before its latents).
bool same(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

}  // namespace

TEST_CASE("the backend interface: refusals at load, a delegating backend, adapters, the cuda registry, AttentionPlan") {
  const std::vector<std::string> dirs = {"test/fixtures/gpt2-tiny", "test/fixtures/bigbird-tiny",
                                         "test/fixtures/perceiver-tiny", "test/fixtures/recurrent-tiny",
                                         "test/fixtures/llama-gqa2", "test/fixtures/mistral-window"};
  const std::vector<int32_t> prompt = {3, 14, 15, 92, 65, 35, 89, 79};

  for (const std::string& dir : dirs) {
    std::string code, msg;
    try {
      load_model(dir, [](const Checkpoint&) { return std::make_shared<FakeBackend>(std::set<Op>{Op::Attention}); });
    } catch (const Error& e) {
      code = e.code(), msg = e.what();
    }
    CHECK_MESSAGE((code == "E_CONFIG" && msg.find("the fake backend cannot run attention") != std::string::npos &&
              msg.find("the test refuses attention") != std::string::npos && msg.find("use --device cpu") != std::string::npos), (dir + ": a backend without attention is refused at load: " + msg));

    std::shared_ptr<FakeBackend> fake;
    auto model = load_model(dir, [&](const Checkpoint&) { return fake = std::make_shared<FakeBackend>(std::set<Op>{}); });
    auto cpu = load_model(dir);
    const int gemms_at_load = fake->gemms;
    CHECK_MESSAGE((same(logits(*model, prompt), logits(*cpu, prompt))), (dir + ": the delegating backend gives the CPU's logits exactly"));
    CHECK_MESSAGE((fake->gemms > gemms_at_load), (dir + ": the forward ran through the model's backend"));
  }

  // The Llama family's own ops: a backend without them refuses the model, naming the op (the CUDA backend today).
  for (Op op : {Op::RmsNorm, Op::SiluMul}) {
    std::string msg;
    try {
      load_model("test/fixtures/llama-gqa2", [&](const Checkpoint&) { return std::make_shared<FakeBackend>(std::set<Op>{op}); });
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK_MESSAGE((msg.find(std::string("cannot run ") + op_name(op)) != std::string::npos),
                  ("llama without " + std::string(op_name(op)) + ": " + msg));
  }

  // 8-bit weights: a backend without gemm over Q8_0 (the CUDA backend today) refuses --quantize q8_0 at load.
  {
    std::string msg;
    try {
      load_model("test/fixtures/gpt2-tiny",
                 [](const Checkpoint&) { return std::make_shared<FakeBackend>(std::set<Op>{Op::GemmQ8}); }, WeightFormat::Q8_0);
    } catch (const Error& e) {
      msg = e.code() + ": " + e.what();
    }
    CHECK_MESSAGE((msg.find("E_CONFIG") == 0 && msg.find("cannot run gemm over Q8_0 weights") != std::string::npos &&
                   msg.find("use --device cpu") != std::string::npos),
                  ("q8_0 on a backend without GemmQ8: " + msg));
    auto q8 = load_model("test/fixtures/gpt2-tiny", WeightFormat::Q8_0);
    auto f32 = load_model("test/fixtures/gpt2-tiny");
    CHECK_MESSAGE((q8->weight_bytes() < f32->weight_bytes() / 2), ("Q8_0 matrices take about a quarter of F32's bytes"));
    CHECK_MESSAGE((!same(logits(*q8, prompt), logits(*f32, prompt))), ("--quantize q8_0 changes the logits"));
  }

  auto plain = load_model("test/fixtures/gpt2-tiny",
                          [](const Checkpoint&) { return std::make_shared<FakeBackend>(std::set<Op>{Op::ScaleColumns}); });
  CHECK_MESSAGE((!plain->supports_adapters()), ("gpt2 on a backend without scale_columns has no adapters"));
  CHECK_MESSAGE((load_model("test/fixtures/gpt2-tiny")->supports_adapters()), ("gpt2 on the CPU backend runs adapters"));

  // The registry: --device cuda finds whatever registered as "cuda", and nothing else.
  const bool had_cuda = built_with_cuda();
  if (!had_cuda) {
    int devices = 0;
    register_backend(BackendProvider{
        "cuda",
        [&](std::string* why) {
          if (devices == 0 && why) *why = "no fake device";
          return devices;
        },
        [](int) { return std::string("Fake GPU"); },
        [](int, const Checkpoint&) { return std::make_shared<FakeBackend>(std::set<Op>{}); }});
    CHECK_MESSAGE((built_with_cuda() && !cuda_available()), ("a registered cuda backend without devices: built, not available"));
    std::string msg;
    try {
      resolve_device("cuda");
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK_MESSAGE((msg == "--device cuda: no usable CUDA device (no fake device)"), ("the provider's reason is quoted: " + msg));
    CHECK_MESSAGE((resolve_device("auto") == "cpu"), ("auto without a device is the CPU"));
    devices = 1;
    CHECK_MESSAGE((resolve_device("auto") == "cuda" && cuda_device_name() == "Fake GPU"), ("auto with a device is the registered cuda"));
    auto m = load_model_for_device("test/fixtures/gpt2-tiny", "cuda");
    auto c = load_model_for_device("test/fixtures/gpt2-tiny", "cpu");
    CHECK_MESSAGE((same(logits(*m, prompt), logits(*c, prompt))), ("--device cuda loads on the registered backend"));
  } else {
    std::printf("(a real CUDA backend is registered: the fake-provider checks are skipped)\n");
  }

  // AttentionPlan: a task covers the spans added since the previous task; add_heads repeats it per head.
  auto plan = make_cpu_backend()->attention_plan();
  float q[4], out[4];
  plan->add_span(AttnSpan{q, q, 4, 3, 0, 0});
  plan->add_span(AttnSpan{q, q, 4, 5, 3, 0});
  plan->add_heads(AttnTask{out, 4, q, 4, 1, 7}, 3);
  plan->add_span(AttnSpan{q, q, 4, 2, kNoMaskPos, 0});
  plan->add_task(AttnTask{out, 4, q, 4, 1, 7, 1});
  const auto& t = plan->tasks();
  CHECK_MESSAGE((t.size() == 4 && t[0].head == 0 && t[1].head == 1 && t[2].head == 2 && t[3].head == 1), ("add_heads gives heads 0..H-1, add_task keeps its head"));
  CHECK_MESSAGE((t[2].span0 == 0 && t[2].n_spans == 2 && t[2].n_keys == 8), ("the head tasks share the first two spans (8 keys)"));
  CHECK_MESSAGE((t[3].span0 == 2 && t[3].n_spans == 1 && t[3].n_keys == 2), ("the next task covers only the span after them"));
}
