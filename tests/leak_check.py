"""Repeated forward + backward calls through fastrnn's public API, reporting resident memory
(VmRSS) after a warm-up and at the end, and the reference counts of the arrays passed in.

Run by tests/test_leaks.py in a process of its own (so nothing else allocates in it), or by
hand: ``python tests/leak_check.py [--calls N] [--warmup N] [--case NAME ...]``. Prints one
JSON object: {"rss_kib": {"start", "warm", "end"}, "growth_kib" (end - warm),
"refcount_growth" (input -> growth, over the same calls), "seconds", "cases", "calls",
"warmup"}.

The cases take turns, one call each. Each is small (10^4 calls take seconds) but its calls
allocate buffers of kilobytes to ~100 KiB (a buffer leaked per call would show as megabytes):

- lstm_layer: 2-layer bidirectional LSTM with a projection, unsorted lengths (0 included),
  dropout, float64: forward + backward, zero_grad;
- gru_layer: batch_first GRU (reset_after=False), lengths, float32, and a no_grad forward;
  rnn_layer: relu RNN, 2 layers, unbatched input;
- ops: lstm (w_hr, lengths), gru and rnn kernels, forward + backward, and an inference
  forward (training=False);
- errors: calls that raise: a bad weight shape, out-of-range lengths, a float64/float32 mix,
  a second backward of one forward, a dy of the wrong shape (then the right backward), a
  layer input of the wrong dtype, a layer backward before any forward of a fresh layer.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

import numpy as np

import fastrnn
from fastrnn import ops

RNG = np.random.default_rng(0)
# Small enough that a call costs well under a millisecond, big enough that each call's
# buffers take kilobytes (the LSTM's saved gates: T*B*4H*8 = 128 KiB; W_hh packed: 16 KiB).
T, B, I, H, P = 16, 8, 16, 32, 8
LENGTHS = np.array([16, 9, 0, 16, 3, 1, 12, 7])


def rand(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


class Case:
    """One repeated call; ``inputs`` are the arrays it passes in every time (their reference
    counts must not grow)."""

    inputs: dict

    def __call__(self) -> None:
        raise NotImplementedError


class LSTMLayer(Case):
    def __init__(self):
        self.net = fastrnn.LSTM(
            I,
            H,
            num_layers=2,
            bidirectional=True,
            proj_size=P,
            dropout=0.2,
            dtype=np.float64,
            seed=0,
        )
        self.inputs = dict(
            x=rand(T, B, I),
            h0=rand(4, B, P),
            c0=rand(4, B, H),
            dy=rand(T, B, 2 * P),
            dh=rand(4, B, P),
            lengths=LENGTHS,
        )

    def __call__(self):
        a = self.inputs
        self.net(a["x"], (a["h0"], a["c0"]), lengths=a["lengths"])
        self.net.backward(a["dy"], (a["dh"], None))
        self.net.zero_grad()


class GRULayer(Case):
    def __init__(self):
        self.net = fastrnn.GRU(I, H, batch_first=True, reset_after=False, dtype=np.float32, seed=1)
        self.inputs = dict(
            x=rand(B, T, I, dtype=np.float32),
            dy=rand(B, T, H, dtype=np.float32),
            lengths=list(LENGTHS),
        )

    def __call__(self):
        a = self.inputs
        self.net(a["x"], lengths=a["lengths"])
        self.net.backward(a["dy"])
        with fastrnn.no_grad():  # inference: the kernels' chunked path, nothing kept
            self.net(a["x"], lengths=a["lengths"])


class RNNLayer(Case):
    def __init__(self):
        self.net = fastrnn.RNN(I, H, num_layers=2, nonlinearity="relu", dtype=np.float64, seed=2)
        self.inputs = dict(x=rand(T, I), h0=rand(2, H), dh=rand(2, H))

    def __call__(self):
        a = self.inputs
        y, _ = self.net(a["x"], a["h0"])
        self.net.backward(None, a["dh"])


class Ops(Case):
    def __init__(self):
        self.inputs = dict(
            x=rand(T, B, I),
            h0p=rand(B, P),
            c0=rand(B, H),
            h0=rand(B, H),
            lw_ih=rand(4 * H, I),
            lw_hh=rand(4 * H, P),
            lb=rand(4 * H),
            w_hr=rand(P, H),
            gw_ih=rand(3 * H, I),
            gw_hh=rand(3 * H, H),
            gb=rand(3 * H),
            rw_ih=rand(H, I),
            rw_hh=rand(H, H),
            rb=rand(H),
            dyp=rand(T, B, P),
            dy=rand(T, B, H),
            lengths=LENGTHS[::-1].copy(),
        )

    def __call__(self):
        a = self.inputs
        y, h, c, saved = ops.lstm_forward(
            a["x"],
            a["h0p"],
            a["c0"],
            a["lw_ih"],
            a["lw_hh"],
            a["lb"],
            a["lb"],
            w_hr=a["w_hr"],
            lengths=a["lengths"],
        )
        ops.lstm_backward(saved, a["dyp"], None, a["c0"])
        y, h, saved = ops.gru_forward(a["x"], a["h0"], a["gw_ih"], a["gw_hh"], a["gb"], a["gb"])
        ops.gru_backward(saved, a["dy"], a["h0"])
        y, h, saved = ops.rnn_forward(
            a["x"], None, a["rw_ih"], a["rw_hh"], None, None, lengths=a["lengths"]
        )
        ops.rnn_backward(saved, a["dy"], None)
        ops.lstm_forward(
            a["x"],
            None,
            None,
            a["lw_ih"],
            a["lw_hh"],
            None,
            None,
            False,
            w_hr=a["w_hr"],
            lengths=a["lengths"],
        )
        ops.gru_forward(a["x"], None, a["gw_ih"], a["gw_hh"], None, None, False)


class Errors(Case):
    def __init__(self):
        self.inputs = dict(
            x=rand(T, B, I),
            w_ih=rand(4 * H, I),
            w_hh=rand(4 * H, H),
            bad_w_hh=rand(4 * H, H + 1),
            w32=rand(4 * H, H, dtype=np.float32),
            dy=rand(T, B, H),
            bad_dy=rand(T, B + 1, H),
            x32=rand(T, B, I, dtype=np.float32),
        )
        self.net = fastrnn.GRU(I, H, dtype=np.float64, seed=3)
        self.expected = 0

    def _raises(self, exc, fn, *args, **kw):
        try:
            fn(*args, **kw)
        except exc:
            self.expected += 1
        else:
            raise AssertionError(f"{fn} did not raise {exc.__name__}")

    def __call__(self):
        a = self.inputs
        self._raises(
            ValueError, ops.lstm_forward, a["x"], None, None, a["w_ih"], a["bad_w_hh"], None, None
        )
        self._raises(
            ValueError,
            ops.lstm_forward,
            a["x"],
            None,
            None,
            a["w_ih"],
            a["w_hh"],
            None,
            None,
            lengths=LENGTHS + 10,
        )
        self._raises(
            TypeError, ops.lstm_forward, a["x"], None, None, a["w_ih"], a["w32"], None, None
        )
        _, _, _, saved = ops.lstm_forward(a["x"], None, None, a["w_ih"], a["w_hh"], None, None)
        self._raises(ValueError, ops.lstm_backward, saved, a["bad_dy"], None, None)
        ops.lstm_backward(saved, a["dy"], None, None)
        self._raises(ValueError, ops.lstm_backward, saved, a["dy"], None, None)
        self._raises(TypeError, self.net, a["x32"])
        fresh = fastrnn.RNN(3, 2, seed=0)
        self._raises(RuntimeError, fresh.backward, None)


CASES = {
    "lstm_layer": LSTMLayer,
    "gru_layer": GRULayer,
    "rnn_layer": RNNLayer,
    "ops": Ops,
    "errors": Errors,
}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--calls",
        type=int,
        default=10_000,
        help="calls in all, the cases taking turns (default 10000)",
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=1_000,
        help="calls before the first measurement (default 1000)",
    )
    ap.add_argument(
        "--case",
        action="append",
        choices=sorted(CASES),
        help="run only this case (repeatable; default: all)",
    )
    args = ap.parse_args(argv)
    if not 0 < args.warmup < args.calls:
        raise SystemExit("need 0 < --warmup < --calls")
    cases = [CASES[n]() for n in (args.case or CASES)]
    start = rss_kib()
    t0 = time.perf_counter()
    for i in range(args.calls):
        cases[i % len(cases)]()
        if i + 1 == args.warmup:
            gc.collect()
            warm = rss_kib()
            refs_before = [{k: sys.getrefcount(v) for k, v in c.inputs.items()} for c in cases]
    gc.collect()
    end = rss_kib()
    refcount_growth = {}
    for c, before in zip(cases, refs_before):
        for k, v in c.inputs.items():
            if sys.getrefcount(v) != before[k]:
                refcount_growth[f"{type(c).__name__}.{k}"] = sys.getrefcount(v) - before[k]
    result = {
        "rss_kib": {"start": start, "warm": warm, "end": end},
        "growth_kib": end - warm,
        "refcount_growth": refcount_growth,
        "seconds": round(time.perf_counter() - t0, 2),
        "cases": [type(c).__name__ for c in cases],
        "calls": args.calls,
        "warmup": args.warmup,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
