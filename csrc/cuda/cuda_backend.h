// CudaBackend: what the time loops in core/ need from a device, on a GPU. Host code only:
// everything device-specific goes through `Device`, which is CudaDevice (cuda_device.h:
// cuBLAS, kernel launches on one stream) in the _cuda module, and EmulatedDevice
// (emulated_device.h: the same calls carried out on the CPU) in the tests.
//   gemm       row-major, mapped once onto cuBLAS's column-major GEMM (column_major.h)
//   pack       nothing to do: cuBLAS reads W as it is (the RecurrentWeight says whether the
//              GEMM takes W or W^T)
//   step       the recurrent GEMM, then one pointwise launch of the cell functor
//   pointwise  one launch of f(b, j) over (M, N) (kernels.h: Elementwise)
//   colsum     one launch, a thread per column, rows in order (deterministic)
//   alloc      device workspace, freed (stream-ordered) when the backend goes
// Nothing here waits for the device: a whole forward or backward is queued on the stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/loop_common.h"
#include "cuda/column_major.h"
#include "cuda/kernels.h"

FASTRNN_NS_BEGIN

template <typename S, typename Device>
class CudaBackend {
 public:
  using Packed = RecurrentWeight<S>;  // cuBLAS reads W as it is

  explicit CudaBackend(Device& dev) : dev_(dev) {}
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;
  ~CudaBackend() {
    for (void* p : buffers_) dev_.free(p);
  }

  // Row-major C (M, N) = alpha op(A) op(B) + beta C, op(A) (M, K), op(B) (K, N).
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, S alpha, const S* A,
            int64_t lda, const S* B, int64_t ldb, S beta, S* C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
      pointwise(M, N, ScaleRows<S>{C, ldc, beta});
      return;
    }
    dev_.gemm(to_column_major(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
  }

  Packed pack(const RecurrentWeight<S>& w, int64_t /*uses*/, int64_t /*rows*/) { return w; }

  // C[:M] = A (M, K) Bm + beta C, then f(b, j) for b < M_f, j < w.units.
  template <typename F>
  void step(const Packed& w, int64_t M, int64_t M_f, const S* A, int64_t lda, S* C, int64_t ldc,
            S beta, const F& f) {
    step(w, M, A, lda, C, ldc, beta);
    pointwise(M_f, w.units, f);
  }

  void step(const Packed& w, int64_t M, const S* A, int64_t lda, S* C, int64_t ldc, S beta) {
    gemm(false, w.transposed, M, w.N(), w.K, S(1), A, lda, w.W, w.ld(), beta, C, ldc);
  }

  template <typename F>
  void pointwise(int64_t M, int64_t N, const F& f) {
    if (M == 0 || N == 0) return;
    dev_.launch(launch_dims(M * N), Elementwise<F>{M, N, f});
  }

  void colsum(int64_t M, int64_t N, const S* A, int64_t lda, S* out) {
    if (N == 0) return;
    dev_.launch(launch_dims(N), ColumnSums<S>{M, N, A, lda, out});
  }

  void copy(int64_t n, const S* src, S* dst) {
    if (n) dev_.copy(dst, src, n * sizeof(S));
  }

  void fill_zero(int64_t n, S* dst) {
    if (n) dev_.fill_zero(dst, n * sizeof(S));
  }

  S* alloc(int64_t n) {
    buffers_.push_back(dev_.alloc((n > 0 ? n : 1) * sizeof(S)));
    return static_cast<S*>(buffers_.back());
  }

  // A host array copied into workspace (index arrays for the row-reordering kernels).
  template <typename T>
  const T* upload(const T* host, int64_t n) {
    buffers_.push_back(dev_.alloc((n > 0 ? n : 1) * sizeof(T)));
    if (n) dev_.to_device(buffers_.back(), host, n * sizeof(T));
    return static_cast<const T*>(buffers_.back());
  }

 private:
  Device& dev_;
  std::vector<void*> buffers_;
};

FASTRNN_NS_END
