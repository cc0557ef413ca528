// The CPU instantiation of every cell x pass x dtype. CMake compiles this file once per
// instruction set (FASTRNN_ISA = avx512 | avx2 | generic, with matching -m flags and vector
// width); dispatch.cpp picks one at load time.
#include "core/gru.h"
#include "core/lstm.h"
#include "core/rnn.h"
#include "cpu/cpu_backend.h"

FASTRNN_NS_BEGIN

#define FASTRNN_CPU_ENTRY(cell, pass, Args)        \
  template <typename S>                            \
  void cell##_##pass(const Args<S>& a) {           \
    CpuBackend<S> be;                              \
    cell##_##pass##_loop(be, a);                   \
  }                                                \
  template void cell##_##pass(const Args<float>&); \
  template void cell##_##pass(const Args<double>&);

FASTRNN_CPU_ENTRY(lstm, forward, LstmForwardArgs)
FASTRNN_CPU_ENTRY(lstm, backward, LstmBackwardArgs)
FASTRNN_CPU_ENTRY(gru, forward, GruForwardArgs)
FASTRNN_CPU_ENTRY(gru, backward, GruBackwardArgs)
FASTRNN_CPU_ENTRY(rnn, forward, RnnForwardArgs)
FASTRNN_CPU_ENTRY(rnn, backward, RnnBackwardArgs)

// C (M, N) = A (M, K) B^T, B (N, K): the large-GEMM path of the kernels (BLAS rows split over
// the pool), exposed so the benchmarks can measure the roofline they are judged against.
template <typename S>
void gemm_nt(int64_t M, int64_t N, int64_t K, const S* A, const S* B, S* C) {
  CpuBackend<S> be;
  be.gemm(false, true, M, N, K, S(1), A, K, B, K, S(0), C, N);
}
template void gemm_nt(int64_t, int64_t, int64_t, const float*, const float*, float*);
template void gemm_nt(int64_t, int64_t, int64_t, const double*, const double*, double*);

FASTRNN_NS_END
