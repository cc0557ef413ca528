// fastrnn._testing: code for the tests only, in a module of its own that `import fastrnn`
// never loads (built and installed beside _C, so that the tests run it everywhere):
//   cuda_emulation         the CUDA backend's device module over the CPU (cuda_emulation.cpp)
//   parallel_for_throwing  a job on fastrnn's thread pool -- _C's own, reached through the
//                          capsule _C._thread_pool_run -- whose parts throw on request
#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#include "cpu/thread_pool.h"

namespace fastrnn_bindings {

namespace py = pybind11;

void def_cuda_emulation(py::module_& m);  // cuda_emulation.cpp

namespace {

using PoolRun = void (*)(int64_t n, fastrnn::ThreadPool::Task task, const void* ctx,
                         int64_t min_per_thread);

PoolRun pool_run() {
  py::capsule cap = py::module_::import("fastrnn._C").attr("_thread_pool_run");
  if (std::string(cap.name()) != "fastrnn.ThreadPool.run")
    throw py::type_error("fastrnn._C._thread_pool_run is not the thread pool's capsule");
  return reinterpret_cast<PoolRun>(cap.get_pointer());
}

struct ThrowingJob {
  int64_t throw_at;              // the part holding this item throws; -1: every part
  std::atomic<int64_t> done{0};  // items of the parts that have ended, thrown or not
};

// Runs [0, n) over the pool, one item per part as long as n <= the thread count. The part
// holding item `throw_at` (every part for -1) throws std::overflow_error at once; the others
// take 20 ms, so that a pool returning before all its parts end is caught in the act: the
// error then says how many items were unfinished when it arrived (0 when the pool joins
// every part first). Returns n when nothing threw.
int64_t parallel_for_throwing(int64_t n, int64_t throw_at) {
  ThrowingJob job;
  job.throw_at = throw_at;
  auto part = [](const void* ctx, int64_t begin, int64_t end) {
    auto& j = *static_cast<ThrowingJob*>(const_cast<void*>(ctx));
    if (j.throw_at == -1 || (begin <= j.throw_at && j.throw_at < end)) {
      j.done += end - begin;
      throw std::overflow_error("part [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") threw");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    j.done += end - begin;
  };
  const PoolRun run = pool_run();
  py::gil_scoped_release release;
  try {
    run(n, part, &job, 1);
  } catch (const std::overflow_error& e) {
    throw std::overflow_error(std::string(e.what()) + "; items unfinished when it arrived: " +
                              std::to_string(n - job.done.load()));
  }
  return job.done.load();
}

}  // namespace
}  // namespace fastrnn_bindings

PYBIND11_MODULE(_testing, m) {
  using namespace fastrnn_bindings;
  m.doc() = "fastrnn's test-only hooks (not part of the API; import fastrnn does not load it).";
  py::module_ emulation = m.def_submodule(
      "cuda_emulation", "The CUDA backend's host code on the CPU, for tests (not for use).");
  def_cuda_emulation(emulation);
  m.def("parallel_for_throwing", &parallel_for_throwing, py::arg("n"), py::arg("throw_at"),
        "Runs n items on fastrnn's pool; the part holding item throw_at (-1: every part) "
        "throws OverflowError.");
}
