// The CUDA backend's attention plan: the tasks cpp/backend.h's AttentionPlan
// collected, split between the flash (tensor-core) kernel and the SIMT
// split-K kernel, uploaded once per step and launched per layer.
#include <algorithm>
#include <numeric>

#include "backend.h"

namespace roost::cuda {

namespace {

constexpr int64_t kFlashMinRows = 16;  // fewer queries per task: SIMT (decode) is the better kernel
constexpr int kMaxSplits = 64;

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

int64_t visible(const AttnSpan& sp, int64_t qpos) {
  const int64_t v = qpos - sp.pos0 + 1;
  return std::max<int64_t>(0, std::min(v, sp.n));
}

AttnTask device_task(const roost::AttnTask& t) {
  return AttnTask{t.out, t.out_stride, t.q, t.q_stride, t.nq, t.qpos0, t.head, t.n_spans, t.span0, t.n_keys};
}

}  // namespace

void CudaAttentionPlan::prepare(int64_t D) {
  StepUpload& up = be_->uploads();
  const DeviceContext& ctx = be_->context();
  if (D > kMaxHeadDim)
    throw Error("E_ARGUMENT", "CUDA attention takes head sizes up to " + std::to_string(kMaxHeadDim) + " (got " +
                                  std::to_string(D) + ")");
  D_ = D;
  flash_.clear();
  simt_.clear();
  units_.clear();
  works_.clear();
  flash_br_ = 0;

  bool spans_ok = true;  // 16-byte rows: cp.async / vector loads
  spans_dev_.clear();
  for (const roost::AttnSpan& s : spans_) {
    spans_ok &= aligned16(s.k) && aligned16(s.v) && s.stride % 8 == 0 && s.layer_stride % 8 == 0;
    spans_dev_.push_back(AttnSpan{static_cast<const uint16_t*>(s.k), static_cast<const uint16_t*>(s.v), s.stride, s.n,
                                  s.pos0, s.layer_stride});
  }
  vec_ = spans_ok && D % 8 == 0;
  auto flash_ok = [&](const roost::AttnTask& t) {
    if (force == 2 || !spans_ok || !flash_supported(D, 64)) return false;
    if (t.q_stride % 4 != 0 || !aligned16(t.q) || t.out_stride % 2 != 0 || reinterpret_cast<uintptr_t>(t.out) % 8)
      return false;
    return force == 1 || t.nq >= kFlashMinRows;
  };
  int64_t max_nq = 0;
  for (const roost::AttnTask& t : tasks_)
    if (flash_ok(t)) max_nq = std::max(max_nq, t.nq);
  if (max_nq > 0) flash_br_ = max_nq > 64 && flash_supported(D, 128) ? 128 : 64;

  std::vector<int64_t> cost;  // visible keys per flash task (longest first balances the grid)
  for (const roost::AttnTask& t : tasks_) {
    if (!flash_ok(t)) {
      simt_.push_back(device_task(t));
      continue;
    }
    for (int64_t j = 0; j < t.nq; j += flash_br_) {
      AttnTask sub = device_task(t);
      sub.q = t.q + j * t.q_stride;
      sub.out = t.out + j * t.out_stride;
      sub.qpos0 = t.qpos0 + j;
      sub.nq = std::min<int64_t>(flash_br_, t.nq - j);
      int64_t keys = 0;
      for (int64_t s = 0; s < t.n_spans; s++) keys += visible(spans_dev_[t.span0 + s], sub.qpos0 + sub.nq - 1);
      flash_.push_back(sub);
      cost.push_back(keys);
    }
  }
  if (!flash_.empty()) {
    std::vector<size_t> order(flash_.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
    std::vector<AttnTask> sorted;
    sorted.reserve(flash_.size());
    for (size_t i : order) sorted.push_back(flash_[i]);
    flash_.swap(sorted);
  }

  int64_t n_units = 0;
  for (const AttnTask& t : simt_) n_units += t.nq;
  const int64_t want = std::max<int64_t>(1, (2 * ctx.sm_count() + std::max<int64_t>(n_units, 1) - 1) /
                                                std::max<int64_t>(n_units, 1));
  for (size_t i = 0; i < simt_.size(); i++) {
    const AttnTask& t = simt_[i];
    const int64_t by_keys = std::max<int64_t>(1, (t.n_keys + 127) / 128);
    const int32_t nsplit = (int32_t)std::min<int64_t>({want, by_keys, kMaxSplits});
    for (int64_t q = 0; q < t.nq; q++) {
      const int32_t unit = (int32_t)units_.size();
      units_.push_back(AttnUnit{(int32_t)i, (int32_t)q, (int32_t)works_.size(), nsplit});
      for (int32_t s = 0; s < nsplit; s++) works_.push_back(AttnWork{unit, s});
    }
  }
  if (works_.size() > (size_t)INT32_MAX) throw Error("E_ARGUMENT", "CUDA attention: too many queries in one step");

  d_spans_ = spans_dev_.empty() ? nullptr : up.push(spans_dev_);
  d_flash_ = flash_.empty() ? nullptr : up.push(flash_);
  d_simt_ = simt_.empty() ? nullptr : up.push(simt_);
  d_units_ = units_.empty() ? nullptr : up.push(units_);
  d_works_ = works_.empty() ? nullptr : up.push(works_);
}

void CudaAttentionPlan::run(int64_t layer) {
  Scratch& ws = be_->workspace();
  const DeviceContext& ctx = be_->context();
  if (!flash_.empty()) attention_flash(d_flash_, (int64_t)flash_.size(), d_spans_, D_, flash_br_, layer, ctx.stream());
  if (!simt_.empty()) {
    float* partial = ws.get<float>(works_.size() * (size_t)(D_ + 2));
    attention_simt(d_simt_, d_spans_, d_units_, (int64_t)units_.size(), d_works_, (int64_t)works_.size(), D_, layer,
                   vec_, partial, ctx.stream());
  }
}

}  // namespace roost::cuda
