"""fastrnn's build backend: scikit-build-core, plus NVIDIA's cuBLAS headers when the CUDA
backend will be built and the CUDA toolkit has none.

pyproject.toml cannot make a build requirement depend on whether nvcc is installed; this
PEP 517 wrapper can. When a CUDA compiler is found (CUDACXX, nvcc on PATH, or
$CUDA_HOME/bin/nvcc), FASTRNN_CUDA is not OFF, and the toolkit lacks cublas_v2.h, the
isolated build environment also gets nvidia-cublas for the toolkit's major version. Every
other hook is scikit-build-core's, unchanged.
"""

import os
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
from cuda_requirements import cublas_requirements  # noqa: E402


def get_requires_for_build_wheel(config_settings=None):
    return _skbuild.get_requires_for_build_wheel(config_settings) + cublas_requirements(
        config_settings
    )


def get_requires_for_build_editable(config_settings=None):
    return _skbuild.get_requires_for_build_editable(config_settings) + cublas_requirements(
        config_settings
    )
