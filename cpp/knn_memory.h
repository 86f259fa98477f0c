// kNN memory at decode time (TRIME / kNN-LM, docs/retrieval.md "kNN memory").
// A store holds (key, value) pairs: key = the output of a model's final layer
// norm at one position of a corpus (the head's input), value = the token that
// followed it. A sequence with memory turns the model's next-token
// distribution at every position it predicts into
//     p = (1 - lambda) * p_LM + lambda * p_mem,
//     p_mem(v) = sum over neighbours n with value_n = v of softmax_n(-d_n / temperature),
// d_n = ||q - key_n||^2 the squared L2 distance of the position's own key q;
// the neighbours are the k nearest keys of the store (external memory) and,
// with `local`, the k nearest of the sequence's own earlier positions (TRIME's
// local memory), in one softmax. tools/reference/knn_memory.py is the reference.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "threadpool.h"

namespace roost {

// The largest k a request may ask for (each query keeps k candidates per store chunk).
constexpr int64_t kMaxMemoryK = 1024;

struct MemoryParams {
  std::string datastore;      // a loaded store's name; "" = no external memory
  int64_t k = 16;             // neighbours from each memory (external, local)
  double lambda = 0.25;       // weight of p_mem
  double temperature = 1.0;   // of the softmax over -d
  bool local = false;         // the sequence's own earlier positions too
  bool enabled() const { return !datastore.empty() || local; }
};

struct Neighbour {
  float dist;     // squared L2 distance
  int32_t value;  // the next token
};

// Exact search: keys kept as F16 in packed matrices of kChunkRows keys, scored
// by the GEMM kernels (q . k for a batch of queries at once), ||k||^2 stored.
class KnnStore {
 public:
  static constexpr int64_t kChunkRows = 65536;
  // dir/keys.f16 (entries x dim IEEE half, little-endian) and dir/values.i32
  // (entries int32). Throws E_CHECKPOINT naming the file for a missing or
  // truncated file, a dim other than `dim` or a value outside [0, vocab_size).
  static std::shared_ptr<const KnnStore> load(const std::string& dir, int64_t dim, int64_t vocab_size);
  // The same from memory (tests): keys [n, dim] float rounded to F16.
  static std::shared_ptr<const KnnStore> from_keys(const float* keys, const int32_t* values, int64_t n, int64_t dim);

  int64_t size() const { return (int64_t)values_.size(); }
  int64_t dim() const { return dim_; }
  size_t bytes() const;
  // out[m * k + j]: the j-th nearest of query m (nearest first; ties: smaller
  // index first); fewer than k entries pad with dist = +inf, value = -1.
  void search(const float* queries, int64_t M, int64_t k, ThreadPool& pool, std::vector<Neighbour>& out) const;

 private:
  void add_chunk(const uint16_t* keys, int64_t n);
  int64_t dim_ = 0;
  std::vector<PackedMatrix> chunks_;  // [dim, <= kChunkRows] each
  std::vector<float> norms_;          // ||key||^2 of the F16 keys
  std::vector<int32_t> values_;
};

// The k nearest of n keys [n, dim] (float) to q, appended to `out` (brute force: local memory).
void nearest_local(const float* q, const float* keys, const int32_t* values, int64_t n, int64_t dim, int64_t k,
                   std::vector<Neighbour>& out);

// logits [V] -> log p of the interpolation above over the neighbours nb
// (entries with value < 0 are padding and ignored). No neighbour: unchanged.
void interpolate_memory(float* logits, int64_t V, const Neighbour* nb, int64_t n, double lambda, double temperature);

}  // namespace roost
