"""fastrnn's build backend: scikit-build-core, plus NVIDIA's cuBLAS headers when the CUDA
backend will be built and the CUDA toolkit has none.

pyproject.toml cannot make a build requirement depend on whether nvcc is installed; this
PEP 517 wrapper can. When a CUDA compiler is found (CUDACXX, nvcc on PATH, or
$CUDA_HOME/bin/nvcc), FASTRNN_CUDA is not OFF, and the toolkit lacks cublas_v2.h, the
isolated build environment also gets nvidia-cublas for the toolkit's major version. Every
other hook is scikit-build-core's, unchanged.
"""

import os
import re
import shutil
import subprocess
import sys

from scikit_build_core import build as _skbuild
from scikit_build_core.build import (  # noqa: F401  (the hooks pip calls)
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

sys.path.insert(0, os.path.dirname(__file__))
from cublas_include import cublas_include  # noqa: E402


def _cuda_option(config_settings) -> str:
    settings = config_settings or {}
    value = settings.get("cmake.define.FASTRNN_CUDA") or os.environ.get("FASTRNN_CUDA") or "AUTO"
    return str(value).upper()


def _nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or ""
    return (os.environ.get("CUDACXX") or shutil.which("nvcc")
            or (shutil.which(os.path.join(home, "bin", "nvcc")) if home else None))


def cublas_requirements(config_settings=None) -> list:
    """The cuBLAS package the CUDA build needs here, as a list of 0 or 1 requirement."""
    nvcc = _nvcc()
    if _cuda_option(config_settings) == "OFF" or not nvcc:
        return []
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    m = re.search(r"release (\d+)\.", out)
    if not m:
        return []
    major = m.group(1)
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    toolkit_includes = [os.path.join(root, "include")] + [
        os.path.join(root, "targets", t, "include")
        for t in (os.listdir(os.path.join(root, "targets"))
                  if os.path.isdir(os.path.join(root, "targets")) else [])]
    if cublas_include(major, toolkit_includes):
        return []
    return [f"nvidia-cublas=={major}.*" if int(major) >= 13 else f"nvidia-cublas-cu{major}"]


def get_requires_for_build_wheel(config_settings=None):
    return _skbuild.get_requires_for_build_wheel(config_settings) + cublas_requirements(
        config_settings)


def get_requires_for_build_editable(config_settings=None):
    return _skbuild.get_requires_for_build_editable(config_settings) + cublas_requirements(
        config_settings)
