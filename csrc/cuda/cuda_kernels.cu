// The GPU instantiation of every device entry point x dtype (entries.h): the time loops of
// core/ over CudaBackend<S, CudaDevice>, kernels launched by cuda_launch.cuh.
#include "cuda/cuda_launch.cuh"
#include "cuda/entries_impl.h"

FASTRNN_NS_BEGIN
template struct DeviceKernels<CudaDevice, float>;
template struct DeviceKernels<CudaDevice, double>;
FASTRNN_NS_END
