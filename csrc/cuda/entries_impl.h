// Definitions of entries.h, included only by the files that instantiate DeviceKernels.
#pragma once

#include "core/gru.h"
#include "core/lstm.h"
#include "core/rnn.h"
#include "cuda/cuda_backend.h"
#include "cuda/entries.h"

FASTRNN_NS_BEGIN

#define FASTRNN_DEFINE_DEVICE_KERNEL(name, Args)                      \
  template <typename Device, typename S>                              \
  void DeviceKernels<Device, S>::run(Device& dev, const Args<S>& a) { \
    CudaBackend<S, Device> be(dev);                                   \
    be.bf16 = a.bf16;                                                 \
    name##_loop(be, a);                                               \
  }
FASTRNN_FOR_EACH_KERNEL(FASTRNN_DEFINE_DEVICE_KERNEL)
#undef FASTRNN_DEFINE_DEVICE_KERNEL

template <typename Device, typename S>
void DeviceKernels<Device, S>::take_rows(Device& dev, int64_t outer, int64_t rows, int64_t inner,
                                         const S* src, const int64_t* perm, S* dst) {
  const int64_t n = outer * rows * inner;
  if (n == 0) return;
  CudaBackend<S, Device> be(dev);
  dev.launch(launch_dims(n), TakeRows<S>{outer, rows, inner, src, be.upload(perm, rows), dst});
}

template <typename Device, typename S>
void DeviceKernels<Device, S>::zero_padding(Device& dev, const int64_t* batch_sizes, int64_t T,
                                            int64_t B, int64_t N, S* buf) {
  CudaBackend<S, Device> be(dev);
  zero_finished_rows(be, batch_sizes, T, B, N, buf);
}

FASTRNN_NS_END
