// CudaDevice::launch: a kernel body from kernels.h as a __global__ function. The whole of
// fastrnn's device code is this template; the bodies are the host-tested functors.
#pragma once

#include "cuda/cuda_device.h"

FASTRNN_NS_BEGIN

template <typename K>
__global__ void run_kernel(K kernel) {
  kernel(ThreadIndex{blockIdx.x, threadIdx.x, gridDim.x, blockDim.x});
}

template <typename K>
void CudaDevice::launch(LaunchDims d, const K& kernel) {
  DeviceScope scope(device_);
  run_kernel<<<static_cast<unsigned>(d.grid), static_cast<unsigned>(d.block), 0, stream_>>>(kernel);
  check_cuda(cudaGetLastError(), "kernel launch");
}

FASTRNN_NS_END
