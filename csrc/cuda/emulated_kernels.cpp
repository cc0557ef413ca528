// The device entry points over EmulatedDevice, compiled into the CPU module (_C) for the
// tests: fastrnn._C.cuda_emulation runs the CUDA backend's host code on the CPU.
#include "cuda/emulated_device.h"
#include "cuda/entries_impl.h"

FASTRNN_NS_BEGIN
FASTRNN_DEVICE_ENTRIES(EmulatedDevice, float)
FASTRNN_DEVICE_ENTRIES(EmulatedDevice, double)
FASTRNN_NS_END
