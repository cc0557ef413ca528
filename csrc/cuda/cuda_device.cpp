// CudaDevice and the run-time loading of cuBLAS. Host code over the CUDA runtime API.
#include "cuda/cuda_device.h"

#include <cublas_v2.h>
#include <dlfcn.h>

#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

FASTRNN_NS_BEGIN

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " +
                             cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}

std::string cuda_unusable_reason() {
  int n = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  if (status == cudaSuccess && n > 0) return "";
  if (status == cudaSuccess || status == cudaErrorNoDevice) return "no CUDA device";
  const std::string why = std::string(" (") + cudaGetErrorString(status) + ")";
  if (status == cudaErrorInsufficientDriver) return "no CUDA driver" + why;
  return "CUDA unavailable" + why;
}

int cuda_device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

// ---------------------------------------------------------------------------- cuBLAS

namespace {

// cublasGemmEx is overloaded in C++ (a wrapper taking the old cudaDataType compute type): the
// exported one, by its type; the header must declare it so (checked unevaluated: no link).
using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                  int, const void*, const void*, cudaDataType, int, const void*,
                                  cudaDataType, int, const void*, void*, cudaDataType, int,
                                  cublasComputeType_t, cublasGemmAlgo_t);
static_assert(sizeof(static_cast<GemmEx>(&cublasGemmEx)) > 0, "cublasGemmEx's declaration");

// The cuBLAS functions fastrnn calls, typed by the declarations in cublas_v2.h, so that a
// mismatch with the header the module was built against fails to compile.
struct Cublas {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  decltype(&cublasDgemm_v2) dgemm = nullptr;
  GemmEx gemm_ex = nullptr;
  std::string path;
};

std::mutex cublas_mutex;
Cublas* cublas_lib = nullptr;

template <typename F>
void symbol(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (!f) throw std::runtime_error(std::string("cuBLAS has no symbol ") + name);
}

const Cublas& cublas() {
  std::lock_guard<std::mutex> lock(cublas_mutex);
  if (!cublas_lib)
    throw std::runtime_error(
        "cuBLAS is not loaded (fastrnn loads it on first use; install it with "
        "pip install nvidia-cublas==" +
        std::to_string(CUBLAS_VER_MAJOR) + ".*)");
  return *cublas_lib;
}

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS error in ") + what + ": status " +
                             std::to_string(static_cast<int>(status)));
}

}  // namespace

std::string load_cublas(const std::vector<std::string>& candidates) {
  std::lock_guard<std::mutex> lock(cublas_mutex);
  if (cublas_lib) return cublas_lib->path;
  std::string errors;
  for (const std::string& c : candidates) {
    void* lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      errors += "\n  " + c + ": " + dlerror();
      continue;
    }
    auto l = std::make_unique<Cublas>();
    symbol(lib, "cublasCreate_v2", l->create);
    symbol(lib, "cublasSetStream_v2", l->set_stream);
    symbol(lib, "cublasSetMathMode", l->set_math_mode);
    symbol(lib, "cublasSgemm_v2", l->sgemm);
    symbol(lib, "cublasDgemm_v2", l->dgemm);
    symbol(lib, "cublasGemmEx", l->gemm_ex);
    l->path = c;
    cublas_lib = l.release();  // lives as long as the process, as the library does
    return c;
  }
  throw std::runtime_error("could not load cuBLAS " + std::to_string(CUBLAS_VER_MAJOR) +
                           ".x; tried:" + errors);
}

// ---------------------------------------------------------------------------- CudaDevice

// Never throws (it runs in destructors' frees): a failure to switch shows in the CUDA call
// that follows, which is checked.
DeviceScope::DeviceScope(int device) : device_(device) {
  if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
  if (previous_ != device) cudaSetDevice(device);
}

DeviceScope::~DeviceScope() {
  if (previous_ >= 0 && previous_ != device_) cudaSetDevice(previous_);
}

CudaDevice::CudaDevice(int device) : device_(device), stream_(cudaStreamLegacy) {
  const Cublas& lib = cublas();
  DeviceScope scope(device);
  cublasHandle_t handle = nullptr;
  check_cublas(lib.create(&handle), "cublasCreate");
  check_cublas(lib.set_stream(handle, stream_), "cublasSetStream");
  // Full-precision FP32 (no TF32 tensor-op shortcuts): results comparable with the CPU.
  check_cublas(lib.set_math_mode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  cublas_ = handle;
}

CudaDevice& CudaDevice::get(int device) {
  static std::mutex mutex;
  static std::map<int, std::unique_ptr<CudaDevice>> devices;  // never destroyed: handles
  std::lock_guard<std::mutex> lock(mutex);                    // outlive the interpreter
  auto& d = devices[device];
  if (!d) d.reset(new CudaDevice(device));
  return *d;
}

CudaDevice& CudaDevice::current() {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  return get(device);
}

CudaDevice& CudaDevice::of_pointer(const void* p) {
  cudaPointerAttributes attr{};
  check_cuda(cudaPointerGetAttributes(&attr, p), "cudaPointerGetAttributes");
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    throw std::invalid_argument("a device array's pointer is not CUDA device memory");
  return get(attr.device);
}

void* CudaDevice::alloc(size_t bytes) {
  DeviceScope scope(device_);
  void* p = nullptr;
  const cudaError_t status = cudaMallocAsync(&p, bytes ? bytes : 1, stream_);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear it
    throw std::bad_alloc();
  }
  check_cuda(status, "cudaMallocAsync");
  return p;
}

void CudaDevice::free(void* p) {
  DeviceScope scope(device_);
  cudaFreeAsync(p, stream_);
}

void CudaDevice::copy(void* dst, const void* src, size_t bytes) {
  DeviceScope scope(device_);
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), "copy");
}

void CudaDevice::to_device(void* dst, const void* host, size_t bytes) {
  DeviceScope scope(device_);
  // From pageable host memory the copy has taken the data when this returns.
  check_cuda(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_), "to_device");
}

void CudaDevice::to_host(void* host, const void* src, size_t bytes) {
  DeviceScope scope(device_);
  check_cuda(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream_), "to_host");
  synchronize();
}

void CudaDevice::fill_zero(void* dst, size_t bytes) {
  DeviceScope scope(device_);
  check_cuda(cudaMemsetAsync(dst, 0, bytes, stream_), "fill_zero");
}

void CudaDevice::synchronize() {
  DeviceScope scope(device_);
  check_cuda(cudaStreamSynchronize(stream_), "synchronize");
}

namespace {

// Makes `waiter` wait for the work queued so far on `producer`.
void order_streams(cudaStream_t producer, cudaStream_t waiter) {
  if (producer == waiter) return;
  cudaEvent_t event = nullptr;
  check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate");
  check_cuda(cudaEventRecord(event, producer), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(waiter, event, 0), "cudaStreamWaitEvent");
  check_cuda(cudaEventDestroy(event), "cudaEventDestroy");  // released once the wait is done
}

}  // namespace

void CudaDevice::wait_for(intptr_t producer_stream) {
  DeviceScope scope(device_);
  order_streams(reinterpret_cast<cudaStream_t>(producer_stream), stream_);
}

void CudaDevice::make_wait(intptr_t consumer_stream) {
  DeviceScope scope(device_);
  order_streams(stream_, reinterpret_cast<cudaStream_t>(consumer_stream));
}

namespace {

// cublas{S,D}gemm with a ColumnMajorGemm's arguments, every size checked to fit in int.
template <typename S, typename Gemm>
void cublas_gemm(Gemm gemm, void* handle, const ColumnMajorGemm<S>& g, const char* name) {
  check_cublas(
      gemm(static_cast<cublasHandle_t>(handle), g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
           g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, to_cublas_int(g.m, "m"), to_cublas_int(g.n, "n"),
           to_cublas_int(g.k, "k"), &g.alpha, g.A, to_cublas_int(g.lda, "lda"), g.B,
           to_cublas_int(g.ldb, "ldb"), &g.beta, g.C, to_cublas_int(g.ldc, "ldc")),
      name);
}

}  // namespace

void CudaDevice::gemm(const ColumnMajorGemm<float>& g) {
  DeviceScope scope(device_);
  cublas_gemm(cublas().sgemm, cublas_, g, "cublasSgemm");
}

void CudaDevice::gemm(const ColumnMajorGemm<double>& g) {
  DeviceScope scope(device_);
  cublas_gemm(cublas().dgemm, cublas_, g, "cublasDgemm");
}

void CudaDevice::gemm(const ColumnMajorGemm<float, uint16_t>& g) {
  DeviceScope scope(device_);
  check_cublas(
      cublas().gemm_ex(static_cast<cublasHandle_t>(cublas_), g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                       g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, to_cublas_int(g.m, "m"),
                       to_cublas_int(g.n, "n"), to_cublas_int(g.k, "k"), &g.alpha, g.A, CUDA_R_16BF,
                       to_cublas_int(g.lda, "lda"), g.B, CUDA_R_16BF, to_cublas_int(g.ldb, "ldb"),
                       &g.beta, g.C, CUDA_R_32F, to_cublas_int(g.ldc, "ldc"), CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx");
}

FASTRNN_NS_END
