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

import common  # first: it sets NumPy's BLAS threads, which NumPy reads at import
import numpy as np

import fastrnn
from common import machine, summary, timeit
from fastrnn import _C, ops, reference

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


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
    """GFLOP/s of fastrnn's large-GEMM path (the BLAS, as the kernels call it) at one shape."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((N, K)).astype(np.float32)
    c = np.empty((M, N), np.float32)
    ms = np.median(timeit({"gemm": lambda: _C.gemm_nt(a, b, c)}, repeats)["gemm"])
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
          f"{fastrnn.get_num_threads()} threads); numpy {np.__version__} "
          f"({common.numpy_threads()} BLAS threads); "
          + (f"torch {peers['torch']} ({args.threads} threads)" if peers else "torch not installed"))
    print(f"float32, T={T} B={B} I=H={H}; median ms (min-max) over {args.repeats} interleaved runs; "
          f"ratios: median of per-run time / fastrnn's time (> 1: fastrnn faster)")
    # The roofline: each case's FLOPs at the speed of GEMMs of its own shapes, measured now:
    # the input projection (T*B x I by I x G*H) and the per-step recurrent GEMM (B x H by H x G*H).
    header = f"{'case':22} {'fastrnn ms':>24} {'of roofline':>11}"
    if not args.no_reference:
        header += f" {'numpy ref':>10}"
    if peers:
        header += f" {'torch ms':>24} {'torch/fastrnn':>13}"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    for cell in args.cells:
        G = GATES[cell]
        big, step = gemm_gflops(T * B, G * H, I, 3), gemm_gflops(B, G * H, H, 5)
        flops_in, flops_rec = 2 * T * B * G * H * I, 2 * T * B * G * H * H
        roof_ms = flops_in / big / 1e6 + flops_rec / step / 1e6
        print(f"\n{cell}: GEMMs here: ({T * B} x {I}) x ({I} x {G * H}) {big:.0f} GFLOP/s, "
              f"({B} x {H}) x ({H} x {G * H}) {step:.0f} GFLOP/s -> forward roofline "
              f"{roof_ms:.1f} ms, training (3x the FLOPs) {3 * roof_ms:.1f} ms")
        print(header)
        k = 1 / np.sqrt(H)
        w = [rng.uniform(-k, k, s).astype(np.float32) for s in [(G * H, I), (G * H, H), (G * H,), (G * H,)]]
        fr = fastrnn_fns(ops, cell, x, w)
        ref = fastrnn_fns(reference, cell, x, w)
        tc = torch_fns(cell, x, w) if peers else (None, None)
        for i, (name, roof) in enumerate([("forward", roof_ms), ("forward+backward", 3 * roof_ms)]):
            fns = {"fastrnn": fr[i]}
            if tc[i]:
                fns["torch"] = tc[i]
            t = timeit(fns, args.repeats)
            med = float(np.median(t["fastrnn"]))
            line = f"{cell + ' ' + name:22} {summary(t['fastrnn'])} {roof / med:11.0%}"
            if not args.no_reference:
                ref_ms = np.median(timeit({"ref": ref[i]}, max(1, args.repeats // 3))["ref"])
                line += f" {ref_ms / med:9.1f}x"
            if "torch" in t:
                ratio = np.median(np.array(t["torch"]) / np.array(t["fastrnn"]))
                line += f" {summary(t['torch'])} {ratio:12.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
