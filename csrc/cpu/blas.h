// The BLAS underneath the large GEMMs. The default is scipy-openblas32, the OpenBLAS build
// NumPy and SciPy ship, whose symbols carry a `scipy_` prefix; FASTRNN_BLAS_PREFIX names
// the prefix (empty for a plain CBLAS). Its integers are 32-bit: the Python layer rejects
// shapes whose GEMM dimensions would not fit, and this checks again.
#pragma once

#include <cblas.h>

#include <climits>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>

#include "core/ns.h"
#include "cpu/blas_name.h"

FASTRNN_NS_BEGIN

inline blasint blas_int(int64_t v) {
  if (v > INT_MAX)
    throw std::overflow_error("fastrnn: a GEMM dimension exceeds the BLAS's 32-bit range");
  return static_cast<blasint>(v);
}

// Checks every size of a BLAS call up front, so that a work split never starts for a call
// whose parts would throw (slices of a valid call are valid).
inline void check_blas_ints(std::initializer_list<int64_t> sizes) {
  for (int64_t v : sizes) blas_int(v);
}

inline void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) {
  FASTRNN_BLAS(cblas_sgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                            tb ? CblasTrans : CblasNoTrans, blas_int(M), blas_int(N), blas_int(K),
                            alpha, A, blas_int(lda), B, blas_int(ldb), beta, C, blas_int(ldc));
}

inline void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                      const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                      double* C, int64_t ldc) {
  FASTRNN_BLAS(cblas_dgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                            tb ? CblasTrans : CblasNoTrans, blas_int(M), blas_int(N), blas_int(K),
                            alpha, A, blas_int(lda), B, blas_int(ldb), beta, C, blas_int(ldc));
}

// y (N) = beta y + op(W) x for one row x (K): W stored (N, K) with row stride ldw when
// w_is_nk (y = W x), else (K, N) (y = W^T x).
inline void blas_gemv(bool w_is_nk, int64_t K, int64_t N, const float* W, int64_t ldw,
                      const float* x, float beta, float* y) {
  if (w_is_nk)
    FASTRNN_BLAS(cblas_sgemv)(CblasRowMajor, CblasNoTrans, blas_int(N), blas_int(K), 1.0f, W,
                              blas_int(ldw), x, 1, beta, y, 1);
  else
    FASTRNN_BLAS(cblas_sgemv)(CblasRowMajor, CblasTrans, blas_int(K), blas_int(N), 1.0f, W,
                              blas_int(ldw), x, 1, beta, y, 1);
}

inline void blas_gemv(bool w_is_nk, int64_t K, int64_t N, const double* W, int64_t ldw,
                      const double* x, double beta, double* y) {
  if (w_is_nk)
    FASTRNN_BLAS(cblas_dgemv)(CblasRowMajor, CblasNoTrans, blas_int(N), blas_int(K), 1.0, W,
                              blas_int(ldw), x, 1, beta, y, 1);
  else
    FASTRNN_BLAS(cblas_dgemv)(CblasRowMajor, CblasTrans, blas_int(K), blas_int(N), 1.0, W,
                              blas_int(ldw), x, 1, beta, y, 1);
}

FASTRNN_NS_END
