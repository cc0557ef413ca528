// The one place where fastrnn's row-major GEMMs become cuBLAS's column-major ones.
//
// A row-major (R, C) matrix with leading dimension ld is, byte for byte, a column-major
// (C, R) matrix with the same ld: the transpose. So the row-major product
//     C (M, N) = alpha op(A) op(B) + beta C
// is the column-major product of the transposes, with the operands swapped:
//     C^T (N, M) = alpha op(B)^T op(A)^T + beta C^T
// i.e. cuBLAS's gemm(transa = op of B, transb = op of A, m = N, n = M, k = K, B, ldb, A, lda,
// C, ldc). Every pointer and leading dimension passes through unchanged. Host-only code:
// tests/test_cuda.py runs these arguments through a column-major GEMM written from the
// BLAS definition and compares with NumPy.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/ns.h"

FASTRNN_NS_BEGIN

// A column-major GEMM as cuBLAS (and the reference BLAS) define it:
//   C (m, n) = alpha op(A) op(B) + beta C, op(A) (m, k), op(B) (k, n),
//   X(i, j) at X[i + j * ldx]; beta == 0 ignores C's previous contents (NaN included).
// A and B hold `In`: S itself, or uint16_t for bf16 operands (their bits) with S = float
// sums (bf16 products).
template <typename S, typename In = S>
struct ColumnMajorGemm {
  bool trans_a, trans_b;
  int64_t m, n, k;
  S alpha;
  const In* A;
  int64_t lda;
  const In* B;
  int64_t ldb;
  S beta;
  S* C;
  int64_t ldc;
};

// Row-major C (M, N) = alpha op(A) op(B) + beta C, as the time loops call it.
template <typename S, typename In>
ColumnMajorGemm<S, In> to_column_major(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                       S alpha, const In* A, int64_t lda, const In* B, int64_t ldb,
                                       S beta, S* C, int64_t ldc) {
  return ColumnMajorGemm<S, In>{trans_b, trans_a, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc};
}

// cuBLAS's classic API takes int: checked, never truncated.
inline int to_cublas_int(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    throw std::length_error(std::string("cuBLAS GEMM argument ") + what + " = " +
                            std::to_string(v) + " does not fit in int");
  return static_cast<int>(v);
}

FASTRNN_NS_END
