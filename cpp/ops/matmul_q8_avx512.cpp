// Q8_0 matmul, AVX-512BW integer dot products (CPUs without VNNI): matmul_q8_avx512_impl.h.
#include "matmul_q8_avx512_impl.h"

namespace roost::matmul_impl {
void panels_q8_avx512bw(const Params& p, int64_t p0, int64_t p1) { q8_panels(p, p0, p1); }
}  // namespace roost::matmul_impl
