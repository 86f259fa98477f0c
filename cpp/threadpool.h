// A fixed pool of compute threads for one engine. The calling thread takes
// part as thread 0, so a pool of N threads starts N-1 workers.
//
// Workers spin only briefly, then sleep on a futex (std::atomic::wait): inside
// Node the engine shares two cores with libuv's pool, and a worker that spins
// while idle steals the core the step needs (see docs/peers.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace roost {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index, n_threads) once on every thread; returns when all are done.
  // Not reentrant: a task must not call run() on the same pool.
  void run(const std::function<void(int, int)>& fn);

  // Splits [0, n) into n_threads contiguous ranges and runs fn(begin, end) on each
  // non-empty one. Ranges are multiples of `grain` (except the last).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

 private:
  void worker_loop(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* task_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

// The number of threads to use when the caller does not say: the cores this
// process may run on.
int default_thread_count();

// True when an op of `flops` arithmetic over `bytes` of memory takes only a few
// microseconds on one thread: less than waking the pool costs, and far less
// than waiting for a worker the OS has descheduled when the cores are shared.
// Small models (and small steps) then run their ops on the calling thread.
inline bool serial_is_cheaper(double flops, double bytes) {
  constexpr double kFlopsPerSecond = 50e9, kBytesPerSecond = 20e9, kSerialSeconds = 25e-6;
  return flops / kFlopsPerSecond + bytes / kBytesPerSecond < kSerialSeconds;
}

}  // namespace roost
