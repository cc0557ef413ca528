// CudaBackend: what the time loops in core/ need from a device, on a GPU. Host code only:
// everything device-specific goes through `Device`, which is CudaDevice (cuda_device.h:
// cuBLAS, kernel launches on one stream) in the _cuda module, and EmulatedDevice
// (emulated_device.h: the same calls carried out on the CPU) in the tests.
//   gemm       row-major, mapped once onto cuBLAS's column-major GEMM (column_major.h)
//   pack       nothing to do: cuBLAS reads W as it is (the RecurrentWeight says whether the
//              GEMM takes W or W^T)
//   step       the recurrent GEMM, then one pointwise launch of the cell functor
//   pointwise  one launch of f(b, j) over (M, N) (kernels.h: Elementwise)
//   rows       one launch, a thread per row (layer norm's row statistics)
//   colsum     one launch, a thread per column, rows in order (deterministic)
//   alloc      device workspace, freed (stream-ordered) when the backend goes
// Nothing here waits for the device: a whole forward or backward is queued on the stream.
//
// With `bf16` set (float only), every product takes bf16-rounded operands and sums in fp32,
// as the CPU backend's bf16 mode: each operand is converted to bf16 (ToBf16, the one rounding
// rule of core/bf16.h) and cuBLAS multiplies them with fp32 compute (cublasGemmEx); a weight
// is converted once, by pack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "core/loop_common.h"
#include "cuda/column_major.h"
#include "cuda/kernels.h"

FASTRNN_NS_BEGIN

// A recurrent weight as the backend's step reads it: W as it is (cuBLAS reads it in place),
// and with bf16 products its bf16 copy (dense, W's layout).
template <typename S>
struct DeviceWeight : RecurrentWeight<S> {
  const uint16_t* W16 = nullptr;
};

template <typename S, typename Device>
class CudaBackend {
 public:
  using Packed = DeviceWeight<S>;
  bool bf16 = false;  // products on bf16-rounded operands (see above); float only

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
    if (bf16) {  // both operands as stored (op() is cuBLAS's), rounded into dense copies
      const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
      const uint16_t* A16 = to_bf16(0, trans_a ? K : M, a_cols, A, lda);
      const uint16_t* B16 = to_bf16(1, trans_b ? N : K, b_cols, B, ldb);
      gemm_bf16(trans_a, trans_b, M, N, K, alpha, A16, a_cols, B16, b_cols, beta, C, ldc);
      return;
    }
    dev_.gemm(to_column_major(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
  }

  Packed pack(const RecurrentWeight<S>& w, int64_t /*uses*/, int64_t /*rows*/) {
    Packed p;
    static_cast<RecurrentWeight<S>&>(p) = w;
    if (bf16 && w.K > 0 && w.N() > 0) {  // W rounded once: (N, K) or (K, N), dense
      const int64_t rows = w.transposed ? w.N() : w.K, cols = w.ld();
      uint16_t* W16 = static_cast<uint16_t*>(alloc_bytes(rows * cols * sizeof(uint16_t)));
      convert(rows, cols, w.W, w.ld(), W16);
      p.W16 = W16;
    }
    return p;
  }

  // C[:M] = A (M, K) Bm + beta C, then f(b, j) for b < M_f, j < w.units.
  template <typename F>
  void step(const Packed& w, int64_t M, int64_t M_f, const S* A, int64_t lda, S* C, int64_t ldc,
            S beta, const F& f) {
    step(w, M, A, lda, C, ldc, beta);
    pointwise(M_f, w.units, f);
  }

  void step(const Packed& w, int64_t M, const S* A, int64_t lda, S* C, int64_t ldc, S beta) {
    if (w.W16 && M > 0) {  // the step's rows of A rounded; W was rounded by pack
      const uint16_t* A16 = to_bf16(0, M, w.K, A, lda);
      gemm_bf16(false, w.transposed, M, w.N(), w.K, S(1), A16, w.K, w.W16, w.ld(), beta, C, ldc);
      return;
    }
    gemm(false, w.transposed, M, w.N(), w.K, S(1), A, lda, w.W, w.ld(), beta, C, ldc);
  }

  template <typename F>
  void pointwise(int64_t M, int64_t N, const F& f) {
    if (M == 0 || N == 0) return;
    dev_.launch(launch_dims(M * N), Elementwise<F>{M, N, f});
  }

  // f(b) for b < M, one thread a row (layer norm's row statistics; simple, not yet fast).
  template <typename F>
  void rows(int64_t M, int64_t /*width*/, const F& f) {
    if (M == 0) return;
    dev_.launch(launch_dims(M), EachRow<F>{M, f});
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

  S* alloc(int64_t n) { return static_cast<S*>(alloc_bytes(n * sizeof(S))); }

  // A host array copied into workspace (index arrays for the row-reordering kernels).
  template <typename T>
  const T* upload(const T* host, int64_t n) {
    buffers_.push_back(dev_.alloc((n > 0 ? n : 1) * sizeof(T)));
    if (n) dev_.to_device(buffers_.back(), host, n * sizeof(T));
    return static_cast<const T*>(buffers_.back());
  }

 private:
  void* alloc_bytes(int64_t bytes) {
    buffers_.push_back(dev_.alloc(bytes > 0 ? static_cast<size_t>(bytes) : 1));
    return buffers_.back();
  }

  // src (rows, cols), row stride ld, rounded to bf16 into dst (rows, cols) dense.
  void convert(int64_t rows, int64_t cols, const S* src, int64_t ld, uint16_t* dst) {
    if constexpr (std::is_same_v<S, float>) {
      if (rows * cols > 0) dev_.launch(launch_dims(rows * cols), ToBf16{rows, cols, src, ld, dst});
    } else {
      throw std::logic_error("bf16 products take float operands");
    }
  }

  // As convert, into scratch slot `slot` (0: A, 1: B), grown as needed. Reused by the next
  // call: the stream orders the conversion after the previous product that read it.
  const uint16_t* to_bf16(int slot, int64_t rows, int64_t cols, const S* src, int64_t ld) {
    const int64_t n = rows * cols;
    if (n > scratch_size_[slot]) {
      scratch_[slot] = static_cast<uint16_t*>(alloc_bytes(n * sizeof(uint16_t)));
      scratch_size_[slot] = n;
    }
    convert(rows, cols, src, ld, scratch_[slot]);
    return scratch_[slot];
  }

  void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, S alpha,
                 const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, S beta, S* C,
                 int64_t ldc) {
    if constexpr (std::is_same_v<S, float>) {
      dev_.gemm(to_column_major(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
    } else {
      throw std::logic_error("bf16 products take float operands");
    }
  }

  Device& dev_;
  std::vector<void*> buffers_;
  uint16_t* scratch_[2] = {nullptr, nullptr};
  int64_t scratch_size_[2] = {0, 0};
};

FASTRNN_NS_END
