"""Interleaved timing, the pause that lets thread pools go to sleep between peers, and the
memory probe (peak RSS of one forward, in a fresh process)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Callable, Dict, List


def time_interleaved(
    fns: Dict[str, Callable[[], None]], repeats: int, settle: bool, warm_up: bool = True
) -> Dict[str, List[float]]:
    """Times each callable `repeats` times, interleaved (a, b, a, b, ...) so that the slow
    drifts of a shared machine hit every peer alike, after two warm-up calls each (JAX compiles
    in the first). Returns name -> list of ms.

    With more than one thread (`settle`), every peer's pool spins for a while after a call
    (torch's OpenMP for milliseconds, fastrnn's briefly) and would steal cores from the peer
    timed next: a pause before each timing lets them go to sleep, as they would in a program
    that uses one library. The pause busy-waits: a sleeping core would wake up slow.

    A short call (under RE_WARM_MS in the second warm-up call) is timed right after an
    untimed call of its own: measured, a 100 us call ran 2-3x slower right after a 30 ms
    pause (busy or asleep) or another library's call, at 1 and 2 threads alike, which is the
    state of the machine, not the speed of the peer; a program calling it in a loop sees the
    warm time."""
    short = {k: False for k in fns}  # unknown without a warm-up: no re-warming
    if warm_up:
        for name, fn in fns.items():
            fn()  # the first call may compile (JAX) or fault its memory in
            t0 = time.perf_counter()
            fn()
            short[name] = (time.perf_counter() - t0) * 1e3 < RE_WARM_MS
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if settle:
                settle_pause()
            if short[name]:
                fn()
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


RE_WARM_MS = 20.0


def settle_pause(seconds: float = 0.03) -> None:
    """Busy-waits `seconds`: the other peers' spinning threads go to sleep meanwhile."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# ----------------------------------------------------------------------------- memory


_MEMORY_PROBE = """
import sys, numpy as np, fastrnn
def peak_kib():  # VmHWM: the peak RSS of this process image (ru_maxrss would include the
    # forked parent's, which exec does not reset)
    with open('/proc/self/status') as f:
        return int(next(l.split()[1] for l in f if l.startswith('VmHWM')))
T, B, I, H = map(int, sys.argv[1:5])
training = sys.argv[5] == 'train'
net = fastrnn.LSTM(I, H, seed=0).train(training)
x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
net(x[:2])  # warm-up on a short sequence
before = peak_kib()
y, _ = net(x)
assert (net._tape is None) == (not training)
print(peak_kib() - before)
"""


def forward_peak_kib(T: int, B: int, I: int, H: int, training: bool) -> int:
    """Peak RSS growth (KiB) of one float32 LSTM forward over x (T, B, I), in a fresh process
    (Linux: reads VmHWM)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEMORY_PROBE,
            str(T),
            str(B),
            str(I),
            str(H),
            "train" if training else "eval",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out)


def memory_section(quick: bool) -> List[dict]:
    """Peak RSS growth (MiB) of one LSTM forward (B=16, I=H=256) as T grows, a fresh process
    per point (Linux only)."""
    if not sys.platform.startswith("linux"):
        return []
    rows = []
    for T in (100, 400) if quick else (100, 400, 1600, 6400):
        row = {"T": T, "y_MiB": T * 16 * 256 * 4 / 2**20}
        for mode in ("eval", "train"):
            row[f"{mode}_MiB"] = forward_peak_kib(T, 16, 256, 256, mode == "train") / 1024
        rows.append(row)
    return rows
