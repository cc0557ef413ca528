"""The kernel harness: one recurrent step's GEMM, alone, at the suite's shapes.

For each (batch B, hidden size H, gates G) it times the recurrent step the time loops run
(``_C.time_recurrent_step``: C (B, G*H) = A (B, H) W^T with W prepared once as the loops
prepare W_hh -- packed, or at batch 1 with W over 64 KiB read as it is by GEMVs -- timed in
C++ over many steps) against the BLAS on the same product (``_C.gemm_nt``, which re-reads W
as it is), checks the step's result against NumPy, and reports GFLOP/s, GB/s of weights read and the
fraction of the peak large-sgemm rate measured in the same run. Kernel work is measured here
in isolation before the suite measures whole calls. With ``--bf16``: the bf16 step (bf16
operands, float32 sums) against the kernels' bf16 GEMM and the bf16 peak, checked against
NumPy on bf16-rounded operands.

    python benchmarks/bench_step.py [--threads N] [--cells lstm,gru,rnn] [--reps 200] [--bf16]
"""

from __future__ import annotations

import argparse

import numpy as np

import fastrnn
from fastrnn import _C
from fastrnn.bench.roofline import gemm_ms, peak_flops
from fastrnn.cell_spec import spec

import common  # noqa: F401  (sets NumPy's BLAS threads first)


def bf16_rounded(a: np.ndarray) -> np.ndarray:
    """float32 `a` rounded to bf16 (to nearest even), as float32: the kernels' bf16 operands."""
    u = a.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--bf16", action="store_true", help="bf16 products, float32 sums")
    args = p.parse_args()
    bf16 = args.bf16
    fastrnn.set_num_threads(args.threads)
    peak = peak_flops(5, bf16=bf16)
    print(
        f"{common.machine()}; kernels {fastrnn.cpu_isa()}; {args.threads} thread(s); "
        f"peak {'bf16 GEMM' if bf16 else 'sgemm'} {peak / 1e9:.0f} GFLOP/s; "
        f"{'bf16 products, float32 sums' if bf16 else 'float32'}"
    )
    head = f"{'cell':5} {'B':>3} {'H':>5} {'step us':>10} {'GFLOP/s':>8} {'% peak':>7}"
    print(head + f" {'GB/s W':>7} {'BLAS us':>9} {'BLAS/step':>11}")
    rng = np.random.default_rng(0)
    for cell in args.cells.split(","):
        G = spec(cell).G
        for B in (1, 16, 64):
            for H in (256, 512, 1024):
                a = rng.standard_normal((B, H)).astype(np.float32)
                w = rng.uniform(-0.05, 0.05, (G * H, H)).astype(np.float32)
                c = np.empty((B, G * H), np.float32)
                reps = max(5, args.reps * 256 // H // max(1, B // 16))
                step = _C.time_recurrent_step(a=a, w=w, c=c, groups=G, reps=reps, bf16=bf16)
                want = bf16_rounded(a) @ bf16_rounded(w).T if bf16 else a @ w.T
                np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-4)
                blas = gemm_ms(B, G * H, H, reps, bf16=bf16) * 1e-3  # the BLAS on the same shape
                flops = 2 * B * G * H * H
                w_bytes = w.nbytes // 2 if bf16 else w.nbytes  # what the step reads
                print(
                    f"{cell:5} {B:3} {H:5} {step * 1e6:10.1f} {flops / step / 1e9:8.1f} "
                    f"{flops / step / peak:7.0%} {w_bytes / step / 1e9:7.1f} "
                    f"{blas * 1e6:9.1f} {blas / step:11.2f}"
                )


if __name__ == "__main__":
    main()
