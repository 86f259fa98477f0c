#include "common.h"

#include <sys/mman.h>

namespace roost {

bool huge_pages_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("ROOST_HUGEPAGES");
    return !(env && std::string(env) == "0");
  }();
  return enabled;
}

void advise_huge_pages(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  // Advice only: without THP (or with it off) the pages stay 4 KiB, nothing fails.
  madvise(p, bytes, MADV_HUGEPAGE);
#endif
}

}  // namespace roost
