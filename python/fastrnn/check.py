"""``fastrnn check``: the C++ kernels against the NumPy reference on this machine, and the
speed-up, for each cell, forward + backward (a first look; ``fastrnn bench`` measures).
``--backend cuda`` checks the GPU backend instead, on device-resident inputs, timing each
step until the GPU is done."""

from __future__ import annotations

import functools
import platform
import time

import numpy as np

import fastrnn
from fastrnn import cuda, ops, reference
from fastrnn.cell_spec import CELLS, CellSpec
from fastrnn.openblas import blas_core

# The float32 kernels against the NumPy reference (float32 too) at these sizes: a max relative
# error (max |a - b| / max |b|, per output and every gradient) above this means a wrong kernel.
TOLERANCE = 1e-4


def _train_step(mod, cell: CellSpec, x, w, options):
    """One forward + backward with dy = y; returns (y, gradients)."""
    zeros = [None] * len(cell.states)
    y, _, saved = cell.forward(mod, x, zeros, w, options=options)
    return y, list(cell.backward(mod, saved, y, zeros).values())


def _median_ms(fn, repeats: int) -> tuple:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), min(times), max(times)


def _on_backend(backend: str, x, w):
    """A function running one training step of `cell` on the backend, returning host arrays."""
    if backend == "cpu":
        return lambda cell, options: _train_step(ops, cell, x, w, options)
    xd, wd = cuda.to_device(x), [cuda.to_device(a) for a in w]

    def step(cell, options):
        y, grads = _train_step(ops, cell, xd, wd, options)
        cuda.synchronize()
        return y, grads

    return step


def _host(a):
    return a.numpy() if hasattr(a, "numpy") else a


def run_check(
    T: int, B: int, H: int, repeats: int, backend: str = "cpu", command: str = "fastrnn check"
) -> int:
    """Prints the check; `command` is the command line a BLAS warning's fix shows."""
    core = blas_core(command)
    where = (
        f"kernels: {fastrnn.cpu_isa()} | threads: {fastrnn.get_num_threads()} | "
        f"BLAS core: {core.name or 'unknown'}"
    )
    if backend == "cuda":
        cuda.require()  # RuntimeError saying why, where CUDA is not usable
        where = f"backend: cuda ({cuda.status()})"
    print(f"fastrnn {fastrnn.__version__} | {platform.machine()} | {where}")
    if core.warning and backend == "cpu":
        print(f"warning: {core.warning}")
    print(f"forward + backward, float32, T={T} B={B} I=H={H}; reference = plain NumPy\n")
    print(f"{'cell':6} {'max rel err':>12} {'fastrnn ms':>11} {'numpy ms':>9} {'speed-up':>9}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    failed = []
    for cell in CELLS.values():
        options = {key: opt.default for key, opt in cell.options.items()}
        k = 1 / np.sqrt(H)
        w = [rng.uniform(-k, k, s).astype(np.float32) for s in cell.param_shapes(H, H).values()]
        step = _on_backend(backend, x, w)
        y, grads = step(cell, options)
        y_ref, grads_ref = _train_step(reference, cell, x, w, options)
        err = max(
            float(np.max(np.abs(_host(a) - b)) / (np.max(np.abs(b)) + 1e-30))
            for a, b in zip([y, *grads], [y_ref, *grads_ref])
            if a is not None
        )
        fast = _median_ms(functools.partial(step, cell, options), repeats)
        slow = _median_ms(functools.partial(_train_step, reference, cell, x, w, options), repeats)
        print(f"{cell.name:6} {err:12.1e} {fast[0]:11.1f} {slow[0]:9.1f} {slow[0] / fast[0]:8.1f}x")
        if not err <= TOLERANCE:  # NaN fails too
            failed.append(cell.name)
    if failed:
        print(f"\nFAILED: {', '.join(failed)}: max relative error above {TOLERANCE:g}")
        return 1
    return 0
