"""The CUDA backend: the same kernels on a GPU, and how GPU arrays come in and go out.

The backend is compiled in when the build found a CUDA compiler (module ``fastrnn._cuda``);
it is usable when, in addition, this machine has a CUDA driver, a GPU and cuBLAS (loaded
on first use from NVIDIA's cuBLAS wheel, ``pip install nvidia-cublas==13.*``, or from the
system's library path). :func:`status` says which of these holds.

Arrays: any object exposing ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors,
Numba arrays, :class:`DeviceArray`) or DLPack on a CUDA device (JAX arrays) is used in place,
without a copy; outputs come back as the input's kind (``torch.Tensor``, ``cupy.ndarray``,
JAX and Numba arrays; :class:`DeviceArray`, which supports DLPack, for other producers).
NumPy input with ``backend="cuda"`` is copied to the device, and the outputs back to NumPy.
Device arrays must be C-contiguous; ``lengths`` stays on the host. Work is queued on the
legacy default stream, after whatever the caller queued there; functions return without
waiting for the GPU (copies to NumPy wait).

The tests run the backend's host code -- time loops, cuBLAS argument mapping, launch shapes,
kernel bodies, this module -- on the CPU, over the emulated device of the test-only module
``fastrnn._testing`` (through the private hook ``_use_device_module``), so that it is checked
on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from . import _C

try:
    from . import _cuda
except ImportError:  # built without a CUDA compiler
    _cuda = None

__all__ = [
    "BackendStatus",
    "status",
    "require",
    "usable_module",
    "is_device_array",
    "DeviceArray",
    "to_device",
    "synchronize",
]

_KDL_CUDA = _C.DLPACK_CUDA  # DLPack's device type for CUDA memory (csrc/bindings/dlpack.h)
# A device module standing in for _cuda (the tests' emulated device), or None.
_device_module = contextvars.ContextVar("fastrnn_cuda_device_module", default=None)


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend is compiled into this install and usable on this machine."""

    compiled: bool
    usable: bool
    detail: str = ""
    missing: str = "device"  # what a compiled backend lacks here: "device" or "cuBLAS"

    def __str__(self) -> str:
        if self.usable:
            return "available" + (f" ({self.detail})" if self.detail else "")
        if self.compiled:
            return f"compiled, no {self.missing}: {self.detail}"
        return f"not compiled: {self.detail}"


def _cublas_candidates() -> list:
    """Where cuBLAS may be: NVIDIA's wheel (nvidia/cu13/lib), then the loader's search path."""
    major = str(_cuda.cuda_version // 1000)
    soname = f"libcublas.so.{major}"
    found = []
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for sub in (f"cu{major}", "cublas"):
            path = os.path.join(root, sub, "lib", soname)
            if os.path.isfile(path):
                found.append(path)
    return found + [soname]


def status() -> BackendStatus:
    """The CUDA backend's status: ``str(status())`` reads e.g. "compiled, no device: no CUDA
    driver (...)"."""
    if _device_module.get() is not None:
        return BackendStatus(True, True, f"device module {_device_module.get().__name__}")
    if _cuda is None:
        return BackendStatus(False, False, "this install was built without a CUDA compiler")
    reason = _cuda.unusable_reason()
    if reason:
        return BackendStatus(True, False, reason)
    try:
        library = _cuda.load_cublas(_cublas_candidates())
    except RuntimeError as e:
        return BackendStatus(
            True, False, f"{e}; install it with pip install nvidia-cublas==13.*", missing="cuBLAS"
        )
    return BackendStatus(True, True, f"{_cuda.device_count()} device(s), cuBLAS {library}")


def require():
    """The device module to run on; RuntimeError saying why if CUDA is not usable here."""
    if _device_module.get() is not None:
        return _device_module.get()
    s = status()
    if not s.usable:
        raise RuntimeError(
            f"backend 'cuda' is not usable here: {s} (fastrnn.backends() lists what is)"
        )
    return _cuda


@functools.lru_cache(maxsize=1)
def _usable_cuda():
    return _cuda if status().usable else None


def usable_module():
    """The device module to run on, or None if CUDA is not usable here; unlike
    :func:`require`, asks the driver and loads cuBLAS once per process (what the PyTorch
    drop-in calls on every forward)."""
    return _device_module.get() or _usable_cuda()


@contextlib.contextmanager
def _use_device_module(module) -> Iterator[None]:
    """Private, for the tests: within this context (this thread or task) the CUDA backend runs
    on ``module`` in place of ``fastrnn._cuda`` -- ``fastrnn._testing.cuda_emulation``, where
    device memory is host memory, kernels run thread by thread and GEMMs follow cuBLAS's
    column-major definition (slow by design)."""
    token = _device_module.set(module)
    try:
        yield
    finally:
        _device_module.reset(token)


def DeviceArray(shape: tuple, dtype) -> object:
    """A new uninitialized array on the current CUDA device (float32, float64 or int64)."""
    return require().DeviceArray(tuple(shape), np.dtype(dtype))


def to_device(host: np.ndarray) -> object:
    """A copy of a NumPy array on the current CUDA device, as a :class:`DeviceArray`."""
    host = np.ascontiguousarray(host)
    out = DeviceArray(host.shape, host.dtype)
    out.copy_from(host)
    return out


def synchronize() -> None:
    """Waits until the current device has finished every fastrnn call queued so far."""
    require().synchronize()


def is_device_array(value) -> bool:
    """Whether ``value`` lives in GPU memory: it exposes ``__cuda_array_interface__``, or
    DLPack on a CUDA device."""
    if hasattr(value, "__cuda_array_interface__"):
        return True
    dev = getattr(value, "__dlpack_device__", None)
    if dev is None or isinstance(value, np.ndarray):
        return False
    try:
        return int(dev()[0]) == _KDL_CUDA
    except Exception:
        return False


class _View:
    """A device array argument described by its ``__cuda_array_interface__`` (kept alive)."""

    def __init__(self, obj, interface: dict):
        self.obj = obj
        self.__cuda_array_interface__ = interface
        self.shape = tuple(int(d) for d in interface["shape"])
        self.dtype = np.dtype(interface["typestr"])
        self.ndim = len(self.shape)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _c_contiguous(shape: tuple, strides, itemsize: int) -> bool:
    if strides is None:
        return True
    expected = itemsize
    for extent, stride in zip(reversed(shape), reversed(strides)):
        if extent != 1 and stride != expected:
            return False
        expected *= extent
    return True


def _from_torch(a):
    import torch

    return torch.from_dlpack(a)


def _from_cupy(a):
    import cupy

    return cupy.from_dlpack(a)


def _from_jax(a):
    import jax.numpy as jnp

    return jnp.from_dlpack(a)


def _from_numba(a):
    from numba import cuda as numba_cuda

    return numba_cuda.as_cuda_array(a)


# Outputs in the kind of the input, by the top-level module of the input's type; producers
# not listed get the DeviceArray itself (it supports DLPack and __cuda_array_interface__).
_CONVERTERS = {
    "torch": _from_torch,
    "cupy": _from_cupy,
    "jax": _from_jax,
    "jaxlib": _from_jax,
    "numba": _from_numba,
}


def _output_kind(x) -> str:
    """What kind of array the outputs of a call on x should be."""
    if not is_device_array(x):
        return "numpy"
    module = type(x).__module__.split(".")[0]
    return module if module in _CONVERTERS else "device"


class DeviceOps:
    """The array operations of fastrnn.ops on device memory (the host has NumPy's): wraps or
    copies inputs, allocates, reorders rows, and returns outputs as the caller's kind."""

    def __init__(self, x):
        self.kernels = require()
        self.out_kind = _output_kind(x)
        # Every array of the call goes where x is (NumPy x: the current device).
        if hasattr(x, "__cuda_array_interface__"):
            self.device = self.kernels.device_of(int(x.__cuda_array_interface__["data"][0]))
        elif is_device_array(x):
            self.device = int(x.__dlpack_device__()[1])
        else:
            self.device = -1

    def asarray(self, fn: str, name: str, value):
        if isinstance(value, self.kernels.DeviceArray):
            return value
        if hasattr(value, "__cuda_array_interface__"):
            interface = value.__cuda_array_interface__
            view = _View(value, interface)
            if not _c_contiguous(view.shape, interface.get("strides"), view.dtype.itemsize):
                raise ValueError(
                    f"{fn}: argument '{name}' is a non-contiguous device array "
                    f"(shape {view.shape}, strides {interface.get('strides')}); "
                    f"make it contiguous first"
                )
            return view
        if is_device_array(value):  # DLPack only (JAX): a view that keeps the producer's tensor
            return self.kernels.DeviceArray.from_dlpack(value.__dlpack__(stream=1))
        host = np.asarray(value)
        if host.dtype.type not in (np.float32, np.float64):
            return host  # the caller's dtype check names it
        out = self.empty(host.shape, host.dtype)
        out.copy_from(np.ascontiguousarray(host))
        return out

    def contiguous(self, a):
        return a

    def empty(self, shape: tuple, dtype):
        return self.kernels.DeviceArray(tuple(shape), np.dtype(dtype), self.device)

    def zeros(self, shape: tuple, dtype):
        a = self.empty(shape, dtype)
        a.fill_zero()
        return a

    def copy(self, a):
        out = self.empty(a.shape, a.dtype)
        self.kernels.copy(out, a)
        return out

    def take_rows(self, a, perm: np.ndarray, axis: int):
        """a with its rows along ``axis`` gathered by ``perm`` (a new array)."""
        outer = int(np.prod(a.shape[:axis], dtype=np.int64))
        inner = int(np.prod(a.shape[axis + 1 :], dtype=np.int64))
        out = self.empty(a.shape, a.dtype)
        self.kernels.take_rows(
            src=a,
            perm=np.ascontiguousarray(perm, np.int64),
            outer=outer,
            rows=a.shape[axis],
            inner=inner,
            dst=out,
        )
        return out

    def zero_padding(self, x, batch_sizes: np.ndarray, fresh: bool):
        out = x if fresh else self.copy(x)
        self.kernels.zero_padding(buf=out, batch_sizes=batch_sizes)
        return out

    def output(self, a):
        if a is None:
            return None
        if self.out_kind == "numpy":
            return a.numpy()
        if self.out_kind == "device":
            return a
        return _CONVERTERS[self.out_kind](a)
