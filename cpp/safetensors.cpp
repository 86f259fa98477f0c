// safetensors loader. File layout: u64 little-endian header length N, N bytes of
// JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data buffer; offsets are relative to the data buffer's start.
// Everything in the header is checked against the file before a TensorView
// is handed out, so later code may trust data/nbytes.
#include "safetensors.h"

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
#include "gguf.h"
#include "json.h"

namespace roost {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // real headers are ~100 KB; more is a lie
constexpr size_t kMaxIndexBytes = 64u << 20;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error("E_CHECKPOINT", where + ": " + what);
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// Every dtype the format defines, so that an unsupported one is named as
// such rather than as garbage; 0 = not a safetensors dtype at all.
size_t any_dtype_size(const std::string& d) {
  static const std::pair<const char*, size_t> table[] = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4},
      {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8}};
  for (const auto& [name, size] : table)
    if (d == name) return size;
  return 0;
}

bool supported_dtype(const std::string& d, DType* out) {
  if (d == "F32") { *out = DType::F32; return true; }
  if (d == "F16") { *out = DType::F16; return true; }
  if (d == "BF16") { *out = DType::BF16; return true; }
  return false;
}

// HF GPT-2's causal-mask buffers, h.N.attn.bias and h.N.attn.masked_bias (often
// BOOL or U8). Only these exact names: h.N.attn.c_attn.bias is a real weight.
bool is_gpt2_mask_buffer(const std::string& name) {
  if (name.compare(0, 2, "h.") != 0) return false;
  size_t i = 2, digits = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') ++i, ++digits;
  if (digits == 0) return false;
  std::string rest = name.substr(i);
  return rest == ".attn.bias" || rest == ".attn.masked_bias";
}

std::string strip_prefix(const std::string& name) {
  static const std::string prefix = "transformer.";
  return name.compare(0, prefix.size(), prefix) == 0 ? name.substr(prefix.size()) : name;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // bounded at load: numel * dtype size fits the file
  return n;
}

// A read-only private mapping of a whole file. Reading past the end of a mapping
// whose file shrinks underneath us would SIGBUS; checkpoints are not rewritten
// while served, so that is not guarded against.
class MappedFile {
 public:
  static std::unique_ptr<MappedFile> open(const std::string& path) {
    // O_NONBLOCK: a FIFO (or a device) named model.safetensors must be refused, not waited on.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
    struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
    struct stat st;
    if (fstat(fd, &st) != 0) fail(path, std::string("cannot stat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
    std::unique_ptr<MappedFile> f(new MappedFile);
    f->path_ = path;
    f->size_ = size_t(st.st_size);
    if (f->size_ > 0) {  // mmap of length 0 is EINVAL; an empty file fails the size check later
      void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(errno));
      f->data_ = static_cast<const uint8_t*>(p);
    }
    return f;
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

namespace {

struct Entry {
  std::string raw_name;  // as in the header
  TensorView view;
  uint64_t begin = 0, end = 0;
  bool ignored = false;
};

uint64_t offset_value(const json::Value& v, bool* ok) {
  *ok = v.is_number() && v.has_u64;
  return *ok ? v.u64 : 0;
}

Entry parse_entry(const std::string& path, const std::string& raw_name, const json::Value& info) {
  Entry e;
  e.raw_name = raw_name;
  e.view.name = strip_prefix(raw_name);
  e.view.file = path;
  e.ignored = is_gpt2_mask_buffer(e.view.name);
  const std::string t = "tensor " + raw_name;
  if (!info.is_object()) fail(path, t + ": entry is not an object (got " + json::dump(info) + ")");

  const json::Value* dtype = info.find("dtype");
  if (!dtype) fail(path, t + ": dtype is missing");
  if (!dtype->is_string()) fail(path, t + ": dtype is not a string (got " + json::dump(*dtype) + ")");
  size_t elem = any_dtype_size(dtype->text);
  if (elem == 0) fail(path, t + ": unknown dtype " + json::dump(*dtype));
  if (!e.ignored && !supported_dtype(dtype->text, &e.view.dtype))
    fail(path, t + ": unsupported dtype " + dtype->text + " (supported: F32, F16, BF16)");

  const json::Value* shape = info.find("shape");
  if (!shape) fail(path, t + ": shape is missing");
  bool shape_ok = shape->is_array();
  uint64_t numel = 1;
  bool numel_overflow = false;
  if (shape_ok) {
    for (const json::Value& d : shape->items) {
      if (!d.is_number() || !d.has_i64 || d.i64 < 0) { shape_ok = false; break; }
      e.view.shape.push_back(d.i64);
      if (__builtin_mul_overflow(numel, uint64_t(d.i64), &numel)) numel_overflow = true;
    }
  }
  if (!shape_ok) fail(path, t + ": shape must be a list of non-negative integers (got " + json::dump(*shape) + ")");

  const json::Value* offs = info.find("data_offsets");
  if (!offs) fail(path, t + ": data_offsets is missing");
  bool ok0 = false, ok1 = false;
  if (offs->is_array() && offs->items.size() == 2) {
    e.begin = offset_value(offs->items[0], &ok0);
    e.end = offset_value(offs->items[1], &ok1);
  }
  if (!ok0 || !ok1 || e.begin > e.end)
    fail(path, t + ": data_offsets must be [begin, end] with 0 <= begin <= end (got " + json::dump(*offs) + ")");

  uint64_t need = 0;
  if (numel_overflow || __builtin_mul_overflow(numel, uint64_t(elem), &need))
    fail(path, t + ": shape " + shape_str(e.view.shape) + " is too large");
  if (e.end - e.begin != need)
    fail(path, t + ": data_offsets " + json::dump(*offs) + " hold " + std::to_string(e.end - e.begin) +
                   " bytes but shape " + shape_str(e.view.shape) + " of " + dtype->text + " needs " +
                   std::to_string(need));
  e.view.nbytes = size_t(need);
  return e;
}

// Validates the header of one mapped file and returns its entries (ignored
// buffers included, flagged) with data pointers set.
std::vector<Entry> read_header(const MappedFile& f) {
  const std::string& path = f.path();
  if (f.size() < 8)
    fail(path, "truncated: " + std::to_string(f.size()) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | f.data()[i];  // little-endian on any host
  if (n > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(n) + " is absurd (limit " + std::to_string(kMaxHeaderBytes) +
                   "); not a safetensors file?");
  if (n > f.size() - 8)
    fail(path, "truncated: header length " + std::to_string(n) + " runs past the end of the " +
                   std::to_string(f.size()) + "-byte file");

  json::Value header;
  try {
    json::Limits limits;
    limits.max_bytes = kMaxHeaderBytes;
    header = json::parse(std::string_view(reinterpret_cast<const char*>(f.data()) + 8, size_t(n)), limits);
  } catch (const json::ParseError& e) {
    // The header starts at file byte 8; give the file offset.
    fail(path, "header is not valid JSON: at file byte " + std::to_string(e.offset() + 8) + ": " + e.message());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  const uint8_t* data = f.data() + 8 + n;
  uint64_t data_len = f.size() - 8 - n;
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.members) {
    if (name == "__metadata__") {
      if (!info.is_object()) fail(path, "__metadata__ is not an object (got " + json::dump(info) + ")");
      continue;  // free-form; nothing in it is used
    }
    Entry e = parse_entry(path, name, info);
    if (e.end > data_len)
      fail(path, "truncated: tensor " + name + " ends at data byte " + std::to_string(e.end) + " but the data buffer holds " +
                     std::to_string(data_len) + " bytes");
    e.view.data = data + e.begin;
    entries.push_back(std::move(e));
  }

  // Overlaps: sorted by begin, each non-empty tensor must start at or after the
  // previous one's end. Empty tensors occupy nothing.
  std::vector<const Entry*> order;
  for (const Entry& e : entries)
    if (e.end > e.begin) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < order.size(); ++i)
    if (order[i]->begin < order[i - 1]->end)
      fail(path, "tensors " + order[i - 1]->raw_name + " and " + order[i]->raw_name + " overlap in the data buffer");
  return entries;
}

}  // namespace

Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;
Checkpoint::~Checkpoint() = default;

namespace {

// Adds one file's tensors. `raw_of` maps each kept name to its name in the
// header, for the duplicate message; `raw_names` receives every header name.
void add_file(std::map<std::string, TensorView>& tensors, std::map<std::string, std::string>& raw_of,
              const MappedFile& f, std::set<std::string>* raw_names) {
  for (Entry& e : read_header(f)) {
    if (raw_names) raw_names->insert(e.raw_name);
    if (e.ignored) continue;
    const int64_t bad = first_non_finite(e.view);
    if (bad >= 0)
      fail(f.path(), "tensor " + e.raw_name + " holds a NaN or infinite value (element " + std::to_string(bad) +
                         "); the checkpoint is corrupt or was saved from a diverged run");
    auto it = tensors.find(e.view.name);
    if (it != tensors.end()) {
      // Same-file duplicates are already refused by the JSON parser, so this is
      // "transformer.x" next to "x", or one tensor in two shards.
      const std::string where = it->second.file == f.path() ? "in this file" : "in " + it->second.file;
      fail(f.path(), "duplicate tensor " + e.view.name + ": " + e.raw_name + " here and " + raw_of[e.view.name] + " " +
                         where + " (a \"transformer.\" prefix is ignored)");
    }
    raw_of[e.view.name] = e.raw_name;
    std::string key = e.view.name;
    tensors.emplace(std::move(key), std::move(e.view));
  }
}

// Shards must sit in the checkpoint folder itself: without a separator the only
// way out is "..".
bool safe_shard_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

Checkpoint Checkpoint::open_file(const std::string& path) {
  Checkpoint c;
  c.source_ = path;
  c.files_.push_back(MappedFile::open(path));
  std::map<std::string, std::string> raw_of;
  add_file(c.tensors_, raw_of, *c.files_.back(), nullptr);
  return c;
}

// One Checkpoint type, two readers: a GGUF file's tensors (gguf.cpp validates the file)
// under Roost's names.
Checkpoint Checkpoint::open_gguf(const std::string& path) {
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
  Checkpoint c;
  c.source_ = path;
  std::map<std::string, std::string> gguf_name;  // Roost's name -> the file's, for messages
  for (const TensorView& t : file->tensors()) gguf_name[gpt2_name_from_gguf(t.name).name] = t.name;
  for (auto& [name, g] : gpt2_tensors(*file)) {
    TensorView v = g.view;
    v.file = path + " (GGUF tensor " + gguf_name[name] + ")";
    if (g.transposed) {
      // Stored [out, in]; Roost's name means HF's Conv1D [in, out].
      if (v.shape.size() != 2)
        fail(path, "tensor " + name + " is a weight matrix but has " + std::to_string(v.shape.size()) + " dimensions");
      std::swap(v.shape[0], v.shape[1]);
      v.transposed = true;
    }
    c.tensors_.emplace(name, std::move(v));
  }
  c.gguf_ = std::move(file);
  return c;
}

Checkpoint Checkpoint::open(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) fail(dir, std::string("checkpoint folder cannot be read: ") + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) fail(dir, "checkpoint path is not a folder");

  const std::string single = dir + "/model.safetensors";
  const std::string gguf = dir + "/model.gguf";
  if (exists(gguf)) {
    // One checkpoint per folder: which of two would be served must never be a guess.
    if (exists(single) || exists(dir + "/model.safetensors.index.json"))
      fail(dir, "holds both model.gguf and safetensors weights; keep one of them");
    Checkpoint c = open_gguf(gguf);
    c.source_ = dir;
    return c;
  }
  if (exists(single)) {
    Checkpoint c = open_file(single);
    c.source_ = dir;
    return c;
  }
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (!exists(index_path)) {
    std::string hint = exists(dir + "/pytorch_model.bin") ? " (pytorch_model.bin is not supported: convert it to safetensors)" : "";
    fail(dir, "no model.safetensors, model.safetensors.index.json or model.gguf in the checkpoint folder" + hint);
  }

  json::Value index;
  try {
    json::Limits limits;
    limits.max_bytes = kMaxIndexBytes;
    index = json::parse(json::read_file(index_path, kMaxIndexBytes), limits);
  } catch (const json::ParseError& e) {
    fail(index_path, std::string("not valid JSON: ") + e.what());
  }
  const json::Value* map = index.find("weight_map");
  if (!map || !map->is_object()) fail(index_path, "weight_map is missing or not an object");
  if (map->members.empty()) fail(index_path, "weight_map is empty");

  Checkpoint c;
  c.source_ = dir;
  // Open each shard once, in order of first mention, and remember what it holds.
  std::map<std::string, std::set<std::string>> shard_names;
  std::map<std::string, std::string> raw_of;
  for (const auto& [tensor, file] : map->members) {
    if (!file.is_string())
      fail(index_path, "weight_map entry for tensor " + tensor + " is not a file name (got " + json::dump(file) + ")");
    if (!safe_shard_name(file.text))
      fail(index_path, "weight_map entry for tensor " + tensor + " names " + json::dump(file) +
                           ": shard names must be plain file names in the checkpoint folder");
    if (shard_names.count(file.text)) continue;
    const std::string shard_path = dir + "/" + file.text;
    try {
      c.files_.push_back(MappedFile::open(shard_path));
    } catch (const Error& e) {
      fail(index_path, "shard " + file.text + " (holding tensor " + tensor + ") cannot be opened: " + e.what());
    }
    add_file(c.tensors_, raw_of, *c.files_.back(), &shard_names[file.text]);
  }
  for (const auto& [tensor, file] : map->members)
    if (!shard_names[file.text].count(tensor))
      fail(dir + "/" + file.text, "tensor " + tensor + " is missing from this shard (" + index_path + " places it here)");
  return c;
}

bool Checkpoint::has(const std::string& name) const { return tensors_.count(name) != 0; }

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorView& Checkpoint::get(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorView* t = find(name);
  if (!t) fail(source_, "tensor " + name + " is missing");
  if (t->shape != shape)
    fail(t->file, "tensor " + name + " has shape " + shape_str(t->shape) + ", expected " + shape_str(shape));
  return *t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

}  // namespace roost
