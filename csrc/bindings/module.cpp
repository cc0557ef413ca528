// fastrnn._C: the CPU module -- the CPU kernels (bindings in kernel_bindings.h), thread and
// ISA control, the benchmarks' GEMM roofline. Test-only code lives in fastrnn._testing
// (testing_module.cpp), which `import fastrnn` never loads.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <type_traits>

#include "bindings/dlpack.h"
#include "bindings/kernel_bindings.h"
#include "cpu/dispatch.h"
#include "cpu/thread_pool.h"

namespace fastrnn_bindings {
namespace {

inline constexpr const char* gemm_nt_params[] = {"a", "b", "c", "bf16"};
template <typename S>
void gemm_nt(py::object a, py::object b, py::object c, bool bf16) {
  const char* fn = "gemm_nt";
  if (!py::isinstance<py::array>(b) || py::reinterpret_borrow<py::array>(a).ndim() != 2 ||
      py::reinterpret_borrow<py::array>(b).ndim() != 2)
    throw py::value_error("gemm_nt: a and b must be 2-D numpy arrays");
  py::array A = py::reinterpret_borrow<py::array>(a), B = py::reinterpret_borrow<py::array>(b);
  const int64_t M = A.shape(0), K = A.shape(1), N = B.shape(0);
  const S* pa = numpy_arg<S>(fn, "a", a, {M, K}, false);
  const S* pb = numpy_arg<S>(fn, "b", b, {N, K}, false);
  S* pc = numpy_arg<S>(fn, "c", c, {M, N}, true);
  if (bf16 && !std::is_same_v<S, float>)
    throw py::type_error("gemm_nt: bf16=True rounds float32 operands; a is float64");
  py::gil_scoped_release release;
  fastrnn::gemm_nt(M, N, K, pa, pb, pc, bf16);
}

// Seconds per recurrent step (the kernel harness, benchmarks/bench_step.py): c (M, N) = a (M, K)
// w (N, K)^T, w prepared once as the loops prepare W_hh, its N = groups * units columns in
// `groups` gate blocks.
template <typename S>
double time_recurrent_step(const py::array& a, const py::array& w, const py::array& c, int groups,
                           int64_t reps, bool bf16) {
  const char* fn = "time_recurrent_step";
  if (a.ndim() != 2 || w.ndim() != 2)
    throw py::value_error("time_recurrent_step: a, w must be 2-D");
  const int64_t M = a.shape(0), K = a.shape(1), N = w.shape(0);
  if (groups < 1 || N % groups != 0)
    throw py::value_error("time_recurrent_step: w's rows must split into `groups` equal blocks");
  const S* pa = numpy_arg<S>(fn, "a", a, {M, K}, false);
  const S* pw = numpy_arg<S>(fn, "w", w, {N, K}, false);
  S* pc = numpy_arg<S>(fn, "c", c, {M, N}, true);
  if (bf16 && !std::is_same_v<S, float>)
    throw py::type_error("time_recurrent_step: bf16=True rounds float32 operands; a is float64");
  py::gil_scoped_release release;
  return fastrnn::time_recurrent_step(M, groups, N / groups, K, pa, pw, pc, reps, bf16);
}

}  // namespace
}  // namespace fastrnn_bindings

using namespace fastrnn_bindings;

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastrnn's C++ kernels. Use fastrnn.ops; these take preallocated outputs.";
  bind_kernels<NumpyArrays>(m);
  bind_kernel<NumpyArrays>(m, "gemm_nt", &gemm_nt<double>, &gemm_nt<float>, gemm_nt_params,
                           "c (M, N) = a (M, K) b (N, K)^T on the kernels' large-GEMM path; bf16: "
                           "with the kernels' bf16 products (float32 only)",
                           false);
  m.def(
      "time_recurrent_step",
      [](const py::array& a, const py::array& w, const py::array& c, int groups, int64_t reps,
         bool bf16) {
        return numpy_is_f64("time_recurrent_step", "a", a)
                   ? time_recurrent_step<double>(a, w, c, groups, reps, bf16)
                   : time_recurrent_step<float>(a, w, c, groups, reps, bf16);
      },
      py::kw_only(), py::arg("a"), py::arg("w"), py::arg("c"), py::arg("groups"), py::arg("reps"),
      py::arg("bf16") = false,
      "The kernel harness: seconds per recurrent step c = a w^T (w prepared once, as the time "
      "loops prepare W_hh).");
  m.def("set_num_threads", &fastrnn::set_num_threads, py::arg("n"),
        "Threads for every kernel; 0 restores the default (the cores this process may use).");
  m.def("get_num_threads", &fastrnn::get_num_threads);
  m.def("blas_info", &fastrnn::blas_info, "The BLAS under the large GEMMs and its configuration.");
  m.def("set_cpu_isa", &fastrnn::set_cpu_isa, py::arg("name"),
        "Selects generic, avx2 or avx512 kernels if this CPU has them; returns whether it did.");
  m.def("cpu_isa", &fastrnn::cpu_isa,
        "The instruction set the CPU kernels run: avx512, avx2 or generic.");
  m.def("supported_cpu_isas", &fastrnn::supported_cpu_isas,
        "The instruction sets set_cpu_isa accepts on this CPU, best last (changes nothing).");
  m.attr("DLPACK_CUDA") = static_cast<int>(kDLCUDA);  // DLPack's device type of CUDA memory
  // fastrnn's thread pool (ThreadPool::run), for the tests' hooks in fastrnn._testing: one
  // pool per process, this module's.
  m.attr("_thread_pool_run") =
      py::capsule(reinterpret_cast<void*>(&fastrnn::ThreadPool::run), "fastrnn.ThreadPool.run");
}
