// The device entry points over EmulatedDevice, compiled into the test-only module
// (fastrnn._testing): its cuda_emulation submodule runs the CUDA backend's host code on the CPU.
#include "cuda/emulated_device.h"
#include "cuda/entries_impl.h"

FASTRNN_NS_BEGIN
template struct DeviceKernels<EmulatedDevice, float>;
template struct DeviceKernels<EmulatedDevice, double>;
FASTRNN_NS_END
