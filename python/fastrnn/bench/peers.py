"""The peers a case runs on: fastrnn (and the NumPy reference, same signatures), fastrnn on a
GPU, PyTorch, fastrnn.torch's drop-in modules called from PyTorch ("dropin") and JAX; each
case is a callable running one forward, one training step (forward + backward with dy = y) or
a batch-1 streaming loop, with float32 products or (``precision="bf16"``, the peers in
BF16_PEERS) bf16 ones. The cells' gate counts, states,
parameter names and torch classes come from the cell table (:mod:`fastrnn.cell_spec`)."""

from __future__ import annotations

import os
import sys
from typing import Callable, List

import numpy as np

import fastrnn
from fastrnn import cuda, ops
from fastrnn.cell_spec import spec

PEERS = ("fastrnn", "numpy", "torch", "dropin", "jax", "cuda")
# The peers with a bf16 form: fastrnn (precision="bf16"), torch and dropin (the module and its
# inputs in torch.bfloat16). The NumPy reference, JAX and fastrnn on a GPU run fp32 rows only.
BF16_PEERS = ("fastrnn", "torch", "dropin")


def case_peers(peers: List[str], precision: str) -> List[str]:
    """Those of `peers` that run a case of this precision ("fp32": all)."""
    return [p for p in peers if precision == "fp32" or p in BF16_PEERS]


def weights(cell: str, H: int, rng) -> list:
    """w_ih, w_hh, b_ih, b_hh of one cell with I = H, uniform in +-1/sqrt(H) as torch.nn."""
    k = 1 / np.sqrt(H)
    return [
        rng.uniform(-k, k, s).astype(np.float32) for s in spec(cell).param_shapes(H, H).values()
    ]


def fastrnn_case(mod, cell: str, mode: str, x, w, precision: str = "fp32") -> Callable[[], None]:
    """A callable running one case with fastrnn.ops or fastrnn.reference (same signatures),
    with the forward's `precision` (the backward follows it).

    The keyword arguments are those of CellSpec.forward / .backward, built once here: built
    per call, as those do, they would cost ~3 us, 1% of the smallest case."""
    s = spec(cell)
    fwd, bwd = getattr(mod, s.forward_name), getattr(mod, s.backward_name)
    kw = {"x": x, **{f"{n}0": None for n in s.states}, **dict(zip(s.weight_args(), w))}
    kw["precision"] = precision
    if mode == "forward":
        return lambda: fwd(**kw, training=False)
    dfinals = {f"d{n}_n": None for n in s.states}

    def train():
        out = fwd(**kw)
        bwd(out[-1], dy=out[0], **dfinals)

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


def fastrnn_stream(cell: str, H: int, w, steps: int, precision: str = "fp32") -> Callable[[], None]:
    """fastrnn's NumPy Cell of the cell kind, `steps` batch-1 steps under no_grad."""
    s = spec(cell)
    # fastrnn's cells have torch's names
    c = getattr(fastrnn, s.torch_class + "Cell")(H, H, precision=precision)
    c.load_state_dict(dict(zip(s.param_names(), w)))
    x = np.random.default_rng(1).standard_normal((1, H)).astype(np.float32)

    def run():
        state = None
        with fastrnn.no_grad():
            for _ in range(steps):
                state = c(x, state)

    return run


def torch_module(cell: str, w, cell_form: bool = False, classes=None):
    """torch.nn's layer (or, `cell_form`, its Cell) of the cell kind, with I = H and the
    weights w (w_ih, w_hh, b_ih, b_hh); `classes`: the module holding the classes instead of
    torch.nn (fastrnn.torch, whose classes take torch.nn's arguments and names)."""
    import torch

    s = spec(cell)
    H = w[1].shape[1]
    classes = torch.nn if classes is None else classes
    m = getattr(classes, s.torch_class + ("Cell" if cell_form else ""))(H, H)
    with torch.no_grad():
        for name, v in zip(s.param_names("" if cell_form else "_l0"), w):
            getattr(m, name).copy_(torch.from_numpy(v))
    return m


def torch_case(
    cell: str, mode: str, x, w, steps: int = 0, classes=None, precision: str = "fp32"
) -> Callable[[], object]:
    """A case run from PyTorch, as a user would: the layer's forward under no_grad (forward),
    forward + backward through autograd of L = ||y||^2 / 2, i.e. dy = y, gradients set to
    None first as optimizer.zero_grad() does (train), the Cell step by step under no_grad
    (stream); with torch.nn's classes, or `classes`'. With `precision` "bf16", the module and
    its inputs in torch.bfloat16 (``module.to(torch.bfloat16)``), as a user runs bf16. The
    callable returns the module's last output (for tests)."""
    import torch

    H = w[1].shape[1]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    m = torch_module(cell, w, cell_form=mode == "stream", classes=classes).to(dtype)
    if mode == "stream":
        xt = torch.from_numpy(np.random.default_rng(1).standard_normal((1, H)).astype(np.float32))
        xt = xt.to(dtype)

        def stream():
            state = None
            with torch.no_grad():
                for _ in range(steps):
                    state = m(xt, state)
            return state

        return stream
    return torch_layer_case(m, mode, torch.from_numpy(x).to(dtype))


def torch_layer_case(m, mode: str, xt) -> Callable[[], object]:
    """A torch layer module m (returning (y, state)) on the tensor xt: its forward under
    no_grad (forward), or forward + backward of L = ||y||^2 / 2 with gradients set to None
    first (train). The callable returns y."""
    import torch

    if mode == "forward":

        def forward():
            with torch.no_grad():
                return m(xt)

        return forward
    xg = xt.clone().requires_grad_()

    def train():
        # As a training loop's optimizer.zero_grad() does: gradients are assigned, not added
        # to last run's (adding dx to x.grad alone cost ~1 ms at T=50, B=64, H=256).
        xg.grad = None
        m.zero_grad(set_to_none=True)
        y, _ = m(xg)
        y.backward(y.detach())
        return y

    return train


def dropin_case(
    cell: str, mode: str, x, w, steps: int = 0, precision: str = "fp32"
) -> Callable[[], object]:
    """fastrnn.torch's drop-in modules (fastrnn's kernels under torch.autograd) run exactly as
    the torch peer runs torch.nn's, bf16 included (the module and inputs in torch.bfloat16):
    its time over fastrnn's is what calling the kernels from PyTorch costs over calling them
    with NumPy arrays."""
    import fastrnn.torch

    return torch_case(cell, mode, x, w, steps, classes=fastrnn.torch, precision=precision)


# ----------------------------------------------------------------------------- JAX
# One step of each cell in JAX: a = x_t W_ih^T + b_ih, g = h W_hh^T + b_hh, the states in the
# order of the cell table's `states` (h first); returns the new states.


def _jax_lstm(a, g, states):
    import jax
    import jax.numpy as jnp

    _, c = states
    i, f, gg, o = jnp.split(a + g, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def _jax_gru(a, g, states):
    import jax
    import jax.numpy as jnp

    (h,) = states
    ar, az, an = jnp.split(a, 3, axis=-1)
    gr, gz, gn = jnp.split(g, 3, axis=-1)
    r, z = jax.nn.sigmoid(ar + gr), jax.nn.sigmoid(az + gz)
    return ((1 - z) * jnp.tanh(an + r * gn) + z * h,)


def _jax_rnn(a, g, states):
    import jax.numpy as jnp

    return (jnp.tanh(a + g),)


JAX_STEPS = {"lstm": _jax_lstm, "gru": _jax_gru, "rnn": _jax_rnn}


def jax_run(cell: str, H: int):
    """run(params, xs) -> ys: the cell over time in JAX, one lax.scan, from zero states;
    params = (w_ih, w_hh, b_ih, b_hh)."""
    import jax
    import jax.numpy as jnp

    n_states, cell_step = len(spec(cell).states), JAX_STEPS[cell]

    def step(params, states, x_t):
        w_ih, w_hh, b_ih, b_hh = params
        states = cell_step(x_t @ w_ih.T + b_ih, states[0] @ w_hh.T + b_hh, states)
        return states, states[0]

    def run(params, xs):
        zeros = jnp.zeros((xs.shape[1], H), xs.dtype)
        _, ys = jax.lax.scan(lambda st, xt: step(params, st, xt), (zeros,) * n_states, xs)
        return ys

    return run


def jax_case(cell: str, mode: str, x, w) -> Callable[[], None]:
    """The same cells in JAX, one lax.scan over time, jitted; training = value_and_grad of
    sum(y * y) / 2 (so that dy = y, as for the other peers)."""
    import jax
    import jax.numpy as jnp

    run = jax_run(cell, w[1].shape[1])
    params = tuple(jnp.asarray(v) for v in w)
    xs = jnp.asarray(x)
    if mode == "forward":
        f = jax.jit(run)
        return lambda: f(params, xs).block_until_ready()
    loss = jax.jit(jax.value_and_grad(lambda p, xs: 0.5 * jnp.sum(run(p, xs) ** 2), argnums=(0, 1)))
    return lambda: jax.block_until_ready(loss(params, xs))


def configure_jax_threads(jax_threads: int) -> None:
    """Asks XLA (under JAX) for `jax_threads` CPU threads. XLA reads XLA_FLAGS once, when jax
    is first imported, and sizes its thread pool then: so this must run before ``import jax``,
    and it is the one place where the suite writes the environment. XLA's flags can only ask
    for one thread (otherwise it uses every core); nothing changes when jax is already
    imported or XLA_FLAGS already sets a count."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" not in sys.modules and jax_threads == 1 and "intra_op" not in flags:
        os.environ["XLA_FLAGS"] = (
            flags + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()


def available_peers(requested: str, jax_threads: int) -> List[str]:
    """The peers to run. JAX (XLA) fixes its thread count when it loads: it is asked for
    jax_threads then (configure_jax_threads), and runs only in the cases with that many
    threads."""
    configure_jax_threads(jax_threads)
    peers = ["fastrnn", "numpy"]
    for name, module in (("torch", "torch"), ("dropin", "fastrnn.torch"), ("jax", "jax")):
        try:
            __import__(module)
            peers.append(name)
        except ImportError:
            pass
    if cuda.status().usable:
        peers.append("cuda")
    if requested != "auto":
        want = [p.strip() for p in requested.split(",") if p.strip()]
        bad = [p for p in want if p not in PEERS]
        if bad:
            raise ValueError(f"--peers: unknown peer(s) {bad}")
        if "cuda" in want and "cuda" not in peers:
            raise ValueError(f"--peers: cuda is not usable here: {cuda.status()}")
        missing = [p for p in want if p not in peers]
        if missing:
            raise ValueError(f"--peers: {missing} not installed here")
        peers = ["fastrnn"] + [p for p in want if p != "fastrnn"]
    return peers


def set_threads(n: int, peers: List[str], jax_threads: int) -> str:
    """Sets every peer's thread count to n (JAX's was fixed when it loaded: jax_threads);
    returns what was set, for the report."""
    fastrnn.set_num_threads(n)
    said = [f"fastrnn {fastrnn.get_num_threads()}"]
    if "torch" in peers or "dropin" in peers:
        import torch

        torch.set_num_threads(n)
        said.append(f"torch {torch.get_num_threads()}")
    found = fastrnn.set_numpy_blas_threads(n)
    said.append(f"numpy's BLAS {n if found else 'its default'}")
    if "jax" in peers:
        said.append(f"jax {jax_threads}")
    return ", ".join(said)
