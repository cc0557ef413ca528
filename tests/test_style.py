"""The C++ follows the committed .clang-format (clang-format comes with the test extra)."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_cpp_is_clang_formatted():
    exe = shutil.which("clang-format")
    if exe is None:
        pytest.skip("clang-format is not installed (pip install '.[test]')")
    files = sorted(str(p) for p in (ROOT / "csrc").rglob("*") if p.suffix in (".h", ".cpp", ".cu", ".cuh"))
    p = subprocess.run([exe, "--dry-run", "--Werror", *files], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[:3000]
