// GPU kernel and decode benchmarks of the CUDA backend (bench/gpu/run.sh runs
// this; docs/cuda.md). Writes one JSON object (argv[1], default
// bench/results/gpu-kernels.json) with:
//   - dense causal flash attention forward, batch 1, 16 heads of 64, at 4k, 16k
//     and 64k tokens: ms and TFLOP/s counting 4 * T^2 * D / 2 per head (the
//     causal half of QK^T and PV), the convention FlashAttention's benchmarks use;
//   - BigBird block-sparse attention at 64k (b 64, w 3, g 1, r 3: 448 keys per
//     query; the block lists of cpp/models/bigbird_pattern for layer 0) next to
//     the dense kernel at 64k;
//   - the tensor-core GEMM at prefill and decode shapes of GPT-2-124M;
//   - decode tokens/s at batch 1 and 64 of a random GPT-2-124M-shaped F16
//     checkpoint (12 layers, 768 wide, 12 heads, vocab 50257; written to /tmp
//     by this program): prefill 128 tokens per sequence, then timed
//     single-token steps through Model::forward (logits of the last row copied
//     to the host each step, as the engine needs them).
// With --parity DIR it also writes inputs and outputs of a few ops for
// bench/gpu/sdpa.py to check against PyTorch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../../cuda/backend.h"
#include "../../cuda/ops.h"
#include "../../cuda/runtime.h"
#include "../../cuda/weights_cuda.h"
#include "config.h"
#include "dtype.h"
#include "models/bigbird_pattern.h"
#include "models/model.h"

using namespace roost;
using namespace roost::cuda;

namespace {

// Names cpp/backend.h and cuda/ops.h both define: the device ones here.
using cuda::Epilogue;
using cuda::Scratch;

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

std::mt19937 g_rng(7);

std::vector<float> randn(size_t n, float sd = 1.f) {
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(g_rng);
  return v;
}

std::vector<uint16_t> randn_half(size_t n, float sd = 1.f) {
  std::normal_distribution<float> d(0.f, sd);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f32_to_f16(d(g_rng));
  return v;
}

template <typename T> DeviceBuffer put(std::shared_ptr<DeviceContext> ctx, const std::vector<T>& v) {
  DeviceBuffer b(ctx, v.size() * sizeof(T));
  ROOST_CUDA_CHECK(cudaMemcpyAsync(b.data(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, ctx->stream()));
  ctx->sync();
  return b;
}

// Median milliseconds of `iters` runs of f (after one warm-up), timed with events.
template <typename F> double time_ms(const DeviceContext& ctx, int iters, F&& f) {
  f();
  cudaEvent_t a, b;
  ROOST_CUDA_CHECK(cudaEventCreate(&a));
  ROOST_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int i = 0; i < iters; i++) {
    ROOST_CUDA_CHECK(cudaEventRecord(a, ctx.stream()));
    f();
    ROOST_CUDA_CHECK(cudaEventRecord(b, ctx.stream()));
    ROOST_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    ROOST_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct AttnBuffers {
  int64_t T, H, D;
  DeviceBuffer q, k, v, out;
};

AttnBuffers attn_buffers(std::shared_ptr<DeviceContext> ctx, int64_t T, int64_t H, int64_t D) {
  const int64_t C = H * D;
  AttnBuffers b{T, H, D, put(ctx, randn(T * C)), put(ctx, randn_half(T * C)), put(ctx, randn_half(T * C)),
                DeviceBuffer(ctx, T * C * sizeof(float))};
  return b;
}

// Dense causal: one task per head over the whole sequence (the plan cuts it into query tiles).
void dense_plan(roost::AttentionPlan& plan, AttnBuffers& b) {
  const int64_t C = b.H * b.D;
  plan.clear();
  plan.add_span(roost::AttnSpan{b.k.data(), b.v.data(), C, b.T, 0, 0});
  plan.add_heads(roost::AttnTask{b.out.as<float>(), C, b.q.as<float>(), C, b.T, 0}, b.H);
}

void bigbird_plan(roost::AttentionPlan& plan, AttnBuffers& b, const AttentionConfig& a) {
  const int64_t C = b.H * b.D, bs = a.block_size;
  plan.clear();
  for (int64_t i = 0; i * bs < b.T; i++)
    for (int64_t h = 0; h < b.H; h++) {
      for (int64_t j : bigbird_blocks(a, 0, h, i))
        plan.add_span(roost::AttnSpan{b.k.as<uint16_t>() + j * bs * C, b.v.as<uint16_t>() + j * bs * C, C,
                                      std::min(bs, b.T - j * bs), j * bs, 0});
      plan.add_task(roost::AttnTask{b.out.as<float>() + i * bs * C, C, b.q.as<float>() + i * bs * C, C,
                                    std::min(bs, b.T - i * bs), i * bs, (int32_t)h});
    }
}

// ---------------------------------------------------------------- GPT-2-124M checkpoint (F16, random)
void write_gpt2_124m(const std::string& dir) {
  const int64_t V = 50257, C = 768, L = 12, P = 1024, F = 4 * C;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << "{\"model_type\":\"gpt2\",\"vocab_size\":" << V << ",\"n_embd\":" << C
                                      << ",\"n_head\":12,\"n_layer\":" << L << ",\"n_positions\":" << P
                                      << ",\"tokenizer_class\":\"bytes\"}";
  std::map<std::string, std::pair<std::vector<int64_t>, int>> t;  // name -> shape, kind (0 weight, 1 ln weight, 2 zero)
  t["wte.weight"] = {{V, C}, 0};
  t["wpe.weight"] = {{P, C}, 0};
  for (int64_t l = 0; l < L; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    for (const char* ln : {"ln_1", "ln_2"}) t[p + ln + ".weight"] = {{C}, 1}, t[p + ln + ".bias"] = {{C}, 2};
    for (auto [name, K, N] : std::vector<std::tuple<std::string, int64_t, int64_t>>{
             {"attn.c_attn", C, 3 * C}, {"attn.c_proj", C, C}, {"mlp.c_fc", C, F}, {"mlp.c_proj", F, C}})
      t[p + name + ".weight"] = {{K, N}, 0}, t[p + name + ".bias"] = {{N}, 2};
  }
  t["ln_f.weight"] = {{C}, 1};
  t["ln_f.bias"] = {{C}, 2};
  std::string header = "{";
  size_t off = 0;
  for (const auto& [name, sk] : t) {
    int64_t n = 1;
    std::string shape;
    for (int64_t d : sk.first) {
      n *= d;
      if (!shape.empty()) shape += ",";
      shape += std::to_string(d);
    }
    if (header.size() > 1) header += ",";
    header += "\"" + name + "\":{\"dtype\":\"F16\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(off) +
              "," + std::to_string(off + 2 * n) + "]}";
    off += 2 * n;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream f(dir + "/model.safetensors", std::ios::binary);
  const uint64_t hn = header.size();
  f.write(reinterpret_cast<const char*>(&hn), 8);
  f.write(header.data(), (std::streamsize)hn);
  for (const auto& [name, sk] : t) {
    int64_t n = 1;
    for (int64_t d : sk.first) n *= d;
    std::vector<uint16_t> v = sk.second == 0 ? randn_half(n, 0.02f) : std::vector<uint16_t>(n, f32_to_f16(sk.second == 1 ? 1.f : 0.f));
    f.write(reinterpret_cast<const char*>(v.data()), (std::streamsize)(v.size() * 2));
  }
}

struct DecodeResult {
  int64_t batch;
  double prefill_s, prefill_tok_s, decode_ms_per_step, decode_tok_s;
};

DecodeResult decode_bench(Model& m, int64_t batch, int64_t prompt, int steps) {
  const int64_t V = m.config().vocab_size;
  std::vector<std::unique_ptr<SequenceState>> st;
  for (int64_t i = 0; i < batch; i++) st.push_back(m.new_state());
  std::vector<std::vector<int32_t>> toks(batch);
  for (int64_t i = 0; i < batch; i++)
    for (int64_t j = 0; j < prompt; j++) toks[i].push_back((int32_t)((i * 131 + j * 17) % V));
  std::vector<float> logits(batch * V);
  ThreadPool pool(1);
  auto items = [&](int64_t n) {
    std::vector<ForwardItem> it;
    for (int64_t i = 0; i < batch; i++) it.push_back({st[i].get(), toks[i].data(), n, false, logits.data() + i * V});
    return it;
  };
  double t0 = now_s();
  m.forward(items(prompt), pool);
  const double prefill = now_s() - t0;
  for (auto& t : toks) t.resize(1);
  m.forward(items(1), pool);  // warm-up step
  std::vector<double> ms;
  for (int s = 0; s < steps; s++) {
    for (int64_t i = 0; i < batch; i++) toks[i][0] = (int32_t)((s * 7 + i) % V);
    t0 = now_s();
    m.forward(items(1), pool);
    ms.push_back((now_s() - t0) * 1e3);
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  return {batch, prefill, batch * prompt / prefill, med, batch * 1e3 / med};
}

// ---------------------------------------------------------------- parity dump for sdpa.py
template <typename T> void write_bin(const std::string& path, const std::vector<T>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), (std::streamsize)(v.size() * sizeof(T)));
}

template <typename T> std::vector<T> get(const DeviceContext& ctx, const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  ROOST_CUDA_CHECK(cudaMemcpyAsync(v.data(), b.data(), n * sizeof(T), cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.sync();
  return v;
}

void parity_dump(CudaBackend& be, ThreadPool& pool, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::shared_ptr<DeviceContext>& ctx = be.shared_context();
  Scratch ws(ctx);
  std::string manifest = "{";
  {  // causal attention, T 1024, H 4, D 64 (flash) and D 80 (SIMT)
    for (int64_t D : {64, 80}) {
      const int64_t T = 1024, H = 4, C = H * D;
      const std::vector<float> q = randn(T * C);
      const std::vector<uint16_t> k = randn_half(T * C), v = randn_half(T * C);
      AttnBuffers b{T, H, D, put(ctx, q), put(ctx, k), put(ctx, v), DeviceBuffer(ctx, T * C * 4)};
      std::unique_ptr<roost::AttentionPlan> plan = be.attention_plan();
      dense_plan(*plan, b);
      be.begin_step(pool);
      plan->prepare(D);
      plan->run(0);
      const std::string p = dir + "/attn_d" + std::to_string(D);
      write_bin(p + "_q.bin", q);
      write_bin(p + "_k.bin", k);
      write_bin(p + "_v.bin", v);
      write_bin(p + "_out.bin", get<float>(*ctx, b.out, T * C));
      manifest += std::string(manifest.size() > 1 ? "," : "") + "\"attn_d" + std::to_string(D) + "\":{\"T\":" +
                  std::to_string(T) + ",\"H\":" + std::to_string(H) + ",\"D\":" + std::to_string(D) + "}";
    }
  }
  {  // GEMM with bias (F16 weights), layernorm, gelu
    const int64_t M = 64, K = 768, N = 2304;
    const std::vector<float> x = randn(M * K), w = randn(K * N, 0.05f), bias = randn(N, 0.1f);
    DeviceWeights dw(ctx, WType::F16);
    TensorView tv;
    tv.dtype = DType::F32, tv.shape = {K, N}, tv.data = w.data(), tv.nbytes = w.size() * 4;
    DeviceBuffer wb;
    const DevMatrix W = dw.matrix(wb, tv, K, N, false);
    DeviceBuffer dx = put(ctx, x), db = put(ctx, bias), dy(ctx, M * N * 4);
    gemm(dy.as<float>(), N, dx.as<float>(), K, W, db.as<float>(), M, Epilogue::Store, ws, *ctx);
    write_bin(dir + "/gemm_x.bin", x);
    write_bin(dir + "/gemm_w.bin", w);
    write_bin(dir + "/gemm_b.bin", bias);
    write_bin(dir + "/gemm_y.bin", get<float>(*ctx, dy, M * N));
    manifest += ",\"gemm\":{\"M\":" + std::to_string(M) + ",\"K\":" + std::to_string(K) + ",\"N\":" + std::to_string(N) + "}";

    const int64_t C = 768;
    const std::vector<float> lx = randn(M * C), lw = randn(C), lb = randn(C);
    DeviceBuffer ldx = put(ctx, lx), ldw = put(ctx, lw), ldb = put(ctx, lb), ldy(ctx, M * C * 4), gdy(ctx, M * C * 4);
    layernorm(ldy.as<float>(), C, ldx.as<float>(), C, nullptr, ldw.as<float>(), ldb.as<float>(), M, C, 1e-5f, ctx->stream());
    gelu(gdy.as<float>(), ldx.as<float>(), M * C, ctx->stream());
    write_bin(dir + "/ln_x.bin", lx);
    write_bin(dir + "/ln_w.bin", lw);
    write_bin(dir + "/ln_b.bin", lb);
    write_bin(dir + "/ln_y.bin", get<float>(*ctx, ldy, M * C));
    write_bin(dir + "/gelu_y.bin", get<float>(*ctx, gdy, M * C));
    manifest += ",\"layernorm\":{\"M\":" + std::to_string(M) + ",\"C\":" + std::to_string(C) + ",\"eps\":1e-5}";
  }
  manifest += "}";
  std::ofstream(dir + "/manifest.json") << manifest << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "bench/results/gpu-kernels.json", parity;
  bool quick = false;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--parity") && i + 1 < argc) parity = argv[++i];
    else out = argv[i];
  }
  std::string why;
  if (device_count(&why) == 0) {
    std::printf("no CUDA device: skipped (%s)\n", why.c_str());
    return 0;
  }
  auto be = std::make_shared<CudaBackend>(0, WType::F16);
  const std::shared_ptr<DeviceContext>& ctx = be->shared_context();
  ThreadPool pool(1);
  const std::string gpu = device_name(0);
  std::printf("device: %s (%d SMs)\n", gpu.c_str(), ctx->sm_count());
  if (!parity.empty()) parity_dump(*be, pool, parity);

  cuda::Scratch ws(ctx);
  std::string json = "{\n  \"benchmark\": \"bench/gpu/kernels.cpp\",\n  \"device\": \"" + gpu + "\",\n";

  // ---- attention
  const int64_t H = 16, D = 64;
  std::vector<int64_t> lengths = quick ? std::vector<int64_t>{4096, 16384} : std::vector<int64_t>{4096, 16384, 65536};
  json += "  \"attention\": {\"heads\": " + std::to_string(H) + ", \"head_dim\": " + std::to_string(D) +
          ", \"batch\": 1, \"flops\": \"4 * T^2 * D / 2 per head (causal)\", \"dense\": [";
  double dense64k_ms = 0;
  for (size_t i = 0; i < lengths.size(); i++) {
    const int64_t T = lengths[i];
    AttnBuffers b = attn_buffers(ctx, T, H, D);
    std::unique_ptr<roost::AttentionPlan> plan = be->attention_plan();
    dense_plan(*plan, b);
    be->begin_step(pool);
    plan->prepare(D);
    const double ms = time_ms(*ctx, T >= 65536 ? 3 : 10, [&] { plan->run(0); });
    const double tflops = 4.0 * T * T * D / 2 * H / (ms * 1e-3) / 1e12;
    if (T == 65536) dense64k_ms = ms;
    std::printf("dense causal flash attention T=%lld H=%lld D=%lld: %.3f ms, %.1f TFLOP/s\n", (long long)T, (long long)H,
                (long long)D, ms, tflops);
    json += std::string(i ? ", " : "") + "{\"T\": " + std::to_string(T) + ", \"ms\": " + num(ms) + ", \"tflops\": " + num(tflops) + "}";
  }
  json += "]";
  if (!quick) {
    const int64_t T = 65536;
    AttentionConfig a;
    a.kind = "bigbird", a.block_size = 64, a.window_blocks = 3, a.global_blocks = 1, a.random_blocks = 3, a.seed = 1;
    AttnBuffers b = attn_buffers(ctx, T, H, D);
    std::unique_ptr<roost::AttentionPlan> plan = be->attention_plan();
    bigbird_plan(*plan, b, a);
    be->begin_step(pool);
    plan->prepare(D);
    const double ms = time_ms(*ctx, 10, [&] { plan->run(0); });
    const double keys = (double)plan->spans().size() * a.block_size / plan->tasks().size();
    std::printf("bigbird block-sparse attention T=%lld (b 64, w 3, g 1, r 3): %.3f ms (dense causal: %.3f ms, %.1fx)\n",
                (long long)T, ms, dense64k_ms, dense64k_ms / ms);
    json += ", \"bigbird_64k\": {\"T\": 65536, \"block_size\": 64, \"window_blocks\": 3, \"global_blocks\": 1, "
            "\"random_blocks\": 3, \"mean_keys_per_query_block\": " + num(keys) + ", \"ms\": " + num(ms) +
            ", \"dense_ms\": " + num(dense64k_ms) + ", \"speedup\": " + num(dense64k_ms / ms) + "}";
  }
  json += "},\n";

  // ---- GEMM
  json += "  \"gemm\": [";
  {
    struct G { int64_t M, K, N; };
    const std::vector<G> gs = {{4096, 768, 2304}, {4096, 3072, 768}, {64, 768, 3072}, {1, 768, 50257}, {64, 768, 50257}};
    DeviceWeights dw(ctx, WType::F16);
    for (size_t i = 0; i < gs.size(); i++) {
      const G& g = gs[i];
      const std::vector<uint16_t> w = randn_half(g.K * g.N, 0.02f);
      TensorView tv;
      tv.dtype = DType::F16, tv.shape = {g.K, g.N}, tv.data = w.data(), tv.nbytes = w.size() * 2;
      DeviceBuffer wb;
      const DevMatrix W = dw.matrix(wb, tv, g.K, g.N, false);
      DeviceBuffer x = put(ctx, randn(g.M * g.K)), y(ctx, g.M * g.N * 4);
      const double ms = time_ms(*ctx, 20, [&] {
        gemm(y.as<float>(), g.N, x.as<float>(), g.K, W, nullptr, g.M, cuda::Epilogue::Store, ws, *ctx);
      });
      const double tflops = 2.0 * g.M * g.K * g.N / (ms * 1e-3) / 1e12, gbs = (double)g.K * g.N * 2 / (ms * 1e-3) / 1e9;
      std::printf("gemm M=%lld K=%lld N=%lld: %.4f ms, %.1f TFLOP/s, weights %.0f GB/s\n", (long long)g.M, (long long)g.K,
                  (long long)g.N, ms, tflops, gbs);
      json += std::string(i ? ", " : "") + "{\"M\": " + std::to_string(g.M) + ", \"K\": " + std::to_string(g.K) +
              ", \"N\": " + std::to_string(g.N) + ", \"ms\": " + num(ms) + ", \"tflops\": " + num(tflops) +
              ", \"weight_gb_per_s\": " + num(gbs) + "}";
    }
  }
  json += "],\n";

  // ---- decode, GPT-2-124M shape
  const std::string dir = "/tmp/roost-gpt2-124m-f16";
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    const double t0 = now_s();
    write_gpt2_124m(dir);
    std::printf("wrote %s in %.1f s\n", dir.c_str(), now_s() - t0);
  }
  double t0 = now_s();
  auto model = load_model(dir, [](const Checkpoint& ckpt) -> std::shared_ptr<Backend> { return make_cuda_backend(0, ckpt); });
  std::printf("loaded GPT-2-124M shape (F16) in %.1f s, %.0f MB of weights\n", now_s() - t0, model->weight_bytes() / 1e6);
  json += "  \"decode\": {\"model\": \"gpt2, 12 layers, n_embd 768, 12 heads, vocab 50257, n_positions 1024, F16 random "
          "weights\", \"prompt_tokens\": 128, \"method\": \"Model::forward per step, logits of the last row to the host\", "
          "\"results\": [";
  const std::vector<int64_t> batches = {1, 64};
  for (size_t i = 0; i < batches.size(); i++) {
    const DecodeResult r = decode_bench(*model, batches[i], 128, batches[i] == 1 ? 64 : 32);
    std::printf("decode batch %lld: %.3f ms per step, %.0f tokens/s (prefill %lld x 128 tokens: %.3f s, %.0f tokens/s)\n",
                (long long)r.batch, r.decode_ms_per_step, r.decode_tok_s, (long long)r.batch, r.prefill_s, r.prefill_tok_s);
    json += std::string(i ? ", " : "") + "{\"batch\": " + std::to_string(r.batch) + ", \"decode_ms_per_step\": " +
            num(r.decode_ms_per_step) + ", \"decode_tokens_per_s\": " + num(r.decode_tok_s) + ", \"prefill_s\": " +
            num(r.prefill_s) + ", \"prefill_tokens_per_s\": " + num(r.prefill_tok_s) + "}";
  }
  json += "]}\n}\n";
  std::ofstream(out) << json;
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
