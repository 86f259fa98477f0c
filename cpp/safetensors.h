// Memory-mapped safetensors checkpoints: one model.safetensors, or shards listed
// by model.safetensors.index.json (or a GGUF file: open_gguf, model.gguf). Every header is validated before any tensor is
// touched: offsets inside the file, sizes matching dtype x shape, no overlaps,
// known dtypes (F32, F16, BF16), regular files only (a FIFO is refused, never waited
// on), every weight finite (cpp/finite_check.h). A lie gives Error("E_CHECKPOINT") naming the
// file and the tensor; nothing is ever read out of bounds.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace roost {

struct TensorView {
  std::string name;            // with any "transformer." prefix stripped
  std::string file;            // the file that holds it, for messages
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  // Inside the mapping; valid while the Checkpoint lives. Not necessarily
  // aligned to the element size (the format does not promise it): read with
  // load_as_f32/memcpy or copy out, never through a float* with aligned loads.
  const void* data = nullptr;
  size_t nbytes = 0;
  // A 2-D tensor stored as the transpose of `shape` (a GGUF matrix: llama.cpp keeps
  // HF's Conv1D weights [in, out] as out rows of in). `shape` is Roost's logical
  // shape; data holds [shape[1], shape[0]]. Backends pack it with src_is_nk flipped.
  bool transposed = false;
  int64_t numel() const;
};

class MappedFile;  // private: an mmap'd file
class GgufFile;    // gguf.h

class Checkpoint {
 public:
  // Opens <dir>/model.safetensors, or the shards named by
  // <dir>/model.safetensors.index.json.
  static Checkpoint open(const std::string& dir);
  // Opens a single safetensors file.
  static Checkpoint open_file(const std::string& path);
  // Opens a GGUF file of llama.cpp's gpt2 architecture (cpp/gguf.h): its tensors
  // under Roost's names (gpt2_tensors), matrices flagged `transposed`, Q8_0 blocks
  // kept as stored. The file's own validation (gguf.cpp) runs first.
  static Checkpoint open_gguf(const std::string& path);

  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;
  ~Checkpoint();

  bool has(const std::string& name) const;
  // The tensor, checked to have exactly `shape`; throws E_CHECKPOINT naming the
  // file and tensor if it is missing or shaped otherwise.
  const TensorView& get(const std::string& name, const std::vector<int64_t>& shape) const;
  const TensorView* find(const std::string& name) const;  // null if absent
  std::vector<std::string> names() const;
  const std::string& source() const { return source_; }  // dir or file, for messages
  const GgufFile* gguf() const { return gguf_.get(); }    // the GGUF file (metadata), null for safetensors

 private:
  Checkpoint() = default;
  std::string source_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::shared_ptr<const GgufFile> gguf_;  // keeps a GGUF mapping alive
  std::map<std::string, TensorView> tensors_;
};

}  // namespace roost
