"""``fastrnn bench``: the benchmark suite.

Every case (cell x pass x shape x thread count) is timed for each peer — fastrnn, the NumPy
reference, and PyTorch and JAX when installed — interleaved (a, b, c, a, b, c, ...) so the
drifts of a shared machine hit all alike, after a warm-up, at an explicit thread count for
every peer. Reported: median ms (min-max), each peer's time over fastrnn's (the median of
per-run ratios; > 1: fastrnn is faster), and fastrnn's fraction of the roofline: the case's
FLOPs at the GEMM throughput measured in the same run at the case's own GEMM shapes (for the
batch-1 streaming step: the weight bytes it must read at the memory bandwidth measured for
that many bytes). A memory section reports the peak RSS of training and inference as T grows.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

import fastrnn
from fastrnn import _C, cuda, ops, reference

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
JSON_VERSION = 1


@dataclass
class Case:
    cell: str
    mode: str  # "forward" | "train" | "stream"
    T: int
    B: int
    H: int  # I = H
    threads: int
    times_ms: Dict[str, List[float]] = field(default_factory=dict)  # peer -> per-run ms
    flops: float = 0.0
    roofline_ms: float = 0.0  # the FLOPs (or bytes) at the measured GEMM (or memory) speed
    notes: str = ""

    @property
    def label(self) -> str:
        return f"{self.cell} {self.mode} T={self.T} B={self.B} H={self.H} thr={self.threads}"


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="a small grid, about a minute on 2 cores")
    p.add_argument("--json", metavar="FILE", help="write every measurement here")
    p.add_argument("--plot", metavar="FILE.png", help="plot time vs shape per peer (matplotlib)")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts (default: 1 and all cores)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--peers", default="auto",
                   help="comma-separated from fastrnn,numpy,torch,jax,cuda (default: all installed; "
                        "cuda: fastrnn on a GPU, where one is usable)")
    p.add_argument("--cells", default="lstm,gru,rnn")


# ----------------------------------------------------------------------------- peers


def _weights(cell: str, H: int, rng) -> list:
    G, k = GATES[cell], 1 / np.sqrt(H)
    return [rng.uniform(-k, k, s).astype(np.float32) for s in [(G * H, H), (G * H, H), (G * H,), (G * H,)]]


def fastrnn_case(mod, cell: str, mode: str, x, w) -> Callable[[], None]:
    """A callable running one case with fastrnn.ops or fastrnn.reference (same signatures)."""
    fwd, bwd = getattr(mod, f"{cell}_forward"), getattr(mod, f"{cell}_backward")
    c0 = (None,) if cell == "lstm" else ()
    if mode == "forward":
        return lambda: fwd(x, None, *c0, *w, training=False)

    def train():
        out = fwd(x, None, *c0, *w)
        bwd(out[-1], out[0], None, *c0)

    return train


def cuda_case(cell: str, mode: str, x, w) -> Callable[[], None]:
    """fastrnn on the GPU, on device-resident copies of x and the weights; each run waits for
    the GPU, so that its time is the GPU's."""
    x, w = cuda.to_device(x), [cuda.to_device(a) for a in w]
    run = fastrnn_case(ops, cell, mode, x, w)

    def synchronized():
        run()
        cuda.synchronize()

    return synchronized


def fastrnn_stream(cell: str, H: int, w, steps: int) -> Callable[[], None]:
    cls = {"lstm": fastrnn.LSTMCell, "gru": fastrnn.GRUCell, "rnn": fastrnn.RNNCell}[cell]
    c = cls(H, H)
    c.load_state_dict(dict(zip(["weight_ih", "weight_hh", "bias_ih", "bias_hh"], w)))
    x = np.random.default_rng(1).standard_normal((1, H)).astype(np.float32)

    def run():
        state = None
        with fastrnn.no_grad():
            for _ in range(steps):
                state = c(x, state)

    return run


def torch_case(cell: str, mode: str, x, w, steps: int = 0) -> Callable[[], None]:
    import torch

    H = w[1].shape[1]
    if mode == "stream":
        m = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[cell](H, H)
        params = [m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh]
    else:
        m = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](H, H)
        params = [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0]
    with torch.no_grad():
        for p, v in zip(params, w):
            p.copy_(torch.from_numpy(v))
    if mode == "stream":
        xt = torch.from_numpy(np.random.default_rng(1).standard_normal((1, H)).astype(np.float32))

        def stream():
            state = None
            with torch.no_grad():
                for _ in range(steps):
                    state = m(xt, state)

        return stream
    xt = torch.from_numpy(x)
    if mode == "forward":
        def forward():
            with torch.no_grad():
                m(xt)

        return forward
    xg = xt.clone().requires_grad_()

    def train():
        y, _ = m(xg)
        y.backward(y.detach())

    return train


def jax_case(cell: str, mode: str, x, w) -> Callable[[], None]:
    """The same cells in JAX, one lax.scan over time, jitted; training = value_and_grad of
    sum(y * y) / 2 (so that dy = y, as for the other peers)."""
    import jax
    import jax.numpy as jnp

    H = w[1].shape[1]

    def step(params, h_c, x_t):
        w_ih, w_hh, b_ih, b_hh = params
        h, c = h_c
        a = x_t @ w_ih.T + b_ih
        g = h @ w_hh.T + b_hh
        if cell == "lstm":
            i, f, gg, o = jnp.split(a + g, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
        elif cell == "gru":
            ar, az, an = jnp.split(a, 3, axis=-1)
            gr, gz, gn = jnp.split(g, 3, axis=-1)
            r, z = jax.nn.sigmoid(ar + gr), jax.nn.sigmoid(az + gz)
            h = (1 - z) * jnp.tanh(an + r * gn) + z * h
        else:
            h = jnp.tanh(a + g)
        return (h, c), h

    def run(params, xs):
        B = xs.shape[1]
        zeros = jnp.zeros((B, H), xs.dtype)
        _, ys = jax.lax.scan(lambda hc, xt: step(params, hc, xt), (zeros, zeros), xs)
        return ys

    params = tuple(jnp.asarray(v) for v in w)
    xs = jnp.asarray(x)
    if mode == "forward":
        f = jax.jit(run)
        return lambda: f(params, xs).block_until_ready()
    loss = jax.jit(jax.value_and_grad(lambda p, xs: 0.5 * jnp.sum(run(p, xs) ** 2), argnums=(0, 1)))
    return lambda: jax.block_until_ready(loss(params, xs))


def available_peers(requested: str, jax_threads: int) -> List[str]:
    """The peers to run. JAX (XLA) fixes its thread count when it loads: it is asked for
    jax_threads then, and runs only in the cases with that many threads."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" not in sys.modules and jax_threads == 1 and "intra_op" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
    os.environ["FASTRNN_BENCH_JAX_THREADS"] = str(jax_threads)
    peers = ["fastrnn", "numpy"]
    for name in ("torch", "jax"):
        try:
            __import__(name)
            peers.append(name)
        except ImportError:
            pass
    if cuda.status().usable:
        peers.append("cuda")
    if requested != "auto":
        want = [p.strip() for p in requested.split(",") if p.strip()]
        bad = [p for p in want if p not in ("fastrnn", "numpy", "torch", "jax", "cuda")]
        if bad:
            raise ValueError(f"--peers: unknown peer(s) {bad}")
        if "cuda" in want and "cuda" not in peers:
            raise ValueError(f"--peers: cuda is not usable here: {cuda.status()}")
        missing = [p for p in want if p not in peers]
        if missing:
            raise ValueError(f"--peers: {missing} not installed here")
        peers = ["fastrnn"] + [p for p in want if p != "fastrnn"]
    return peers


def set_threads(n: int, peers: List[str]) -> str:
    """Sets every peer's thread count to n; returns what was set, for the report."""
    fastrnn.set_num_threads(n)
    said = [f"fastrnn {fastrnn.get_num_threads()}"]
    if "torch" in peers:
        import torch

        torch.set_num_threads(n)
        said.append(f"torch {torch.get_num_threads()}")
    found = fastrnn.set_numpy_blas_threads(n)
    said.append(f"numpy's BLAS {n if found else 'its default'}")
    if "jax" in peers:
        said.append(f"jax {os.environ.get('FASTRNN_BENCH_JAX_THREADS', 'its default')}")
    return ", ".join(said)


# ----------------------------------------------------------------------------- rooflines


def gemm_ms(M: int, N: int, K: int, repeats: int) -> float:
    """Median ms of C (M, N) = A (M, K) B^T through fastrnn's BLAS path."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((N, K)).astype(np.float32)
    c = np.empty((M, N), np.float32)
    _C.gemm_nt(a, b, c)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _C.gemm_nt(a, b, c)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def read_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes/s for reading `nbytes` that were read just before (as a streaming step re-reads
    its weights): the speed of whatever cache level or memory holds that many bytes, measured
    as a dot product of the array with itself (one read stream, on NumPy's BLAS at the case's
    thread count)."""
    a = np.ones(max(nbytes // 4, 1), np.float32)
    a.dot(a)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.dot(a)
        times.append(time.perf_counter() - t0)
    return nbytes / min(times)


def roofline(case: Case, repeats: int) -> None:
    G, T, B, H = GATES[case.cell], case.T, case.B, case.H
    if case.mode == "stream":
        nbytes = 2 * G * H * H * 4
        case.flops = 2 * 2 * G * H * H
        case.roofline_ms = nbytes / read_bandwidth(nbytes, repeats) * 1e3
        case.notes = f"{nbytes / 2**20:.1f} MiB of weights per step"
        return
    proj = gemm_ms(T * B, G * H, H, repeats)  # all steps' input projection
    rec = T * gemm_ms(B, G * H, H, repeats)  # one recurrent GEMM per step
    case.flops = 2 * 2 * T * B * G * H * H
    case.roofline_ms = proj + rec
    if case.mode == "train":  # backward: the same recurrent work, dx, dW_ih and dW_hh
        case.flops *= 3
        case.roofline_ms *= 3


# ----------------------------------------------------------------------------- the grid


def grid(quick: bool, cells: List[str], thread_counts: List[int]) -> List[Case]:
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
                    cases.append(Case(cell, mode, T, B, H, n))
            for H in stream_h:
                cases.append(Case(cell, "stream", 100, 1, H, n))
    return cases


def run_case(case: Case, peers: List[str], repeats: int) -> None:
    rng = np.random.default_rng(0)
    w = _weights(case.cell, case.H, rng)
    fns: Dict[str, Callable[[], None]] = {}
    if case.mode == "stream":
        fns["fastrnn"] = fastrnn_stream(case.cell, case.H, w, case.T)
        if "torch" in peers:
            fns["torch"] = torch_case(case.cell, "stream", None, w, case.T)
    else:
        x = rng.standard_normal((case.T, case.B, case.H)).astype(np.float32)
        fns["fastrnn"] = fastrnn_case(ops, case.cell, case.mode, x, w)
        if "numpy" in peers:
            fns["numpy"] = fastrnn_case(reference, case.cell, case.mode, x, w)
        if "torch" in peers:
            fns["torch"] = torch_case(case.cell, case.mode, x, w)
        if "jax" in peers and str(case.threads) == os.environ.get("FASTRNN_BENCH_JAX_THREADS"):
            fns["jax"] = jax_case(case.cell, case.mode, x, w)
        if "cuda" in peers:
            fns["cuda"] = cuda_case(case.cell, case.mode, x, w)
    # NumPy's OpenBLAS threads keep spinning for a while after each call and would steal the
    # cores from whichever peer runs next: the reference runs last, on its own, after the
    # interleaved peers and the roofline measurement.
    reference_fn = fns.pop("numpy", None)
    settle = case.threads > 1
    times = time_interleaved(fns, repeats, settle)
    if settle:
        _settle()
    roofline(case, max(3, repeats))
    if reference_fn is not None:
        # The slowest by far: fewer repeats, and its median stands for every run in ratios.
        times.update(time_interleaved({"numpy": reference_fn}, max(1, repeats // 3), settle,
                                      warm_up=False))
    if case.mode == "stream":  # per step
        times = {k: [v / case.T for v in ms] for k, ms in times.items()}
    case.times_ms = times


def time_interleaved(fns: Dict[str, Callable[[], None]], repeats: int, settle: bool,
                     warm_up: bool = True) -> Dict[str, List[float]]:
    """Times each callable `repeats` times, interleaved (a, b, a, b, ...) so that the slow
    drifts of a shared machine hit every peer alike, after one warm-up call each (JAX compiles
    then). Returns name -> list of ms.

    With more than one thread (`settle`), every peer's pool spins for a while after a call
    (torch's OpenMP for milliseconds, fastrnn's briefly) and would steal cores from the peer
    timed next: a pause before each timing lets them go to sleep, as they would in a program
    that uses one library. The pause busy-waits: a sleeping core would wake up slow."""
    if warm_up:
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if settle:
                _settle()
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def _settle(seconds: float = 0.03) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def ratio(case: Case, peer: str) -> float:
    """The median of per-run ratios peer / fastrnn for peers timed interleaved with fastrnn;
    a ratio of medians for the NumPy reference, which runs apart."""
    ours, theirs = case.times_ms["fastrnn"], case.times_ms[peer]
    if peer == "numpy":
        return float(np.median(theirs) / np.median(ours))
    n = min(len(ours), len(theirs))
    return float(np.median(np.array(theirs[:n]) / np.array(ours[:n])))


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
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(T), str(B), str(I), str(H),
                          "train" if training else "eval"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def memory_section(quick: bool) -> List[dict]:
    """Peak RSS growth (MiB) of one LSTM forward (B=16, I=H=256) as T grows, a fresh process
    per point (Linux only)."""
    if not sys.platform.startswith("linux"):
        return []
    rows = []
    for T in ((100, 400) if quick else (100, 400, 1600, 6400)):
        row = {"T": T, "y_MiB": T * 16 * 256 * 4 / 2**20}
        for mode in ("eval", "train"):
            row[f"{mode}_MiB"] = forward_peak_kib(T, 16, 256, 256, mode == "train") / 1024
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


def fmt(ms: List[float]) -> str:
    if not ms:
        return "-"
    unit, scale = ("us", 1e3) if np.median(ms) < 1 else ("ms", 1)
    return f"{np.median(ms) * scale:.3g} ({min(ms) * scale:.3g}-{max(ms) * scale:.3g}) {unit}"


def print_table(cases: List[Case], peers: List[str], out=sys.stdout) -> None:
    others = [p for p in peers if p != "fastrnn"]
    head = f"{'case':44} {'fastrnn':>28} {'roofline':>8}" + "".join(f" {p + ' x':>9}" for p in others)
    print(head, file=out)
    print("-" * len(head), file=out)
    for c in cases:
        med = float(np.median(c.times_ms["fastrnn"]))
        line = f"{c.label:44} {fmt(c.times_ms['fastrnn']):>28} {c.roofline_ms / med:8.0%}"
        for p in others:
            line += f" {ratio(c, p):9.2f}" if p in c.times_ms else f" {'-':>9}"
        print(line, file=out)


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
        labels = [f"{c.cell} B{c.B} H{c.H} T{c.T} t{c.threads}" for c in sel]
        for i, p in enumerate(peers):
            ys = [np.median(c.times_ms[p]) if p in c.times_ms else np.nan for c in sel]
            ax.plot(range(len(sel)), ys, "o-", label=p, alpha=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(sel)))
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.set_title(f"{mode} ({'ms per step' if mode == 'stream' else 'ms'})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run_bench(args) -> int:
    from .cli import Progress, UserError

    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    if not cells or any(c not in GATES for c in cells):
        raise UserError(f"--cells: choose from lstm,gru,rnn, got {args.cells!r}")
    all_cores = os.cpu_count() or 1
    try:
        threads = sorted({int(t) for t in args.threads.split(",")}) if args.threads else \
            sorted({1, all_cores})
    except ValueError:
        raise UserError(f"--threads: comma-separated integers, got {args.threads!r}") from None
    if any(t < 1 for t in threads):
        raise UserError("--threads: counts must be >= 1")
    try:
        peers = available_peers(args.peers, 1 if 1 in threads else threads[-1])
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.plot and not args.plot.endswith(".png"):
        raise UserError("--plot: the file name must end in .png")
    repeats = args.repeats or (3 if args.quick else 5)
    cases = grid(args.quick, cells, threads)
    before = fastrnn.get_num_threads()
    print(f"fastrnn {fastrnn.__version__} bench{' --quick' if args.quick else ''}: "
          f"{machine()}; kernels {fastrnn.cpu_isa()}; peers {', '.join(peers)}; float32, "
          f"I = H; {repeats} interleaved runs per case", flush=True)
    print("columns: fastrnn median (min-max); roofline = time the case's GEMMs take on this "
          "machine's BLAS (stream: its weight bytes at measured read bandwidth) / fastrnn's time; "
          "<peer> x = peer time / fastrnn time (> 1: fastrnn faster)", flush=True)
    bar = Progress(len(cases))
    said = {}
    try:
        for i, case in enumerate(cases):
            said[case.threads] = set_threads(case.threads, peers)
            bar.update(i, case.label)
            run_case(case, peers, repeats)
        bar.update(len(cases), "done")
    finally:
        bar.close()
        fastrnn.set_num_threads(before)
    for n, text in said.items():
        print(f"threads for the {n}-thread cases: {text}")
    print_table(cases, peers)
    mem = memory_section(args.quick)
    if mem:
        print("\npeak RSS growth of one LSTM forward (B=16, I=H=256), MiB; y itself is "
              "T*16*256*4 bytes:")
        for row in mem:
            print(f"  T={row['T']:5}  y {row['y_MiB']:7.1f}  inference {row['eval_MiB']:7.1f}  "
                  f"training {row['train_MiB']:7.1f}")
    if args.json:
        doc = {"version": JSON_VERSION, "fastrnn": fastrnn.__version__, "machine": machine(),
               "cpu_isa": fastrnn.cpu_isa(), "blas": fastrnn.blas_info(), "peers": peers,
               "quick": bool(args.quick), "repeats": repeats,
               "threads": {str(n): text for n, text in said.items()},
               "cases": [dict(asdict(c), label=c.label,
                              roofline_fraction=c.roofline_ms / float(np.median(c.times_ms["fastrnn"])),
                              ratios={p: ratio(c, p) for p in c.times_ms if p != "fastrnn"})
                         for c in cases],
               "memory": mem}
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
