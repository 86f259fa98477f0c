// Instruction-set detection and the process-wide choice of kernel variant.
#include <cpuid.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ops.h"

namespace roost {

namespace {

// XCR0 says which register state the OS saves on a context switch; a CPU may
// report AVX-512 in cpuid while the kernel (or hypervisor) leaves ZMM state off.
uint64_t read_xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

Isa detect() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::Reference;
  bool osxsave = c & bit_OSXSAVE, avx = c & bit_AVX, fma = c & bit_FMA, f16c = c & bit_F16C;
  if (!(osxsave && avx && fma && f16c)) return Isa::Reference;
  uint64_t xcr0 = read_xcr0();
  if ((xcr0 & 0x6) != 0x6) return Isa::Reference;  // SSE + AVX (YMM) state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return Isa::Reference;
  if (!(b & bit_AVX2)) return Isa::Reference;
  bool avx512 = (b & bit_AVX512F) && (b & bit_AVX512BW) && (b & bit_AVX512VL) && (b & bit_AVX512DQ);
  if (avx512 && (xcr0 & 0xe6) == 0xe6) return Isa::Avx512;  // + opmask, ZMM_Hi256, Hi16_ZMM
  return Isa::Avx2;
}

bool parse_isa(const char* s, Isa* out) {
  if (!std::strcmp(s, "reference")) { *out = Isa::Reference; return true; }
  if (!std::strcmp(s, "avx2")) { *out = Isa::Avx2; return true; }
  if (!std::strcmp(s, "avx512")) { *out = Isa::Avx512; return true; }
  return false;
}

// The variants are ordered: a CPU with a later one also runs the earlier ones.
Isa initial_isa() {
  Isa best = detected_isa();
  const char* env = std::getenv("ROOST_ISA");
  if (!env || !*env) return best;
  Isa want;
  if (!parse_isa(env, &want)) {
    std::fprintf(stderr, "roost: ignoring ROOST_ISA=%s (expected reference, avx2 or avx512); using %s\n", env,
                 isa_name(best));
    return best;
  }
  if ((int)want > (int)best) {
    std::fprintf(stderr, "roost: ROOST_ISA=%s is not supported by this CPU; using %s\n", env, isa_name(best));
    return best;
  }
  return want;
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{initial_isa()};
  return isa;
}

}  // namespace

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() { return active().load(std::memory_order_relaxed); }

void set_isa(Isa isa) {
  if ((int)isa > (int)detected_isa())
    throw Error("E_ARGUMENT", std::string("instruction set ") + isa_name(isa) + " is not supported by this CPU");
  active().store(isa, std::memory_order_relaxed);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Reference: return "reference";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

}  // namespace roost
