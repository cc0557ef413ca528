"""The build's CUDA decisions (build_support/): which cuBLAS package the isolated build
environment gets, and where CMake finds the cuBLAS headers."""

import pathlib
import sys
import types

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "build_support"))
import cuda_requirements  # noqa: E402
from cublas_include import cublas_include  # noqa: E402


def fake_toolkit(tmp_path, release: str, header: bool) -> pathlib.Path:
    """A CUDA toolkit directory whose nvcc prints `release` and which has cublas_v2.h or not."""
    root = tmp_path / f"cuda-{release}"
    (root / "bin").mkdir(parents=True)
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.88'\n")
    nvcc.chmod(0o755)
    if header:
        (root / "targets" / "x86_64-linux" / "include").mkdir(parents=True)
        (root / "targets" / "x86_64-linux" / "include" / "cublas_v2.h").write_text("")
    return nvcc


@pytest.fixture
def no_cuda_env(monkeypatch, tmp_path):
    for var in ("CUDACXX", "CUDA_HOME", "CUDA_PATH", "FASTRNN_CUDA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return monkeypatch


@pytest.mark.parametrize(
    "release,header,settings,env,want",
    [
        ("13.0", False, None, {}, ["nvidia-cublas==13.*"]),
        ("12.6", False, None, {}, ["nvidia-cublas-cu12"]),
        ("13.0", True, None, {}, []),
        ("13.0", False, {"cmake.define.FASTRNN_CUDA": "OFF"}, {}, []),
        ("13.0", False, None, {"FASTRNN_CUDA": "off"}, []),
    ],
)
def test_cublas_requirement(tmp_path, no_cuda_env, release, header, settings, env, want):
    no_cuda_env.setenv("CUDACXX", str(fake_toolkit(tmp_path, release, header)))
    for k, v in env.items():
        no_cuda_env.setenv(k, v)
    assert cuda_requirements.cublas_requirements(settings) == want


def test_no_nvcc_needs_nothing(no_cuda_env):
    assert cuda_requirements.cublas_requirements() == []


def test_nvcc_found_through_cuda_home(tmp_path, no_cuda_env):
    nvcc = fake_toolkit(tmp_path, "13.0", False)
    no_cuda_env.setenv("CUDA_HOME", str(nvcc.parent.parent))
    assert cuda_requirements.cublas_requirements() == ["nvidia-cublas==13.*"]


def test_cublas_include_prefers_the_toolkit_then_the_wheel(tmp_path, monkeypatch):
    toolkit, wheel = tmp_path / "toolkit", tmp_path / "site" / "nvidia"
    (wheel / "cu13" / "include").mkdir(parents=True)
    (wheel / "cu13" / "include" / "cublas_v2.h").write_text("")
    monkeypatch.setitem(sys.modules, "nvidia", types.SimpleNamespace(__path__=[str(wheel)]))
    toolkit.mkdir()
    assert cublas_include("13", [str(toolkit)]) == str(wheel / "cu13" / "include")
    (toolkit / "cublas_v2.h").write_text("")
    assert cublas_include("13", [str(toolkit)]) == str(toolkit)
    assert cublas_include("12", [str(tmp_path / "nowhere")]) == ""
