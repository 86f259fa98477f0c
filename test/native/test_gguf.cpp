// Tests of cpp/gguf: a GGUF file written byte by byte here opens with its metadata and
// tensors as written; a corruption corpus (every truncation, lying offsets, unknown and
// unsupported types, mis-shaped tensors, overlaps, huge counts and lengths) is refused
// with E_CHECKPOINT and a message naming what is wrong; the gpt2 tensor names map to
// Roost's checkpoint names.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common.h"
#include "doctest.h"
#include "gguf.h"

using namespace roost;

namespace {

// A GGUF file under construction: metadata, tensor infos and payloads.
struct Builder {
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;  // fastest first, as stored
    uint32_t type;
    uint64_t offset;
    std::vector<uint8_t> data;
  };
  uint32_t version = 3;
  uint64_t alignment = 32;
  std::vector<uint8_t> kv;  // encoded key/values
  uint64_t n_kv = 0;
  std::vector<Tensor> tensors;
  // Overrides for the counts in the header (huge-count cases).
  uint64_t n_tensors_override = 0, n_kv_override = 0;

  static void u32(std::vector<uint8_t>& b, uint32_t v) {
    for (int i = 0; i < 4; i++) b.push_back((uint8_t)(v >> (8 * i)));
  }
  static void u64(std::vector<uint8_t>& b, uint64_t v) {
    for (int i = 0; i < 8; i++) b.push_back((uint8_t)(v >> (8 * i)));
  }
  static void str(std::vector<uint8_t>& b, const std::string& s) {
    u64(b, s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void kv_u32(const std::string& key, uint32_t v) {
    str(kv, key);
    u32(kv, GgufValue::UINT32);
    u32(kv, v);
    n_kv++;
  }
  void kv_str(const std::string& key, const std::string& v) {
    str(kv, key);
    u32(kv, GgufValue::STRING);
    str(kv, v);
    n_kv++;
  }
  void kv_f32(const std::string& key, float v) {
    str(kv, key);
    u32(kv, GgufValue::FLOAT32);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    u32(kv, bits);
    n_kv++;
  }
  void kv_raw(const std::vector<uint8_t>& bytes) {  // one hand-encoded key/value
    kv.insert(kv.end(), bytes.begin(), bytes.end());
    n_kv++;
  }
  // Appends a tensor after the previous one (aligned); returns its index.
  size_t add(const std::string& name, std::vector<uint64_t> ne, uint32_t type, std::vector<uint8_t> data) {
    uint64_t offset = 0;
    if (!tensors.empty()) {
      const Tensor& t = tensors.back();
      offset = (t.offset + t.data.size() + alignment - 1) / alignment * alignment;
    }
    tensors.push_back({name, std::move(ne), type, offset, std::move(data)});
    return tensors.size() - 1;
  }
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> b = {'G', 'G', 'U', 'F'};
    u32(b, version);
    u64(b, n_tensors_override ? n_tensors_override : tensors.size());
    u64(b, n_kv_override ? n_kv_override : n_kv);
    b.insert(b.end(), kv.begin(), kv.end());
    for (const Tensor& t : tensors) {
      str(b, t.name);
      u32(b, (uint32_t)t.ne.size());
      for (uint64_t d : t.ne) u64(b, d);
      u32(b, t.type);
      u64(b, t.offset);
    }
    while (b.size() % alignment) b.push_back(0);
    const size_t data_start = b.size();
    for (const Tensor& t : tensors) {
      if (b.size() < data_start + t.offset) b.resize(data_start + t.offset, 0);
      b.insert(b.end(), t.data.begin(), t.data.end());
    }
    return b;
  }
};

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A small valid gpt2-style file: F32 norm, F16 embedding, Q8_0 matrix.
Builder valid_builder() {
  Builder b;
  b.kv_str("general.architecture", "gpt2");
  b.kv_u32("gpt2.embedding_length", 64);
  b.kv_f32("gpt2.attention.layer_norm_epsilon", 1e-5f);
  b.add("blk.0.attn_norm.weight", {64}, 0, f32_bytes(std::vector<float>(64, 1.5f)));
  std::vector<uint8_t> half(3 * 64 * 2);
  for (size_t i = 0; i < half.size(); i += 2) half[i + 1] = 0x3c;  // F16 1.0
  b.add("token_embd.weight", {64, 3}, 1, half);
  std::vector<uint8_t> q8;
  for (int row = 0; row < 2; row++)
    for (int blk = 0; blk < 2; blk++) {
      q8.push_back(0x00);
      q8.push_back(0x38);  // d = 0.5
      for (int i = 0; i < 32; i++) q8.push_back((uint8_t)(int8_t)(i - 16 + row + blk));
    }
  b.add("blk.0.attn_qkv.weight", {64, 2}, 8, q8);
  return b;
}

std::string write_temp(const std::vector<uint8_t>& bytes) {
  static int n = 0;
  const std::string path = "/tmp/roost_test_gguf_" + std::to_string(getpid()) + "_" + std::to_string(n++) + ".gguf";
  FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  if (!bytes.empty()) REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
  std::fclose(f);
  return path;
}

// The message GgufFile::open gives for these bytes ("" if it opened).
std::string open_error(const std::vector<uint8_t>& bytes) {
  const std::string path = write_temp(bytes);
  std::string msg;
  try {
    GgufFile::open(path);
  } catch (const Error& e) {
    msg = e.code() == "E_CHECKPOINT" ? e.what() : "wrong code " + e.code() + ": " + e.what();
  }
  std::remove(path.c_str());
  return msg;
}

void refused(const std::string& what, const std::vector<uint8_t>& bytes, const std::string& expect) {
  const std::string msg = open_error(bytes);
  CHECK_MESSAGE(msg.find(expect) != std::string::npos,
                (what + ": expected a message containing \"" + expect + "\", got \"" + msg + "\""));
}

}  // namespace

TEST_CASE("a valid GGUF opens with its metadata and tensors") {
  const std::string path = write_temp(valid_builder().bytes());
  GgufFile f = GgufFile::open(path);
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.get_string("general.architecture") == "gpt2");
  CHECK(f.get_uint("gpt2.embedding_length") == 64);
  CHECK(f.get_float("gpt2.attention.layer_norm_epsilon") == (double)1e-5f);
  CHECK_THROWS_WITH_AS(f.get_uint("gpt2.block_count"), doctest::Contains("gpt2.block_count is missing"), Error);
  CHECK_THROWS_WITH_AS(f.get_uint("general.architecture"), doctest::Contains("is not an integer"), Error);
  REQUIRE(f.tensors().size() == 3);
  const TensorView* norm = f.find("blk.0.attn_norm.weight");
  REQUIRE(norm);
  CHECK(norm->dtype == DType::F32);
  CHECK(norm->shape == std::vector<int64_t>{64});
  CHECK(norm->nbytes == 256);
  CHECK(load_as_f32(norm->data, DType::F32, 63) == 1.5f);
  const TensorView* emb = f.find("token_embd.weight");
  REQUIRE(emb);
  CHECK(emb->dtype == DType::F16);
  CHECK(emb->shape == std::vector<int64_t>{3, 64});  // row-major: 3 rows of 64
  CHECK(load_as_f32(emb->data, DType::F16, 191) == 1.f);
  CHECK((reinterpret_cast<uintptr_t>(emb->data) - reinterpret_cast<uintptr_t>(norm->data)) == 256);
  const TensorView* qkv = f.find("blk.0.attn_qkv.weight");
  REQUIRE(qkv);
  CHECK(qkv->dtype == DType::Q8_0);
  CHECK(qkv->shape == std::vector<int64_t>{2, 64});
  CHECK(qkv->nbytes == 4 * 34);
  // Row 1, block 1, element 5: q = 5 - 16 + 1 + 1 = -9, d = 0.5.
  CHECK(load_as_f32(qkv->data, DType::Q8_0, 64 + 32 + 5) == -4.5f);
  CHECK(f.find("output.weight") == nullptr);

  const auto gpt2 = gpt2_tensors(f);
  REQUIRE(gpt2.count("h.0.attn.c_attn.weight"));
  CHECK(gpt2.at("h.0.attn.c_attn.weight").transposed);
  CHECK(gpt2.at("h.0.attn.c_attn.weight").view.name == "h.0.attn.c_attn.weight");
  CHECK(gpt2.at("h.0.attn.c_attn.weight").view.data == qkv->data);
  CHECK_FALSE(gpt2.at("wte.weight").transposed);
  CHECK_FALSE(gpt2.at("h.0.ln_1.weight").transposed);
  std::remove(path.c_str());
}

TEST_CASE("alignment other than 32 is honoured") {
  Builder b;
  b.alignment = 64;
  b.kv_u32("general.alignment", 64);
  b.add("a", {3}, 0, f32_bytes({1, 2, 3}));
  b.add("b", {2}, 0, f32_bytes({4, 5}));
  const std::vector<uint8_t> bytes = b.bytes();
  const std::string path = write_temp(bytes);
  GgufFile f = GgufFile::open(path);
  CHECK(f.alignment() == 64);
  CHECK(b.tensors[1].offset == 64);
  CHECK(load_as_f32(f.find("b")->data, DType::F32, 1) == 5.f);
  CHECK((reinterpret_cast<uintptr_t>(f.find("a")->data) - reinterpret_cast<uintptr_t>(f.find("a")->data)) == 0);
  std::remove(path.c_str());
}

TEST_CASE("every truncation of a valid file is refused") {
  const std::vector<uint8_t> full = valid_builder().bytes();
  int bad = 0;
  std::string first_bad;
  for (size_t n = 0; n < full.size(); n++) {
    const std::string msg = open_error(std::vector<uint8_t>(full.begin(), full.begin() + n));
    const bool ok = n < 4 ? msg.find("truncated: magic") != std::string::npos : msg.find("truncated") != std::string::npos;
    if (!ok && bad++ == 0) first_bad = std::to_string(n) + " bytes: \"" + msg + "\"";
  }
  CHECK_MESSAGE(bad == 0, (std::to_string(bad) + " truncations not refused as truncated; first at " + first_bad));
  CHECK(open_error(full).empty());
}

TEST_CASE("the corruption corpus is refused with messages") {
  {
    std::vector<uint8_t> b = valid_builder().bytes();
    b[0] = 'X';
    refused("bad magic", b, "no GGUF magic at byte 0");
  }
  {
    Builder b = valid_builder();
    b.version = 1;
    refused("version 1", b.bytes(), "GGUF version 1 (32-bit counts) is not supported");
    b.version = 0x03000000;
    refused("big-endian version", b.bytes(), "unknown GGUF version 50331648");
  }
  {
    Builder b = valid_builder();
    b.n_tensors_override = 1ull << 60;
    refused("huge tensor count", b.bytes(), "truncated or corrupt: tensor count 1152921504606846976 needs at least 32 bytes each");
  }
  {
    Builder b = valid_builder();
    b.n_kv_override = 1ull << 60;
    refused("huge metadata count", b.bytes(), "truncated or corrupt: metadata count 1152921504606846976 needs at least 12 bytes each");
  }
  {
    Builder b;
    std::vector<uint8_t> kv;
    Builder::u64(kv, 1ull << 62);  // key length
    kv.resize(kv.size() + 16);     // room enough that the count itself is plausible
    b.kv_raw(kv);
    refused("huge key length", b.bytes(), "metadata key 0 is 4611686018427387904 bytes long");
  }
  {
    Builder b;
    std::vector<uint8_t> kv;
    Builder::str(kv, "general.name");
    Builder::u32(kv, GgufValue::STRING);
    Builder::u64(kv, 1ull << 40);  // string length
    b.kv_raw(kv);
    refused("huge string", b.bytes(), "metadata general.name is 1099511627776 bytes long");
  }
  {
    Builder b;
    std::vector<uint8_t> kv;
    Builder::str(kv, "tokenizer.ggml.tokens");
    Builder::u32(kv, GgufValue::ARRAY);
    Builder::u32(kv, GgufValue::STRING);
    Builder::u64(kv, 1ull << 61);
    b.kv_raw(kv);
    refused("huge array", b.bytes(), "metadata tokenizer.ggml.tokens: array of 2305843009213693952 elements needs at least 8 bytes each");
  }
  {
    Builder b;
    std::vector<uint8_t> kv;
    Builder::str(kv, "x");
    Builder::u32(kv, 13);
    Builder::u32(kv, 0);
    b.kv_raw(kv);
    refused("unknown value type", b.bytes(), "metadata x: unknown value type 13");
  }
  {
    Builder b;
    std::vector<uint8_t> kv;
    Builder::str(kv, "x");
    Builder::u32(kv, GgufValue::ARRAY);
    Builder::u32(kv, GgufValue::ARRAY);
    Builder::u64(kv, 1);
    b.kv_raw(kv);
    refused("nested array", b.bytes(), "metadata x: arrays of arrays are not supported");
  }
  {
    Builder b = valid_builder();
    b.kv_u32("gpt2.embedding_length", 65);
    refused("duplicate key", b.bytes(), "duplicate metadata key gpt2.embedding_length");
  }
  {
    Builder b;
    b.kv_u32("general.alignment", 48);
    refused("alignment not a power of two", b.bytes(), "general.alignment 48 is not a power of two");
    Builder c;
    c.kv_f32("general.alignment", 32.f);
    refused("alignment of the wrong type", c.bytes(), "general.alignment is not a UINT32");
  }
  {
    Builder b = valid_builder();
    b.tensors[1].name = "blk.0.attn_norm.weight";
    refused("duplicate tensor", b.bytes(), "duplicate tensor blk.0.attn_norm.weight");
    b.tensors[1].name = std::string(64, 'n');
    refused("long tensor name", b.bytes(), "name is 64 bytes (GGML allows 63)");
  }
  {
    Builder b = valid_builder();
    b.tensors[2].type = 77;
    refused("unknown type", b.bytes(), "tensor blk.0.attn_qkv.weight: unknown GGML type 77");
    b.tensors[2].type = 12;
    refused("unsupported type", b.bytes(), "tensor blk.0.attn_qkv.weight: unsupported type Q4_K (supported: F32, F16, BF16, Q8_0)");
  }
  {
    Builder b = valid_builder();
    b.tensors[2].ne = {40, 2};  // Q8_0 rows must be whole blocks of 32
    refused("ragged Q8_0 rows", b.bytes(), "shape [2,40] has rows of 40, not a multiple of Q8_0's block of 32");
    b.tensors[2].ne = {};
    refused("no dimensions", b.bytes(), "0 dimensions (GGML allows 1 to 4)");
    b.tensors[2].ne = {32, 1, 1, 1, 2};
    refused("five dimensions", b.bytes(), "5 dimensions (GGML allows 1 to 4)");
    b.tensors[2].ne = {1ull << 63, 2};
    refused("dimension past int64", b.bytes(), "dimension 0 is 9223372036854775808");
    b.tensors[2].ne = {1ull << 40, 1ull << 40};
    refused("size overflow", b.bytes(), "is too large");
  }
  {
    Builder b = valid_builder();
    b.tensors[0].ne = {65};  // claims 260 bytes: runs into the next tensor
    refused("mis-shaped tensor overlaps the next", b.bytes(),
            "tensors blk.0.attn_norm.weight and token_embd.weight overlap");
  }
  {
    Builder b = valid_builder();
    b.tensors[2].offset = b.tensors[1].offset;  // lying offset: on top of the embedding
    refused("overlapping offsets", b.bytes(), "overlap in the data section");
  }
  {
    Builder b = valid_builder();
    std::vector<uint8_t> bytes = b.bytes();
    b.tensors[2].offset += 1u << 20;  // far past the end (bytes() would pad to it: keep the old bytes' data)
    std::vector<uint8_t> lying = b.bytes();
    lying.resize(bytes.size());
    refused("offset past the end", lying, "truncated: tensor blk.0.attn_qkv.weight (136 bytes at data offset " +
                                             std::to_string(b.tensors[2].offset) + ") runs past the");
  }
  {
    Builder b = valid_builder();
    b.tensors[1].offset += 4;
    refused("unaligned offset", b.bytes(), "tensor token_embd.weight: offset 260 is not a multiple of the alignment 32");
  }
  {
    Builder b = valid_builder();
    b.tensors[1].offset = ~0ull - 31;  // offset + size wraps around
    refused("offset that wraps", b.bytes(), "truncated: tensor token_embd.weight");
  }
}

TEST_CASE("non-finite weights and non-regular files are refused, naming the tensor or the problem") {
  {
    std::vector<float> norm(64, 1.5f);
    norm[7] = std::nanf("");
    Builder b;
    b.kv_str("general.architecture", "gpt2");
    b.add("blk.0.attn_norm.weight", {64}, 0, f32_bytes(norm));
    refused("a NaN F32 weight", b.bytes(), "tensor blk.0.attn_norm.weight holds a NaN or infinite value (element 7)");
  }
  {
    Builder b = valid_builder();
    std::vector<uint8_t> q8(2 * 34, 0);
    q8[34] = 0x00;
    q8[35] = 0x7c;  // the second block's F16 scale is +infinity
    b.add("blk.0.ffn_up.weight", {64}, 8, q8);
    refused("an infinite Q8_0 block scale", b.bytes(), "tensor blk.0.ffn_up.weight holds a NaN or infinite value (element 32)");
  }
  {
    const std::string fifo = "/tmp/roost_test_gguf_fifo_" + std::to_string(getpid());
    std::remove(fifo.c_str());
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    std::string msg;
    try {
      GgufFile::open(fifo);  // must not block waiting for a writer
    } catch (const Error& e) {
      msg = e.what();
    }
    std::remove(fifo.c_str());
    CHECK_MESSAGE(msg.find("not a regular file") != std::string::npos, ("a FIFO: " + msg));
  }
}

TEST_CASE("gpt2 names map to Roost's checkpoint names") {
  const std::pair<const char*, Gpt2TensorName> table[] = {
      {"token_embd.weight", {"wte.weight", false}},
      {"position_embd.weight", {"wpe.weight", false}},
      {"output_norm.weight", {"ln_f.weight", false}},
      {"output_norm.bias", {"ln_f.bias", false}},
      {"output.weight", {"lm_head.weight", false}},
      {"blk.0.attn_norm.weight", {"h.0.ln_1.weight", false}},
      {"blk.0.attn_norm.bias", {"h.0.ln_1.bias", false}},
      {"blk.11.attn_qkv.weight", {"h.11.attn.c_attn.weight", true}},
      {"blk.11.attn_qkv.bias", {"h.11.attn.c_attn.bias", false}},
      {"blk.3.attn_output.weight", {"h.3.attn.c_proj.weight", true}},
      {"blk.3.attn_output.bias", {"h.3.attn.c_proj.bias", false}},
      {"blk.7.ffn_norm.weight", {"h.7.ln_2.weight", false}},
      {"blk.7.ffn_norm.bias", {"h.7.ln_2.bias", false}},
      {"blk.10.ffn_up.weight", {"h.10.mlp.c_fc.weight", true}},
      {"blk.10.ffn_up.bias", {"h.10.mlp.c_fc.bias", false}},
      {"blk.2.ffn_down.weight", {"h.2.mlp.c_proj.weight", true}},
      {"blk.2.ffn_down.bias", {"h.2.mlp.c_proj.bias", false}},
      {"blk.2.ffn_gate.weight", {"", false}},
      {"blk.02.ffn_up.weight", {"", false}},
      {"blk..ffn_up.weight", {"", false}},
      {"blk.1.ffn_up", {"", false}},
      {"rope_freqs.weight", {"", false}},
  };
  for (const auto& [from, want] : table) {
    const Gpt2TensorName got = gpt2_name_from_gguf(from);
    CHECK_MESSAGE((got.name == want.name && got.transposed == want.transposed),
                  (std::string(from) + " -> \"" + got.name + "\" " + (got.transposed ? "transposed" : "") + ", want \"" +
                   want.name + "\""));
  }

  Builder b = valid_builder();
  b.add("blk.0.ffn_gate.weight", {32}, 0, f32_bytes(std::vector<float>(32)));
  std::string path = write_temp(b.bytes());
  CHECK_THROWS_WITH_AS(gpt2_tensors(GgufFile::open(path)), doctest::Contains("tensor blk.0.ffn_gate.weight is not one of"),
                       Error);
  std::remove(path.c_str());
  Builder l;
  l.kv_str("general.architecture", "llama");
  path = write_temp(l.bytes());
  CHECK_THROWS_WITH_AS(gpt2_tensors(GgufFile::open(path)), doctest::Contains("general.architecture is llama, not gpt2"),
                       Error);
  std::remove(path.c_str());
}

namespace {

// A gpt2 GGUF of one layer's attention matrix and the embedding, metadata for a config.
Builder gpt2_builder() {
  Builder b;
  b.kv_str("general.architecture", "gpt2");
  b.kv_u32("gpt2.context_length", 16);
  b.kv_u32("gpt2.embedding_length", 8);
  b.kv_u32("gpt2.block_count", 1);
  b.kv_u32("gpt2.attention.head_count", 2);
  b.kv_f32("gpt2.attention.layer_norm_epsilon", 1e-5f);
  std::vector<float> qkv(8 * 24);  // stored as 24 rows (out) of 8 (in): element [o][i] = o * 8 + i
  for (size_t i = 0; i < qkv.size(); i++) qkv[i] = (float)i;
  b.add("blk.0.attn_qkv.weight", {8, 24}, 0, f32_bytes(qkv));
  b.add("token_embd.weight", {8, 10}, 0, f32_bytes(std::vector<float>(80, 0.25f)));
  return b;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code() + ": " + e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a gpt2 GGUF opens as a Checkpoint: Roost's names, logical shapes, matrices flagged transposed") {
  const std::string path = write_temp(gpt2_builder().bytes());
  Checkpoint c = Checkpoint::open_gguf(path);
  REQUIRE(c.gguf() != nullptr);
  const TensorView& qkv = c.get("h.0.attn.c_attn.weight", {8, 24});  // HF Conv1D [in, out]
  CHECK(qkv.transposed);
  CHECK(load_as_f32(qkv.data, qkv.dtype, 3 * 8 + 5) == 29.f);  // stored [out 3][in 5]
  const TensorView& wte = c.get("wte.weight", {10, 8});
  CHECK_FALSE(wte.transposed);
  CHECK(c.names() == std::vector<std::string>{"h.0.attn.c_attn.weight", "wte.weight"});
  // A mis-shaped tensor is refused by name, in Roost's logical shape.
  CHECK_MESSAGE(error_of([&] { c.get("h.0.attn.c_attn.weight", {8, 12}); }).find("(GGUF tensor blk.0.attn_qkv.weight): tensor h.0.attn.c_attn.weight has shape [8,24], expected [8,12]") != std::string::npos,
                error_of([&] { c.get("h.0.attn.c_attn.weight", {8, 12}); }));
  CHECK(error_of([&] { c.get("h.0.attn.c_proj.weight", {8, 8}); }).find("tensor h.0.attn.c_proj.weight is missing") != std::string::npos);

  // The config the metadata gives.
  const std::string cfg = gpt2_config_json(*c.gguf());
  CHECK(cfg == "{\"model_type\": \"gpt2\", \"vocab_size\": 10, \"n_embd\": 8, \"n_layer\": 1, \"n_head\": 2, \"n_positions\": 16, "
               "\"layer_norm_epsilon\": 9.99999975e-06}");
  std::remove(path.c_str());
}

TEST_CASE("GGUF metadata that cannot make a gpt2 config is refused naming the key") {
  struct Case {
    const char* what;
    std::function<void(Builder&)> edit;
    const char* expect;
  };
  const Case cases[] = {
      {"no block count", [](Builder& b) { b = Builder(); b.kv_str("general.architecture", "gpt2");
         b.add("token_embd.weight", {8, 10}, 0, f32_bytes(std::vector<float>(80))); b.kv_u32("gpt2.embedding_length", 8); },
       "metadata gpt2.block_count is missing"},
      {"token list of another length", [](Builder& b) {
         std::vector<uint8_t> kv;
         Builder::str(kv, "tokenizer.ggml.tokens");
         Builder::u32(kv, GgufValue::ARRAY);
         Builder::u32(kv, GgufValue::STRING);
         Builder::u64(kv, 2);
         Builder::str(kv, "a");
         Builder::str(kv, "b");
         b.kv_raw(kv); },
       "tokenizer.ggml.tokens has 2 tokens but token_embd.weight has 10 rows"},
      {"eos out of range", [](Builder& b) { b.kv_u32("tokenizer.ggml.eos_token_id", 10); },
       "metadata tokenizer.ggml.eos_token_id is 10, expected 0 to 9"},
      {"negative epsilon", [](Builder& b) { b = gpt2_builder(); b.kv = {}; b.n_kv = 0; b.kv_str("general.architecture", "gpt2");
         b.kv_u32("gpt2.context_length", 16); b.kv_u32("gpt2.embedding_length", 8); b.kv_u32("gpt2.block_count", 1);
         b.kv_u32("gpt2.attention.head_count", 2); b.kv_f32("gpt2.attention.layer_norm_epsilon", -1.f); },
       "gpt2.attention.layer_norm_epsilon must be a finite number > 0"},
      {"no embedding", [](Builder& b) { b.tensors.pop_back(); }, "tensor token_embd.weight is missing"},
  };
  for (const Case& k : cases) {
    Builder b = gpt2_builder();
    k.edit(b);
    const std::string path = write_temp(b.bytes());
    const std::string msg = error_of([&] { gpt2_config_json(GgufFile::open(path)); });
    std::remove(path.c_str());
    CHECK_MESSAGE((k.expect[0] ? msg.find(k.expect) != std::string::npos : msg.empty()),
                  (std::string(k.what) + ": got \"" + msg + "\""));
  }
}

TEST_CASE("a model folder holds model.gguf or safetensors weights, never both") {
  const std::string dir = "/tmp/roost_test_gguf_dir_" + std::to_string(getpid());
  ::mkdir(dir.c_str(), 0755);
  const std::string tmp = write_temp(gpt2_builder().bytes());
  REQUIRE(std::rename(tmp.c_str(), (dir + "/model.gguf").c_str()) == 0);
  Checkpoint c = Checkpoint::open(dir);
  CHECK(c.has("wte.weight"));
  CHECK(c.source() == dir);
  FILE* f = std::fopen((dir + "/model.safetensors").c_str(), "wb");
  std::fclose(f);
  CHECK(error_of([&] { Checkpoint::open(dir); }).find("holds both model.gguf and safetensors weights; keep one of them") !=
        std::string::npos);
  std::remove((dir + "/model.safetensors").c_str());
  std::remove((dir + "/model.gguf").c_str());
  ::rmdir(dir.c_str());
}
