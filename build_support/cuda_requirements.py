"""Which cuBLAS package, if any, the CUDA build needs on this machine (used by backend.py;
no dependency beyond the standard library, so the tests import it too)."""

import os
import re
import shutil
import subprocess


def _cuda_option(config_settings) -> str:
    settings = config_settings or {}
    value = settings.get("cmake.define.FASTRNN_CUDA") or os.environ.get("FASTRNN_CUDA") or "AUTO"
    return str(value).upper()


def _nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or ""
    return (
        os.environ.get("CUDACXX")
        or shutil.which("nvcc")
        or (shutil.which(os.path.join(home, "bin", "nvcc")) if home else None)
    )


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
    # The toolkit's own headers (a wheel in this environment does not count: the isolated
    # build environment pip makes from these requirements starts without one).
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    targets = os.path.join(root, "targets")
    includes = [os.path.join(root, "include")] + [
        os.path.join(targets, t, "include")
        for t in (os.listdir(targets) if os.path.isdir(targets) else [])
    ]
    if any(os.path.isfile(os.path.join(d, "cublas_v2.h")) for d in includes):
        return []
    return [f"nvidia-cublas=={major}.*" if int(major) >= 13 else f"nvidia-cublas-cu{major}"]
