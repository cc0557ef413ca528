"""What `import fastrnn` loads and what its public surface holds: test-only code lives in
fastrnn._testing, which only the tests import; the C++ public header declares the public API
only; the DLPack device code of CUDA is defined once, in C++."""

import pathlib
import subprocess
import sys
import threading

import numpy as np

import fastrnn
from fastrnn import _C, _testing, cuda, ops

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_fastrnn_does_not_load_the_test_module():
    code = (
        "import sys, fastrnn\n"
        "print('fastrnn._testing' in sys.modules, hasattr(fastrnn._C, 'cuda_emulation'),\n"
        "      hasattr(fastrnn.cuda, 'emulate'))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "False", "False"]


def test_the_test_module_is_built():
    assert hasattr(_testing, "cuda_emulation") and hasattr(_testing, "parallel_for_throwing")
    assert _testing.cuda_emulation.unusable_reason() == ""


def test_the_device_module_hook_is_private():
    assert "_use_device_module" not in cuda.__all__ and "emulate" not in cuda.__all__
    with cuda._use_device_module(_testing.cuda_emulation):
        assert cuda.require() is _testing.cuda_emulation
        assert cuda.status().usable
    assert cuda._device_module.get() is None


def test_public_header_declares_the_public_api_only():
    header = (ROOT / "csrc" / "include" / "fastrnn" / "fastrnn.h").read_text()
    for internal in ("gemm_nt", "set_cpu_isa", "supported_cpu_isas"):
        assert internal not in header
    assert hasattr(_C, "gemm_nt")  # still bound: the benchmarks' roofline


def test_dlpack_cuda_device_code_comes_from_cpp():
    assert cuda._KDL_CUDA == _C.DLPACK_CUDA == 2  # kDLCUDA in the DLPack specification

    class OnDevice:
        def __init__(self, device_type):
            self.device_type = device_type

        def __dlpack_device__(self):
            return (self.device_type, 0)

    assert cuda.is_device_array(OnDevice(_C.DLPACK_CUDA))
    assert not cuda.is_device_array(OnDevice(1))  # kDLCPU


# ----------------------------------------------------------------------------- the ISA query


def test_available_cpu_isas_changes_nothing(monkeypatch):
    before = fastrnn.cpu_isa()
    isas = fastrnn.available_cpu_isas()
    assert isas[0] == "generic" and before in isas
    assert set(isas) <= {"generic", "avx2", "avx512", "avx512bf16"}

    def refuse(name):
        raise AssertionError(f"available_cpu_isas selected {name!r}: it must only query")

    monkeypatch.setattr(_C, "set_cpu_isa", refuse)
    assert fastrnn.available_cpu_isas() == isas
    assert fastrnn.cpu_isa() == before


def test_available_cpu_isas_beside_kernels_in_another_thread():
    """A thread runs kernels with the ISA held at generic while this one queries the ISAs:
    the selection it sees never changes."""
    isas = fastrnn.available_cpu_isas()
    before = fastrnn.cpu_isa()
    rng = np.random.default_rng(0)
    x, w_ih, w_hh = (rng.standard_normal(s) for s in [(2, 2, 3), (4, 3), (4, 4)])
    seen, stop = set(), threading.Event()

    def run_kernels():
        while not stop.is_set():
            seen.add(fastrnn.cpu_isa())
            ops.rnn_forward(x, None, w_ih, w_hh, None, None, training=False)
            seen.add(fastrnn.cpu_isa())

    interval = sys.getswitchinterval()
    fastrnn.set_cpu_isa("generic")
    worker = threading.Thread(target=run_kernels)
    try:
        sys.setswitchinterval(1e-5)
        worker.start()
        for _ in range(500):
            assert fastrnn.available_cpu_isas() == isas
    finally:
        stop.set()
        worker.join()
        sys.setswitchinterval(interval)
        fastrnn.set_cpu_isa(before)
    assert seen == {"generic"}
