// The Python API of a device backend, for any Device (cuda/cuda_device.h on a GPU in the
// _cuda module; cuda/emulated_device.h in _testing.cuda_emulation for the tests):
//   DeviceArray   a dense, C-contiguous array in device memory that fastrnn allocated, or a
//                 view of one imported through DLPack; exports __cuda_array_interface__ and
//                 DLPack (__dlpack__, __dlpack_device__), copies to and from NumPy
//   the six cell kernels (kernel_bindings.h), reading every array argument through
//                 __cuda_array_interface__ (DeviceArray, CuPy, PyTorch CUDA tensors, ...)
//   take_rows, zero_padding, copy   the row reordering of variable-length batches
// fastrnn/cuda.py builds the user-facing behaviour on these.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bindings/dlpack.h"
#include "bindings/kernel_bindings.h"
#include "cuda/entries.h"

namespace fastrnn_bindings {

// The element types a device array may hold, as __cuda_array_interface__ names them.
inline size_t itemsize_of(const std::string& typestr) {
  if (typestr == "<f4") return 4;
  if (typestr == "<f8" || typestr == "<i8") return 8;
  throw py::type_error("device arrays hold float32, float64 or int64, got typestr '" + typestr +
                       "'");
}

template <typename S>
const char* typestr_of();
template <>
inline const char* typestr_of<float>() {
  return "<f4";
}
template <>
inline const char* typestr_of<double>() {
  return "<f8";
}
template <>
inline const char* typestr_of<int64_t>() {
  return "<i8";
}

inline int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Whether strides (in bytes) describe the C-contiguous layout of shape; extents of 1 may
// carry any stride.
inline bool c_contiguous(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                         int64_t itemsize) {
  int64_t expected = itemsize;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

template <typename Device>
struct DeviceArray {
  std::vector<int64_t> shape;
  std::string typestr;
  void* data = nullptr;
  int device = 0;
  std::shared_ptr<void> owner;  // frees the memory, or releases the DLPack producer's tensor

  // Uninitialized memory on `device` (-1: the current device).
  static DeviceArray allocate(std::vector<int64_t> shape, const std::string& typestr, int device) {
    for (int64_t d : shape)
      if (d < 0) throw py::value_error("DeviceArray: negative extent in shape " + shape_str(shape));
    Device& dev = device < 0 ? Device::current() : Device::get(device);
    DeviceArray a;
    a.shape = std::move(shape);
    a.typestr = typestr;
    a.device = dev.id();
    a.data = dev.alloc(a.nbytes());
    a.owner = std::shared_ptr<void>(a.data, [&dev](void* p) { dev.free(p); });
    return a;
  }

  int64_t size() const { return element_count(shape); }
  size_t nbytes() const { return size() * itemsize_of(typestr); }
  Device& dev() const { return Device::get(device); }
};

// The device holding address p; the current device for null (an empty array may have no
// memory at all).
template <typename Device>
Device& device_for(const void* p) {
  return p ? Device::of_pointer(p) : Device::current();
}

// A device array argument as __cuda_array_interface__ (version 2 or 3) describes it.
struct CudaArrayView {
  std::vector<int64_t> shape;
  std::string typestr;
  void* data;
  bool readonly;
};

inline CudaArrayView cuda_array_view(const char* fn, const char* name, const py::object& obj) {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(std::string(fn) + ": argument '" + name +
                         "' must be a device array (an object with __cuda_array_interface__), "
                         "got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::dict d = obj.attr("__cuda_array_interface__");
  CudaArrayView v;
  for (py::handle e : d["shape"].cast<py::tuple>()) v.shape.push_back(e.cast<int64_t>());
  v.typestr = d["typestr"].cast<std::string>();
  py::tuple data = d["data"].cast<py::tuple>();
  v.data = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  v.readonly = data[1].cast<bool>();
  if (d.contains("strides") && !d["strides"].is_none()) {
    std::vector<int64_t> strides;
    for (py::handle e : d["strides"].cast<py::tuple>()) strides.push_back(e.cast<int64_t>());
    if (strides.size() != v.shape.size() ||
        !c_contiguous(v.shape, strides, static_cast<int64_t>(itemsize_of(v.typestr))))
      throw py::value_error(std::string(fn) + ": argument '" + name + "' must be C-contiguous");
  }
  if (d.contains("mask") && !d["mask"].is_none())
    throw py::value_error(std::string(fn) + ": argument '" + name + "' is masked");
  return v;
}

// The stream a producer's pending work on `obj` is queued on (__cuda_array_interface__ v3),
// or 0 (none to wait for).
inline intptr_t producer_stream(const py::object& obj) {
  py::dict d = obj.attr("__cuda_array_interface__");
  if (!d.contains("stream") || d["stream"].is_none()) return 0;
  return d["stream"].cast<intptr_t>();
}

// Device arrays, device kernels: the Arrays policy of kernel_bindings.h for a device backend.
template <typename Device>
struct DeviceArrays {
  template <typename S>
  static S* arg(const char* fn, const char* name, const py::object& obj, std::vector<int64_t> shape,
                bool writable, bool optional = false) {
    if (obj.is_none()) {
      if (optional) return nullptr;
      throw py::value_error(std::string(fn) + ": argument '" + name + "' must not be None");
    }
    CudaArrayView v = cuda_array_view(fn, name, obj);
    if (v.typestr != typestr_of<S>())
      throw py::type_error(std::string(fn) + ": argument '" + name + "' has typestr " + v.typestr +
                           ", expected " + typestr_of<S>());
    if (v.shape != shape)
      throw py::value_error(std::string(fn) + ": argument '" + name + "' has shape " +
                            shape_str(v.shape) + ", expected " + shape_str(shape));
    if (writable && v.readonly)
      throw py::value_error(std::string(fn) + ": argument '" + name + "' is read-only");
    if (element_count(shape) > 0) {
      if (!v.data)
        throw py::value_error(std::string(fn) + ": argument '" + name + "' has a null pointer");
      if (const intptr_t s = producer_stream(obj)) Device::of_pointer(v.data).wait_for(s);
    }
    return static_cast<S*>(v.data);
  }
  static bool is_f64(const char* fn, const char* name, const py::object& x) {
    const std::string t = cuda_array_view(fn, name, x).typestr;
    if (t == "<f8") return true;
    if (t == "<f4") return false;
    throw py::type_error(std::string(fn) + ": argument '" + name + "' has typestr " + t +
                         ", expected <f4 (float32) or <f8 (float64)");
  }
  static int64_t dim(const py::object& x, int i) {
    const std::vector<int64_t> s = cuda_array_view("kernel", "x", x).shape;
    if (s.size() != 3) throw py::value_error("argument 'x' must be 3-D (T, B, I)");
    return s[i];
  }
  template <template <typename> class Args, typename S>
  static void run(const Args<S>& a) {
    fastrnn::DeviceKernels<Device, S>::run(device_for<Device>(a.x), a);
  }
};

// ---------------------------------------------------------------------------- DLPack

template <typename Device>
struct DlpackExport {  // the manager_ctx of a DLManagedTensor we hand out
  DLManagedTensor tensor;
  std::vector<int64_t> shape;
  std::shared_ptr<void> owner;
};

inline DLDataType dl_dtype(const std::string& typestr) {
  if (typestr == "<f4") return DLDataType{kDLFloat, 32, 1};
  if (typestr == "<f8") return DLDataType{kDLFloat, 64, 1};
  return DLDataType{kDLInt, 64, 1};
}

inline std::string typestr_of_dl(const DLDataType& t) {
  if (t.lanes == 1 && t.code == kDLFloat && t.bits == 32) return "<f4";
  if (t.lanes == 1 && t.code == kDLFloat && t.bits == 64) return "<f8";
  if (t.lanes == 1 && t.code == kDLInt && t.bits == 64) return "<i8";
  throw py::type_error("from_dlpack: fastrnn takes float32, float64 or int64 tensors, got code " +
                       std::to_string(t.code) + " bits " + std::to_string(t.bits) + " lanes " +
                       std::to_string(t.lanes));
}

template <typename Device>
py::capsule to_dlpack(const DeviceArray<Device>& a) {
  auto* ctx = new DlpackExport<Device>{};
  ctx->shape = a.shape;
  ctx->owner = a.owner;
  DLTensor& t = ctx->tensor.dl_tensor;
  t.data = a.data;
  t.device = DLDevice{Device::kDlpackDeviceType, a.device};
  t.ndim = static_cast<int32_t>(a.shape.size());
  t.dtype = dl_dtype(a.typestr);
  t.shape = ctx->shape.data();
  t.strides = nullptr;
  t.byte_offset = 0;
  ctx->tensor.manager_ctx = ctx;
  ctx->tensor.deleter = [](DLManagedTensor* self) {
    delete static_cast<DlpackExport<Device>*>(self->manager_ctx);
  };
  // A consumer renames the capsule to "used_dltensor" and calls the deleter itself;
  // otherwise the capsule's destructor does.
  return py::capsule(&ctx->tensor, "dltensor", [](PyObject* cap) {
    if (PyCapsule_IsValid(cap, "dltensor")) {
      auto* t = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
      t->deleter(t);
    }
  });
}

template <typename Device>
DeviceArray<Device> from_dlpack(const py::capsule& cap) {
  if (!PyCapsule_IsValid(cap.ptr(), "dltensor"))
    throw py::value_error("from_dlpack: expected an unconsumed 'dltensor' capsule");
  auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
  const DLTensor& t = m->dl_tensor;
  if (t.device.device_type != Device::kDlpackDeviceType)
    throw py::value_error("from_dlpack: the tensor is on DLPack device type " +
                          std::to_string(t.device.device_type) + ", this backend takes type " +
                          std::to_string(Device::kDlpackDeviceType));
  DeviceArray<Device> a;
  a.typestr = typestr_of_dl(t.dtype);
  a.shape.assign(t.shape, t.shape + t.ndim);
  if (t.strides) {
    std::vector<int64_t> bytes(t.strides, t.strides + t.ndim);
    for (int64_t& s : bytes) s *= static_cast<int64_t>(itemsize_of(a.typestr));
    if (!c_contiguous(a.shape, bytes, static_cast<int64_t>(itemsize_of(a.typestr))))
      throw py::value_error("from_dlpack: the tensor must be C-contiguous (copy it first)");
  }
  a.data = static_cast<char*>(t.data) + t.byte_offset;
  a.device = t.device.device_id;
  PyCapsule_SetName(cap.ptr(), "used_dltensor");
  a.owner = std::shared_ptr<void>(m, [](void* p) {
    auto* mt = static_cast<DLManagedTensor*>(p);
    if (mt->deleter) mt->deleter(mt);
  });
  return a;
}

// ---------------------------------------------------------------------------- the module

inline constexpr const char* take_rows_params[] = {"src", "perm", "outer", "rows", "inner", "dst"};
template <typename Device, typename S>
void take_rows(const py::object& src, const py::object& perm, int64_t outer, int64_t rows,
               int64_t inner, const py::object& dst) {
  const char* fn = "take_rows";
  using A = DeviceArrays<Device>;
  const std::vector<int64_t> shape = cuda_array_view(fn, "src", src).shape;
  const S* s = A::template arg<S>(fn, "src", src, shape, false);
  S* d = A::template arg<S>(fn, "dst", dst, shape, true);
  if (element_count(shape) != outer * rows * inner)
    throw py::value_error("take_rows: src does not hold outer * rows * inner elements");
  const int64_t* p = numpy_arg<int64_t>(fn, "perm", perm, {rows}, false);
  for (int64_t k = 0; k < rows; ++k)
    if (p[k] < 0 || p[k] >= rows) throw py::value_error("take_rows: perm out of range");
  if (outer * rows * inner == 0) return;
  py::gil_scoped_release release;
  fastrnn::DeviceKernels<Device, S>::take_rows(Device::of_pointer(s), outer, rows, inner, s, p, d);
}

inline constexpr const char* zero_padding_params[] = {"buf", "batch_sizes"};
template <typename Device, typename S>
void zero_padding(const py::object& buf, const py::object& batch_sizes) {
  const char* fn = "zero_padding";
  const std::vector<int64_t> shape = cuda_array_view(fn, "buf", buf).shape;
  if (shape.size() < 2) throw py::value_error("zero_padding: buf must be (T, B, ...)");
  const int64_t T = shape[0], B = shape[1], N = element_count(shape) / std::max<int64_t>(T * B, 1);
  S* b = DeviceArrays<Device>::template arg<S>(fn, "buf", buf, shape, true);
  const int64_t* bs = batch_sizes_arg(fn, batch_sizes, T, B);
  if (!bs || T * B * N == 0) return;
  py::gil_scoped_release release;
  fastrnn::DeviceKernels<Device, S>::zero_padding(Device::of_pointer(b), bs, T, B, N, b);
}

template <typename Device>
void def_device_module(py::module_& m) {
  using Array = DeviceArray<Device>;
  py::class_<Array>(m, "DeviceArray",
                    "A dense, C-contiguous array in device memory (float32, float64 or int64).")
      .def(py::init([](std::vector<int64_t> shape, const py::object& dtype, int device) {
             const std::string t = std::string(py::str(py::dtype::from_args(dtype).attr("str")));
             itemsize_of(t);
             return Array::allocate(std::move(shape), t, device);
           }),
           py::arg("shape"), py::arg("dtype"), py::arg("device") = -1,
           "Uninitialized memory on a device (-1: the current one).")
      .def_static("from_dlpack", &from_dlpack<Device>, py::arg("capsule"),
                  "A view of a DLPack capsule's tensor (kept alive by the view).")
      .def_property_readonly("shape",
                             [](const Array& a) {
                               py::tuple t(a.shape.size());
                               for (size_t i = 0; i < a.shape.size(); ++i) t[i] = a.shape[i];
                               return t;
                             })
      .def_property_readonly("dtype", [](const Array& a) { return py::dtype(a.typestr); })
      .def_property_readonly("ndim", [](const Array& a) { return a.shape.size(); })
      .def_property_readonly("size", &Array::size)
      .def_property_readonly("nbytes", &Array::nbytes)
      .def_property_readonly("device", [](const Array& a) { return a.device; })
      .def_property_readonly("__cuda_array_interface__",
                             [](const Array& a) {
                               py::dict d;
                               d["shape"] = py::tuple(py::cast(a.shape));
                               d["typestr"] = a.typestr;
                               d["data"] =
                                   py::make_tuple(reinterpret_cast<uintptr_t>(a.data), false);
                               d["strides"] = py::none();
                               d["version"] = 3;
                               d["stream"] = 1;  // the legacy default stream: ours
                               return d;
                             })
      .def(
          "__dlpack__",
          [](const Array& a, const py::object& stream, const py::kwargs&) {
            // The consumer will use the data on `stream`: order it after our work.
            if (!stream.is_none() && stream.cast<intptr_t>() > 0)
              a.dev().make_wait(stream.cast<intptr_t>());
            return to_dlpack(a);
          },
          py::kw_only(), py::arg("stream") = py::none())
      .def("__dlpack_device__",
           [](const Array& a) { return py::make_tuple(Device::kDlpackDeviceType, a.device); })
      .def(
          "copy_from",
          [](Array& a, const py::array& host) {
            if (std::string(py::str(host.dtype().attr("str"))) != a.typestr)
              throw py::type_error("copy_from: dtype " + std::string(py::str(host.dtype())) +
                                   " does not match the device array's " + a.typestr);
            std::vector<int64_t> got(host.shape(), host.shape() + host.ndim());
            if (got != a.shape)
              throw py::value_error("copy_from: shape " + shape_str(got) +
                                    " != " + shape_str(a.shape));
            py::array c = py::array::ensure(host, py::array::c_style);
            if (a.nbytes()) a.dev().to_device(a.data, c.data(), a.nbytes());
          },
          py::arg("host"), "Copies a NumPy array of the same shape and dtype in.")
      .def(
          "numpy",
          [](const Array& a) {
            py::array out(py::dtype(a.typestr), a.shape);
            if (a.nbytes()) a.dev().to_host(out.mutable_data(), a.data, a.nbytes());
            return out;
          },
          "A NumPy copy (waits for the device).")
      .def("fill_zero", [](Array& a) {
        if (a.nbytes()) a.dev().fill_zero(a.data, a.nbytes());
      });

  bind_kernels<DeviceArrays<Device>>(m);
  bind_kernel<DeviceArrays<Device>>(m, "take_rows", &take_rows<Device, double>,
                                    &take_rows<Device, float>, take_rows_params,
                                    "dst (outer, rows, inner)[o, k] = src[o, perm[k]]", true);
  bind_kernel<DeviceArrays<Device>>(
      m, "zero_padding", &zero_padding<Device, double>, &zero_padding<Device, float>,
      zero_padding_params, "buf (T, B, ...): zeroes rows [batch_sizes[t], B) of each step", true);
  m.def(
      "copy",
      [](const py::object& dst, const py::object& src) {
        CudaArrayView d = cuda_array_view("copy", "dst", dst),
                      s = cuda_array_view("copy", "src", src);
        if (d.shape != s.shape || d.typestr != s.typestr)
          throw py::value_error("copy: dst " + shape_str(d.shape) + " " + d.typestr + " != src " +
                                shape_str(s.shape) + " " + s.typestr);
        if (d.readonly) throw py::value_error("copy: dst is read-only");
        const size_t n = element_count(s.shape) * itemsize_of(s.typestr);
        if (n) Device::of_pointer(s.data).copy(d.data, s.data, n);
      },
      py::arg("dst"), py::arg("src"), "Device-to-device copy of equal shapes and dtypes.");
  m.def(
      "device_of",
      [](uintptr_t ptr) {
        const void* p = reinterpret_cast<const void*>(ptr);
        return device_for<Device>(p).id();
      },
      py::arg("ptr"), "The device holding an address (0: the current device).");
  m.def(
      "synchronize", [] { Device::current().synchronize(); },
      "Waits for every fastrnn call queued on the current device.");
}

}  // namespace fastrnn_bindings
