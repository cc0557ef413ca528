"""One benchmark case (cell x pass x shape x thread count x precision) and the grid of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence


@dataclass
class Case:
    cell: str
    mode: str  # "forward" | "train" | "stream"
    T: int
    B: int
    H: int  # I = H
    threads: int
    precision: str = "fp32"  # the products: "fp32" or "bf16" (bf16 operands, fp32 sums)
    layer_norm: bool = False  # the layer-normalized cell with zoneout (bench/layer_norm.py)
    times_ms: Dict[str, List[float]] = field(default_factory=dict)  # peer -> per-run ms
    flops: float = 0.0
    blas_ms: float = 0.0  # the case's GEMMs at this machine's BLAS, at the case's own shapes
    limit_ms: float = 0.0  # the FLOPs at peak sgemm rate or the weight reads at bandwidth
    notes: str = ""

    @property
    def label(self) -> str:
        label = f"{self.cell} {self.mode} T={self.T} B={self.B} H={self.H} thr={self.threads}"
        if self.layer_norm:
            label += " ln+zoneout"
        return label if self.precision == "fp32" else f"{label} {self.precision}"


def grid(
    quick: bool,
    cells: List[str],
    thread_counts: List[int],
    precisions: Sequence[str] = ("fp32",),
    layer_norm: bool = False,
) -> List[Case]:
    """The cases to run; one shape's precisions are adjacent rows, in the order given; with
    ``layer_norm``, each LSTM and GRU forward and train row (float32) is followed by its
    layer-normalized, zoned-out row."""
    cases = []
    if quick:
        shapes = [(50, 1, 128), (50, 16, 256), (50, 64, 256)]
        lengths, stream_h = [], [256]
    else:
        shapes = [(100, b, h) for b in (1, 16, 64) for h in (128, 512, 1024)]
        lengths, stream_h = [(1000, 16, 512)], [128, 512, 1024]
    for n in thread_counts:
        for cell in cells:
            for T, B, H in shapes + lengths:
                for mode in ("forward", "train"):
                    cases += [Case(cell, mode, T, B, H, n, p) for p in precisions]
                    if layer_norm and cell in ("lstm", "gru"):
                        cases.append(Case(cell, mode, T, B, H, n, layer_norm=True))
            for H in stream_h:
                cases += [Case(cell, "stream", 100, 1, H, n, p) for p in precisions]
    return cases
