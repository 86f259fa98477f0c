#include "knn_memory.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include "common.h"
#include "dtype.h"

namespace roost {

namespace {

// The k best (dist, index) seen so far, kept sorted: a candidate worse than the
// current k-th costs one comparison, which is almost every candidate.
struct TopK {
  struct Hit {
    float dist;
    int64_t index;
  };
  explicit TopK(int64_t k) : k(k) { hits.reserve(k + 1); }
  float worst() const { return (int64_t)hits.size() < k ? std::numeric_limits<float>::infinity() : hits.back().dist; }
  void offer(float dist, int64_t index) {
    if ((int64_t)hits.size() == k && !(dist < hits.back().dist)) return;  // ties keep the earlier (smaller) index
    auto at = std::upper_bound(hits.begin(), hits.end(), dist, [](float d, const Hit& h) { return d < h.dist; });
    hits.insert(at, Hit{dist, index});
    if ((int64_t)hits.size() > k) hits.pop_back();
  }
  int64_t k;
  std::vector<Hit> hits;
};

std::vector<char> read_file(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error("E_CHECKPOINT", "kNN memory: cannot open " + what + " " + path);
  const std::streamsize n = f.tellg();
  std::vector<char> data((size_t)n);
  f.seekg(0);
  if (n > 0 && !f.read(data.data(), n)) throw Error("E_CHECKPOINT", "kNN memory: cannot read " + path);
  return data;
}

}  // namespace

void KnnStore::add_chunk(const uint16_t* keys, int64_t n) {
  chunks_.push_back(pack_matrix(keys, DType::F16, dim_, n, /*src_is_nk=*/true));
  for (int64_t r = 0; r < n; r++) {
    float s = 0;
    for (int64_t c = 0; c < dim_; c++) {
      const float x = f16_to_f32(keys[r * dim_ + c]);
      s += x * x;
    }
    norms_.push_back(s);
  }
}

std::shared_ptr<const KnnStore> KnnStore::load(const std::string& dir, int64_t dim, int64_t vocab_size) {
  auto store = std::make_shared<KnnStore>();
  store->dim_ = dim;
  const std::string vpath = dir + "/values.i32", kpath = dir + "/keys.f16";
  const std::vector<char> vbytes = read_file(vpath, "the values file");
  if (vbytes.size() % 4 != 0) throw Error("E_CHECKPOINT", "kNN memory: " + vpath + " is truncated (" + std::to_string(vbytes.size()) + " bytes, not whole int32 values)");
  const int64_t n = (int64_t)vbytes.size() / 4;
  store->values_.resize(n);
  std::memcpy(store->values_.data(), vbytes.data(), vbytes.size());
  for (int64_t i = 0; i < n; i++)
    if (store->values_[i] < 0 || store->values_[i] >= vocab_size)
      throw Error("E_CHECKPOINT", "kNN memory: " + vpath + " entry " + std::to_string(i) + " holds token " +
                                      std::to_string(store->values_[i]) + ", outside the model's vocabulary (0.." +
                                      std::to_string(vocab_size - 1) + ")");
  std::ifstream f(kpath, std::ios::binary | std::ios::ate);
  if (!f) throw Error("E_CHECKPOINT", "kNN memory: cannot open the keys file " + kpath);
  const int64_t bytes = (int64_t)f.tellg(), want = n * dim * 2;
  if (bytes != want)
    throw Error("E_CHECKPOINT", "kNN memory: " + kpath + " holds " + std::to_string(bytes) + " bytes; " + std::to_string(n) +
                                    " keys of " + std::to_string(dim) + " F16 values (this model's width) take " + std::to_string(want));
  f.seekg(0);
  std::vector<uint16_t> buf;
  for (int64_t r = 0; r < n; r += kChunkRows) {
    const int64_t m = std::min(kChunkRows, n - r);
    buf.resize(m * dim);
    if (!f.read(reinterpret_cast<char*>(buf.data()), m * dim * 2)) throw Error("E_CHECKPOINT", "kNN memory: cannot read " + kpath);
    store->add_chunk(buf.data(), m);
  }
  return store;
}

std::shared_ptr<const KnnStore> KnnStore::from_keys(const float* keys, const int32_t* values, int64_t n, int64_t dim) {
  auto store = std::make_shared<KnnStore>();
  store->dim_ = dim;
  store->values_.assign(values, values + n);
  std::vector<uint16_t> buf;
  for (int64_t r = 0; r < n; r += kChunkRows) {
    const int64_t m = std::min(kChunkRows, n - r);
    buf.resize(m * dim);
    for (int64_t i = 0; i < m * dim; i++) buf[i] = f32_to_f16(keys[r * dim + i]);
    store->add_chunk(buf.data(), m);
  }
  return store;
}

size_t KnnStore::bytes() const {
  size_t b = norms_.size() * 4 + values_.size() * 4;
  for (const auto& c : chunks_) b += c.bytes();
  return b;
}

void KnnStore::search(const float* q, int64_t M, int64_t k, ThreadPool& pool, std::vector<Neighbour>& out) const {
  out.assign(M * k, Neighbour{std::numeric_limits<float>::infinity(), -1});
  if (M == 0 || k == 0) return;
  // Queries in blocks, so the scores of one block against one chunk stay ~128 MiB.
  constexpr int64_t kBlock = 512;
  std::vector<float> dots;
  for (int64_t m0 = 0; m0 < M; m0 += kBlock) {
    const int64_t B = std::min(kBlock, M - m0);
    const float* qb = q + m0 * dim_;
    std::vector<TopK> best(B, TopK(k));
    std::vector<float> qn(B);
    for (int64_t m = 0; m < B; m++) {
      float s = 0;
      for (int64_t c = 0; c < dim_; c++) s += qb[m * dim_ + c] * qb[m * dim_ + c];
      qn[m] = s;
    }
    int64_t base = 0;
    for (const PackedMatrix& W : chunks_) {
      const int64_t n = W.N;
      dots.resize(B * n);
      matmul(dots.data(), qb, W, nullptr, B, pool);  // q . key for every (query, key) of the chunk
      const float* norms = norms_.data() + base;
      pool.parallel_for(B, [&](int64_t a, int64_t b) {
        for (int64_t m = a; m < b; m++) {
          TopK& t = best[m];
          const float* d = dots.data() + m * n;
          float worst = t.worst();
          for (int64_t j = 0; j < n; j++) {
            const float dist = std::max(0.f, qn[m] + norms[j] - 2.f * d[j]);
            if (dist < worst) {
              t.offer(dist, base + j);
              worst = t.worst();
            }
          }
        }
      });
      base += n;
    }
    // The ranking's distances come from ||q||^2 + ||k||^2 - 2 q.k in float, which
    // cancels badly for nearby keys; the k kept are measured again directly.
    std::vector<float> key(dim_);
    for (int64_t m = 0; m < B; m++) {
      for (size_t j = 0; j < best[m].hits.size(); j++) {
        const int64_t index = best[m].hits[j].index;
        matrix_column(key.data(), chunks_[index / kChunkRows], index % kChunkRows);
        double d = 0;
        for (int64_t c = 0; c < dim_; c++) {
          const double e = (double)qb[m * dim_ + c] - key[c];
          d += e * e;
        }
        out[(m0 + m) * k + j] = Neighbour{(float)d, values_[index]};
      }
    }
  }
}

void nearest_local(const float* q, const float* keys, const int32_t* values, int64_t n, int64_t dim, int64_t k,
                   std::vector<Neighbour>& out) {
  TopK t(k);
  for (int64_t i = 0; i < n; i++) {
    float s = 0;
    for (int64_t c = 0; c < dim; c++) {
      const float e = q[c] - keys[i * dim + c];
      s += e * e;
    }
    if (s < t.worst()) t.offer(s, i);
  }
  for (const auto& h : t.hits) out.push_back(Neighbour{h.dist, values[h.index]});
}

void interpolate_memory(float* logits, int64_t V, const Neighbour* nb, int64_t n, double lambda, double temperature) {
  double dmin = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; i++)
    if (nb[i].value >= 0) dmin = std::min(dmin, (double)nb[i].dist);
  if (!std::isfinite(dmin)) return;  // no neighbour: the model's distribution as it is
  // p_mem over the vocabulary: softmax of -d / T over the neighbours, summed by value.
  std::vector<double> pmem(V, 0.0);
  double z = 0;
  for (int64_t i = 0; i < n; i++) {
    if (nb[i].value < 0) continue;
    const double w = std::exp(-((double)nb[i].dist - dmin) / temperature);
    pmem[nb[i].value] += w;
    z += w;
  }
  double lmax = -std::numeric_limits<double>::infinity();
  for (int64_t v = 0; v < V; v++) lmax = std::max(lmax, (double)logits[v]);
  double zl = 0;
  for (int64_t v = 0; v < V; v++) zl += std::exp((double)logits[v] - lmax);
  for (int64_t v = 0; v < V; v++) {
    const double p = (1.0 - lambda) * std::exp((double)logits[v] - lmax) / zl + lambda * pmem[v] / z;
    logits[v] = p > 0 ? (float)std::log(p) : -std::numeric_limits<float>::infinity();
  }
}

}  // namespace roost
