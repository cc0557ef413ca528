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

// Every kernel entry point, one row each: X(name, Args) declares
//   template <typename S> void name(const Args<S>& a);   (S = float or double)
// The one list of them: the declarations below, the CPU builds and their dispatch
// (cpu/kernels_isa.cpp, cpu/dispatch.cpp), the device backends (cuda/entries.h) and the Python
// bindings (bindings/kernel_bindings.h) all expand it. A row's loop is core/'s name##_loop.
#define FASTRNN_FOR_EACH_KERNEL(X)   \
  X(lstm_forward, LstmForwardArgs)   \
  X(lstm_backward, LstmBackwardArgs) \
  X(gru_forward, GruForwardArgs)     \
  X(gru_backward, GruBackwardArgs)   \
  X(rnn_forward, RnnForwardArgs)     \
  X(rnn_backward, RnnBackwardArgs)

namespace fastrnn {

#define FASTRNN_DECLARE_KERNEL(name, Args) \
  template <typename S>                    \
  void name(const Args<S>& a);
FASTRNN_FOR_EACH_KERNEL(FASTRNN_DECLARE_KERNEL)
#undef FASTRNN_DECLARE_KERNEL

// Threads used by every kernel (default: the number of cores the process may use).
void set_num_threads(int n);
int get_num_threads();

// The instruction set the CPU kernels dispatch to: "avx512", "avx2" or "generic" (the best this
// CPU has, unless FASTRNN_CPU_ISA caps it).
const char* cpu_isa();

// The BLAS under the large GEMMs: its name, version and build configuration.
const char* blas_info();

}  // namespace fastrnn
