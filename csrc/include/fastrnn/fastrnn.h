// fastrnn: fused LSTM, GRU and Elman RNN kernels, forward and backpropagation through time.
//
// Conventions, stated once for every header of the library:
//   Shapes   T steps, B batch, I input size, H hidden size, G gates per cell
//            (LSTM 4, GRU 3, RNN 1). Every array is dense and row-major (rightmost index
//            fastest): x (T, B, I), y (T, B, H), states (B, H), w_ih (G*H, I),
//            w_hh (G*H, H), biases (G*H).
//   Gates    stacked along the G*H axis in the order cuDNN and PyTorch use:
//            LSTM (i, f, g, o), GRU (r, z, n), RNN (one gate).
//   Null     only the biases may be null (a layer without bias); their gradients are then
//            not written. Initial states are always given (the Python layer passes zeros).
//   Aliasing no argument aliases another, except where a struct field says so.
//   Saved    a training forward fills the `saved` buffers that the matching backward reads;
//            backward overwrites them in place with gate gradients (one backward per forward).
//   Threads  kernels run on fastrnn's own pool (set_num_threads); the BLAS is kept
//            single-threaded underneath, so the two pools never compete.
#pragma once

#include <cstdint>

#include "fastrnn/gru.h"
#include "fastrnn/lstm.h"
#include "fastrnn/rnn.h"

namespace fastrnn {

// C (M, N) = A (M, K) B^T with B (N, K), row-major: the large-GEMM path the kernels use
// (BLAS, rows split over the pool). For benchmarks: the roofline the kernels are judged by.
template <typename S>
void gemm_nt(int64_t M, int64_t N, int64_t K, const S* A, const S* B, S* C);

// Threads used by every kernel (default: the number of cores the process may use).
void set_num_threads(int n);
int get_num_threads();

// The instruction set the CPU kernels dispatched to at load time: "avx512", "avx2", "generic".
const char* cpu_isa();

// Selects the CPU kernels' instruction set ("generic", "avx2", "avx512") if this CPU has it;
// returns false (and changes nothing) otherwise. For tests and benchmarks.
bool set_cpu_isa(const char* name);

// The BLAS under the large GEMMs: its name, version and build configuration.
const char* blas_info();

}  // namespace fastrnn
