import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/cells.py

import fastrnn  # noqa: E402


@pytest.fixture(params=fastrnn.available_cpu_isas())
def cpu_isa(request):
    """Runs a test once per instruction set this CPU has, restoring the default after."""
    before = fastrnn.cpu_isa()
    fastrnn.set_cpu_isa(request.param)
    yield request.param
    fastrnn.set_cpu_isa(before)
