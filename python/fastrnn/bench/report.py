"""What the suite reports: the machine, the table, the JSON document and the plot."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict
from typing import List

import numpy as np

from .case import Case

# 2: roofline_ms became blas_ms; limit_ms added. 3: each case's precision ("fp32" | "bf16");
# the document's precisions.
JSON_VERSION = 3


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


def ratio(case: Case, peer: str) -> float:
    """The median of per-run ratios peer / fastrnn for peers timed interleaved with fastrnn;
    a ratio of medians for the NumPy reference, which runs apart."""
    ours, theirs = case.times_ms["fastrnn"], case.times_ms[peer]
    if peer == "numpy":
        return float(np.median(theirs) / np.median(ours))
    n = min(len(ours), len(theirs))
    return float(np.median(np.array(theirs[:n]) / np.array(ours[:n])))


def fmt(ms: List[float]) -> str:
    if not ms:
        return "-"
    unit, scale = ("us", 1e3) if np.median(ms) < 1 else ("ms", 1)
    return f"{np.median(ms) * scale:.3g} ({min(ms) * scale:.3g}-{max(ms) * scale:.3g}) {unit}"


def print_table(cases: List[Case], peers: List[str], out=sys.stdout) -> None:
    others = [p for p in peers if p != "fastrnn"]
    head = f"{'case':44} {'fastrnn':>28} {'BLAS':>6} {'limit':>6}" + "".join(
        f" {p + ' x':>9}" for p in others
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    for c in cases:
        med = float(np.median(c.times_ms["fastrnn"]))
        line = f"{c.label:44} {fmt(c.times_ms['fastrnn']):>28} {c.blas_ms / med:6.0%}"
        line += f" {c.limit_ms / med:6.0%}"
        for p in others:
            line += f" {ratio(c, p):9.2f}" if p in c.times_ms else f" {'-':>9}"
        print(line, file=out)


def print_memory(rows: List[dict], out=sys.stdout) -> None:
    if not rows:
        return
    print(
        "\npeak RSS growth of one LSTM forward (B=16, I=H=256), MiB; y itself is T*16*256*4 bytes:",
        file=out,
    )
    for row in rows:
        print(
            f"  T={row['T']:5}  y {row['y_MiB']:7.1f}  inference {row['eval_MiB']:7.1f}  "
            f"training {row['train_MiB']:7.1f}",
            file=out,
        )


def case_json(c: Case) -> dict:
    return dict(
        asdict(c),
        label=c.label,
        blas_fraction=c.blas_ms / float(np.median(c.times_ms["fastrnn"])),
        limit_fraction=c.limit_ms / float(np.median(c.times_ms["fastrnn"])),
        ratios={p: ratio(c, p) for p in c.times_ms if p != "fastrnn"},
    )


def plot(cases: List[Case], peers: List[str], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'fastrnn[plot]'") from None
    modes = ["forward", "train", "stream"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, mode in zip(axes, modes):
        sel = [c for c in cases if c.mode == mode]
        labels = [
            f"{c.cell} B{c.B} H{c.H} T{c.T} t{c.threads}"
            + ("" if c.precision == "fp32" else f" {c.precision}")
            for c in sel
        ]
        for p in peers:
            ys = [np.median(c.times_ms[p]) if p in c.times_ms else np.nan for c in sel]
            ax.plot(range(len(sel)), ys, "o-", label=p, alpha=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(sel)))
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.set_title(f"{mode} ({'ms per step' if mode == 'stream' else 'ms'})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
