"""The roofline of a case: its FLOPs at the GEMM throughput measured on this machine at the
case's own GEMM shapes (for the batch-1 streaming step: its weight bytes at the read bandwidth
measured for that many bytes)."""

from __future__ import annotations

import time

import numpy as np

from fastrnn import _C
from fastrnn.cell_spec import spec

from .case import Case


def gemm_ms(M: int, N: int, K: int, repeats: int) -> float:
    """Median ms of C (M, N) = A (M, K) B^T through fastrnn's BLAS path."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((N, K)).astype(np.float32)
    c = np.empty((M, N), np.float32)
    _C.gemm_nt(a, b, c)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _C.gemm_nt(a, b, c)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def read_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes/s for reading `nbytes` that were read just before (as a streaming step re-reads
    its weights): the speed of whatever cache level or memory holds that many bytes, measured
    as a dot product of the array with itself (one read stream, on NumPy's BLAS at the case's
    thread count)."""
    a = np.ones(max(nbytes // 4, 1), np.float32)
    a.dot(a)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.dot(a)
        times.append(time.perf_counter() - t0)
    return nbytes / min(times)


def roofline(case: Case, repeats: int) -> None:
    """Sets case.flops, case.roofline_ms (and, for the streaming step, case.notes)."""
    G, T, B, H = spec(case.cell).G, case.T, case.B, case.H
    if case.mode == "stream":
        nbytes = 2 * G * H * H * 4
        case.flops = 2 * 2 * G * H * H
        case.roofline_ms = nbytes / read_bandwidth(nbytes, repeats) * 1e3
        case.notes = f"{nbytes / 2**20:.1f} MiB of weights per step"
        return
    proj = gemm_ms(T * B, G * H, H, repeats)  # all steps' input projection
    rec = T * gemm_ms(B, G * H, H, repeats)  # one recurrent GEMM per step
    case.flops = 2 * 2 * T * B * G * H * H
    case.roofline_ms = proj + rec
    if case.mode == "train":  # backward: the same recurrent work, dx, dW_ih and dW_hh
        case.flops *= 3
        case.roofline_ms *= 3
