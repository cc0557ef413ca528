"""Style is checked, not hoped for: the C++ follows the committed .clang-format, the Python
follows ruff's lint and format settings in pyproject.toml (both tools come with the test
extra)."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYTHON_DIRS = ["python", "tests", "benchmarks", "examples", "scripts", "build_support"]


def test_cpp_is_clang_formatted():
    exe = shutil.which("clang-format")
    if exe is None:
        pytest.skip("clang-format is not installed (pip install '.[test]')")
    files = sorted(
        str(p) for p in (ROOT / "csrc").rglob("*") if p.suffix in (".h", ".cpp", ".cu", ".cuh")
    )
    p = subprocess.run([exe, "--dry-run", "--Werror", *files], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[:3000]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_python_passes_ruff(command):
    exe = shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install '.[test]')")
    p = subprocess.run([exe, *command, *PYTHON_DIRS], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, (p.stdout + p.stderr)[:3000]
