// Where each item of a forward step puts its rows, for the architectures
// whose layout is more than "n new tokens": one definition serves the CPU
// models (perceiver_ar.cpp, block_recurrent.cpp) and their CUDA ports (cuda/).
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "model.h"

namespace roost {

// perceiver_ar: one item's rows in a step's buffers (N = num_latents).
struct PerceiverRows {
  int64_t past, n, end, win;  // win = first position of the latent window after this step
  bool rebuild;               // n >= 2: recompute the whole window (exact prefill)
  int64_t x0;                 // first row in x (every new token)
  int64_t z0, zp;             // first row in z (layer 0 queries) and its position: max(past, win) ..
  int64_t y0, yp;             // first row in y (layers >= 1) and its position: win (rebuild) or past (decode)
};

struct PerceiverPlan {
  std::vector<PerceiverRows> rows;
  int64_t x_rows = 0, z_rows = 0, y_rows = 0;  // totals over the items
};

inline PerceiverPlan plan_perceiver_rows(const std::vector<ForwardItem>& items, int64_t N) {
  PerceiverPlan p;
  p.rows.resize(items.size());
  for (size_t i = 0; i < items.size(); i++) {
    PerceiverRows& r = p.rows[i];
    r.past = items[i].state->length();
    r.n = items[i].n;
    r.end = r.past + r.n;
    r.win = r.end - std::min(N, r.end);
    r.rebuild = r.n >= 2;
    r.x0 = p.x_rows;
    r.zp = std::max(r.past, r.win);
    r.z0 = p.z_rows;
    r.yp = r.rebuild ? r.win : r.past;
    r.y0 = p.y_rows;
    p.x_rows += r.n, p.z_rows += r.end - r.zp, p.y_rows += r.end - r.yp;
  }
  return p;
}

// block_recurrent: one item's rows and its new positions cut at block boundaries (W = block_size).
struct BlockRows {
  int64_t past, n, end, x0;
  std::vector<std::pair<int64_t, int64_t>> segs;  // [begin, end) positions, one per block touched
  int64_t row(int64_t pos) const { return x0 + pos - past; }
};

// The items' rows; *total receives the number of rows over all items.
inline std::vector<BlockRows> plan_block_rows(const std::vector<ForwardItem>& items, int64_t W, int64_t* total) {
  std::vector<BlockRows> rows(items.size());
  int64_t R = 0;
  for (size_t i = 0; i < items.size(); i++) {
    BlockRows& r = rows[i];
    r.past = items[i].state->length();
    r.n = items[i].n;
    r.end = r.past + r.n;
    r.x0 = R;
    for (int64_t p = r.past; p < r.end;) {
      const int64_t q = std::min(r.end, (p / W + 1) * W);
      r.segs.push_back({p, q});
      p = q;
    }
    R += r.n;
  }
  *total = R;
  return rows;
}

}  // namespace roost
