// GGUF reader. File layout (llama.cpp's ggml/docs/gguf.md), all little-endian:
//   "GGUF", u32 version, u64 n_tensors, u64 n_kv,
//   n_kv x (string key, u32 value type, value),      string = u64 length + bytes
//   n_tensors x (string name, u32 n_dims, n_dims x u64 dims fastest first,
//                u32 ggml type, u64 offset into the data section),
//   padding to general.alignment (default 32), then the data section.
// Every read is bounded by the file; nothing past the end is ever touched.
#include "gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "common.h"
#include "finite_check.h"

namespace roost {

namespace {

constexpr uint64_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr uint64_t kMaxNameBytes = 63;    // GGML_MAX_NAME less its terminating zero
constexpr uint64_t kMaxKeyBytes = 65535;  // keys are short dotted names; more is a lie
constexpr uint64_t kMaxAlignment = 1u << 20;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error("E_CHECKPOINT", where + ": " + what);
}

std::string dims_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// GGML tensor types by id, so that a known but unsupported type is named as such;
// block = elements per block, bytes = bytes per block (0 where Roost does not read it).
struct GgmlType {
  uint32_t id;
  const char* name;
  bool supported;
  DType dtype;
  uint64_t block, bytes;
};
constexpr GgmlType kGgmlTypes[] = {
    {0, "F32", true, DType::F32, 1, 4},       {1, "F16", true, DType::F16, 1, 2},
    {2, "Q4_0", false, DType::F32, 0, 0},     {3, "Q4_1", false, DType::F32, 0, 0},
    {6, "Q5_0", false, DType::F32, 0, 0},     {7, "Q5_1", false, DType::F32, 0, 0},
    {8, "Q8_0", true, DType::Q8_0, 32, 34},   {9, "Q8_1", false, DType::F32, 0, 0},
    {10, "Q2_K", false, DType::F32, 0, 0},    {11, "Q3_K", false, DType::F32, 0, 0},
    {12, "Q4_K", false, DType::F32, 0, 0},    {13, "Q5_K", false, DType::F32, 0, 0},
    {14, "Q6_K", false, DType::F32, 0, 0},    {15, "Q8_K", false, DType::F32, 0, 0},
    {16, "IQ2_XXS", false, DType::F32, 0, 0}, {17, "IQ2_XS", false, DType::F32, 0, 0},
    {18, "IQ3_XXS", false, DType::F32, 0, 0}, {19, "IQ1_S", false, DType::F32, 0, 0},
    {20, "IQ4_NL", false, DType::F32, 0, 0},  {21, "IQ3_S", false, DType::F32, 0, 0},
    {22, "IQ2_S", false, DType::F32, 0, 0},   {23, "IQ4_XS", false, DType::F32, 0, 0},
    {24, "I8", false, DType::F32, 0, 0},      {25, "I16", false, DType::F32, 0, 0},
    {26, "I32", false, DType::F32, 0, 0},     {27, "I64", false, DType::F32, 0, 0},
    {28, "F64", false, DType::F32, 0, 0},     {29, "IQ1_M", false, DType::F32, 0, 0},
    {30, "BF16", true, DType::BF16, 1, 2},    {34, "TQ1_0", false, DType::F32, 0, 0},
    {35, "TQ2_0", false, DType::F32, 0, 0},   {39, "MXFP4", false, DType::F32, 0, 0},
};

const GgmlType* ggml_type(uint32_t id) {
  for (const GgmlType& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

// Bytes of one scalar of a metadata type; 0 for STRING and ARRAY, -1 for an unknown type.
int value_size(uint32_t type) {
  switch (type) {
    case GgufValue::UINT8: case GgufValue::INT8: case GgufValue::BOOL: return 1;
    case GgufValue::UINT16: case GgufValue::INT16: return 2;
    case GgufValue::UINT32: case GgufValue::INT32: case GgufValue::FLOAT32: return 4;
    case GgufValue::UINT64: case GgufValue::INT64: case GgufValue::FLOAT64: return 8;
    case GgufValue::STRING: case GgufValue::ARRAY: return 0;
  }
  return -1;
}

// Bounded little-endian reads over the mapping; `what` names the field for messages.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& path) : data_(data), size_(size), path_(path) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      fail(path_, "truncated: " + what + " at byte " + std::to_string(pos_) + " needs " + std::to_string(n) +
                      " bytes but the " + std::to_string(size_) + "-byte file has " + std::to_string(left()) + " left");
  }
  uint64_t uint(int bytes, const std::string& what) {
    need((uint64_t)bytes, what);
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | data_[pos_ + i];  // little-endian on any host
    pos_ += (uint64_t)bytes;
    return v;
  }
  uint32_t u32(const std::string& what) { return (uint32_t)uint(4, what); }
  uint64_t u64(const std::string& what) { return uint(8, what); }
  std::string str(uint64_t max_bytes, const std::string& what) {
    const uint64_t n = u64(what + " length");
    if (n > left())
      fail(path_, "truncated or corrupt: " + what + " is " + std::to_string(n) + " bytes long, the file has " +
                      std::to_string(left()) + " left");
    if (n > max_bytes)
      fail(path_, what + " is " + std::to_string(n) + " bytes long (limit " + std::to_string(max_bytes) + ")");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), (size_t)n);
    pos_ += n;
    return s;
  }
  void skip(uint64_t n, const std::string& what) {
    need(n, what);
    pos_ += n;
  }

 private:
  const uint8_t* data_;
  uint64_t size_, pos_ = 0;
  const std::string& path_;
};

GgufValue read_scalar(Cursor& c, uint32_t type, const std::string& what) {
  GgufValue v;
  v.type = (GgufValue::Type)type;
  const int size = value_size(type);
  if (type == GgufValue::STRING) {
    v.s = c.str(UINT64_MAX, what);
  } else if (type == GgufValue::FLOAT32) {
    const uint32_t bits = c.u32(what);
    float f;
    std::memcpy(&f, &bits, 4);
    v.f = f;
  } else if (type == GgufValue::FLOAT64) {
    const uint64_t bits = c.u64(what);
    std::memcpy(&v.f, &bits, 8);
  } else if (type == GgufValue::INT8 || type == GgufValue::INT16 || type == GgufValue::INT32 || type == GgufValue::INT64) {
    const uint64_t raw = c.uint(size, what);
    const int shift = 64 - 8 * size;
    v.i = (int64_t)(raw << shift) >> shift;  // sign-extend
  } else {
    v.u = c.uint(size, what);
  }
  return v;
}

GgufValue read_value(Cursor& c, const std::string& path, const std::string& key) {
  const std::string what = "metadata " + key;
  const uint32_t type = c.u32(what + " type");
  if (value_size(type) < 0) fail(path, what + ": unknown value type " + std::to_string(type));
  if (type != GgufValue::ARRAY) return read_scalar(c, type, what);
  GgufValue v;
  v.type = GgufValue::ARRAY;
  const uint32_t elem = c.u32(what + " array element type");
  const int esize = value_size(elem);
  if (esize < 0) fail(path, what + ": unknown array element type " + std::to_string(elem));
  if (elem == GgufValue::ARRAY) fail(path, what + ": arrays of arrays are not supported");
  v.elem = (GgufValue::Type)elem;
  v.count = c.u64(what + " array length");
  // Each element takes at least its scalar size (a string at least its 8-byte length).
  const uint64_t min_each = elem == GgufValue::STRING ? 8 : (uint64_t)esize;
  if (v.count > c.left() / min_each)
    fail(path, "truncated or corrupt: " + what + ": array of " + std::to_string(v.count) + " elements needs at least " +
                   std::to_string(min_each) + " bytes each, the file has " + std::to_string(c.left()) + " left");
  if (elem == GgufValue::STRING) {
    v.strings.reserve((size_t)v.count);
    for (uint64_t i = 0; i < v.count; i++) v.strings.push_back(c.str(UINT64_MAX, what + "[" + std::to_string(i) + "]"));
  } else {
    c.skip(v.count * (uint64_t)esize, what);  // numeric arrays are not used by the loader
  }
  return v;
}

}  // namespace

struct GgufFile::Mapping {
  const uint8_t* data = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (data) ::munmap(const_cast<uint8_t*>(data), size);
  }
};

GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

GgufFile GgufFile::open(const std::string& path) {
  GgufFile g;
  g.path_ = path;
  g.map_ = std::make_unique<Mapping>();
  {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // a FIFO must not block the open
    if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
    struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
    struct stat st;
    if (fstat(fd, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
    g.map_->size = (size_t)st.st_size;
    if (g.map_->size > 0) {  // an empty file fails the magic check below
      void* p = ::mmap(nullptr, g.map_->size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(errno));
      g.map_->data = static_cast<const uint8_t*>(p);
    }
  }
  Cursor c(g.map_->data, g.map_->size, path);

  c.need(4, "magic");
  if (std::memcmp(g.map_->data, "GGUF", 4) != 0) fail(path, "no GGUF magic at byte 0: not a GGUF file");
  c.skip(4, "magic");
  g.version_ = c.u32("version");
  if (g.version_ == 1) fail(path, "GGUF version 1 (32-bit counts) is not supported; convert it to version 3");
  if (g.version_ != 2 && g.version_ != 3)
    fail(path, "unknown GGUF version " + std::to_string(g.version_) + " (supported: 2, 3; a big-endian file?)");
  const uint64_t n_tensors = c.u64("tensor count"), n_kv = c.u64("metadata count");
  // A key/value takes at least 12 bytes (key length, value type), a tensor info at
  // least 28 (name length, dims count, one dim, type) plus its 8-byte offset.
  if (n_kv > c.left() / 12)
    fail(path, "truncated or corrupt: metadata count " + std::to_string(n_kv) + " needs at least 12 bytes each, the file has " +
                   std::to_string(c.left()) + " left");
  if (n_tensors > c.left() / 32)
    fail(path, "truncated or corrupt: tensor count " + std::to_string(n_tensors) +
                   " needs at least 32 bytes each, the file has " + std::to_string(c.left()) + " left");

  for (uint64_t i = 0; i < n_kv; i++) {
    std::string key = c.str(kMaxKeyBytes, "metadata key " + std::to_string(i));
    if (g.kv_.count(key)) fail(path, "duplicate metadata key " + key);
    GgufValue v = read_value(c, path, key);
    g.kv_.emplace(std::move(key), std::move(v));
  }
  if (const GgufValue* a = g.find_kv("general.alignment")) {
    if (a->type != GgufValue::UINT32) fail(path, "metadata general.alignment is not a UINT32");
    if (a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > kMaxAlignment)
      fail(path, "metadata general.alignment " + std::to_string(a->u) + " is not a power of two up to " +
                     std::to_string(kMaxAlignment));
    g.alignment_ = a->u;
  }

  struct Info {
    uint64_t offset, nbytes;
    size_t index;
  };
  std::vector<Info> infos;
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; i++) {
    TensorView t;
    t.file = path;
    t.name = c.str(UINT64_MAX, "tensor " + std::to_string(i) + " name");
    if (t.name.size() > kMaxNameBytes)
      fail(path, "tensor " + std::to_string(i) + " name is " + std::to_string(t.name.size()) + " bytes (GGML allows " +
                     std::to_string(kMaxNameBytes) + ")");
    if (!names.insert(t.name).second) fail(path, "duplicate tensor " + t.name);
    const std::string tn = "tensor " + t.name;
    const uint32_t n_dims = c.u32(tn + " dimension count");
    if (n_dims < 1 || n_dims > kMaxDims)
      fail(path, tn + ": " + std::to_string(n_dims) + " dimensions (GGML allows 1 to " + std::to_string(kMaxDims) + ")");
    std::vector<int64_t> ne(n_dims);  // fastest first, as stored
    for (uint32_t d = 0; d < n_dims; d++) {
      const uint64_t v = c.u64(tn + " dimension " + std::to_string(d));
      if (v > (uint64_t)INT64_MAX) fail(path, tn + ": dimension " + std::to_string(d) + " is " + std::to_string(v));
      ne[d] = (int64_t)v;
    }
    t.shape.assign(ne.rbegin(), ne.rend());
    const uint32_t type_id = c.u32(tn + " type");
    const GgmlType* type = ggml_type(type_id);
    if (!type) fail(path, tn + ": unknown GGML type " + std::to_string(type_id));
    if (!type->supported)
      fail(path, tn + ": unsupported type " + type->name + " (supported: F32, F16, BF16, Q8_0)");
    t.dtype = type->dtype;
    const uint64_t offset = c.u64(tn + " offset");
    if ((uint64_t)ne[0] % type->block != 0)
      fail(path, tn + ": shape " + dims_str(t.shape) + " has rows of " + std::to_string(ne[0]) + ", not a multiple of " +
                     type->name + "'s block of " + std::to_string(type->block));
    uint64_t nbytes = (uint64_t)ne[0] / type->block * type->bytes;
    bool overflow = false;
    for (uint32_t d = 1; d < n_dims; d++) overflow |= __builtin_mul_overflow(nbytes, (uint64_t)ne[d], &nbytes);
    if (overflow) fail(path, tn + ": shape " + dims_str(t.shape) + " is too large");
    if (offset % g.alignment_ != 0)
      fail(path, tn + ": offset " + std::to_string(offset) + " is not a multiple of the alignment " +
                     std::to_string(g.alignment_));
    t.nbytes = (size_t)nbytes;
    infos.push_back({offset, nbytes, g.tensors_.size()});
    g.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t data_start = (c.pos() + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  if (data_start > c.left() + c.pos() && n_tensors > 0)
    fail(path, "truncated: the data section would start at byte " + std::to_string(data_start) + " of a " +
                   std::to_string(c.pos() + c.left()) + "-byte file");
  const uint64_t data_len = g.map_->size > data_start ? g.map_->size - data_start : 0;
  for (const Info& in : infos) {
    TensorView& t = g.tensors_[in.index];
    if (in.offset > data_len || in.nbytes > data_len - in.offset)
      fail(path, "truncated: tensor " + t.name + " (" + std::to_string(in.nbytes) + " bytes at data offset " +
                     std::to_string(in.offset) + ") runs past the " + std::to_string(data_len) + "-byte data section");
    t.data = g.map_->data + data_start + in.offset;
  }
  // Overlaps: sorted by offset, each non-empty tensor starts at or after the previous end.
  std::vector<const Info*> order;
  for (const Info& in : infos)
    if (in.nbytes > 0) order.push_back(&in);
  std::sort(order.begin(), order.end(), [](const Info* a, const Info* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i)
    if (order[i]->offset < order[i - 1]->offset + order[i - 1]->nbytes)
      fail(path, "tensors " + g.tensors_[order[i - 1]->index].name + " and " + g.tensors_[order[i]->index].name +
                     " overlap in the data section");
  // As for safetensors (cpp/safetensors.cpp): a NaN or infinite weight (for Q8_0, a block scale) is refused at load.
  for (const TensorView& t : g.tensors_) {
    const int64_t bad = first_non_finite(t);
    if (bad >= 0)
      fail(path, "tensor " + t.name + " holds a NaN or infinite value (element " + std::to_string(bad) +
                     "); the file is corrupt or was saved from a diverged run");
  }
  return g;
}

const GgufValue* GgufFile::find_kv(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

uint64_t GgufFile::get_uint(const std::string& key) const {
  const GgufValue* v = find_kv(key);
  if (!v) fail(path_, "metadata " + key + " is missing");
  switch (v->type) {
    case GgufValue::UINT8: case GgufValue::UINT16: case GgufValue::UINT32: case GgufValue::UINT64: return v->u;
    case GgufValue::INT8: case GgufValue::INT16: case GgufValue::INT32: case GgufValue::INT64:
      if (v->i >= 0) return (uint64_t)v->i;
      fail(path_, "metadata " + key + " is negative (" + std::to_string(v->i) + ")");
    default: fail(path_, "metadata " + key + " is not an integer");
  }
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find_kv(key);
  if (!v) fail(path_, "metadata " + key + " is missing");
  if (v->type != GgufValue::FLOAT32 && v->type != GgufValue::FLOAT64) fail(path_, "metadata " + key + " is not a float");
  return v->f;
}

const std::string& GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find_kv(key);
  if (!v) fail(path_, "metadata " + key + " is missing");
  if (v->type != GgufValue::STRING) fail(path_, "metadata " + key + " is not a string");
  return v->s;
}

const TensorView* GgufFile::find(const std::string& name) const {
  for (const TensorView& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

Gpt2TensorName gpt2_name_from_gguf(const std::string& g) {
  static const std::pair<const char*, const char*> top[] = {
      {"token_embd.weight", "wte.weight"},       {"position_embd.weight", "wpe.weight"},
      {"output_norm.weight", "ln_f.weight"},     {"output_norm.bias", "ln_f.bias"},
      {"output.weight", "lm_head.weight"}};
  for (const auto& [from, to] : top)
    if (g == from) return {to, false};
  // blk.N.<part>.<weight|bias>
  if (g.compare(0, 4, "blk.") != 0) return {};
  size_t i = 4;
  while (i < g.size() && g[i] >= '0' && g[i] <= '9') ++i;
  if (i == 4 || i - 4 > 6 || i >= g.size() || g[i] != '.') return {};
  const std::string layer = g.substr(4, i - 4), rest = g.substr(i + 1);
  if (layer.size() > 1 && layer[0] == '0') return {};  // one spelling per layer
  static const std::pair<const char*, const char*> parts[] = {
      {"attn_norm", "ln_1"},      {"attn_qkv", "attn.c_attn"}, {"attn_output", "attn.c_proj"},
      {"ffn_norm", "ln_2"},       {"ffn_up", "mlp.c_fc"},      {"ffn_down", "mlp.c_proj"}};
  for (const auto& [from, to] : parts) {
    const std::string f = from;
    for (const char* suffix : {".weight", ".bias"})
      if (rest == f + suffix) {
        const bool matrix = std::strcmp(suffix, ".weight") == 0 && f != "attn_norm" && f != "ffn_norm";
        return {"h." + layer + "." + to + suffix, matrix};
      }
  }
  return {};
}

std::map<std::string, Gpt2Tensor> gpt2_tensors(const GgufFile& f) {
  const std::string& arch = f.get_string("general.architecture");
  if (arch != "gpt2") fail(f.path(), "general.architecture is " + arch + ", not gpt2");
  std::map<std::string, Gpt2Tensor> out;
  for (const TensorView& t : f.tensors()) {
    Gpt2TensorName n = gpt2_name_from_gguf(t.name);
    if (n.name.empty()) fail(f.path(), "tensor " + t.name + " is not one of llama.cpp's gpt2 tensors");
    Gpt2Tensor g{t, n.transposed};
    g.view.name = n.name;
    out.emplace(n.name, std::move(g));
  }
  return out;
}

}  // namespace roost
