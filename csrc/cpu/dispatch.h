// The CPU side's controls beyond the public API (fastrnn/fastrnn.h), defined in dispatch.cpp
// for the Python module (_C): the instruction set, for tests and benchmarks, the GEMM the
// benchmarks take as the kernels' roofline, and the packed step for the kernel harness.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fastrnn {

// C (M, N) = A (M, K) B^T with B (N, K), row-major: the large-GEMM path the kernels use
// (BLAS, rows split over the pool); with `bf16` (float only), the kernels' bf16 products
// (bf16-rounded operands, fp32 sums; the bf16 dot product where this CPU has it).
template <typename S>
void gemm_nt(int64_t M, int64_t N, int64_t K, const S* A, const S* B, S* C, bool bf16);

// The kernel harness (benchmarks/bench_step.py): seconds per step over `reps` runs of a time
// loop's recurrent GEMM, C (M, groups * units) = A (M, K) W^T with W (groups * units, K)
// prepared once as a forward prepares W_hh (groups = the cell's gates): packed, or for one
// row with W over 64 KiB read as it is by GEMVs; C as the last step left it. `bf16` as for
// gemm_nt.
template <typename S>
double time_recurrent_step(int64_t M, int groups, int64_t units, int64_t K, const S* A, const S* W,
                           S* C, int64_t reps, bool bf16);

// Selects the CPU kernels' instruction set ("generic", "avx2", "avx512") if this CPU has it;
// returns false (and changes nothing) otherwise.
bool set_cpu_isa(const char* name);

// The instruction sets set_cpu_isa accepts here, best last. A query: changes nothing.
std::vector<std::string> supported_cpu_isas();

}  // namespace fastrnn
