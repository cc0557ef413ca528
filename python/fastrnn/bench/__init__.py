"""``fastrnn bench``: the benchmark suite.

Every case (cell x pass x shape x thread count) is timed for each peer — fastrnn, the NumPy
reference, and PyTorch, fastrnn.torch's drop-in modules ("dropin") and JAX when installed —
interleaved (a, b, c, a, b, c, ...) so the drifts of a shared machine hit all alike, after a
warm-up, at an explicit thread count for every peer. Reported: median ms (min-max), each
peer's time over fastrnn's (the median of per-run ratios; > 1: fastrnn is faster; for dropin,
what calling the kernels from PyTorch costs over calling them with NumPy arrays), and two
fractions, measured in the same run at the case's thread count: "BLAS", the time this
machine's BLAS takes for the case's GEMMs at their own shapes over fastrnn's, and "limit",
the machine's limit for the case (its FLOPs at the peak rate of a large sgemm, or the weight
bytes it re-reads step by step at the read bandwidth of where they live, whichever is
longer) over fastrnn's. A memory section reports the peak RSS of training and inference as T
grows.

- :mod:`.case`: a case and the grid of them;
- :mod:`.peers`: each peer's callable for a case, which peers run, their thread counts;
- :mod:`.timing`: interleaved timing, the settling pause, the memory probe;
- :mod:`.roofline`: GEMM throughput, peak sgemm rate, read bandwidth, a case's bounds;
- :mod:`.report`: the machine, the table, the JSON and the plot;
- :mod:`.suite`: the command line and the run.

It imports nothing from :mod:`fastrnn.cli` (which imports it).
"""

from __future__ import annotations

from .case import Case, grid
from .peers import (
    available_peers,
    cuda_case,
    dropin_case,
    fastrnn_case,
    jax_case,
    torch_case,
    weights,
)
from .report import JSON_VERSION, machine, ratio
from .roofline import gemm_ms, read_bandwidth, roofline
from .suite import add_arguments, run_bench, run_case
from .timing import forward_peak_kib, memory_section, time_interleaved

__all__ = [
    "Case",
    "grid",
    "available_peers",
    "cuda_case",
    "dropin_case",
    "fastrnn_case",
    "jax_case",
    "torch_case",
    "weights",
    "JSON_VERSION",
    "machine",
    "ratio",
    "gemm_ms",
    "read_bandwidth",
    "roofline",
    "add_arguments",
    "run_bench",
    "run_case",
    "forward_peak_kib",
    "memory_section",
    "time_interleaved",
]
