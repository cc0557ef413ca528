// The DLPack exchange structs (unversioned ABI, capsule name "dltensor"), declared from the
// DLPack specification (https://dmlc.github.io/dlpack/latest/c_api.html): the only parts
// fastrnn reads or writes. The one definition of DLPack's device codes in fastrnn: the device
// classes (cuda/*_device.h) name theirs from here, and Python reads kDLCUDA as
// fastrnn._C.DLPACK_CUDA.
#pragma once

#include <cstdint>

namespace fastrnn_bindings {

enum DLDeviceCode : int32_t { kDLCPU = 1, kDLCUDA = 2 };
enum DLTypeCode : uint8_t { kDLInt = 0, kDLUInt = 1, kDLFloat = 2 };

struct DLDevice {
  int32_t device_type;  // DLDeviceCode
  int32_t device_id;
};

struct DLDataType {
  uint8_t code;  // DLTypeCode
  uint8_t bits;
  uint16_t lanes;
};

struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;    // (ndim)
  int64_t* strides;  // (ndim) in elements, or null: C-contiguous
  uint64_t byte_offset;
};

struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

}  // namespace fastrnn_bindings
