#include "cpu/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fastrnn {
namespace {

// FASTRNN_NUM_THREADS if set to a positive integer, else the cores this process may run on.
int default_threads() {
  if (const char* env = std::getenv("FASTRNN_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// Workers spin for a short while after each job (the next time step usually follows within
// microseconds), then sleep on a condition variable. Spinning yields the core every few
// dozen rounds, so that a pool of another library (or our own caller) is not starved.
class Pool {
 public:
  explicit Pool(int n) : n_threads_(n) {
    for (int k = 1; k < n; ++k) workers_.emplace_back([this, k] { work(k); });
  }
  // The pool lives for the process; at exit its sleeping workers are simply ended.
  ~Pool() = delete;

  int size() const { return n_threads_; }

  // Ends the workers once they wake; the object itself is never freed (they may still be
  // reading it).
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.detach();
  }

  // A part that throws does not end the process: every part is caught, all are joined, and
  // the first exception is rethrown here, in the caller, once no thread reads ctx any more.
  void run(int64_t n, ThreadPool::Task task, const void* ctx, int64_t min_per_thread) {
    const int64_t parts = std::max<int64_t>(
        1, std::min<int64_t>(n_threads_, n / std::max<int64_t>(1, min_per_thread)));
    if (parts == 1) {
      task(ctx, 0, n);
      return;
    }
    // Two Python threads may call kernels at once (the GIL is released): one job at a time.
    std::lock_guard<std::mutex> job(job_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      task_ = task;
      ctx_ = ctx;
      n_ = n;
      parts_ = parts;
      for (int64_t k = 1; k < parts; ++k) claimed_[k] = false;
      remaining_.store(static_cast<int>(parts - 1), std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    run_part(0);
    // Part k belongs to worker k; one that has not taken it by now (asleep: on a VM a
    // sleeping thread takes tens to hundreds of microseconds to run again) is run here
    // instead of waited for, so a short job never costs more than running it alone.
    for (int64_t k = 1; k < parts; ++k)
      if (claim(k)) run_part(k);
    // Wait for the parts the workers took. When cores are oversubscribed (another library's
    // pool spinning beside ours) a worker may not be running: yield now and then so it can.
    for (int spin = 1; remaining_.load(std::memory_order_acquire) != 0; ++spin) {
      if (spin % 64 == 0)
        sched_yield();
      else
        cpu_relax();
    }
    std::exception_ptr error;
    {
      std::lock_guard<std::mutex> lock(error_mu_);
      std::swap(error, error_);
    }
    if (error) std::rethrow_exception(error);
  }

 private:
  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  // Takes part k (k >= 1) of the posted job for the calling thread, unless taken already.
  bool claim(int64_t k) {
    std::lock_guard<std::mutex> lock(mu_);
    if (claimed_[k]) return false;
    claimed_[k] = true;
    return true;
  }

  // Runs part k of the posted job; parts other than the caller's count down remaining_.
  void run_part(int64_t k) {
    try {
      task_(ctx_, n_ * k / parts_, n_ * (k + 1) / parts_);
    } catch (...) {  // escaping std::thread would end the process (std::terminate)
      keep(std::current_exception());
    }
    if (k > 0) remaining_.fetch_sub(1, std::memory_order_acq_rel);
  }

  // Keeps the first exception of a job's parts.
  void keep(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (!error_) error_ = std::move(e);
  }

  void work(int k) {
    uint64_t seen = 0;
    for (;;) {
      // Spin first, then sleep.
      for (int spin = 1; spin < 20000 && generation_.load(std::memory_order_acquire) == seen;
           ++spin) {
        if (spin % 64 == 0)
          sched_yield();  // let a runnable thread have this core
        else
          cpu_relax();
      }
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      bool mine;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
        seen = generation_.load(std::memory_order_acquire);
        // The job posted now (a later one than this thread woke for, if it slept through
        // some: those were run by their callers); its fields stay fixed while a part of it
        // is claimed and unfinished.
        mine = k < parts_ && !claimed_[k];
        if (mine) claimed_[k] = true;
      }
      if (mine) run_part(k);
    }
  }

  const int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_, job_mu_, error_mu_;
  std::exception_ptr error_;  // the first exception of the running job's parts
  bool stop_ = false;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> remaining_{0};  // claimed or unclaimed parts 1.. of the job not yet done
  std::vector<char> claimed_ = std::vector<char>(n_threads_, 0);  // part k taken (under mu_)
  ThreadPool::Task task_ = nullptr;
  const void* ctx_ = nullptr;
  int64_t n_ = 0, parts_ = 1;
};

std::mutex g_config_mu;
int g_requested = 0;  // 0: default
Pool* g_pool = nullptr;

Pool& pool() {
  std::lock_guard<std::mutex> lock(g_config_mu);
  if (!g_pool) {
    g_pool = new Pool(g_requested > 0 ? g_requested : default_threads());
  }
  return *g_pool;
}

// After fork() only the forking thread exists in the child: forget the parent's pool (its
// workers are gone) and build a new one on first use.
void after_fork_in_child() {
  new (&g_config_mu) std::mutex();
  g_pool = nullptr;
}
const int g_atfork = pthread_atfork(nullptr, nullptr, after_fork_in_child);

}  // namespace

void ThreadPool::run(int64_t n, Task task, const void* ctx, int64_t min_per_thread) {
  pool().run(n, task, ctx, min_per_thread);
}

void ThreadPool::set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(g_config_mu);
  g_requested = n;
  if (g_pool && g_pool->size() != (n > 0 ? n : default_threads())) {
    g_pool->shutdown();
    g_pool = nullptr;
  }
}

int ThreadPool::num_threads() { return pool().size(); }

}  // namespace fastrnn
