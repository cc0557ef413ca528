import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/cells.py

import fastrnn  # noqa: E402
import fastrnn._testing  # noqa: E402  (test-only module: the emulated CUDA device)


@pytest.fixture(params=fastrnn.available_cpu_isas())
def cpu_isa(request):
    """Runs a test once per instruction set this CPU has, restoring the default after."""
    before = fastrnn.cpu_isa()
    fastrnn.set_cpu_isa(request.param)
    yield request.param
    fastrnn.set_cpu_isa(before)


_GPU = fastrnn.cuda.status()


@pytest.fixture(
    params=[
        "emulated",
        pytest.param(
            "gpu",
            marks=pytest.mark.skipif(
                not _GPU.usable, reason=f"no usable GPU here (CUDA backend: {_GPU})"
            ),
        ),
    ]
)
def cuda_device(request):
    """Runs a test of backend="cuda" twice: on the CPU emulation of the device (always), and
    on a real GPU (skipped, with the reason, where none is usable)."""
    if request.param == "emulated":
        with fastrnn.cuda._use_device_module(fastrnn._testing.cuda_emulation):
            yield request.param
    else:
        yield request.param
