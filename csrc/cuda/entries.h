// The entry points of a device backend, for any Device (CudaDevice, EmulatedDevice). The
// cells are the time loops of core/ over CudaBackend<S, Device>; take_rows and
// zero_padding serve the Python layer's variable-length handling of device arrays.
// Every array pointer is device memory, except batch_sizes and perm (host memory).
// Definitions: entries_impl.h, instantiated by FASTRNN_DEVICE_ENTRIES in cuda_kernels.cu
// (GPU) and emulated_kernels.cpp (CPU emulation).
#pragma once

#include <cstdint>

#include "core/ns.h"
#include "fastrnn/fastrnn.h"

FASTRNN_NS_BEGIN

template <typename Device, typename S>
void run(Device& dev, const LstmForwardArgs<S>& a);
template <typename Device, typename S>
void run(Device& dev, const LstmBackwardArgs<S>& a);
template <typename Device, typename S>
void run(Device& dev, const GruForwardArgs<S>& a);
template <typename Device, typename S>
void run(Device& dev, const GruBackwardArgs<S>& a);
template <typename Device, typename S>
void run(Device& dev, const RnnForwardArgs<S>& a);
template <typename Device, typename S>
void run(Device& dev, const RnnBackwardArgs<S>& a);

// dst (outer, rows, inner)[o, k] = src[o, perm[k]]: a reordering of rows.
template <typename Device, typename S>
void take_rows(Device& dev, int64_t outer, int64_t rows, int64_t inner, const S* src,
               const int64_t* perm, S* dst);

// buf (T, B, N): zeroes rows [batch_sizes[t], B) of each step t (the steps past each
// sequence's end).
template <typename Device, typename S>
void zero_padding(Device& dev, const int64_t* batch_sizes, int64_t T, int64_t B, int64_t N, S* buf);

FASTRNN_NS_END
