"""fastrnn: fused LSTM, GRU and RNN kernels (forward and backpropagation through time) in
C++, with a NumPy API.

- :mod:`fastrnn.ops`: stateless ``{lstm,gru,rnn}_{forward,backward}`` on the C++ kernels.
- :mod:`fastrnn.reference`: the same functions in plain NumPy, the ground truth.
- :mod:`fastrnn.cuda`: the CUDA backend's status and how GPU arrays come in and go out.
- ``LSTM``, ``GRU``, ``RNN`` and their ``*Cell`` forms: layers with torch.nn's arguments and
  parameter names, on either backend.
- :mod:`fastrnn.stack`: the stateless stack of layers and directions those layers (and
  :mod:`fastrnn.torch`) run.
- :mod:`fastrnn.torch` (imported on demand; needs PyTorch): drop-in subclasses of torch.nn's
  RNN classes running these kernels under autograd.
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING, List

if TYPE_CHECKING:
    from .openblas import BlasCore


def _preload_blas() -> None:
    # _C finds libscipy_openblas through its rpath when installed beside scipy_openblas32 in
    # site-packages. Loading it first, by path, also serves builds that live elsewhere (an
    # editable install's build directory): the loader then reuses the library already loaded.
    import ctypes

    import scipy_openblas32

    lib_dir = scipy_openblas32.get_lib_dir()
    if hasattr(_os, "add_dll_directory"):  # Windows: no rpath; DLLs are found through this
        _os.add_dll_directory(lib_dir)
    for name in sorted(_os.listdir(lib_dir)):
        if name.startswith("libscipy_openblas") and (".so" in name or name.endswith(".dylib")):
            ctypes.CDLL(_os.path.join(lib_dir, name), mode=ctypes.RTLD_GLOBAL)
            return


def _load_extension():
    # The BLAS under fastrnn (scipy-openblas32) runs single-threaded inside fastrnn's own pool.
    # Asking it for one thread when it loads keeps it from starting idle worker threads that
    # would spin beside ours; the caller's environment is left as it was.
    before = _os.environ.get("OPENBLAS_NUM_THREADS")
    _os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        _preload_blas()
        from . import _C
    finally:
        if before is None:
            del _os.environ["OPENBLAS_NUM_THREADS"]
        else:
            _os.environ["OPENBLAS_NUM_THREADS"] = before
    return _C


_C = _load_extension()

from . import cell_spec, convert, cuda, ops, reference, train  # noqa: E402
from .cells import GRUCell, LSTMCell, RNNCell  # noqa: E402
from .layers import GRU, LSTM, RNN, LayerNormGRU, LayerNormLSTM, backends, no_grad  # noqa: E402
from .packed import PackedBatch  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "LSTM",
    "GRU",
    "LayerNormLSTM",
    "LayerNormGRU",
    "RNN",
    "LSTMCell",
    "GRUCell",
    "RNNCell",
    "PackedBatch",
    "backends",
    "no_grad",
    "cell_spec",
    "convert",
    "cuda",
    "ops",
    "reference",
    "train",
    "set_num_threads",
    "get_num_threads",
    "cpu_isa",
    "set_cpu_isa",
    "available_cpu_isas",
    "blas_info",
    "blas_core",
    "set_numpy_blas_threads",
    "__version__",
]


def set_num_threads(n: int) -> None:
    """Threads used by every fastrnn kernel; 0 restores the default: FASTRNN_NUM_THREADS from
    the environment if set, else the number of cores this process may run on. The BLAS under
    the large GEMMs runs single-threaded inside fastrnn's own pool, so the total never exceeds
    ``n``. Results are bitwise reproducible for a given
    thread count; another count may change the last bits of the GEMM results."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"set_num_threads: n must be a non-negative int, got {n!r}")
    _C.set_num_threads(n)


def get_num_threads() -> int:
    """Threads fastrnn's kernels use."""
    return _C.get_num_threads()


def cpu_isa() -> str:
    """The instruction set the CPU kernels were dispatched to: avx512bf16 (AVX-512 with the
    bf16 dot product, which precision="bf16" uses), avx512, avx2 or generic.
    ``FASTRNN_CPU_ISA=generic|avx2|avx512`` in the environment caps it (read once, at first
    use)."""
    return _C.cpu_isa()


def set_cpu_isa(name: str) -> None:
    """Selects the CPU kernels' instruction set: "generic", "avx2", "avx512" or "avx512bf16"
    (for tests and benchmarks; by default the best this CPU has is used). Raises ValueError if
    the CPU lacks it."""
    if not _C.set_cpu_isa(str(name)):
        raise ValueError(
            f"set_cpu_isa: {name!r} is not available here; this CPU supports {available_cpu_isas()}"
        )


def available_cpu_isas() -> List[str]:
    """The instruction sets the CPU kernels can use on this machine, best last. A query: it
    changes nothing, so it is safe beside kernels running in other threads."""
    return list(_C.supported_cpu_isas())


def set_numpy_blas_threads(n: int) -> bool:
    """Sets the thread count of every other OpenBLAS loaded in this process (NumPy's, SciPy's)
    — the thread-pool trap: after each NumPy matmul, NumPy's OpenBLAS threads keep spinning
    for a while, and beside fastrnn's own threads they were measured to slow training 2.4x on
    a 2-core machine. A program that alternates NumPy matmuls with fastrnn kernels on all
    cores runs best with ``set_numpy_blas_threads(1)``. Linux only (reads /proc/self/maps);
    returns whether any such library was found."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line and ".so" in line}
    except OSError:
        return False
    found = False
    for lib in sorted(libs):
        if "scipy_openblas32" in lib:
            continue  # fastrnn's own BLAS: single-threaded inside fastrnn's pool
        handle = ctypes.CDLL(lib)
        for name in (
            "scipy_openblas_set_num_threads64_",
            "openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads",
            "openblas_set_num_threads",
        ):
            if hasattr(handle, name):
                getattr(handle, name)(int(n))
                found = True
                break
    return found


def blas_info() -> str:
    """The BLAS under the large GEMMs and its build configuration."""
    return _C.blas_info()


def blas_core() -> "BlasCore":
    """The OpenBLAS core (kernel family: "Haswell", "SkylakeX", ...) under the large GEMMs, as
    a :class:`fastrnn.openblas.BlasCore`: its name and instruction sets, this CPU's, whether
    OPENBLAS_CORETYPE in the environment forced it, and ``.warning`` (with the fix) where the
    core is forced or older than this CPU supports, which slows the GEMMs down; else None."""
    from .openblas import blas_core as probe

    return probe()
