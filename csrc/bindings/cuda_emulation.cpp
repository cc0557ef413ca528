// fastrnn._testing.cuda_emulation: the device module of the CUDA backend over EmulatedDevice,
// so that its host code and its Python layer (fastrnn/cuda.py, through the private hook
// fastrnn.cuda._use_device_module) run in the tests without a GPU. Beside the module's usual
// functions (device_module.h), probes of the pieces a GPU would run: the cuBLAS argument
// mapping, launch shapes and the coverage of a launch.
#include <stdexcept>

#include "bindings/device_module.h"
#include "cuda/cuda_backend.h"
#include "cuda/emulated_device.h"

namespace fastrnn_bindings {

namespace {

using fastrnn::EmulatedDevice;
using Backend = fastrnn::CudaBackend<double, EmulatedDevice>;

// A flat buffer holding a row-major (rows, cols) matrix with leading dimension ld.
void check_matrix(const char* name, const py::array_t<double>& a, int64_t rows, int64_t cols,
                  int64_t ld) {
  if (ld < cols || (rows > 0 && cols > 0 && (rows - 1) * ld + cols > a.size()))
    throw py::value_error(std::string("gemm: ") + name + " holds " + std::to_string(a.size()) +
                          " elements, too few for (" + std::to_string(rows) + ", " +
                          std::to_string(cols) + ") with leading dimension " + std::to_string(ld));
}

// Row-major C (M, N) = alpha op(A) op(B) + beta C through CudaBackend::gemm: the mapping
// onto a column-major call, carried out by EmulatedDevice::gemm (the BLAS definition).
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
          const py::array_t<double>& A, int64_t lda, const py::array_t<double>& B, int64_t ldb,
          double beta, py::array_t<double>& C, int64_t ldc) {
  check_matrix("A", A, ta ? K : M, ta ? M : K, lda);
  check_matrix("B", B, tb ? N : K, tb ? K : N, ldb);
  check_matrix("C", C, M, N, ldc);
  Backend be(EmulatedDevice::get());
  be.gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.mutable_data(), ldc);
}

// The column-major call to_column_major makes of a row-major one; operands named "A"/"B".
py::dict column_major_args(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda,
                           int64_t ldb, int64_t ldc) {
  static const double a = 0, b = 0;
  static double c = 0;
  const auto g = fastrnn::to_column_major(ta, tb, M, N, K, 1.0, &a, lda, &b, ldb, 0.0, &c, ldc);
  py::dict d;
  d["trans_a"] = g.trans_a, d["trans_b"] = g.trans_b;
  d["m"] = g.m, d["n"] = g.n, d["k"] = g.k;
  d["A"] = g.A == &a ? "A" : "B", d["lda"] = g.lda;
  d["B"] = g.B == &a ? "A" : "B", d["ldb"] = g.ldb;
  d["ldc"] = g.ldc;
  return d;
}

// How often each (b, j) of an (M, N) pointwise launch is visited: all ones if the launch
// shape and the grid-stride loop cover every element exactly once.
struct CountVisits {
  uint8_t* counts;
  int64_t N;
  void operator()(int64_t b, int64_t j) const { ++counts[b * N + j]; }
};

py::array_t<uint8_t> pointwise_visits(int64_t M, int64_t N) {
  py::array_t<uint8_t> counts({M, N});
  std::fill(counts.mutable_data(), counts.mutable_data() + counts.size(), uint8_t(0));
  Backend be(EmulatedDevice::get());
  be.pointwise(M, N, CountVisits{counts.mutable_data(), N});
  return counts;
}

py::array_t<double> column_sums(const py::array_t<double, py::array::c_style>& A) {
  if (A.ndim() != 2) throw py::value_error("column_sums: A must be 2-D");
  py::array_t<double> out(A.shape(1));
  Backend be(EmulatedDevice::get());
  be.colsum(A.shape(0), A.shape(1), A.data(), A.shape(1), out.mutable_data());
  return out;
}

}  // namespace

void def_cuda_emulation(py::module_& m) {
  def_device_module<EmulatedDevice>(m);
  m.def("unusable_reason", [] { return std::string(); });
  m.def("device_count", [] { return 1; });
  m.def("gemm", &gemm, "(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), flat float64");
  m.def("column_major_args", &column_major_args, "(ta, tb, M, N, K, lda, ldb, ldc)");
  m.def("launch_dims", [](int64_t n) {
    const auto d = fastrnn::launch_dims(n);
    return py::make_tuple(d.grid, d.block);
  });
  m.def("pointwise_visits", &pointwise_visits, "(M, N) -> visits of each element");
  m.def("column_sums", &column_sums, "A (M, N) -> sums over M, as bias gradients are taken");
}

}  // namespace fastrnn_bindings
