// The CPU instantiation of every cell x pass x dtype. CMake compiles this file once per
// instruction set (FASTRNN_ISA = avx512 | avx2 | generic, with matching -m flags and vector
// width); dispatch.cpp picks one at load time.
#include "core/gru_backward.h"
#include "core/gru_forward.h"
#include "core/lstm_backward.h"
#include "core/lstm_forward.h"
#include "core/rnn_backward.h"
#include "core/rnn_forward.h"
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

FASTRNN_NS_END
