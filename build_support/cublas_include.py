"""Prints the directory holding cublas_v2.h for a CUDA major version, or nothing.

Usage: cublas_include.py MAJOR [TOOLKIT_INCLUDE_DIR ...]. Looks in the toolkit's include
directories first, then in NVIDIA's cuBLAS wheel installed for the Python running this
(nvidia-cublas: nvidia/cu13/include for CUDA 13; nvidia-cublas-cu12: nvidia/cublas/include).
Called by CMakeLists.txt at every configure, so a build never reuses a stale path.
"""

import os
import sys


def cublas_include(major: str, toolkit_dirs: list) -> str:
    candidates = list(toolkit_dirs)
    try:
        import nvidia  # a namespace package: one entry per site-packages that has it

        for root in nvidia.__path__:
            candidates += [
                os.path.join(root, f"cu{major}", "include"),
                os.path.join(root, "cublas", "include"),
            ]
    except ImportError:
        pass
    for d in candidates:
        if os.path.isfile(os.path.join(d, "cublas_v2.h")):
            return d
    return ""


if __name__ == "__main__":
    print(cublas_include(sys.argv[1], sys.argv[2:]))
