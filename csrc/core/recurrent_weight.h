// The right operand of a recurrent GEMM, C (M, N) = A (M, K) Bm, described by how Bm is read
// from a stored, dense, row-major weight matrix W -- what a time loop hands its backend's
// `pack`, and what `step` multiplies by:
//   times_transposed(W, groups, units, K)  Bm = W^T, W (groups * units, K): the forward's
//                                          h W_hh^T, its columns grouped by gate (groups = G)
//   times(W, K, N)                         Bm = W, W (K, N): the backward's dgates W_hh
// A step's pointwise pass covers `units` columns (the hidden units, one per group each).
#pragma once

#include <cstdint>

#include "core/ns.h"

FASTRNN_NS_BEGIN

template <typename S>
struct RecurrentWeight {
  const S* W = nullptr;
  bool transposed = false;  // Bm = W^T with W (N, K); else Bm = W with W (K, N)
  int groups = 1;           // the N columns, in groups of `units` (the gates)
  int64_t units = 0;
  int64_t K = 0;

  int64_t N() const { return groups * units; }
  int64_t ld() const { return transposed ? K : N(); }  // W's row stride
  // Bm(k, n) = W[n * stride_n() + k * stride_k()].
  int64_t stride_n() const { return transposed ? K : 1; }
  int64_t stride_k() const { return transposed ? 1 : N(); }
};

// C = A W^T, W (groups * units, K): output column g * units + u is unit u of gate g.
template <typename S>
RecurrentWeight<S> times_transposed(const S* W, int groups, int64_t units, int64_t K) {
  return RecurrentWeight<S>{W, true, groups, units, K};
}

// C = A W, W (K, N).
template <typename S>
RecurrentWeight<S> times(const S* W, int64_t K, int64_t N) {
  return RecurrentWeight<S>{W, false, 1, N, K};
}

FASTRNN_NS_END
