// The CPU instantiation of every kernel x dtype (FASTRNN_FOR_EACH_KERNEL). CMake compiles this
// file once per instruction set (FASTRNN_ISA = avx512 | avx2 | generic, with matching -m flags
// and vector width); dispatch.cpp picks one at load time.
#include "core/gru.h"
#include "core/lstm.h"
#include "core/rnn.h"
#include "cpu/cpu_backend.h"
#include "fastrnn/fastrnn.h"

FASTRNN_NS_BEGIN

#define FASTRNN_CPU_KERNEL(name, Args)    \
  template <typename S>                   \
  void name(const Args<S>& a) {           \
    CpuBackend<S> be;                     \
    name##_loop(be, a);                   \
  }                                       \
  template void name(const Args<float>&); \
  template void name(const Args<double>&);
FASTRNN_FOR_EACH_KERNEL(FASTRNN_CPU_KERNEL)
#undef FASTRNN_CPU_KERNEL

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
