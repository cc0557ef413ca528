// The GPU instantiation of every cell x pass x dtype: the time loops of core/ over
// CudaBackend<S, CudaDevice>, kernels launched by cuda_launch.cuh.
#include "cuda/cuda_launch.cuh"
#include "cuda/entries_impl.h"

FASTRNN_NS_BEGIN
FASTRNN_DEVICE_ENTRIES(CudaDevice, float)
FASTRNN_DEVICE_ENTRIES(CudaDevice, double)
FASTRNN_NS_END
