// The entry points of a device backend, for one Device (CudaDevice, EmulatedDevice) and
// scalar type: every kernel of FASTRNN_FOR_EACH_KERNEL as a `run` overload (the time loops of
// core/ over CudaBackend<S, Device>), and take_rows and zero_padding, which serve the Python
// layer's variable-length handling of device arrays. Every array pointer is device memory,
// except batch_sizes and perm (host memory).
// Definitions: entries_impl.h, instantiated for a device, once per scalar type, by
// cuda_kernels.cu (GPU) and emulated_kernels.cpp (CPU emulation).
#pragma once

#include <cstdint>

#include "core/ns.h"
#include "fastrnn/fastrnn.h"

FASTRNN_NS_BEGIN

template <typename Device, typename S>
struct DeviceKernels {
#define FASTRNN_DECLARE_DEVICE_KERNEL(name, Args) static void run(Device& dev, const Args<S>& a);
  FASTRNN_FOR_EACH_KERNEL(FASTRNN_DECLARE_DEVICE_KERNEL)
#undef FASTRNN_DECLARE_DEVICE_KERNEL

  // dst (outer, rows, inner)[o, k] = src[o, perm[k]]: a reordering of rows.
  static void take_rows(Device& dev, int64_t outer, int64_t rows, int64_t inner, const S* src,
                        const int64_t* perm, S* dst);

  // buf (T, B, N): zeroes rows [batch_sizes[t], B) of each step t (the steps past each
  // sequence's end).
  static void zero_padding(Device& dev, const int64_t* batch_sizes, int64_t T, int64_t B, int64_t N,
                           S* buf);
};

FASTRNN_NS_END
