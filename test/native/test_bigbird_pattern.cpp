// Checks the causal BigBird block pattern against test/fixtures/bigbird-vectors.json
// (splitmix64 outputs and block sets), plus the spec's coverage property.
#include <cstdio>
#include <string>

#include "json.h"
#include "models/bigbird_pattern.h"

using namespace roost;

static int passed = 0, failed = 0;
static void check(bool ok, const std::string& what) {
  if (ok) passed++;
  else { failed++; std::printf("FAIL %s\n", what.c_str()); }
}

static std::string find_vectors() {
  for (const char* p : {"test/fixtures/bigbird-vectors.json"}) {
    if (FILE* f = std::fopen(p, "rb")) { std::fclose(f); return p; }
  }
  return "";
}

int main() {
  const std::string path = find_vectors();
  if (path.empty()) {
    std::printf("FAIL bigbird-vectors.json not found\n0 passed, 1 failed\n");
    return 1;
  }
  json::Value doc = json::parse(json::read_file(path, 1 << 20));
  for (const auto& [in, out] : doc.find("splitmix64_hex")->members) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)splitmix64(std::stoull(in)));
    check(out.text == hex, "splitmix64(" + in + ") = " + hex + ", expected " + out.text);
  }
  for (const auto& p : doc.find("patterns")->items) {
    const json::Value& c = *p.find("config");
    AttentionConfig a;
    a.kind = "bigbird";
    a.block_size = c.find("block_size")->i64;
    a.window_blocks = c.find("window_blocks")->i64;
    a.global_blocks = c.find("global_blocks")->i64;
    a.random_blocks = c.find("random_blocks")->i64;
    a.seed = c.find("seed")->u64;
    const int64_t l = p.find("l")->i64, h = p.find("h")->i64, i = p.find("i")->i64;
    std::vector<int64_t> want;
    for (const auto& b : p.find("blocks")->items) want.push_back(b.i64);
    check(bigbird_blocks(a, l, h, i) == want,
          "pattern l=" + std::to_string(l) + " h=" + std::to_string(h) + " i=" + std::to_string(i));
  }
  // Blocks 0..w+g+r-1 see every earlier block: dense attention up to (w+g+r)*b tokens.
  AttentionConfig a{"bigbird", 16, 3, 2, 3, 99};
  for (int64_t i = 0; i < a.window_blocks + a.global_blocks + a.random_blocks; i++)
    check((int64_t)bigbird_blocks(a, 1, 2, i).size() == i + 1, "covers all blocks at i=" + std::to_string(i));
  check((int64_t)bigbird_blocks(a, 1, 2, 100).size() == 8, "8 blocks at i=100");
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
