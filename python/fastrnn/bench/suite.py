"""The suite's command line and its run: each case timed on every peer, then its bounds,
then the NumPy reference apart; the table, the memory section, the JSON and the plot."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Callable, Dict, List, Optional

import numpy as np

import fastrnn
from fastrnn import ops, reference
from fastrnn.cell_spec import CELLS
from fastrnn.errors import UserError
from fastrnn.openblas import blas_core
from fastrnn.progress import Progress

from .case import Case, grid
from .layer_norm import dropin_layer_norm_case, fastrnn_layer_norm_case, torch_layer_norm_case
from .peers import (
    available_peers,
    case_peers,
    cuda_case,
    dropin_case,
    fastrnn_case,
    fastrnn_stream,
    jax_case,
    set_threads,
    torch_case,
    weights,
)
from .report import JSON_VERSION, case_json, machine, plot, print_memory, print_table
from .roofline import roofline
from .timing import memory_section, settle_pause, time_interleaved

# The header's words for each precision's products.
PRODUCTS = {"fp32": "float32", "bf16": "bf16 (bf16 products, float32 sums)"}
BF16_COLUMNS = (
    "; bf16 rows: fastrnn with precision='bf16', torch and dropin with the module and inputs "
    "in torch.bfloat16 (numpy, jax, cuda: no bf16 form, -); their BLAS and limit through the "
    "kernels' bf16 GEMM (at the case's shapes; the peak rate of a large bf16 GEMM, same run) "
    "with weights of 2 bytes"
)


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="a small grid, about a minute on 2 cores")
    p.add_argument("--json", metavar="FILE", help="write every measurement here")
    p.add_argument("--plot", metavar="FILE.png", help="plot time vs shape per peer (matplotlib)")
    p.add_argument(
        "--threads", default=None, help="comma-separated thread counts (default: 1 and all cores)"
    )
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument(
        "--peers",
        default="auto",
        help="comma-separated from fastrnn,numpy,torch,dropin,jax,cuda (default: all installed; "
        "dropin: fastrnn.torch's modules from PyTorch; cuda: fastrnn on a GPU, where one is "
        "usable)",
    )
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument(
        "--match",
        metavar="REGEX",
        help="only the cases whose label matches (e.g. 'T=100 B=64 H=512|stream.*H=512 thr=2')",
    )
    p.add_argument(
        "--layer-norm",
        action="store_true",
        help="after each LSTM and GRU forward and train row, the layer-normalized cell with "
        "zoneout 0.1 (fastrnn.ops; PyTorch as a Python loop over the cell with nn.LayerNorm; "
        "fastrnn.torch's LayerNormLSTM/GRU)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated from fp32,bf16: the products of each case's rows (default: fp32; "
        "bf16: bf16 operands, fp32 sums, on fastrnn, torch and dropin, against the bf16 GEMM "
        "and peak)",
    )


def run_case(case: Case, peers: List[str], repeats: int, jax_threads: Optional[int] = None) -> None:
    """Times `case` on every peer that has the case's precision (JAX only where case.threads
    == jax_threads, the count it was loaded with), then measures its bounds (BLAS time,
    machine limit); fills case.times_ms."""
    rng = np.random.default_rng(0)
    w = weights(case.cell, case.H, rng)
    prec = case.precision
    peers = case_peers(peers, prec)  # those with a form of this precision
    fns: Dict[str, Callable[[], None]] = {}
    if case.layer_norm:
        x = rng.standard_normal((case.T, case.B, case.H)).astype(np.float32)
        fns["fastrnn"] = fastrnn_layer_norm_case(case.cell, case.mode, x, w)
        if "torch" in peers:
            fns["torch"] = torch_layer_norm_case(case.cell, case.mode, x, w)
        if "dropin" in peers:
            fns["dropin"] = dropin_layer_norm_case(case.cell, case.mode, x, w)
    elif case.mode == "stream":
        fns["fastrnn"] = fastrnn_stream(case.cell, case.H, w, case.T, prec)
        if "torch" in peers:
            fns["torch"] = torch_case(case.cell, "stream", None, w, case.T, precision=prec)
        if "dropin" in peers:
            fns["dropin"] = dropin_case(case.cell, "stream", None, w, case.T, precision=prec)
    else:
        x = rng.standard_normal((case.T, case.B, case.H)).astype(np.float32)
        fns["fastrnn"] = fastrnn_case(ops, case.cell, case.mode, x, w, prec)
        if "numpy" in peers:
            fns["numpy"] = fastrnn_case(reference, case.cell, case.mode, x, w)
        if "torch" in peers:
            fns["torch"] = torch_case(case.cell, case.mode, x, w, precision=prec)
        if "dropin" in peers:
            fns["dropin"] = dropin_case(case.cell, case.mode, x, w, precision=prec)
        if "jax" in peers and case.threads == jax_threads:
            fns["jax"] = jax_case(case.cell, case.mode, x, w)
        if "cuda" in peers:
            fns["cuda"] = cuda_case(case.cell, case.mode, x, w)
    # NumPy's OpenBLAS threads keep spinning for a while after each call and would steal the
    # cores from whichever peer runs next: the reference runs last, on its own, after the
    # interleaved peers and the bounds' measurements.
    reference_fn = fns.pop("numpy", None)
    settle = case.threads > 1
    times = time_interleaved(fns, repeats, settle)
    if settle:
        settle_pause()
    roofline(case, max(3, repeats))
    if reference_fn is not None:
        # The slowest by far: fewer repeats, and its median stands for every run in ratios.
        times.update(
            time_interleaved({"numpy": reference_fn}, max(1, repeats // 3), settle, warm_up=False)
        )
    if case.mode == "stream":  # per step
        times = {k: [v / case.T for v in ms] for k, ms in times.items()}
    case.times_ms = times


def run_bench(args) -> int:
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    if not cells or any(c not in CELLS for c in cells):
        raise UserError(f"--cells: choose from {','.join(CELLS)}, got {args.cells!r}")
    all_cores = os.cpu_count() or 1
    try:
        threads = (
            sorted({int(t) for t in args.threads.split(",")})
            if args.threads
            else sorted({1, all_cores})
        )
    except ValueError:
        raise UserError(f"--threads: comma-separated integers, got {args.threads!r}") from None
    if any(t < 1 for t in threads):
        raise UserError("--threads: counts must be >= 1")
    want = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not want or any(p not in ops.PRECISIONS for p in want):
        raise UserError(
            f"--precision: comma-separated from {','.join(ops.PRECISIONS)}, got {args.precision!r}"
        )
    precisions = [p for p in ops.PRECISIONS if p in want]
    jax_threads = 1 if 1 in threads else threads[-1]
    try:
        peers = available_peers(args.peers, jax_threads)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.plot and not args.plot.endswith(".png"):
        raise UserError("--plot: the file name must end in .png")
    repeats = args.repeats or (3 if args.quick else 5)
    cases = grid(args.quick, cells, threads, precisions, getattr(args, "layer_norm", False))
    if args.match:
        try:
            pattern = re.compile(args.match)
        except re.error as e:
            raise UserError(f"--match: not a regular expression ({e}): {args.match!r}") from None
        cases = [c for c in cases if pattern.search(c.label)]
        if not cases:
            raise UserError(f"--match: no case of the grid matches {args.match!r}")
    before = fastrnn.get_num_threads()
    products = " and ".join(PRODUCTS[p] for p in precisions)
    core = blas_core(getattr(args, "command_line", None) or "fastrnn bench ...")
    print(
        f"fastrnn {fastrnn.__version__} bench{' --quick' if args.quick else ''}: "
        f"{machine()}; kernels {fastrnn.cpu_isa()}; BLAS core {core.name or 'unknown'}; "
        f"peers {', '.join(peers)}; {products}, I = H; {repeats} interleaved runs per case",
        flush=True,
    )
    if core.warning:
        print(f"warning: {core.warning}", flush=True)
        if not sys.stdout.isatty():  # the results go to a file: say it where the user looks
            print(f"fastrnn bench: warning: {core.warning}", file=sys.stderr, flush=True)
    print(
        "columns: fastrnn median (min-max); BLAS = time the case's GEMMs take on this "
        "machine's BLAS at the case's shapes / fastrnn's time; limit = the machine's limit "
        "for the case (its FLOPs at the peak large-sgemm rate, or its weight reads at the "
        "read bandwidth of where the weights live, whichever is longer; same run, same "
        "threads) / fastrnn's time; <peer> x = peer time / fastrnn time (> 1: fastrnn "
        "faster; dropin x: what calling fastrnn through fastrnn.torch from PyTorch costs "
        "over calling fastrnn.ops)" + (BF16_COLUMNS if "bf16" in precisions else ""),
        flush=True,
    )
    bar = Progress(len(cases))
    said = {}
    try:
        for i, case in enumerate(cases):
            said[case.threads] = set_threads(case.threads, peers, jax_threads)
            bar.update(i, case.label)
            run_case(case, peers, repeats, jax_threads)
        bar.update(len(cases), "done")
    finally:
        bar.close()
        fastrnn.set_num_threads(before)
    for n, text in said.items():
        print(f"threads for the {n}-thread cases: {text}")
    print_table(cases, peers)
    mem = memory_section(args.quick)
    print_memory(mem)
    if args.json:
        doc = {
            "version": JSON_VERSION,
            "fastrnn": fastrnn.__version__,
            "machine": machine(),
            "cpu_isa": fastrnn.cpu_isa(),
            "blas": fastrnn.blas_info(),
            "blas_core": core.as_dict(),
            "warnings": [core.warning] if core.warning else [],
            "peers": peers,
            "quick": bool(args.quick),
            "precisions": precisions,
            "repeats": repeats,
            "threads": {str(n): text for n, text in said.items()},
            "cases": [case_json(c) for c in cases],
            "memory": mem,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        try:
            plot(cases, peers, args.plot)
        except RuntimeError as e:
            raise UserError(str(e)) from None
        print(f"wrote {args.plot}")
    return 0
