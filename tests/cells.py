"""Shared test helpers: one description of each cell variant, random problems, comparisons.

Every test module parametrizes over ``VARIANTS`` so a cell or option added here is checked
everywhere (reference vs finite differences, C++ vs reference, vs PyTorch, bad input).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastrnn.cell_spec import CellSpec, variants


@dataclass(frozen=True)
class Variant:
    spec: CellSpec  # the cell kind, from fastrnn.cell_spec
    options: dict = field(default_factory=dict)  # reset_after / nonlinearity

    @property
    def cell(self) -> str:
        return self.spec.name

    @property
    def gates(self) -> int:
        return self.spec.G

    @property
    def id(self) -> str:
        opts = "-".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.cell}[{opts}]" if opts else self.cell


# Every cell kind with every combination of its options, from the cell table.
VARIANTS = [Variant(s, options) for s, options in variants()]
VARIANT_IDS = [v.id for v in VARIANTS]


def with_variants(cases: list, proj_index: int) -> list:
    """pytest params (variant, *case) for every variant and case, except projections (case
    field proj_index nonzero) for cells other than LSTM, which have none."""
    import pytest

    return [
        pytest.param(v, *case, id=f"{v.id}-{'-'.join(map(str, case))}")
        for v in VARIANTS
        for case in cases
        if v.spec.projection or not case[proj_index]
    ]


@dataclass
class Problem:
    """Inputs of one forward call plus the upstream gradients of one backward call."""

    x: np.ndarray  # (T, B, I)
    h0: np.ndarray  # (B, H)
    c0: np.ndarray | None  # (B, H), LSTM only
    w_ih: np.ndarray  # (G*H, I)
    w_hh: np.ndarray  # (G*H, H)
    b_ih: np.ndarray | None  # (G*H,)
    b_hh: np.ndarray | None  # (G*H,)
    dy: np.ndarray  # (T, B, P)
    dh_n: np.ndarray  # (B, P)
    dc_n: np.ndarray | None  # (B, H)
    w_hr: np.ndarray | None = None  # (P, H), LSTM with a projection
    lengths: np.ndarray | None = None  # (B,)


def make_problem(
    v: Variant,
    T: int,
    B: int,
    I: int,
    H: int,
    dtype=np.float64,
    seed: int = 0,
    bias: bool = True,
    scale: float = 0.5,
    proj: int = 0,
    lengths=None,
) -> Problem:
    """A random problem; proj > 0 gives an LSTM a projection of that size; lengths is None,
    "random" (each in [0, T], unsorted) or a list."""
    rng = np.random.default_rng(seed)

    def r(*shape, s=1.0):
        return (rng.standard_normal(shape) * s).astype(dtype)

    G = v.gates
    k = scale / np.sqrt(H)
    has_c = v.spec.has_cell_state
    P = proj or H
    if isinstance(lengths, str):
        lengths = rng.integers(0, T + 1, size=B)
    return Problem(
        x=r(T, B, I),
        h0=r(B, P, s=0.5),
        c0=r(B, H, s=0.5) if has_c else None,
        w_ih=r(G * H, I, s=k * 2),
        w_hh=r(G * H, P, s=k * 2),
        b_ih=r(G * H, s=0.3) if bias else None,
        b_hh=r(G * H, s=0.3) if bias else None,
        dy=r(T, B, P),
        dh_n=r(B, P),
        dc_n=r(B, H) if has_c else None,
        w_hr=r(P, H, s=k * 2) if proj else None,
        lengths=None if lengths is None else np.asarray(lengths),
    )


def _states(v: Variant, p: Problem, prefix: str, suffix: str) -> list:
    return [getattr(p, f"{prefix}{s}{suffix}") for s in v.spec.states]


def forward(mod, v: Variant, p: Problem, training: bool = True):
    """Call ``mod.<cell>_forward`` on a problem. Returns (outputs tuple, saved)."""
    weights = [p.w_ih, p.w_hh, p.b_ih, p.b_hh] + ([p.w_hr] if p.w_hr is not None else [])
    y, finals, saved = v.spec.forward(
        mod,
        p.x,
        _states(v, p, "", "0"),
        weights,
        training=training,
        options=v.options,
        lengths=p.lengths,
    )
    return (y,) + finals, saved


def backward(mod, v: Variant, saved, p: Problem):
    """Call ``mod.<cell>_backward``. Returns a dict name -> gradient (None where no bias),
    named as CellSpec.grad_names: x, h0[, c0], w_ih, w_hh, b_ih, b_hh[, w_hr]."""
    return v.spec.backward(mod, saved, p.dy, _states(v, p, "d", "_n"))


def loss(mod, v: Variant, p: Problem) -> float:
    """The scalar whose gradient backward computes: <y, dy> + <h_n, dh_n> (+ <c_n, dc_n>)."""
    outs, _ = forward(mod, v, p, training=False)
    total = np.sum(outs[0] * p.dy)
    for out, d in zip(outs[1:], _states(v, p, "d", "_n")):
        total += np.sum(out * d)
    return float(total)


def assert_close(name: str, got, want, atol: float, rtol: float) -> None:
    """atol + rtol*|want|, elementwise; prints the worst error before asserting."""
    if want is None:
        assert got is None, f"{name}: expected None, got an array"
        return
    assert got is not None, f"{name}: expected an array, got None"
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bound = atol + rtol * np.abs(want.astype(np.float64))
    worst = float(np.max(err - bound)) if err.size else 0.0
    print(f"{name}: max abs err {float(err.max()) if err.size else 0.0:.3e}")
    assert worst <= 0, f"{name}: max abs err {float(err.max()):.3e} exceeds atol={atol} rtol={rtol}"


TOL = {np.float64: (1e-10, 1e-9), np.float32: (2e-5, 1e-4)}
