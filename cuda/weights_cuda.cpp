#include "weights_cuda.h"

#include <cstring>

#include "../cpp/dtype.h"

namespace roost::cuda {

namespace {

uint16_t f32_to_bf16(float f) {  // round to nearest even; NaN stays NaN
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

}  // namespace

WType weight_type_for(const Checkpoint& ckpt) {
  const TensorView* wte = ckpt.find("wte.weight");
  return wte && wte->dtype == DType::BF16 ? WType::BF16 : WType::F16;
}

DeviceBuffer DeviceWeights::upload(const void* data, size_t bytes) {
  DeviceBuffer buf(ctx_, bytes);
  if (bytes) {
    ROOST_CUDA_CHECK(cudaMemcpyAsync(buf.data(), data, bytes, cudaMemcpyHostToDevice, ctx_->stream()));
    ctx_->sync();  // `data` may go away after we return
  }
  bytes_ += bytes;
  return buf;
}

DeviceBuffer DeviceWeights::floats(const std::vector<float>& v) { return upload(v.data(), v.size() * sizeof(float)); }

DevMatrix DeviceWeights::matrix(DeviceBuffer& storage, const TensorView& t, int64_t K, int64_t N, bool src_is_nk) {
  const DType want = type_ == WType::BF16 ? DType::BF16 : DType::F16;
  std::vector<uint16_t> out((size_t)K * N);  // [N][K]
  const char* src = static_cast<const char*>(t.data);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) {
      const size_t i = src_is_nk ? (size_t)(n * K + k) : (size_t)(k * N + n);  // element of the source
      uint16_t v;
      if (t.dtype == want) {
        std::memcpy(&v, src + 2 * i, 2);  // same 16-bit type: keep the bits
      } else {
        const float f = load_as_f32(t.data, t.dtype, i);
        v = want == DType::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
      }
      out[(size_t)(n * K + k)] = v;
    }
  storage = upload(out.data(), out.size() * sizeof(uint16_t));
  return DevMatrix{K, N, type_, storage.data()};
}

}  // namespace roost::cuda
