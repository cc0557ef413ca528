"""What bounds a case, measured on this machine in the same run at the case's thread count:

- the same-shape BLAS time (``Case.blas_ms``): the case's GEMMs at the speed this machine's
  BLAS (through fastrnn's own GEMM path) runs them at the case's own shapes -- the all-steps
  input projection and one recurrent GEMM per step (for the streaming step: its two GEMVs);
- the machine's limit (``Case.limit_ms``): the larger of the case's FLOPs at the peak rate of
  a large sgemm and the weight bytes it reads step by step at the read bandwidth of the cache
  level (or memory) that holds them. Compute bounds the large batches, the weight reads the
  batch-1 steps.

A bf16 case (``Case.precision == "bf16"``) is bounded the same way on bf16 terms: its GEMMs and
the peak rate through the kernels' bf16 GEMM (``gemm_ms(..., bf16=True)``), and weights of 2
bytes per element (bf16 halves what a step reads)."""

from __future__ import annotations

import functools
import time

import numpy as np

from fastrnn import _C, get_num_threads
from fastrnn.cell_spec import spec

from .case import Case

PEAK_N = 1024  # the peak sgemm: (1024 x 1024) x (1024 x 1024), 2.1 GFLOP


def gemm_ms(M: int, N: int, K: int, repeats: int, *, bf16: bool = False) -> float:
    """Median ms of C (M, N) = A (M, K) B^T through fastrnn's large-GEMM path (the BLAS; with
    ``bf16``, the kernels' bf16 products)."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((N, K)).astype(np.float32)
    c = np.empty((M, N), np.float32)
    _C.gemm_nt(a, b, c, bf16)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _C.gemm_nt(a, b, c, bf16)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def prepacked_ms(M: int, N: int, K: int, repeats: int) -> float:
    """Median ms of C (M, N) = A (M, K) W^T with bf16 products on W packed once beforehand,
    as a time loop's recurrent weight (the kernel harness, ``_C.time_recurrent_step``): the
    bf16 product without the per-call rounding and packing that ``gemm_ms`` includes."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    c = np.empty((M, N), np.float32)
    times = [
        _C.time_recurrent_step(a=a, w=w, c=c, groups=1, reps=1, bf16=True) for _ in range(repeats)
    ]
    return float(np.median(times)) * 1e3


@functools.lru_cache(maxsize=None)
def _peak_flops(threads: int, repeats: int, bf16: bool) -> float:
    ms = gemm_ms(PEAK_N, PEAK_N, PEAK_N, repeats, bf16=bf16)
    if bf16:  # the faster of a whole bf16 GEMM and the product on pre-packed weights
        ms = min(ms, prepacked_ms(PEAK_N, PEAK_N, PEAK_N, repeats))
    return 2 * PEAK_N**3 / (ms * 1e-3)


def peak_flops(repeats: int, *, bf16: bool = False) -> float:
    """FLOP/s of a large sgemm through fastrnn's BLAS path (with ``bf16``: of the same product
    with the kernels' bf16 products, the faster of a whole GEMM and the product on weights
    packed beforehand) at the current thread count, measured once per thread count,
    precision and process."""
    return _peak_flops(get_num_threads(), max(repeats, 3), bf16)


def read_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes/s for reading `nbytes` that were read just before (as a step re-reads its
    weights): the speed of whatever cache level or memory holds that many bytes, measured as a
    dot product of the array with itself (one read stream, on NumPy's BLAS at the case's
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
    """Sets case.flops, case.blas_ms, case.limit_ms and case.notes (for a bf16 case, with bf16
    GEMMs, the bf16 peak and 2-byte weights)."""
    G, T, B, H = spec(case.cell).G, case.T, case.B, case.H
    bf16 = case.precision == "bf16"
    w_bytes = G * H * H * (2 if bf16 else 4)  # one weight matrix (I = H), bf16 or float32
    if case.mode == "stream":  # per step: both GEMVs
        case.flops = 2 * 2 * G * H * H
        case.blas_ms = 2 * gemm_ms(1, G * H, H, repeats, bf16=bf16)
        reads = 2 * w_bytes  # W_ih and W_hh each step
        resident = reads
    else:
        case.flops = 2 * 2 * T * B * G * H * H
        proj = gemm_ms(T * B, G * H, H, repeats, bf16=bf16)  # all steps' input projection
        rec = T * gemm_ms(B, G * H, H, repeats, bf16=bf16)  # one recurrent GEMM per step
        case.blas_ms = proj + rec
        reads = T * w_bytes  # W_hh once per step
        resident = w_bytes
        if case.mode == "train":  # backward: the recurrent work again, dx, dW_ih, dW_hh
            case.flops *= 3
            case.blas_ms *= 3
            reads *= 2  # W_hh again per step, for dh
    compute_ms = case.flops / peak_flops(repeats, bf16=bf16) * 1e3
    memory_ms = reads / read_bandwidth(resident, repeats) * 1e3
    case.limit_ms = max(compute_ms, memory_ms)
    bound = "compute" if compute_ms >= memory_ms else "weight reads"
    case.notes = f"{bound}-bound; {resident / 2**20:.2f} MiB of weights re-read per step"
