"""The examples run (at tiny sizes) so that they never rot."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
# Examples that need PyTorch (and fastrnn.torch) skip where it is not installed.
NEEDS_TORCH = {"torch_charlm"}


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script):
    if script.stem in NEEDS_TORCH and importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    p = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=300
    )
    print(p.stdout)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip()
