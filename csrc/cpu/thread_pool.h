// fastrnn's one thread pool. Work is split statically: with n threads, thread k gets the k-th
// slice of a range, so a thread keeps touching the same weight panels step after step (they
// stay in its core's L2). A slice whose thread has not started it by the time the caller has
// finished its own (the thread was asleep) is run by the caller instead of waited for. Results
// never depend on which thread ran a slice.
#pragma once

#include <cstdint>
#include <utility>

namespace fastrnn {

class ThreadPool {
 public:
  using Task = void (*)(const void* ctx, int64_t begin, int64_t end);

  // Runs task(ctx, begin, end) over [0, n) split into at most num_threads() contiguous
  // slices, the caller taking the first (and any a sleeping worker has not taken); returns
  // when all are done. If slices throw, the
  // first exception is rethrown here once all are done. Not reentrant.
  static void run(int64_t n, Task task, const void* ctx, int64_t min_per_thread);

  static void set_num_threads(int n);
  static int num_threads();
};

// parallel_for(n, fn): fn(begin, end) over a static split of [0, n). min_per_thread keeps
// tiny ranges on one thread, where waking another would cost more than it saves.
template <typename F>
void parallel_for(int64_t n, const F& fn, int64_t min_per_thread = 1) {
  if (n <= 0) return;
  ThreadPool::run(
      n, [](const void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); }, &fn,
      min_per_thread);
}

}  // namespace fastrnn
