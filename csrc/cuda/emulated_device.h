// EmulatedDevice: the Device interface of cuda_backend.h carried out on the CPU, so that the
// CUDA backend's host code -- the GEMM mapping, launch shapes, kernel bodies, workspace and
// copies -- runs in the tests on machines without a GPU. "Device memory" is host memory;
// a launch runs the kernel body for every block and thread in turn; a GEMM is computed from
// the column-major BLAS definition, the way cuBLAS reads its arguments. Slow by design:
// for checking, not for use.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "bindings/dlpack.h"
#include "cuda/column_major.h"
#include "cuda/kernels.h"

FASTRNN_NS_BEGIN

class EmulatedDevice {
 public:
  // Its memory is host memory: DLPack consumers (NumPy) read it as CPU memory.
  static constexpr int32_t kDlpackDeviceType = fastrnn_bindings::kDLCPU;

  // One device, 0, whatever the pointer or the current device.
  static EmulatedDevice& get(int = 0) {
    static EmulatedDevice dev;
    return dev;
  }
  static EmulatedDevice& current() { return get(); }
  static EmulatedDevice& of_pointer(const void*) { return get(); }
  int id() const { return 0; }

  void* alloc(size_t bytes) {
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void free(void* p) { std::free(p); }
  void copy(void* dst, const void* src, size_t bytes) { std::memmove(dst, src, bytes); }
  void to_device(void* dst, const void* host, size_t bytes) { std::memcpy(dst, host, bytes); }
  void to_host(void* host, const void* src, size_t bytes) { std::memcpy(host, src, bytes); }
  void fill_zero(void* dst, size_t bytes) { std::memset(dst, 0, bytes); }
  void synchronize() {}
  void wait_for(intptr_t /*producer_stream*/) {}  // one host thread: always in order
  void make_wait(intptr_t /*consumer_stream*/) {}

  template <typename S, typename In>
  void gemm(const ColumnMajorGemm<S, In>& g) {
    to_cublas_int(g.m, "m"), to_cublas_int(g.n, "n"), to_cublas_int(g.k, "k");
    for (int64_t j = 0; j < g.n; ++j)
      for (int64_t i = 0; i < g.m; ++i) {
        S acc = S(0);
        for (int64_t p = 0; p < g.k; ++p) {
          const S a = value(g.trans_a ? g.A[p + i * g.lda] : g.A[i + p * g.lda]);
          const S b = value(g.trans_b ? g.B[j + p * g.ldb] : g.B[p + j * g.ldb]);
          acc += a * b;
        }
        S& c = g.C[i + j * g.ldc];
        c = g.beta == S(0) ? g.alpha * acc : g.alpha * acc + g.beta * c;
      }
  }

  template <typename K>
  void launch(LaunchDims d, const K& kernel) {
    for (int64_t b = 0; b < d.grid; ++b)
      for (int64_t t = 0; t < d.block; ++t) kernel(ThreadIndex{b, t, d.grid, d.block});
  }

 private:
  template <typename S>
  static S value(S x) {
    return x;
  }
  static float value(uint16_t bf16) { return bf16_value(bf16); }  // a bf16 operand, exactly
};

FASTRNN_NS_END
