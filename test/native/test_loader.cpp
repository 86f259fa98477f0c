// Checkpoint loading: the JSON parser, safetensors (single and sharded) and
// config.json validation. Writes small files into a mkdtemp folder; every
// corrupt input must give a roost::Error with the right code and a message
// naming the file and tensor/field, never a crash.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"
#include "config.h"
#include "doctest.h"
#include "dtype.h"
#include "json.h"
#include "safetensors.h"

using namespace roost;

namespace {

// The mkdtemp folder every test writes into, removed when the process ends.
struct TmpFolder {
  std::string path;
  TmpFolder() {
    char templ[] = "/tmp/roost_test_loader_XXXXXX";
    if (!mkdtemp(templ)) throw std::runtime_error("mkdtemp failed");
    path = templ;
  }
  ~TmpFolder() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};
const TmpFolder tmp_folder;
const std::string& tmp = tmp_folder.path;

// s with the first `from` replaced by `to`.
std::string sub(std::string s, const std::string& from, const std::string& to) {
  size_t i = s.find(from);
  REQUIRE_MESSAGE(i != std::string::npos, ("test bug: no " + from + " in " + s));
  return s.replace(i, from.size(), to);
}

// What is wrong with how body fails ("" when it throws roost::Error(code) whose
// message contains every one of `parts`).
std::string error_mismatch(const std::string& code, const std::vector<std::string>& parts, const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    if (e.code() != code) return "code " + e.code() + ", expected " + code + " (" + e.what() + ")";
    for (const auto& p : parts)
      if (std::string(e.what()).find(p) == std::string::npos) return "message lacks \"" + p + "\": " + e.what();
    return "";
  }
  return "no error thrown, expected " + code;
}

// body must throw roost::Error(code) whose message contains every one of `parts`.
void expect_error(const std::string& code, const std::vector<std::string>& parts, const std::function<void()>& body) {
  const std::string mismatch = error_mismatch(code, parts, body);
  REQUIRE_MESSAGE(mismatch.empty(), mismatch);
}

void expect_parse_error(const std::string& text, const std::string& part = "") {
  try {
    json::parse(text);
  } catch (const json::ParseError& e) {
    REQUIRE_MESSAGE((part.empty() || std::string(e.what()).find(part) != std::string::npos),
                    ("message lacks \"" + part + "\": " + e.what()));
    return;
  }
  FAIL(("parsed, expected a ParseError: " + text.substr(0, 60)));
}

// ---- files ----

std::string make_dir(const std::string& name) {
  std::string d = tmp + "/" + name;
  std::filesystem::create_directories(d);
  return d;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE_MESSAGE(bool(f), ("cannot write " + path));
}

// ---- safetensors writer ----

struct T {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

std::string f32_bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

std::string f16_bytes(const std::vector<float>& v) {
  std::string s;
  for (float x : v) { uint16_t h = f32_to_f16(x); s.append((const char*)&h, 2); }
  return s;
}

std::string bf16_bytes(const std::vector<float>& v) {
  std::string s;
  for (float x : v) { uint32_t b; std::memcpy(&b, &x, 4); uint16_t h = uint16_t(b >> 16); s.append((const char*)&h, 2); }
  return s;
}

std::string shape_json(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// 8-byte little-endian length + header + data.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = char((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

// A well-formed file: tensors packed in order, header padded with spaces to 8 bytes
// (as the Python library does).
std::string st_file(const std::vector<T>& ts, const std::string& metadata = "{\"format\":\"pt\"}") {
  std::string header = "{\"__metadata__\":" + metadata;
  std::string data;
  for (const T& t : ts) {
    header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + shape_json(t.shape) +
              ",\"data_offsets\":[" + std::to_string(data.size()) + "," + std::to_string(data.size() + t.bytes.size()) + "]}";
    data += t.bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  return raw_file(header, data);
}

// A file with one hand-written tensor entry and `data_len` zero data bytes.
std::string one_entry(const std::string& name, const std::string& entry, size_t data_len) {
  return raw_file("{\"" + name + "\":" + entry + "}", std::string(data_len, '\0'));
}

std::string write_st(const std::string& name, const std::string& bytes) {
  std::string p = tmp + "/" + name;
  write_file(p, bytes);
  return p;
}

float at(const TensorView& t, size_t i) { return load_as_f32(t.data, t.dtype, i); }

// ---- JSON ----

TEST_CASE("json: scalars, nesting, offsets") {
  json::Value v = json::parse(" {\"a\": [1, -2.5, true, false, null, \"x\"], \"b\": {}} ");
  REQUIRE_MESSAGE((v.is_object() && v.members.size() == 2), "object of 2");
  const json::Value* a = v.find("a");
  REQUIRE_MESSAGE((a && a->items.size() == 6), "array of 6");
  REQUIRE_MESSAGE((a->items[0].has_i64 && a->items[0].i64 == 1), "1 exact");
  REQUIRE_MESSAGE((!a->items[1].is_integer() && a->items[1].number == -2.5), "-2.5");
  REQUIRE_MESSAGE((a->items[2].boolean && !a->items[3].boolean && a->items[4].is_null()), "literals");
  REQUIRE_MESSAGE(a->items[5].text == "x", "string");
  REQUIRE_MESSAGE((v.find("b")->is_object() && v.find("nope") == nullptr), "find");
  REQUIRE_MESSAGE(a->offset == 7, ("offset of the array is 7, got " + std::to_string(a->offset)));
}

TEST_CASE("json: every escape") {
  json::Value v = json::parse(R"("\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac")");
  REQUIRE_MESSAGE(v.text == "\"\\/\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC", ("decoded: " + v.text));
}

TEST_CASE("json: surrogate pair -> one 4-byte UTF-8 code point") {
  json::Value v = json::parse(R"("\ud83d\ude00 \uD834\uDD1E")");
  REQUIRE_MESSAGE(v.text == "\xF0\x9F\x98\x80 \xF0\x9D\x84\x9E", ("decoded: " + v.text));
}

TEST_CASE("json: lone and mismatched surrogates refused") {
  expect_parse_error(R"("\ud83d")", "surrogate");
  expect_parse_error(R"("\ude00")", "surrogate");
  expect_parse_error(R"("\ud83d\u0041")", "surrogate");
  expect_parse_error(R"("\ud83dx")", "surrogate");
  expect_parse_error(R"("\u12")", "escape");
  expect_parse_error(R"("\u12g4")", "hex");
  expect_parse_error(R"("\x")", "escape");
}

TEST_CASE("json: raw UTF-8 kept, invalid UTF-8 refused") {
  REQUIRE_MESSAGE(json::parse("\"caf\xC3\xA9 \xF0\x9F\x98\x80\"").text == "caf\xC3\xA9 \xF0\x9F\x98\x80", "utf-8 kept");
  expect_parse_error("\"\xC3\"", "UTF-8");          // truncated sequence
  expect_parse_error("\"\xC0\xAF\"", "UTF-8");      // overlong '/'
  expect_parse_error("\"\xED\xA0\x80\"", "UTF-8");  // encoded surrogate
  expect_parse_error("\"\xF4\x90\x80\x80\"", "UTF-8");  // above U+10FFFF
  expect_parse_error("\"\xFF\"", "UTF-8");
}

TEST_CASE("json: integers exact beyond 2^53") {
  json::Value v = json::parse("[9007199254740993, 18446744073709551615, -9223372036854775808, 9223372036854775807, "
                              "18446744073709551616, 1.0, 1e2, -0, 0]");
  REQUIRE_MESSAGE((v.items[0].has_u64 && v.items[0].u64 == 9007199254740993ull && v.items[0].i64 == 9007199254740993ll),
                  "2^53+1 exact");
  REQUIRE_MESSAGE((v.items[1].has_u64 && !v.items[1].has_i64 && v.items[1].u64 == UINT64_MAX), "u64 max");
  REQUIRE_MESSAGE((v.items[2].has_i64 && !v.items[2].has_u64 && v.items[2].i64 == INT64_MIN), "i64 min");
  REQUIRE_MESSAGE((v.items[3].has_i64 && v.items[3].i64 == INT64_MAX), "i64 max");
  REQUIRE_MESSAGE((!v.items[4].is_integer() && v.items[4].number == 18446744073709551616.0), "2^64 only as double");
  REQUIRE_MESSAGE((!v.items[5].is_integer() && v.items[5].number == 1.0), "1.0 is not an integer literal");
  REQUIRE_MESSAGE((!v.items[6].is_integer() && v.items[6].number == 100.0), "1e2 is not an integer literal");
  REQUIRE_MESSAGE((v.items[7].has_i64 && v.items[7].i64 == 0), "-0");
  REQUIRE_MESSAGE(v.items[8].text == "0", "literal text kept");
}

TEST_CASE("json: doubles parsed exactly") {
  json::Value v = json::parse("[1e-05, 0.1, -1.5E+3, 2.5e-1]");
  REQUIRE_MESSAGE((v.items[0].number == 1e-05 && v.items[1].number == 0.1), "1e-05, 0.1");
  REQUIRE_MESSAGE((v.items[2].number == -1500.0 && v.items[3].number == 0.25), "exponents");
}

TEST_CASE("json: malformed numbers refused") {
  for (const char* s : {"01", "-", "1.", ".5", "+1", "1e", "1e+", "NaN", "Infinity", "-Infinity", "0x10", "1e999"})
    expect_parse_error(s);
}

TEST_CASE("json: depth limit 256") {
  std::string ok = std::string(256, '[') + std::string(256, ']');
  json::parse(ok);
  std::string deep = std::string(257, '[') + std::string(257, ']');
  expect_parse_error(deep, "nesting");
  std::string objects;
  for (int i = 0; i < 300; ++i) objects += "{\"a\":";
  expect_parse_error(objects + "1" + std::string(300, '}'), "nesting");
  // Far deeper than any stack would survive recursively: refused just the same.
  expect_parse_error(std::string(1000000, '['), "nesting");
}

TEST_CASE("json: trailing garbage and syntax errors refused") {
  expect_parse_error("{} x", "after the JSON value");
  expect_parse_error("{}{}", "after the JSON value");
  expect_parse_error("[1,2,x]", "at byte 5");
  for (const char* s : {"", " ", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "tru", "nul", "[", "{",
                        "\"abc", "'a'", "{\"a\":1 /* c */}", "[\"a\tb\"]", "\"\x01\""})
    expect_parse_error(s);
}

TEST_CASE("json: duplicate keys refused, naming the key") {
  expect_parse_error("{\"a\":1,\"b\":2,\"a\":3}", "duplicate object key \"a\"");
}

TEST_CASE("json: BOM skipped, whitespace kinds") {
  REQUIRE_MESSAGE(json::parse("\xEF\xBB\xBF\t\r\n [ 1 ] \n").items.size() == 1, "BOM + whitespace");
  expect_parse_error("\f[1]");  // form feed is not JSON whitespace
}

TEST_CASE("json: size limit") {
  json::Limits small;
  small.max_bytes = 10;
  json::parse("[1,2,3,4]", small);
  try {
    json::parse("[1,2,3,4,5,6]", small);
  } catch (const json::ParseError&) {
    return;
  }
  FAIL("not refused");
}

TEST_CASE("json: dump for messages") {
  REQUIRE_MESSAGE(json::dump(json::parse("{\"a\":[1,\"x\\\"y\",null]}")) == "{\"a\":[1,\"x\\\"y\",null]}", "compact");
  std::string longs = json::dump(json::parse("\"" + std::string(500, 'z') + "\""), 20);
  REQUIRE_MESSAGE((longs.size() <= 24 && longs.substr(longs.size() - 3) == "..."), ("cut: " + longs));
}

// ---- safetensors ----

TEST_CASE("safetensors: F32/F16/BF16 values") {
  std::vector<float> a = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 65504.0f};
  std::string p = write_st("dtypes.safetensors",
                           st_file({{"a32", "F32", {2, 3}, f32_bytes(a)},
                                    {"a16", "F16", {3, 2}, f16_bytes(a)},
                                    {"abf", "BF16", {6}, bf16_bytes(a)},
                                    {"scalar", "F32", {}, f32_bytes({7.0f})},
                                    {"empty", "F16", {0, 4}, ""}}));
  Checkpoint c = Checkpoint::open_file(p);
  const TensorView& t32 = c.get("a32", {2, 3});
  REQUIRE_MESSAGE((t32.dtype == DType::F32 && t32.nbytes == 24 && t32.numel() == 6 && t32.file == p), "a32 meta");
  for (size_t i = 0; i < a.size(); ++i) REQUIRE_MESSAGE(at(t32, i) == a[i], ("a32 value " + std::to_string(i)));
  const TensorView& t16 = c.get("a16", {3, 2});
  REQUIRE_MESSAGE((t16.dtype == DType::F16 && t16.nbytes == 12), "a16 meta");
  for (size_t i = 0; i < a.size(); ++i)
    REQUIRE_MESSAGE(std::fabs(at(t16, i) - a[i]) <= std::fabs(a[i]) * 1e-3f, ("a16 value " + std::to_string(i)));
  REQUIRE_MESSAGE((at(t16, 5) == 65504.0f && at(t16, 1) == -2.5f), "a16 exact values");
  const TensorView& tbf = c.get("abf", {6});
  REQUIRE_MESSAGE(tbf.dtype == DType::BF16, "abf dtype");
  REQUIRE_MESSAGE((at(tbf, 0) == 1.0f && at(tbf, 1) == -2.5f && at(tbf, 2) == 3.25f), "abf exact values");
  REQUIRE_MESSAGE(std::fabs(at(tbf, 4) - 1e-3f) < 1e-5f, "abf rounded value");
  REQUIRE_MESSAGE((at(c.get("scalar", {}), 0) == 7.0f && c.get("scalar", {}).numel() == 1), "scalar");
  REQUIRE_MESSAGE((c.get("empty", {0, 4}).nbytes == 0 && c.get("empty", {0, 4}).numel() == 0), "empty tensor");
  REQUIRE_MESSAGE(c.names() == std::vector<std::string>({"a16", "a32", "abf", "empty", "scalar"}), "names sorted");
  REQUIRE_MESSAGE((c.has("a32") && !c.has("nope") && c.find("nope") == nullptr), "has/find");
}

TEST_CASE("safetensors: transformer. prefix stripped, lm_head kept") {
  std::string p = write_st("prefix.safetensors", st_file({{"transformer.wte.weight", "F32", {2, 2}, f32_bytes({1, 2, 3, 4})},
                                                           {"transformer.h.0.ln_1.weight", "F32", {2}, f32_bytes({5, 6})},
                                                           {"lm_head.weight", "F32", {2, 2}, f32_bytes({7, 8, 9, 10})}}));
  Checkpoint c = Checkpoint::open_file(p);
  REQUIRE_MESSAGE((c.has("wte.weight") && c.has("h.0.ln_1.weight") && c.has("lm_head.weight")), "stripped names present");
  REQUIRE_MESSAGE(!c.has("transformer.wte.weight"), "prefixed name gone");
  REQUIRE_MESSAGE(c.get("wte.weight", {2, 2}).name == "wte.weight", "view name stripped");
  REQUIRE_MESSAGE(at(c.get("lm_head.weight", {2, 2}), 3) == 10.0f, "lm_head value");
}

TEST_CASE("safetensors: GPT-2 attn.bias / attn.masked_bias buffers ignored, real biases kept") {
  std::string p = write_st("buffers.safetensors",
                           st_file({{"transformer.h.0.attn.bias", "BOOL", {1, 1, 2, 2}, std::string("\1\0\1\1", 4)},
                                    {"h.11.attn.masked_bias", "F32", {}, f32_bytes({-1e4f})},
                                    {"h.0.attn.c_attn.bias", "F32", {3}, f32_bytes({1, 2, 3})},
                                    {"h.0.attn.c_proj.bias", "F32", {1}, f32_bytes({4})},
                                    {"h.x.attn.bias", "F32", {1}, f32_bytes({5})}}));
  Checkpoint c = Checkpoint::open_file(p);
  REQUIRE_MESSAGE((!c.has("h.0.attn.bias") && !c.has("h.11.attn.masked_bias")), "buffers dropped");
  REQUIRE_MESSAGE((c.has("h.0.attn.c_attn.bias") && c.has("h.0.attn.c_proj.bias")), "projection biases kept");
  REQUIRE_MESSAGE(c.has("h.x.attn.bias"), "only h.<digits>.attn.bias is a buffer name");
}

TEST_CASE("safetensors: buffers are still bounds-checked") {
  std::string p = write_st("badbuffer.safetensors", one_entry("h.0.attn.bias", R"({"dtype":"BOOL","shape":[4],"data_offsets":[0,4]})", 2));
  expect_error("E_CHECKPOINT", {p, "h.0.attn.bias", "truncated"}, [&] { Checkpoint::open_file(p); });
}

// Corruptions of a single file: each names the file (and tensor where there is one).
TEST_CASE("safetensors refuses corrupt files, naming the file and tensor") {
  struct Bad {
    const char* label;
    std::string bytes;
    std::vector<std::string> parts;
  };
  const std::string ok_entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::vector<Bad> bad = {
      {"empty file", "", {"truncated"}},
      {"5-byte file", std::string(5, '\0'), {"truncated", "8"}},
      {"header length past the end", raw_file("{}", "").substr(0, 8) + "{", {"truncated", "header length"}},
      {"absurd header length", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", {"absurd"}},
      {"header length 200 MB", std::string("\x00\x00\x80\x0c\x00\x00\x00\x00", 8) + "{}", {"absurd"}},
      {"header not JSON", raw_file("{\"w\": nope}", ""), {"not valid JSON", "file byte 14"}},
      {"header an array", raw_file("[]", ""), {"not a JSON object"}},
      {"header with trailing garbage", raw_file("{} {}", ""), {"not valid JSON"}},
      {"entry not an object", one_entry("w", "[1]", 0), {"tensor w", "not an object"}},
      {"dtype missing", one_entry("w", R"({"shape":[2],"data_offsets":[0,8]})", 8), {"tensor w", "dtype is missing"}},
      {"dtype I64", one_entry("h.0.mlp.c_fc.weight", R"({"dtype":"I64","shape":[1],"data_offsets":[0,8]})", 8),
       {"tensor h.0.mlp.c_fc.weight", "unsupported dtype I64"}},
      {"dtype F64", one_entry("w", R"({"dtype":"F64","shape":[1],"data_offsets":[0,8]})", 8), {"tensor w", "unsupported dtype F64"}},
      {"dtype garbage", one_entry("w", R"({"dtype":"F99","shape":[1],"data_offsets":[0,4]})", 4), {"tensor w", "unknown dtype \"F99\""}},
      {"dtype not a string", one_entry("w", R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})", 4), {"tensor w", "dtype"}},
      {"shape missing", one_entry("w", R"({"dtype":"F32","data_offsets":[0,4]})", 4), {"tensor w", "shape is missing"}},
      {"negative dim", one_entry("w", R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", 4), {"tensor w", "non-negative integers", "[-1]"}},
      {"fractional dim", one_entry("w", R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})", 4), {"tensor w", "non-negative integers"}},
      {"shape not a list", one_entry("w", R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})", 16), {"tensor w", "shape"}},
      {"shape of strings", one_entry("w", R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})", 8), {"tensor w", "shape"}},
      {"huge shape", one_entry("w", R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})", 8), {"tensor w", "too large"}},
      {"data_offsets missing", one_entry("w", R"({"dtype":"F32","shape":[2]})", 8), {"tensor w", "data_offsets is missing"}},
      {"data_offsets reversed", one_entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})", 8), {"tensor w", "data_offsets", "[8,0]"}},
      {"data_offsets of 3", one_entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[0,4,8]})", 8), {"tensor w", "data_offsets"}},
      {"data_offsets negative", one_entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})", 8), {"tensor w", "data_offsets"}},
      {"data_offsets fractional", one_entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[0,8.0]})", 8), {"tensor w", "data_offsets"}},
      {"data past the end", one_entry("w", ok_entry, 7), {"tensor w", "truncated", "7"}},
      {"offset beyond 2^64 arithmetic", one_entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]})", 8),
       {"tensor w"}},
      {"size mismatch", one_entry("w", R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", 12), {"tensor w", "needs 12"}},
      {"size mismatch F16", one_entry("w", R"({"dtype":"F16","shape":[2],"data_offsets":[0,8]})", 8), {"tensor w", "needs 4"}},
      {"overlap", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           std::string(12, '\0')),
       {"a", "b", "overlap"}},
      {"same range twice", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                    std::string(8, '\0')),
       {"overlap"}},
      {"duplicate name", raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                  std::string(8, '\0')),
       {"duplicate", "\"w\""}},
      {"duplicate after stripping transformer.",
       raw_file(R"({"transformer.w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                std::string(8, '\0')),
       {"duplicate tensor w: w here and transformer.w in this file"}},
      {"__metadata__ not an object", raw_file(R"({"__metadata__":"pt"})", ""), {"__metadata__"}},
  };
  for (const Bad& b : bad) {
    std::string p = write_st("bad.safetensors", b.bytes);
    std::vector<std::string> parts = b.parts;
    parts.push_back(p);
    const std::string mismatch = error_mismatch("E_CHECKPOINT", parts, [&] { Checkpoint::open_file(p); });
    CHECK_MESSAGE(mismatch.empty(), (std::string("safetensors refuses: ") + b.label + ": " + mismatch));
  }
}

TEST_CASE("safetensors: zero-length tensors may share an offset; gaps and unaligned data accepted") {
  std::string p = write_st("gaps.safetensors",
                           raw_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                                    R"("c":{"dtype":"F16","shape":[1],"data_offsets":[9,11]}})",
                                    std::string("\0\0\0\0\0\0\x80\x3f\0\0\x3c", 11)));
  Checkpoint c = Checkpoint::open_file(p);
  REQUIRE_MESSAGE((at(c.get("b", {1}), 0) == 1.0f && at(c.get("c", {1}), 0) == 1.0f), "values");
}

TEST_CASE("safetensors: missing file, folder given as file") {
  expect_error("E_CHECKPOINT", {tmp + "/nope.safetensors", "cannot open"}, [] { Checkpoint::open_file(tmp + "/nope.safetensors"); });
  expect_error("E_CHECKPOINT", {"not a regular file"}, [] { Checkpoint::open_file(tmp); });
}

// ---- checkpoint folders ----

TEST_CASE("checkpoint: folder with model.safetensors, get() messages") {
  std::string d = make_dir("single");
  write_file(d + "/model.safetensors", st_file({{"h.0.attn.c_attn.weight", "F32", {2, 6}, f32_bytes(std::vector<float>(12, 1.0f))}}));
  Checkpoint c = Checkpoint::open(d);
  REQUIRE_MESSAGE(c.source() == d, "source is the folder");
  REQUIRE_MESSAGE(c.get("h.0.attn.c_attn.weight", {2, 6}).numel() == 12, "get");
  expect_error("E_CHECKPOINT", {d + ": tensor h.3.attn.c_attn.weight is missing"}, [&] { c.get("h.3.attn.c_attn.weight", {2, 6}); });
  expect_error("E_CHECKPOINT", {d + "/model.safetensors: tensor h.0.attn.c_attn.weight has shape [2,6], expected [6,2]"},
               [&] { c.get("h.0.attn.c_attn.weight", {6, 2}); });
  expect_error("E_CHECKPOINT", {"has shape [2,6], expected [2,6,1]"}, [&] { c.get("h.0.attn.c_attn.weight", {2, 6, 1}); });
}

TEST_CASE("checkpoint: model.safetensors preferred over the index") {
  std::string d = make_dir("both");
  write_file(d + "/model.safetensors", st_file({{"w", "F32", {1}, f32_bytes({1})}}));
  write_file(d + "/model.safetensors.index.json", "not json at all");
  REQUIRE_MESSAGE(Checkpoint::open(d).has("w"), "single file used");
}

TEST_CASE("checkpoint: empty folder and missing folder named") {
  std::string d = make_dir("emptyfolder");
  expect_error("E_CHECKPOINT", {d, "no model.safetensors, model.safetensors.index.json or model.gguf"}, [&] { Checkpoint::open(d); });
  write_file(d + "/pytorch_model.bin", "x");
  expect_error("E_CHECKPOINT", {"pytorch_model.bin is not supported"}, [&] { Checkpoint::open(d); });
  expect_error("E_CHECKPOINT", {tmp + "/absent"}, [] { Checkpoint::open(tmp + "/absent"); });
}

TEST_CASE("checkpoint: moved Checkpoint keeps its views") {
  std::string d = make_dir("move");
  write_file(d + "/model.safetensors", st_file({{"w", "F32", {2}, f32_bytes({3, 4})}}));
  Checkpoint a = Checkpoint::open(d);
  const void* data = a.get("w", {2}).data;
  Checkpoint b = std::move(a);
  REQUIRE_MESSAGE((b.get("w", {2}).data == data && at(b.get("w", {2}), 1) == 4.0f), "same mapping after move");
}

auto shard1 = [] { return st_file({{"transformer.wte.weight", "F32", {2, 2}, f32_bytes({1, 2, 3, 4})},
                                   {"transformer.h.0.attn.bias", "F32", {1}, f32_bytes({0})}}); };
auto shard2 = [] { return st_file({{"transformer.ln_f.weight", "BF16", {2}, bf16_bytes({5, 6})}}); };
const std::string index = R"({"metadata":{"total_size":20},"weight_map":{"transformer.wte.weight":"model-00001-of-00002.safetensors",)"
                          R"("transformer.h.0.attn.bias":"model-00001-of-00002.safetensors",)"
                          R"("transformer.ln_f.weight":"model-00002-of-00002.safetensors"}})";

TEST_CASE("sharded: valid two-shard checkpoint") {
  std::string d = make_dir("sharded_ok");
  write_file(d + "/model-00001-of-00002.safetensors", shard1());
  write_file(d + "/model-00002-of-00002.safetensors", shard2());
  write_file(d + "/model.safetensors.index.json", index);
  Checkpoint c = Checkpoint::open(d);
  REQUIRE_MESSAGE(c.names() == std::vector<std::string>({"ln_f.weight", "wte.weight"}), "names across shards");
  REQUIRE_MESSAGE((at(c.get("wte.weight", {2, 2}), 3) == 4.0f && at(c.get("ln_f.weight", {2}), 1) == 6.0f), "values");
  REQUIRE_MESSAGE(c.get("ln_f.weight", {2}).file == d + "/model-00002-of-00002.safetensors", "view names its shard");
  expect_error("E_CHECKPOINT", {d + "/model-00002-of-00002.safetensors: tensor ln_f.weight has shape [2]"},
               [&] { c.get("ln_f.weight", {3}); });
}

TEST_CASE("sharded: missing shard") {
  std::string d = make_dir("sharded_missing");
  write_file(d + "/model-00001-of-00002.safetensors", shard1());
  write_file(d + "/model.safetensors.index.json", index);
  expect_error("E_CHECKPOINT", {"model-00002-of-00002.safetensors", "transformer.ln_f.weight", "cannot be opened"},
               [&] { Checkpoint::open(d); });
}

TEST_CASE("sharded: tensor not in its shard") {
  std::string d = make_dir("sharded_misplaced");
  write_file(d + "/model-00001-of-00002.safetensors", shard1());
  write_file(d + "/model-00002-of-00002.safetensors", shard2());
  write_file(d + "/model.safetensors.index.json",
             sub(index, "\"transformer.wte.weight\":\"model-00001", "\"transformer.wte.weight\":\"model-00002"));
  expect_error("E_CHECKPOINT", {d + "/model-00002-of-00002.safetensors", "tensor transformer.wte.weight is missing from this shard"},
               [&] { Checkpoint::open(d); });
}

TEST_CASE("sharded: same tensor in two shards") {
  std::string d = make_dir("sharded_dup");
  write_file(d + "/a.safetensors", shard1());
  write_file(d + "/b.safetensors", shard1());
  write_file(d + "/model.safetensors.index.json", R"({"weight_map":{"transformer.wte.weight":"a.safetensors","transformer.h.0.attn.bias":"b.safetensors"}})");
  expect_error("E_CHECKPOINT", {d + "/b.safetensors: duplicate tensor wte.weight: transformer.wte.weight here and transformer.wte.weight in " + d + "/a.safetensors"}, [&] { Checkpoint::open(d); });
}

TEST_CASE("sharded: shard names with separators or .. refused") {
  std::string d = make_dir("sharded_escape");
  write_file(d + "/model.safetensors", shard1());
  std::string sub = make_dir("sharded_escape/sub");
  for (const char* name : {"../sharded_ok/model-00001-of-00002.safetensors", "sub/x.safetensors", "..", ".", "a\\\\b", ""}) {
    write_file(sub + "/model.safetensors.index.json", std::string(R"({"weight_map":{"w":")") + name + "\"}}");
    expect_error("E_CHECKPOINT", {sub + "/model.safetensors.index.json", "tensor w", "plain file names"}, [&] { Checkpoint::open(sub); });
  }
}

TEST_CASE("sharded: malformed index") {
  std::string d = make_dir("sharded_bad_index");
  const std::string p = d + "/model.safetensors.index.json";
  write_file(p, "{\"weight_map\": ");
  expect_error("E_CHECKPOINT", {p, "not valid JSON"}, [&] { Checkpoint::open(d); });
  write_file(p, "{\"metadata\": {}}");
  expect_error("E_CHECKPOINT", {p, "weight_map"}, [&] { Checkpoint::open(d); });
  write_file(p, "{\"weight_map\": {}}");
  expect_error("E_CHECKPOINT", {p, "weight_map is empty"}, [&] { Checkpoint::open(d); });
  write_file(p, "{\"weight_map\": {\"w\": 3}}");
  expect_error("E_CHECKPOINT", {p, "tensor w", "not a file name"}, [&] { Checkpoint::open(d); });
}

TEST_CASE("sharded: corrupt shard names the shard and tensor") {
  std::string d = make_dir("sharded_corrupt");
  std::string s1 = shard1();
  write_file(d + "/model-00001-of-00002.safetensors", s1.substr(0, s1.size() - 1));
  write_file(d + "/model-00002-of-00002.safetensors", shard2());
  write_file(d + "/model.safetensors.index.json", index);
  expect_error("E_CHECKPOINT", {d + "/model-00001-of-00002.safetensors", "truncated", "transformer.h.0.attn.bias"},
               [&] { Checkpoint::open(d); });
}

// ---- config.json ----

// The config.json of HF "gpt2", verbatim.
const char* kHfGpt2 = R"({
  "activation_function": "gelu_new",
  "architectures": ["GPT2LMHeadModel"],
  "attn_pdrop": 0.1,
  "bos_token_id": 50256,
  "embd_pdrop": 0.1,
  "eos_token_id": 50256,
  "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05,
  "model_type": "gpt2",
  "n_ctx": 1024,
  "n_embd": 768,
  "n_head": 12,
  "n_layer": 12,
  "n_positions": 1024,
  "resid_pdrop": 0.1,
  "summary_activation": null,
  "summary_first_dropout": 0.1,
  "summary_proj_to_labels": true,
  "summary_type": "cls_index",
  "summary_use_proj": true,
  "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
  "vocab_size": 50257
})";

ModelConfig cfg(const std::string& text) { return parse_config(text, "m/config.json", "m"); }

// A small base config plus extra top-level members.
std::string small(const std::string& model_type, const std::string& extra) {
  return "{\"model_type\":\"" + model_type + "\",\"vocab_size\":300,\"n_embd\":32,\"n_head\":4,\"n_layer\":3" +
         (extra.empty() ? "" : "," + extra) + "}";
}


TEST_CASE("config: HF gpt2 config.json loads unchanged") {
  ModelConfig c = cfg(kHfGpt2);
  REQUIRE_MESSAGE((c.model_type == "gpt2" && c.vocab_size == 50257 && c.n_embd == 768 && c.n_head == 12 && c.n_layer == 12), "sizes");
  REQUIRE_MESSAGE((c.n_inner == 3072 && c.n_positions == 1024 && c.head_dim() == 64), "n_inner null -> 4C, n_positions");
  REQUIRE_MESSAGE((c.layer_norm_epsilon == 1e-5f && c.position_embedding == "learned" && c.attention.kind == "dense"), "defaults");
  REQUIRE_MESSAGE((c.eos_token_id == 50256 && c.tokenizer_class.empty() && c.dir == "m"), "eos, tokenizer, dir");
}

TEST_CASE("config: load_config reads <dir>/config.json; missing file is E_CHECKPOINT") {
  std::string d = make_dir("cfg");
  write_file(d + "/config.json", kHfGpt2);
  REQUIRE_MESSAGE(load_config(d).n_embd == 768, "loaded");
  std::string e = make_dir("cfg_missing");
  expect_error("E_CHECKPOINT", {e + "/config.json"}, [&] { load_config(e); });
  write_file(e + "/config.json", "{\"model_type\": \"gpt2\",}");
  expect_error("E_CONFIG", {e + "/config.json", "not valid JSON", "at byte 22"}, [&] { load_config(e); });
}

TEST_CASE("config: n_ctx fallback, n_inner, epsilon") {
  ModelConfig c = cfg(small("gpt2", "\"n_ctx\":64,\"n_inner\":100,\"layer_norm_epsilon\":1e-6"));
  REQUIRE_MESSAGE((c.n_positions == 64 && c.n_inner == 100 && c.layer_norm_epsilon == 1e-6f), "values");
  REQUIRE_MESSAGE(cfg(small("gpt2", "\"n_positions\":128,\"n_ctx\":64")).n_positions == 128, "n_positions wins");
}

TEST_CASE("config: rotary defaults") {
  ModelConfig c = cfg(small("gpt2", "\"position_embedding\":\"rotary\""));
  REQUIRE_MESSAGE((c.position_embedding == "rotary" && c.rotary_dim == 8 && c.rotary_base == 10000.0 && c.n_positions == 0), "defaults");
  ModelConfig d = cfg(small("gpt2", "\"position_embedding\":\"rotary\",\"rotary_dim\":4,\"rotary_base\":500000,\"n_positions\":4096"));
  REQUIRE_MESSAGE((d.rotary_dim == 4 && d.rotary_base == 500000.0 && d.n_positions == 4096), "given");
}

TEST_CASE("config: bigbird") {
  ModelConfig c = cfg(small("gpt2", R"("n_positions":4096,"attention":{"kind":"bigbird","block_size":64,"window_blocks":3,"global_blocks":0,"random_blocks":2,"seed":9007199254740991})"));
  REQUIRE_MESSAGE((c.attention.kind == "bigbird" && c.attention.block_size == 64 && c.attention.window_blocks == 3 &&
                      c.attention.global_blocks == 0 && c.attention.random_blocks == 2 && c.attention.seed == 9007199254740991ull),
                  "fields");
  REQUIRE_MESSAGE(cfg(small("gpt2", R"("n_positions":8,"attention":{"kind":"dense"})")).attention.kind == "dense", "explicit dense");
}

TEST_CASE("config: perceiver_ar and block_recurrent") {
  ModelConfig p = cfg(small("perceiver_ar", R"("num_latents":16,"position_embedding":"rotary","rotary_dim":6)"));
  REQUIRE_MESSAGE((p.num_latents == 16 && p.rotary_dim == 6 && p.n_positions == 0), "perceiver_ar");
  ModelConfig b = cfg(small("block_recurrent", R"("block_size":8,"num_states":4,"recurrent_layers":[2,0],"position_embedding":"rotary","gate":"fixed")"));
  REQUIRE_MESSAGE((b.block_size == 8 && b.num_states == 4 && b.recurrent_layers == std::vector<int64_t>({0, 2}) && b.gate == "fixed"),
                  "block_recurrent");
}

TEST_CASE("config: bytes tokenizer, special tokens, eos default") {
  ModelConfig c = cfg(small("gpt2", R"("n_positions":8,"tokenizer_class":"bytes","special_tokens":{"eos":256,"fim_prefix":257,"fim_middle":258,"fim_suffix":259})"));
  REQUIRE_MESSAGE((c.tokenizer_class == "bytes" && c.special_tokens.size() == 4 && c.special_tokens["fim_suffix"] == 259), "tokens");
  REQUIRE_MESSAGE(c.eos_token_id == 256, "eos defaults to special_tokens.eos");
  REQUIRE_MESSAGE(cfg(small("gpt2", R"("n_positions":8,"tokenizer_class":"bytes","special_tokens":{"eos":256},"eos_token_id":257)")).eos_token_id == 257,
                  "explicit eos_token_id wins");
  REQUIRE_MESSAGE(cfg(small("gpt2", R"("n_positions":8,"tokenizer_class":"GPT2Tokenizer")")).tokenizer_class == "GPT2Tokenizer", "HF class kept");
}

TEST_CASE("config refuses bad values, naming the field") {
  struct Bad {
    const char* label;
    std::string text;
    std::vector<std::string> parts;
  };
  const std::string rot = "\"position_embedding\":\"rotary\"";
  const std::string bb = R"("kind":"bigbird","block_size":64,"window_blocks":3,"global_blocks":1,"random_blocks":2,"seed":1)";
  auto bigbird = [&](const std::string& from, const std::string& to) {
    return small("gpt2", "\"n_positions\":8,\"attention\":{" + sub(bb, from, to) + "}");
  };
  std::vector<Bad> bad = {
      {"not an object", "[1]", {"must be a JSON object"}},
      {"unknown model_type", small("falcon", "\"n_positions\":8"), {"model_type", "\"falcon\""}},
      {"missing model_type", "{\"n_embd\":8}", {"model_type is missing"}},
      {"n_embd % n_head", sub(small("gpt2", "\"n_positions\":8"), "\"n_head\":4", "\"n_head\":5"),
       {"n_embd must be divisible by n_head = 5 (got 32)"}},
      {"n_embd zero", sub(small("gpt2", "\"n_positions\":8"), "\"n_embd\":32", "\"n_embd\":0"),
       {"n_embd must be an integer >= 1 (got 0)"}},
      {"n_layer fractional", sub(small("gpt2", "\"n_positions\":8"), "\"n_layer\":3", "\"n_layer\":3.5"),
       {"n_layer", "(got 3.5)"}},
      {"vocab_size missing", "{\"model_type\":\"gpt2\",\"n_embd\":32,\"n_head\":4,\"n_layer\":1,\"n_positions\":8}", {"vocab_size is missing"}},
      {"vocab_size string", sub(small("gpt2", "\"n_positions\":8"), "\"vocab_size\":300", "\"vocab_size\":\"300\""),
       {"vocab_size", "(got \"300\")"}},
      {"n_inner zero", small("gpt2", "\"n_positions\":8,\"n_inner\":0"), {"n_inner", "(got 0)"}},
      {"learned without n_positions", small("gpt2", ""), {"n_positions is missing"}},
      {"n_positions zero", small("gpt2", "\"n_positions\":0"), {"n_positions", "(got 0)"}},
      {"epsilon zero", small("gpt2", "\"n_positions\":8,\"layer_norm_epsilon\":0"), {"layer_norm_epsilon", "(got 0)"}},
      {"activation relu", small("gpt2", "\"n_positions\":8,\"activation_function\":\"relu\""), {"activation_function", "(got \"relu\")"}},
      {"activation gelu", small("gpt2", "\"n_positions\":8,\"activation_function\":\"gelu\""), {"activation_function"}},
      {"inverse layer scaling", small("gpt2", "\"n_positions\":8,\"scale_attn_by_inverse_layer_idx\":true"), {"scale_attn_by_inverse_layer_idx"}},
      {"unscaled attention", small("gpt2", "\"n_positions\":8,\"scale_attn_weights\":false"), {"scale_attn_weights"}},
      {"position_embedding unknown", small("gpt2", "\"position_embedding\":\"alibi\""), {"position_embedding", "(got \"alibi\")"}},
      {"rotary_dim odd", small("gpt2", rot + ",\"rotary_dim\":5"), {"rotary_dim must be even", "(got 5)"}},
      {"rotary_dim > D", small("gpt2", rot + ",\"rotary_dim\":10"), {"rotary_dim must be an integer <= 8", "(got 10)"}},
      {"rotary_dim zero", small("gpt2", rot + ",\"rotary_dim\":0"), {"rotary_dim", "(got 0)"}},
      {"rotary_base negative", small("gpt2", rot + ",\"rotary_base\":-1"), {"rotary_base", "(got -1)"}},
      {"rotary_base string", small("gpt2", rot + ",\"rotary_base\":\"1e4\""), {"rotary_base"}},
      {"unknown attention kind", small("gpt2", "\"n_positions\":8,\"attention\":{\"kind\":\"longformer\"}"),
       {"attention.kind must be \"dense\" or \"bigbird\"", "(got \"longformer\")"}},
      {"attention without kind", small("gpt2", "\"n_positions\":8,\"attention\":{}"), {"attention.kind is missing"}},
      {"attention not an object", small("gpt2", "\"n_positions\":8,\"attention\":\"bigbird\""), {"attention must be an object"}},
      {"bigbird block_size 0", bigbird("\"block_size\":64", "\"block_size\":0"), {"attention.block_size must be an integer >= 1 (got 0)"}},
      {"bigbird window 0", bigbird("\"window_blocks\":3", "\"window_blocks\":0"), {"attention.window_blocks", "(got 0)"}},
      {"bigbird global -1", bigbird("\"global_blocks\":1", "\"global_blocks\":-1"), {"attention.global_blocks", "(got -1)"}},
      {"bigbird random 1.5", bigbird("\"random_blocks\":2", "\"random_blocks\":1.5"), {"attention.random_blocks", "(got 1.5)"}},
      {"bigbird random missing", bigbird(",\"random_blocks\":2", ""), {"attention.random_blocks is missing"}},
      {"bigbird seed 2^53", bigbird("\"seed\":1", "\"seed\":9007199254740992"), {"attention.seed", "(got 9007199254740992)"}},
      {"bigbird seed negative", bigbird("\"seed\":1", "\"seed\":-1"), {"attention.seed", "(got -1)"}},
      {"bigbird seed as float", bigbird("\"seed\":1", "\"seed\":1.0"), {"attention.seed", "(got 1.0)"}},
      {"bigbird seed missing", bigbird(",\"seed\":1", ""), {"attention.seed is missing"}},
      {"bigbird on perceiver_ar", small("perceiver_ar", rot + ",\"num_latents\":4,\"attention\":{" + bb + "}"),
       {"attention.kind", "only supported by model_type gpt2", "perceiver_ar"}},
      {"bigbird on block_recurrent",
       small("block_recurrent", rot + ",\"block_size\":4,\"num_states\":2,\"recurrent_layers\":[1],\"attention\":{" + bb + "}"),
       {"attention.kind", "block_recurrent"}},
      {"perceiver_ar zero latents", small("perceiver_ar", rot + ",\"num_latents\":0"), {"num_latents must be an integer >= 1 (got 0)"}},
      {"perceiver_ar no latents", small("perceiver_ar", rot), {"num_latents is missing"}},
      {"perceiver_ar without position_embedding", small("perceiver_ar", "\"num_latents\":4"),
       {"position_embedding is missing", "perceiver_ar", "rotary"}},
      {"perceiver_ar learned", small("perceiver_ar", "\"num_latents\":4,\"n_positions\":8,\"position_embedding\":\"learned\""),
       {"position_embedding must be \"rotary\"", "(got \"learned\")"}},
      {"block_recurrent without position_embedding", small("block_recurrent", "\"block_size\":4,\"num_states\":2,\"recurrent_layers\":[1]"),
       {"position_embedding is missing", "block_recurrent"}},
      {"block_recurrent block size 0", small("block_recurrent", rot + ",\"block_size\":0,\"num_states\":2,\"recurrent_layers\":[1]"),
       {"block_size must be an integer >= 1 (got 0)"}},
      {"block_recurrent num_states 0", small("block_recurrent", rot + ",\"block_size\":4,\"num_states\":0,\"recurrent_layers\":[1]"),
       {"num_states", "(got 0)"}},
      {"block_recurrent layers missing", small("block_recurrent", rot + ",\"block_size\":4,\"num_states\":2"), {"recurrent_layers is missing"}},
      {"block_recurrent layer out of range", small("block_recurrent", rot + ",\"block_size\":4,\"num_states\":2,\"recurrent_layers\":[1,3]"),
       {"recurrent_layers[1] must be an integer <= 2", "(got 3)"}},
      {"block_recurrent layer negative", small("block_recurrent", rot + ",\"block_size\":4,\"num_states\":2,\"recurrent_layers\":[-1]"),
       {"recurrent_layers[0]", "(got -1)"}},
      {"block_recurrent layer repeated", small("block_recurrent", rot + ",\"block_size\":4,\"num_states\":2,\"recurrent_layers\":[1,1]"),
       {"recurrent_layers[1] repeats layer 1"}},
      {"block_recurrent layers not a list", small("block_recurrent", rot + ",\"block_size\":4,\"num_states\":2,\"recurrent_layers\":1"),
       {"recurrent_layers must be a list"}},
      {"block_recurrent gate", small("block_recurrent", rot + ",\"block_size\":4,\"num_states\":2,\"recurrent_layers\":[1],\"gate\":\"learned\""),
       {"gate must be \"fixed\"", "(got \"learned\")"}},
      {"bytes special token below 256", small("gpt2", R"("n_positions":8,"tokenizer_class":"bytes","special_tokens":{"eos":255})"),
       {"special_tokens.eos must be an integer >= 256", "(got 255)"}},
      {"special token beyond vocab", small("gpt2", R"("n_positions":8,"tokenizer_class":"bytes","special_tokens":{"eos":300})"),
       {"special_tokens.eos must be an integer <= 299", "(got 300)"}},
      {"bytes vocab below 256", "{\"model_type\":\"gpt2\",\"vocab_size\":100,\"n_embd\":8,\"n_head\":1,\"n_layer\":1,\"n_positions\":8,\"tokenizer_class\":\"bytes\"}",
       {"vocab_size must be >= 256", "(got 100)"}},
      {"eos beyond vocab", small("gpt2", "\"n_positions\":8,\"eos_token_id\":300"), {"eos_token_id", "(got 300)"}},
      {"tokenizer_class number", small("gpt2", "\"n_positions\":8,\"tokenizer_class\":1"), {"tokenizer_class"}},
  };
  for (const Bad& b : bad) {
    std::vector<std::string> parts = b.parts;
    parts.push_back("m/config.json: ");
    const std::string mismatch = error_mismatch("E_CONFIG", parts, [&] { cfg(b.text); });
    CHECK_MESSAGE(mismatch.empty(), (std::string("config refuses: ") + b.label + ": " + mismatch));
  }
}

// ---- fuzz: every outcome is a load or a roost::Error, never a crash ----

uint64_t rng_state = 0x9E3779B97F4A7C15ull;
uint64_t rng() {  // xorshift64*: deterministic, so a failure reproduces
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}

// Loads p; a success must hand out views that are internally consistent.
// Returns true if it loaded.
bool load_or_error(const std::string& p, const std::string& code) {
  try {
    Checkpoint c = Checkpoint::open_file(p);
    for (const std::string& n : c.names()) {
      const TensorView* t = c.find(n);
      REQUIRE_MESSAGE((t && t->nbytes == size_t(t->numel()) * dtype_size(t->dtype)), ("view size of " + n));
      volatile float sink = 0;
      for (int64_t i = 0; i < t->numel(); ++i) sink = sink + at(*t, size_t(i));  // touches every byte
    }
    return true;
  } catch (const Error& e) {
    REQUIRE_MESSAGE(e.code() == code, ("code " + e.code() + ": " + e.what()));
    REQUIRE_MESSAGE(std::string(e.what()).find(p) != std::string::npos, ("message lacks the path: " + std::string(e.what())));
    return false;
  }
}

const std::string valid = st_file({{"transformer.wte.weight", "F32", {3, 2}, f32_bytes({1, 2, 3, 4, 5, 6})},
                                   {"h.0.attn.bias", "U8", {2, 2}, std::string("\1\0\1\1", 4)},
                                   {"h.0.attn.c_attn.bias", "F16", {3}, f16_bytes({1, 2, 3})},
                                   {"ln_f.weight", "BF16", {2}, bf16_bytes({7, 8})}});

TEST_CASE("fuzz: truncation at every length") {
  int loaded = 0;
  for (size_t n = 0; n <= valid.size(); ++n) {
    std::string p = write_st("trunc.safetensors", valid.substr(0, n));
    if (load_or_error(p, "E_CHECKPOINT")) loaded++;
  }
  REQUIRE_MESSAGE(loaded == 1, ("only the full file loads, " + std::to_string(loaded) + " did"));
}

// ROOST_FUZZ_ITERS=100000 runs a longer fuzz (e.g. under -fsanitize=address,undefined).
const char* env = std::getenv("ROOST_FUZZ_ITERS");
const int iters = env ? std::atoi(env) : 600;

TEST_CASE("fuzz: random header byte flips (ROOST_FUZZ_ITERS of them, 600 by default)") {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t((unsigned char)valid[i]) << (8 * i);
  for (int k = 0; k < iters; ++k) {
    std::string b = valid;
    int flips = 1 + int(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      size_t at_byte = size_t(rng() % (8 + n));  // the length field or the JSON
      if (rng() % 2) b[at_byte] = char(b[at_byte] ^ (1 << (rng() % 8)));
      else b[at_byte] = "{}[]\",:0123456789-.eE \\u"[rng() % 25];
    }
    load_or_error(write_st("flip.safetensors", b), "E_CHECKPOINT");
  }
}

TEST_CASE("fuzz: config.json truncated at every length") {
  const std::string text = small("block_recurrent", R"("position_embedding":"rotary","block_size":4,"num_states":2,"recurrent_layers":[1],"special_tokens":{"eos":299},"tokenizer_class":"bytes")");
  cfg(text);
  for (size_t n = 0; n < text.size(); ++n) {
    try {
      cfg(text.substr(0, n));
      FAIL(("a truncated config parsed at length " + std::to_string(n)));
    } catch (const Error& e) {
      REQUIRE_MESSAGE(e.code() == "E_CONFIG", ("code " + e.code()));
    }
  }
}

TEST_CASE("fuzz: 2000 random JSON mutations parse or throw ParseError") {
  const std::string doc = R"({"a":[1,-2.5e3,"x\u00e9\ud83d\ude00",{"b":null,"c":[true,false]}],"d":18446744073709551615})";
  for (int k = 0; k < 2000; ++k) {
    std::string s = doc;
    int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t i = size_t(rng() % s.size());
      switch (rng() % 3) {
        case 0: s[i] = char(rng() & 0xFF); break;
        case 1: s.erase(i, 1); break;
        default: s.insert(i, 1, "{}[]\",:\\u0-e."[rng() % 14]); break;
      }
      if (s.empty()) s = "x";
    }
    try {
      json::parse(s);
    } catch (const json::ParseError& e) {
      REQUIRE_MESSAGE(e.offset() <= s.size(), "offset within the text");
    }
  }
}

}  // namespace
