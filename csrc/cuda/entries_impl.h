// Definitions of entries.h, included only by the files that instantiate them.
#pragma once

#include "core/gru.h"
#include "core/lstm.h"
#include "core/rnn.h"
#include "cuda/cuda_backend.h"
#include "cuda/entries.h"

FASTRNN_NS_BEGIN

#define FASTRNN_DEVICE_CELL(Args, loop)     \
  template <typename Device, typename S>    \
  void run(Device& dev, const Args<S>& a) { \
    CudaBackend<S, Device> be(dev);         \
    loop(be, a);                            \
  }

FASTRNN_DEVICE_CELL(LstmForwardArgs, lstm_forward_loop)
FASTRNN_DEVICE_CELL(LstmBackwardArgs, lstm_backward_loop)
FASTRNN_DEVICE_CELL(GruForwardArgs, gru_forward_loop)
FASTRNN_DEVICE_CELL(GruBackwardArgs, gru_backward_loop)
FASTRNN_DEVICE_CELL(RnnForwardArgs, rnn_forward_loop)
FASTRNN_DEVICE_CELL(RnnBackwardArgs, rnn_backward_loop)
#undef FASTRNN_DEVICE_CELL

template <typename Device, typename S>
void take_rows(Device& dev, int64_t outer, int64_t rows, int64_t inner, const S* src,
               const int64_t* perm, S* dst) {
  const int64_t n = outer * rows * inner;
  if (n == 0) return;
  CudaBackend<S, Device> be(dev);
  dev.launch(launch_dims(n), TakeRows<S>{outer, rows, inner, src, be.upload(perm, rows), dst});
}

template <typename Device, typename S>
void zero_padding(Device& dev, const int64_t* batch_sizes, int64_t T, int64_t B, int64_t N,
                  S* buf) {
  CudaBackend<S, Device> be(dev);
  zero_finished_rows(be, batch_sizes, T, B, N, buf);
}

// Explicit instantiations of every entry for one device and scalar type.
#define FASTRNN_DEVICE_ENTRIES(Device, S)                                                    \
  template void run(Device&, const LstmForwardArgs<S>&);                                     \
  template void run(Device&, const LstmBackwardArgs<S>&);                                    \
  template void run(Device&, const GruForwardArgs<S>&);                                      \
  template void run(Device&, const GruBackwardArgs<S>&);                                     \
  template void run(Device&, const RnnForwardArgs<S>&);                                      \
  template void run(Device&, const RnnBackwardArgs<S>&);                                     \
  template void take_rows(Device&, int64_t, int64_t, int64_t, const S*, const int64_t*, S*); \
  template void zero_padding(Device&, const int64_t*, int64_t, int64_t, int64_t, S*);

FASTRNN_NS_END
