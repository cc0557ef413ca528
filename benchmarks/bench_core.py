"""First measurement of the core kernels: one layer, one direction, float32.

For each cell: forward (inference) and forward + backward (training) with fastrnn, the NumPy
reference and, when installed, PyTorch's CPU nn.LSTM / nn.GRU / nn.RNN, all at the same
explicit thread count, measured in one run. Prints median ms (min-max) and the peers' time
as a multiple of fastrnn's (> 1: fastrnn is faster), plus fastrnn's rate against a GEMM of
the same FLOPs measured in the same run (the roofline fraction).

    python benchmarks/bench_core.py --threads 1 --shape 100 64 512
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import fastrnn
from fastrnn import ops, reference

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def timeit(fn, repeats: int):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), float(min(times)), float(max(times))


def fastrnn_fns(mod, cell, x, w):
    fwd, bwd = getattr(mod, f"{cell}_forward"), getattr(mod, f"{cell}_backward")
    extra = (None,) if cell == "lstm" else ()

    def infer():
        fwd(x, None, *extra, *w, training=False)

    def train():
        out = fwd(x, None, *extra, *w)
        bwd(out[-1], out[0], None, *extra)

    return infer, train


def torch_fns(cell, x, w):
    import torch

    T, B, I = x.shape
    H = w[1].shape[1]
    m = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](I, H)
    with torch.no_grad():
        for p, v in zip([m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0], w):
            p.copy_(torch.from_numpy(v))
    xt = torch.from_numpy(x)

    def infer():
        with torch.no_grad():
            m(xt)

    xg = xt.clone().requires_grad_()

    def train():
        y, _ = m(xg)
        y.backward(y.detach())

    return infer, train


def gemm_gflops(M: int, N: int, K: int, repeats: int) -> float:
    """Throughput of fastrnn's BLAS-backed large GEMM path, measured through a T=1 RNN
    forward whose time is dominated by one (M x K) x (K x N) input projection."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, M, K)).astype(np.float32)
    w_ih = rng.standard_normal((N, K)).astype(np.float32)
    w_hh = np.zeros((N, N), np.float32)
    ms = timeit(lambda: ops.rnn_forward(x, None, w_ih, w_hh, None, None, training=False), repeats)[0]
    return 2 * M * N * K / ms / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", nargs=3, type=int, default=[100, 64, 512], metavar=("T", "B", "H"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--cells", nargs="+", default=list(GATES))
    ap.add_argument("--no-reference", action="store_true", help="skip the (slow) NumPy reference")
    args = ap.parse_args()
    T, B, H = args.shape
    I = H
    fastrnn.set_num_threads(args.threads)
    peers = {}
    try:
        import torch

        torch.set_num_threads(args.threads)
        peers["torch"] = torch.__version__
    except ImportError:
        pass
    print(f"machine: {machine()}; fastrnn {fastrnn.__version__} ({fastrnn.cpu_isa()}, "
          f"{fastrnn.get_num_threads()} threads); numpy {np.__version__}; "
          + (f"torch {peers['torch']} ({args.threads} threads)" if peers else "torch not installed"))
    print(f"float32, T={T} B={B} I=H={H}; median ms (min-max) over {args.repeats} runs; "
          f"peer columns: time / fastrnn's time\n")
    gflops = gemm_gflops(T * B, 4 * H, I, args.repeats)
    print(f"roofline: large GEMM ({T * B} x {I}) x ({I} x {4 * H}) runs at {gflops:.0f} GFLOP/s here\n")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    header = f"{'case':18} {'fastrnn':>22} {'of roofline':>11}"
    if not args.no_reference:
        header += f" {'numpy ref':>10}"
    if peers:
        header += f" {'torch':>22} {'torch/fastrnn':>13}"
    print(header)
    for cell in args.cells:
        G = GATES[cell]
        k = 1 / np.sqrt(H)
        w = [rng.uniform(-k, k, s).astype(np.float32) for s in [(G * H, I), (G * H, H), (G * H,), (G * H,)]]
        fr = fastrnn_fns(ops, cell, x, w)
        ref = fastrnn_fns(reference, cell, x, w)
        tc = torch_fns(cell, x, w) if peers else (None, None)
        flops_fwd = 2 * T * B * G * H * (I + H)
        for name, f_fast, f_ref, f_torch, flops in [
            ("forward", fr[0], ref[0], tc[0], flops_fwd),
            ("forward+backward", fr[1], ref[1], tc[1], 3 * flops_fwd),
        ]:
            med, lo, hi = timeit(f_fast, args.repeats)
            line = f"{cell + ' ' + name:18} {med:8.1f} ({lo:6.1f}-{hi:6.1f}) {flops / med / 1e6 / gflops:10.0%}"
            if not args.no_reference:
                line += f" {timeit(f_ref, max(1, args.repeats // 3))[0] / med:9.1f}x"
            if f_torch:
                tmed, tlo, thi = timeit(f_torch, args.repeats)
                line += f" {tmed:8.1f} ({tlo:6.1f}-{thi:6.1f}) {tmed / med:12.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
