// The one main() of every native test executable (test/native/test_*.cpp,
// linked with this file by CMakeLists.txt): doctest runs the file's
// TEST_CASEs in file order, prints each failed CHECK/REQUIRE with its message,
// and exits non-zero when any failed (scripts/run-native-tests.js reads the exit
// status). Run one from the repository root; --help lists doctest's options,
// e.g. -tc="json*" picks test cases, --duration=true times them.
//
// A message built with `+` is parenthesized, CHECK_MESSAGE(ok, (a + b)):
// doctest applies it to its message builder with `*`, which binds before `+`.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "doctest.h"
