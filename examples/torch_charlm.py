"""A character-level LSTM language model in plain PyTorch, trained twice: with torch.nn.LSTM
and with fastrnn.torch.LSTM, its drop-in replacement, from the same initial weights on the same
batches.

The model is an embedding, a 2-layer LSTM and a linear head over the characters; training is
Adam with gradient clipping and truncated backpropagation through time over parallel streams
of the text (the state carried from one chunk to the next, detached). The text is the English
help of Python's own documentation, which ships with Python (pydoc_data), so nothing is
downloaded. Dropout is 0, so both runs compute the same function and only rounding tells them
apart: the loss curves are printed side by side in bits per character, with their largest
relative difference, and the time per batch of each (forward,
backward, clipping and the Adam step), the two models taking turns at every step so that the
machine's drifts hit both alike.

Training amplifies rounding differences: from about step 80 on, where the loss leaves its
first plateau, two float32 runs whose initial weights differ by one ulp (torch.nn on both
sides) drift apart to ~4e-3 relative by step 200 (measured here, 2026-11-30). So the check is
on the first --check-steps steps (default 50, where that drift stays below 1e-6), which must
agree within --tol (float32: 1e-4; float64: 1e-9); the rest of the curve is shown, not checked.

    python examples/torch_charlm.py [--quick] [--steps N] [--dtype float64]
"""

import argparse
import math
import os
import sys
import time

import numpy as np

import fastrnn
from fastrnn.train import stream_batches

try:
    import torch

    import fastrnn.torch as fastrnn_torch
except ImportError as e:  # the example needs PyTorch; fastrnn itself does not
    sys.exit(f"examples/torch_charlm.py needs PyTorch and fastrnn.torch: {e}")


def corpus() -> str:
    import pydoc_data.topics as topics

    return "".join(topics.topics[k] for k in sorted(topics.topics))


class CharLM(torch.nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, lstm_class):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.lstm = lstm_class(embed, hidden, num_layers=2, dropout=0.0)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        y, state = self.lstm(self.embed(ids), state)  # ids (T, B): time-major
        return self.head(y), state


class Run:
    """One model, its optimizer, the state it carries between chunks, its losses and times."""

    def __init__(self, name: str, model: CharLM, lr: float, clip: float):
        self.name, self.model, self.clip = name, model, clip
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)
        self.state = None
        self.losses, self.ms = [], []

    def step(self, x, y) -> None:
        t0 = time.perf_counter()
        logits, state = self.model(x, self.state)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
        )
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.ms.append((time.perf_counter() - t0) * 1e3)
        self.state = tuple(s.detach() for s in state)  # truncated BPTT: no gradient across chunks
        self.losses.append(loss.item() / math.log(2))  # bits per character


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few steps (for CI)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--tol", type=float, default=None, help="largest relative loss difference")
    ap.add_argument("--check-steps", type=int, default=50, help="the steps --tol applies to")
    ap.add_argument(
        "--threads", type=int, help="for both (default: 1 with --quick, else all cores)"
    )
    args = ap.parse_args()
    if args.quick:
        embed, hidden, batch, seq_len, steps, log_every = 8, 32, 8, 16, 6, 1
        text = corpus()[:20_000]
    else:
        embed, hidden, batch, seq_len, steps, log_every = 64, 256, 32, 64, 200, 20
        text = corpus()
    steps = args.steps or steps
    dtype = getattr(torch, args.dtype)
    tol = args.tol or (1e-4 if dtype == torch.float32 else 1e-9)
    threads = args.threads or (1 if args.quick else os.cpu_count() or 1)
    torch.set_num_threads(threads)
    fastrnn.set_num_threads(threads)

    vocab = sorted(set(text))
    lookup = {ch: i for i, ch in enumerate(vocab)}
    data = np.fromiter((lookup[ch] for ch in text), np.int64, len(text))

    torch.manual_seed(0)
    reference = CharLM(len(vocab), embed, hidden, torch.nn.LSTM).to(dtype)
    dropin = CharLM(len(vocab), embed, hidden, fastrnn_torch.LSTM).to(dtype)
    dropin.load_state_dict(reference.state_dict())  # same names, same initial weights
    runs = [Run("torch.nn", reference, 3e-3, 5.0), Run("fastrnn.torch", dropin, 3e-3, 5.0)]

    print(
        f"char LM: {len(text):,} characters, vocabulary {len(vocab)}; embedding {embed}, "
        f"LSTM 2 x {hidden}, {batch} streams x {seq_len} steps per batch, {steps} batches, "
        f"{args.dtype}, {threads} threads"
    )
    batches = (b for _ in iter(int, 1) for b in stream_batches(data, batch, seq_len))
    for i in range(steps):
        x, y = (torch.from_numpy(np.ascontiguousarray(a)) for a in next(batches))
        for run in runs if i % 2 == 0 else runs[::-1]:  # take turns at going first
            run.step(x, y)

    print(f"\n{'step':>6} {'torch.nn bits/char':>19} {'fastrnn.torch':>14} {'rel. diff':>10}")
    rels = []
    for i in range(steps):
        a, b = runs[0].losses[i], runs[1].losses[i]
        rels.append(abs(a - b) / abs(a))
        if (i + 1) % log_every == 0 or i == 0:
            print(f"{i + 1:6} {a:19.4f} {b:14.4f} {rels[-1]:10.2e}")
    checked = min(steps, args.check_steps)
    worst = max(rels[:checked])
    print(
        f"largest relative difference of the losses: {worst:.3g} over the first {checked} "
        f"steps (checked: <= {tol:g}), {max(rels):.3g} over all {steps}"
    )
    print("\ntime per batch (forward, backward, clipping, Adam), median (min-max):")
    for run in runs:
        ms = run.ms[1:] or run.ms  # the first step warms up
        print(f"  {run.name:14} {np.median(ms):8.2f} ms ({min(ms):.2f}-{max(ms):.2f})")
    ratio = np.median(
        np.array(runs[0].ms[1:] or runs[0].ms) / np.array(runs[1].ms[1:] or runs[1].ms)
    )
    print(f"  torch.nn / fastrnn.torch: {ratio:.2f}x (median of per-step ratios)")
    if not worst <= tol:
        sys.exit(
            f"the loss curves differ by {worst:.3g} (relative) in the first {checked} steps, "
            f"more than {tol:g}"
        )


if __name__ == "__main__":
    main()
