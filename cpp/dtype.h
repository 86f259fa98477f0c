// Element types of checkpoint tensors and their scalar conversions.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace roost {

// Q8_0 is llama.cpp's 8-bit block format (GGUF type 8): blocks of 32 weights, each
// block one F16 scale d then 32 int8 q, weight = d * q (34 bytes per 32 weights).
enum class DType { F32, F16, BF16, Q8_0 };

// How weight matrices are held in memory: the checkpoint's own element type, or Q8_0
// blocks quantized from an F32, F16 or BF16 source at load (--quantize q8_0;
// docs/models.md, "8-bit weights").
enum class WeightFormat { Keep, Q8_0 };

// Element type of the K/V cache rows: float, or IEEE half (half the bytes a
// decode step's attention reads; CUDA's cache is always F16, the CPU's follows
// --kv-cache-dtype, docs/design.md "The KV cache").
enum class KvType : int { F32 = 0, F16 = 1 };
inline size_t kv_type_size(KvType t) { return t == KvType::F32 ? 4 : 2; }

constexpr int64_t kQ8Block = 32;       // weights per Q8_0 block
constexpr size_t kQ8BlockBytes = 34;   // 2-byte F16 scale + 32 int8

// Elements per storage block: 1 for the float types, 32 for Q8_0.
inline int64_t dtype_block(DType t) { return t == DType::Q8_0 ? kQ8Block : 1; }

// Bytes per block (per element for the float types).
inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::Q8_0: return kQ8BlockBytes;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::Q8_0: return "Q8_0";
  }
  return "?";
}

// IEEE half -> float, exact (handles subnormals, inf, nan).
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) { mant <<= 1; exp--; }
      mant &= 0x3ff;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// float -> IEEE half, round to nearest even.
inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffff;
  if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
  if (exp >= 31) return (uint16_t)(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10) return (uint16_t)sign;
    mant |= 0x800000;
    uint32_t shift = (uint32_t)(14 - exp);
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return (uint16_t)half;
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Reads element i of a tensor of type t as float (for Q8_0, d * q of its block).
inline float load_as_f32(const void* data, DType t, size_t i) {
  switch (t) {
    case DType::F32: { float f; std::memcpy(&f, (const char*)data + 4 * i, 4); return f; }
    case DType::F16: { uint16_t h; std::memcpy(&h, (const char*)data + 2 * i, 2); return f16_to_f32(h); }
    case DType::BF16: { uint16_t h; std::memcpy(&h, (const char*)data + 2 * i, 2); return bf16_to_f32(h); }
    case DType::Q8_0: {  // element i of consecutive blocks (a row-major tensor as GGUF stores it)
      const char* block = (const char*)data + kQ8BlockBytes * (i / kQ8Block);
      uint16_t d;
      std::memcpy(&d, block, 2);
      return f16_to_f32(d) * (float)(int8_t)block[2 + i % kQ8Block];
    }
  }
  return 0.f;
}

}  // namespace roost
