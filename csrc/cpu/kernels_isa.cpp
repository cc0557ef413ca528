// The CPU instantiation of every kernel x dtype (FASTRNN_FOR_EACH_KERNEL). CMake compiles this
// file once per instruction set (FASTRNN_ISA = avx512 | avx2 | generic, with matching -m flags
// and vector width); dispatch.cpp picks one at load time.
#include <chrono>

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
    be.bf16 = a.bf16;                     \
    name##_loop(be, a);                   \
  }                                       \
  template void name(const Args<float>&); \
  template void name(const Args<double>&);
FASTRNN_FOR_EACH_KERNEL(FASTRNN_CPU_KERNEL)
#undef FASTRNN_CPU_KERNEL

// C (M, N) = A (M, K) B^T, B (N, K): the large-GEMM path of the kernels (BLAS rows split over
// the pool), exposed so the benchmarks can measure the roofline they are judged against.
template <typename S>
void gemm_nt(int64_t M, int64_t N, int64_t K, const S* A, const S* B, S* C, bool bf16) {
  CpuBackend<S> be;
  be.bf16 = bf16;
  be.gemm(false, true, M, N, K, S(1), A, K, B, K, S(0), C, N);
}
template void gemm_nt(int64_t, int64_t, int64_t, const float*, const float*, float*, bool);
template void gemm_nt(int64_t, int64_t, int64_t, const double*, const double*, double*, bool);

// The recurrent GEMM of a forward step, alone (see dispatch.h): W prepared once as the loops
// prepare it (CpuBackend::pack), then `reps` steps with nothing fused.
template <typename S>
double time_recurrent_step(int64_t M, int groups, int64_t units, int64_t K, const S* A, const S* W,
                           S* C, int64_t reps, bool bf16) {
  CpuBackend<S> be;
  be.bf16 = bf16;
  const auto w = be.pack(times_transposed(W, groups, units, K), 2, M);
  be.step(w, M, A, K, C, groups * units, S(0));  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < reps; ++r) be.step(w, M, A, K, C, groups * units, S(0));
  const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
  return dt.count() / static_cast<double>(std::max<int64_t>(reps, 1));
}
template double time_recurrent_step(int64_t, int, int64_t, int64_t, const float*, const float*,
                                    float*, int64_t, bool);
template double time_recurrent_step(int64_t, int, int64_t, int64_t, const double*, const double*,
                                    double*, int64_t, bool);

FASTRNN_NS_END
