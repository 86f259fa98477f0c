// printf-style formatting for test messages (CHECK_MESSAGE), shared by the
// native and CUDA tests.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>

inline std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}
