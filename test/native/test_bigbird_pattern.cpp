// Checks the causal BigBird block pattern against test/fixtures/bigbird-vectors.json
// (splitmix64 outputs and block sets: docs/spec.md, "Block-sparse attention
// (BigBird, causal)"), plus the spec's coverage property.
#include <cstdio>
#include <string>

#include "doctest.h"
#include "json.h"
#include "models/bigbird_pattern.h"

using namespace roost;

// Run from the repository root, as scripts/run-native-tests.js does.
static json::Value vectors() {
  return json::parse(json::read_file("test/fixtures/bigbird-vectors.json", 1 << 20));
}

TEST_CASE("splitmix64 matches the test vectors") {
  json::Value doc = vectors();
  for (const auto& [in, out] : doc.find("splitmix64_hex")->members) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)splitmix64(std::stoull(in)));
    CHECK_MESSAGE(out.text == hex, ("splitmix64(" + in + ") = " + hex + ", expected " + out.text));
  }
}

TEST_CASE("block sets match the test vectors") {
  json::Value doc = vectors();
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
    CHECK_MESSAGE(bigbird_blocks(a, l, h, i) == want,
                  ("pattern l=" + std::to_string(l) + " h=" + std::to_string(h) + " i=" + std::to_string(i)));
  }
}

TEST_CASE("blocks 0..w+g+r-1 see every earlier block: dense attention up to (w+g+r)*b tokens") {
  AttentionConfig a{"bigbird", 16, 3, 2, 3, 99};
  for (int64_t i = 0; i < a.window_blocks + a.global_blocks + a.random_blocks; i++)
    CHECK_MESSAGE((int64_t)bigbird_blocks(a, 1, 2, i).size() == i + 1, ("covers all blocks at i=" + std::to_string(i)));
  CHECK_MESSAGE((int64_t)bigbird_blocks(a, 1, 2, 100).size() == 8, "8 blocks at i=100");
}
