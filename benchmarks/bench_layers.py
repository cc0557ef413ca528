"""Layers and cells against PyTorch, float32, at one explicit thread count:

- a stacked bidirectional layer (default: 2 layers, T=100, B=64, I=H=512), forward
  (inference) and forward + backward, for LSTM and GRU;
- the batch-1 streaming step (one call per step, H=512): fastrnn.LSTMCell / GRUCell against
  torch.nn.LSTMCell / GRUCell in inference, with the weight bytes each step must read and
  the bandwidth that implies.

    python benchmarks/bench_layers.py --threads 1
"""

from __future__ import annotations

import argparse

import numpy as np

import fastrnn
from fastrnn.cell_spec import spec

from common import machine, ratio, summary, timeit


def stacked(cell: str, T: int, B: int, H: int, layers: int, repeats: int, settle: bool) -> None:
    import torch

    name = spec(cell).torch_class  # fastrnn's layers and cells have torch.nn's class names
    ours = getattr(fastrnn, name)(H, H, num_layers=layers, bidirectional=True, seed=0)
    theirs = getattr(torch.nn, name)(H, H, num_layers=layers, bidirectional=True)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((T, B, H)).astype(np.float32)
    xt = torch.from_numpy(x)
    xg = xt.clone().requires_grad_()

    def ours_infer():
        with fastrnn.no_grad():
            ours(x)

    def ours_train():
        y, _ = ours(x)
        ours.backward(y)

    def theirs_infer():
        with torch.no_grad():
            theirs(xt)

    def theirs_train():
        y, _ = theirs(xg)
        y.backward(y.detach())

    for name, a, b in [
        ("forward", ours_infer, theirs_infer),
        ("forward+backward", ours_train, theirs_train),
    ]:
        t = timeit({"fastrnn": a, "torch": b}, repeats, settle)
        print(
            f"{cell} {layers}-layer bidirectional {name:16} {summary(t['fastrnn'])} ms   "
            f"torch {summary(t['torch'])} ms   "
            f"torch/fastrnn {ratio(t['torch'], t['fastrnn']):.2f}x",
            flush=True,
        )


def streaming(cell: str, H: int, steps: int, repeats: int, settle: bool) -> None:
    import torch

    G, name = spec(cell).G, spec(cell).torch_class + "Cell"
    ours = getattr(fastrnn, name)(H, H, seed=0)
    theirs = getattr(torch.nn, name)(H, H)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((1, H)).astype(np.float32)
    xt = torch.from_numpy(x)

    def ours_loop():
        state = None
        with fastrnn.no_grad():
            for _ in range(steps):
                state = ours(x, state)

    def theirs_loop():
        state = None
        with torch.no_grad():
            for _ in range(steps):
                state = theirs(xt, state)

    t = timeit({"fastrnn": ours_loop, "torch": theirs_loop}, repeats, settle)
    per_step = {k: [v * 1e3 / steps for v in ms] for k, ms in t.items()}  # us
    weight_bytes = 2 * G * H * H * 4
    best = min(per_step["fastrnn"])
    print(
        f"{cell} cell, batch 1, H={H}, one call per step: fastrnn {summary(per_step['fastrnn'])} us"
        f"   torch {summary(per_step['torch'])} us   torch/fastrnn "
        f"{ratio(per_step['torch'], per_step['fastrnn']):.2f}x   "
        f"({weight_bytes / 2**20:.0f} MiB of weights per step: "
        f"{weight_bytes / best / 1e3:.1f} GB/s "
        f"at fastrnn's best)",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shape", nargs=3, type=int, default=[100, 64, 512], metavar=("T", "B", "H"))
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import torch

    fastrnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    T, B, H = args.shape
    print(
        f"machine: {machine()}; fastrnn {fastrnn.__version__} ({fastrnn.cpu_isa()}, "
        f"{fastrnn.get_num_threads()} threads); torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); float32; median (min-max) over {args.repeats} "
        f"interleaved runs; torch/fastrnn > 1: fastrnn faster"
    )
    settle = args.threads > 1
    for cell in ("lstm", "gru"):
        stacked(cell, T, B, H, args.layers, args.repeats, settle)
    for cell in ("lstm", "gru"):
        streaming(cell, H, 200, args.repeats, settle)


if __name__ == "__main__":
    main()
