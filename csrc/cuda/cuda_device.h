// CudaDevice: the Device interface of cuda_backend.h on a GPU -- the only code that talks to
// the CUDA runtime and cuBLAS. One instance per device, each with its cuBLAS handle bound to
// the stream every fastrnn call runs on: the legacy default stream, which orders our work
// after whatever the caller queued on it (CuPy's and PyTorch's default streams) without a
// host synchronization. Memory is stream-ordered (cudaMallocAsync / cudaFreeAsync).
//
// cuBLAS is loaded at run time (dlopen, load_cublas) rather than linked, so that the module
// imports, and reports why CUDA is not usable, on machines without cuBLAS, a driver or a GPU.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/dlpack.h"
#include "cuda/column_major.h"
#include "cuda/kernels.h"

FASTRNN_NS_BEGIN

// Throws std::runtime_error naming `what` if `status` is not cudaSuccess.
void check_cuda(cudaError_t status, const char* what);

// Whether a GPU can run fastrnn here: "" if so, else the reason ("no CUDA driver ...",
// "no CUDA device ...").
std::string cuda_unusable_reason();
int cuda_device_count();  // 0 when unusable

// Loads cuBLAS from the first of `candidates` (paths or sonames) that dlopen accepts; returns
// the one loaded. Throws std::runtime_error listing every failure. Idempotent.
std::string load_cublas(const std::vector<std::string>& candidates);

// Makes `device` current for its lifetime, then restores the caller's: CUDA keeps one
// current device per host thread, and fastrnn never leaves it changed.
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int device_, previous_ = -1;
};

// Every member that queues work makes its device current for the call (DeviceScope): the
// legacy default stream and the cuBLAS handle belong to one device.
class CudaDevice {
 public:
  static constexpr int32_t kDlpackDeviceType = fastrnn_bindings::kDLCUDA;

  static CudaDevice& get(int device);            // device ordinal
  static CudaDevice& current();                  // cudaGetDevice()
  static CudaDevice& of_pointer(const void* p);  // the device that holds p
  int id() const { return device_; }

  void* alloc(size_t bytes);
  void free(void* p);
  void copy(void* dst, const void* src, size_t bytes);
  void to_device(void* dst, const void* host, size_t bytes);  // returns once host may change
  void to_host(void* host, const void* src, size_t bytes);    // waits for the stream
  void fill_zero(void* dst, size_t bytes);
  void synchronize();
  // Stream handles as __cuda_array_interface__ and DLPack pass them (1: legacy default,
  // 2: per-thread default, else a cudaStream_t).
  // Orders our stream after the work queued so far on a producer's stream.
  void wait_for(intptr_t producer_stream);
  // Orders a consumer's stream after the work queued so far on ours.
  void make_wait(intptr_t consumer_stream);

  void gemm(const ColumnMajorGemm<float>& g);
  void gemm(const ColumnMajorGemm<double>& g);
  // bf16 operands (their bits), fp32 compute and C: cublasGemmEx.
  void gemm(const ColumnMajorGemm<float, uint16_t>& g);

  // Runs kernel(ThreadIndex) over a 1-D grid; defined in cuda_launch.cuh (nvcc only).
  template <typename K>
  void launch(LaunchDims d, const K& kernel);

 private:
  explicit CudaDevice(int device);
  int device_;
  cudaStream_t stream_ = nullptr;  // legacy default stream
  void* cublas_ = nullptr;         // cublasHandle_t
};

FASTRNN_NS_END
