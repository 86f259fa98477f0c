#include "backend.h"

#include <map>
#include <mutex>

#include "common.h"

namespace roost {

void AttentionPlan::clear() {
  spans_.clear();
  tasks_.clear();
  mark_ = 0;
}

void AttentionPlan::add_task(AttnTask t) {
  t.span0 = (int64_t)mark_;
  t.n_spans = (int32_t)(spans_.size() - mark_);
  t.n_keys = 0;
  for (size_t i = mark_; i < spans_.size(); i++) t.n_keys += spans_[i].n;
  mark_ = spans_.size();
  tasks_.push_back(t);
}

void AttentionPlan::add_heads(AttnTask t, int64_t H) {
  t.head = 0;
  add_task(t);
  t = tasks_.back();
  for (t.head = 1; t.head < H; t.head++) tasks_.push_back(t);
}

void AttentionPlan::add_gqa_heads(AttnTask t, int64_t H, int64_t G, int64_t D) {
  const int64_t group = H / G;
  t.head = 0;
  add_task(t);
  const AttnTask first = tasks_.back();
  for (int64_t h = 1; h < H; h++) {
    AttnTask u = first;
    const int64_t g = h / group;
    u.head = (int32_t)g;
    u.q = first.q + (h - g) * D;
    u.out = first.out + (h - g) * D;
    tasks_.push_back(u);
  }
}

const char* op_name(Op op) {
  switch (op) {
    case Op::Embed: return "embed";
    case Op::LayerNorm: return "layernorm";
    case Op::Gemm: return "gemm";
    case Op::Rotary: return "rotary";
    case Op::Attention: return "attention";
    case Op::MoveRows: return "move_rows";
    case Op::ToKv: return "to_kv";
    case Op::GateUpdate: return "gate_update";
    case Op::ScaleColumns: return "scale_columns";
    case Op::RmsNorm: return "rmsnorm";
    case Op::SiluMul: return "silu_mul";
    case Op::GemmQ8: return "gemm over Q8_0 weights";
    case Op::RelativeBias: return "attention with a relative position bias";
    case Op::GeluMul: return "gelu_mul";
  }
  return "?";
}

void Backend::gelu_mul(float*, int64_t, const float*, int64_t, int64_t, int64_t) {
  throw Error("E_CONFIG", "the " + name() + " backend has no gelu_mul");
}

void require_ops(const Backend& be, const ModelConfig& cfg, std::initializer_list<Op> ops) {
  for (Op op : ops) {
    const std::string why = be.unsupported(op, cfg);
    if (!why.empty())
      throw Error("E_CONFIG", cfg.dir + "/config.json: the " + be.name() + " backend cannot run " + op_name(op) +
                                  " for this " + cfg.model_type + " model (" + why + ")" +
                                  (be.name() == "cpu" ? "" : "; use --device cpu"));
  }
}

namespace {

std::mutex& registry_mutex() {
  static std::mutex mu;
  return mu;
}

std::map<std::string, BackendProvider>& registry() {
  static std::map<std::string, BackendProvider> providers;
  return providers;
}

}  // namespace

void register_backend(BackendProvider provider) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::string name = provider.name;
  registry()[name] = std::move(provider);
}

const BackendProvider* find_backend(const std::string& name) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second;  // map nodes are stable; providers are never removed
}

}  // namespace roost
