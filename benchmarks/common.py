"""What the benchmark scripts share: the machine's name, interleaved timing, thread setup.

Import it before NumPy: NumPy's own OpenBLAS (the reference's GEMMs) reads its thread count
only at import, and every peer must run at the same explicit count (--threads, default 1).
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv() -> str:
    args = sys.argv[1:]
    return args[args.index("--threads") + 1] if "--threads" in args[:-1] else "1"


os.environ["OPENBLAS_NUM_THREADS"] = _threads_from_argv()

import numpy as np  # noqa: E402

from fastrnn.bench import machine, time_interleaved  # noqa: E402,F401  (machine: re-exported)


def numpy_threads() -> str:
    return os.environ["OPENBLAS_NUM_THREADS"]


def timeit(fns: dict, repeats: int, settle: bool = False) -> dict:
    """The suite's interleaved timing (fastrnn.bench.time_interleaved): name -> list of ms."""
    return time_interleaved(fns, repeats, settle)


def summary(ms: list) -> str:
    """median (min-max)"""
    return f"{np.median(ms):8.2f} ({min(ms):7.2f}-{max(ms):7.2f})"


def ratio(peer: list, ours: list) -> float:
    """Median of per-run ratios peer / ours (> 1: ours faster); robust to drifts."""
    return float(np.median(np.array(peer) / np.array(ours)))
