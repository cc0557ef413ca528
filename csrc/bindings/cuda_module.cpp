// fastrnn._cuda: the CUDA backend's module, built when CMake finds a CUDA compiler. It
// imports without a GPU, a driver or cuBLAS; unusable_reason() says which is missing.
#include "bindings/device_module.h"
#include "cuda/cuda_device.h"

PYBIND11_MODULE(_cuda, m) {
  using namespace fastrnn_bindings;
  m.doc() = "fastrnn's CUDA kernels. Use fastrnn.ops with backend='cuda'.";
  def_device_module<fastrnn::CudaDevice>(m);
  m.def("unusable_reason", &fastrnn::cuda_unusable_reason,
        "'' if a GPU can run fastrnn here, else why not (no driver, no device).");
  m.def("device_count", &fastrnn::cuda_device_count);
  m.def("load_cublas", &fastrnn::load_cublas, py::arg("candidates"),
        "Loads cuBLAS from the first loadable path or soname; returns it.");
  m.attr("cuda_version") = CUDART_VERSION;
  m.attr("build_info") = FASTRNN_CUDA_BUILD;  // compiler and architectures, from CMake
}
