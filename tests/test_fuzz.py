"""Property-based fuzzing (hypothesis) of the C++ backend against the NumPy reference.

- ``test_ops_match_reference``: one random kernel call, ``fastrnn.ops`` vs
  ``fastrnn.reference``: every cell variant of ``fastrnn.cell_spec.variants()``, T in 0..6,
  B in 0..5 (0 included), I and H in 1..9, an LSTM projection P in [1, H) sometimes, bias or
  not, lengths (None, or each in [0, T], any order, 0 allowed; a list or an int32/int64
  array), float64 and float32, initial states and upstream gradients given or None, inputs
  contiguous, Fortran-ordered or strided, NaN or Inf in x and dy past the lengths (the C++
  side only; it must ignore them), and the CPU instruction set (every one this CPU has).
  Compares the outputs, the final states and every gradient of a training call, the
  outputs of an inference call (training=False), and checks that neither side writes to its
  inputs.
- ``test_ops_wide_match_reference``: the same on wider shapes (B up to 24, H up to 72,
  T up to 40) and 1 or 2 threads, which cross what the small shapes never reach: several
  row tiles (the packed GEMM keeps <= 8 rows in registers), several weight panels and vector
  widths, and the inference path's chunked input projection (ceil(512 / B) steps a chunk).
- ``test_layers_cpu_match_numpy``: one random layer, ``backend="cpu"`` vs ``backend="numpy"``
  built with the same seed (so the same weights and, since the masks come from the layer's
  own seeded generator, the same dropout masks): num_layers 1..3, bidirectional,
  batch_first, bias, proj_size (LSTM), lengths, dropout (training), unbatched input, dtype,
  states and gradients given or None, NaN / Inf padding (cpu side only); one or two
  forward+backward rounds (``.grads`` accumulates), then a no_grad forward. Compares y, the
  final states, dx, the initial-state gradients, the dropout masks and every entry of
  ``.grads``.

Every random array derives from one drawn integer ``seed``, so a falsifying example is
reproducible from its printed parameters alone: hypothesis prints it (and, with
``print_blob=True``, a ``@reproduce_failure`` blob), and the test notes a ready-to-run line,
``check_ops_example({...})`` or ``check_layer_example({...})`` (importable from this file
with ``tests/`` on sys.path).

Comparisons use tests/cells.py's TOL; where that fails, a float32 / float64 result may still
pass by being about as close to a higher-precision truth as the reference is under 1-ulp
input perturbations (chaotic recurrences; see check_close). At a relu kink the gradients are
not compared.

Found by fuzzing, fixed, and kept as regression tests: ``test_tanh_is_accurate_near_zero``
(the kernels' tanh lost its relative accuracy near 0; the example ``TANH_NEAR_ZERO``) and
``test_reference_ignores_non_finite_padding`` (the reference let NaN past the lengths into
dw_ih).

Settings: ``derandomize=True`` (the same examples on every run, as CI wants) and small
example counts by default (the file runs in a few seconds). For longer local runs:

- ``FASTRNN_FUZZ_EXAMPLES=N``: examples per test (default 600 / 150 / 250).
- ``FASTRNN_FUZZ_RANDOM=1``: fresh random examples on each run (derandomize=False).
"""

from __future__ import annotations

import contextlib
import os

import hypothesis
import numpy as np
import pytest
from hypothesis import (
    HealthCheck,
    currently_in_test_context,
    example,
    given,  # noqa: E402
    note,
    settings,
)
from hypothesis import strategies as st  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn import cell_spec, ops, reference  # noqa: E402

from cells import TOL  # noqa: E402


def event(label: str) -> None:
    """hypothesis.event inside a test; nothing when an example runs by hand."""
    if currently_in_test_context():
        hypothesis.event(label)


_EXAMPLES = os.environ.get("FASTRNN_FUZZ_EXAMPLES")
_RANDOM = os.environ.get("FASTRNN_FUZZ_RANDOM", "") not in ("", "0")


def _settings(default_examples: int):
    return settings(
        max_examples=int(_EXAMPLES) if _EXAMPLES else default_examples,
        deadline=None,
        derandomize=not _RANDOM,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


VARIANTS = cell_spec.variants()
DTYPES = {"float64": np.float64, "float32": np.float32}
ISAS = fastrnn.available_cpu_isas()


@contextlib.contextmanager
def kernel_config(isa: str | None = None, threads: int | None = None):
    """Runs the block with the given CPU instruction set and thread count, restoring both."""
    isa_before, threads_before = fastrnn.cpu_isa(), fastrnn.get_num_threads()
    try:
        if isa is not None:
            fastrnn.set_cpu_isa(isa)
        if threads is not None:
            fastrnn.set_num_threads(threads)
        yield
    finally:
        fastrnn.set_cpu_isa(isa_before)
        fastrnn.set_num_threads(threads_before)


# ----------------------------------------------------------------------------- comparisons


# A C++ result may also pass by being about as close to a more precise "truth" as the
# reference is: random recurrences amplify rounding (an RNN with |w_hh| ~ 2 is chaotic:
# gradients in the hundreds, float64 results that differ in the 9th digit), and then two
# correct implementations differ by more than TOL. The truth is the reference on the same
# values in TRUTH_DTYPE (float64 for float32 examples; long double, 64-bit mantissa on x86,
# for float64 ones, where the platform has it). The noise is the largest error, against the
# truth, of the reference and of NOISE_SAMPLES more reference runs on the inputs perturbed
# by 1 ulp each (how far rounding-sized changes carry here); NOISE_FACTOR times it is
# allowed on top of TOL. Measured on chaotic cases: a correct backend's error is at most
# ~1x that noise; the C++ tanh's cancellation (see TANH_NEAR_ZERO) 7x.
NOISE_FACTOR = 4.0
NOISE_SAMPLES = 4
TRUTH_DTYPE = {np.float32: np.float64, np.float64: np.longdouble}
if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:  # long double is double here
    del TRUTH_DTYPE[np.float64]


def check_close(name: str, got, want, dtype, truth=None) -> None:
    """|got - want| <= atol + rtol |want| elementwise (tests/cells.py's TOL for the dtype);
    the same shape and dtype; None exactly where the reference has None. Failing that, when
    ``truth`` is given (a function returning the truth and a list of perturbed reference
    results, see above): |got - truth| <= atol + rtol |truth| + NOISE_FACTOR * noise, with
    noise = max |r - truth| over the reference's result r and the perturbed ones."""
    if want is None:
        assert got is None, f"{name}: the reference gives None, the backend an array"
        return
    assert got is not None, f"{name}: the reference gives an array, the backend None"
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != reference {want.shape}"
    assert got.dtype == np.dtype(dtype), f"{name}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert want.dtype == np.dtype(dtype), f"{name}: reference dtype {want.dtype}"
    if not got.size:
        return
    atol, rtol = TOL[dtype]
    g, w = got.astype(np.longdouble), want.astype(np.longdouble)
    assert np.all(np.isfinite(w)), f"{name}: the reference is not finite"
    err = np.abs(g - w)
    bad = ~(err <= atol + rtol * np.abs(w))  # NaN in got counts as bad
    if not bad.any():
        return
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    msg = (
        f"{name}: {int(bad.sum())} of {got.size} elements differ; max abs err "
        f"{float(np.nanmax(err)):.3e} (atol={atol}, rtol={rtol}); first at {idx}: got "
        f"{g[idx]!r}, reference {w[idx]!r}"
    )
    if truth is None or dtype not in TRUTH_DTYPE:
        raise AssertionError(msg)
    t, samples = truth()
    t = np.asarray(t, np.longdouble)
    assert t.shape == got.shape, f"{name}: the truth has shape {t.shape}"
    noise = max(np.max(np.abs(np.asarray(r, np.longdouble) - t)) for r in [want, *samples])
    err_t = np.abs(g - t)
    bad = ~(err_t <= atol + rtol * np.abs(t) + NOISE_FACTOR * noise)
    if bad.any():
        raise AssertionError(
            f"{msg}; against the {np.dtype(TRUTH_DTYPE[dtype]).name} truth: the backend's "
            f"max abs err {float(np.nanmax(err_t)):.3e}, the (perturbed) reference's up to "
            f"{float(noise):.3e} (allowed: TOL + {NOISE_FACTOR:g}x that)"
        )


def perturbed(a, dtype, rng):
    """a times (1 +- eps) elementwise, random signs: an input rounding could have given."""
    if a is None:
        return None
    a = np.asarray(a)
    return (a * (1 + np.finfo(dtype).eps * rng.choice([-1.0, 1.0], a.shape))).astype(dtype)


def snapshot(arrays: dict) -> dict:
    return {k: np.array(v, copy=True) for k, v in arrays.items() if v is not None}


def check_unchanged(who: str, arrays: dict, before: dict) -> None:
    for k, v in before.items():
        assert np.array_equal(np.asarray(arrays[k]), v, equal_nan=True), (
            f"{who} wrote to its input '{k}'"
        )


# What the C++ backend gets past each sequence's end (x and dy, where lengths are given):
# the random values the reference gets, or NaN / Inf, which must not reach any result
# (fastrnn.ops zeroes the padding; y there is zero, so dy there goes nowhere).
PADDINGS = ["random", "random", "nan", "inf"]


def poison_padding(a, lengths, padding: str, time_axis: int = 0):
    """A copy of a (T, B, ...) (time_axis 0) or (B, T, ...) (time_axis 1) sequence with the
    steps past each length set to NaN or Inf; a itself for "random" or no lengths."""
    if a is None or lengths is None or padding == "random":
        return a
    a = np.array(a, copy=True)
    past = np.arange(a.shape[time_axis])[:, None] >= np.asarray(lengths)[None, :]  # (T, B)
    a[past if time_axis == 0 else past.T] = np.nan if padding == "nan" else np.inf
    return a


def as_lengths(lengths, kind: str):
    """lengths as a list or an int64 / int32 array. An empty list becomes an int64 array:
    np.asarray([]) is float64, which fastrnn rejects as not integer."""
    if lengths is None:
        return None
    if kind == "list" and lengths:
        return list(lengths)
    return np.array(lengths, np.int32 if kind == "int32" else np.int64)


# ----------------------------------------------------------------------------- ops level


@st.composite
def ops_params(draw, T_max=6, B_max=5, I_max=9, H_max=9, threads=(None,)):
    v = draw(st.sampled_from(range(len(VARIANTS))))
    spec = VARIANTS[v][0]
    T = draw(st.integers(0, T_max))
    B = draw(st.integers(0, B_max))
    H = draw(st.integers(1, H_max))
    proj = spec.projection and H > 1 and draw(st.booleans())
    return dict(
        variant=v,
        T=T,
        B=B,
        I=draw(st.integers(1, I_max)),
        H=H,
        P=draw(st.integers(1, H - 1)) if proj else 0,
        bias=draw(st.booleans()),
        lengths=draw(st.none() | st.lists(st.integers(0, T), min_size=B, max_size=B)),
        lengths_type=draw(st.sampled_from(["list", "int64", "int32"])),
        dtype=draw(st.sampled_from(sorted(DTYPES))),
        scale=draw(st.sampled_from([0.5, 1.0, 2.0])),
        states_given=draw(st.booleans()),
        grads_given=draw(st.sampled_from(["all", "dy only", "finals only", "none"])),
        layout=draw(st.sampled_from(["contiguous", "fortran", "strided"])),
        padding=draw(st.sampled_from(PADDINGS)),
        isa=draw(st.sampled_from(ISAS)),
        threads=draw(st.sampled_from(threads)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@st.composite
def wide_ops_params(draw):
    """Wider shapes; one example in four a long one: B in 16..24 and T past the inference
    path's input-projection chunk of ceil(512 / B) steps (up to 40)."""
    p = draw(ops_params(T_max=10, B_max=24, I_max=24, H_max=72, threads=(1, 2)))
    if draw(st.integers(0, 3)) == 0:
        p["B"] = draw(st.integers(16, 24))
        p["T"] = draw(st.integers(-(-512 // p["B"]) + 1, 40))
        if p["lengths"] is not None:
            p["lengths"] = draw(st.lists(st.integers(0, p["T"]), min_size=p["B"], max_size=p["B"]))
    return p


def _relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout (a view into a bigger array for 'strided')."""
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided" and a.ndim:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    return a


def ops_case(
    variant,
    T,
    B,
    I,
    H,
    P,
    bias,
    lengths,
    lengths_type,
    dtype,
    scale,
    states_given,
    grads_given,
    layout,
    seed,
    **_,
):
    """The inputs of one ops-level example: (spec, options, name -> array or None)."""
    spec, options = VARIANTS[variant]
    dt = DTYPES[dtype]
    rng = np.random.default_rng(seed)
    Pz = P or H
    k = scale / np.sqrt(H)

    def r(*shape, s=1.0):
        return (s * rng.standard_normal(shape)).astype(dt)

    G = spec.G
    a = dict(
        x=r(T, B, I),
        w_ih=r(G * H, I, s=k),
        w_hh=r(G * H, Pz, s=k),
        b_ih=r(G * H, s=0.5) if bias else None,
        b_hh=r(G * H, s=0.5) if bias else None,
        w_hr=r(Pz, H, s=k) if P else None,
    )
    for s in spec.states:
        n = spec.state_size(s, H, P)
        a[f"{s}0"] = r(B, n, s=0.5) if states_given else None
        a[f"d{s}_n"] = r(B, n) if grads_given in ("all", "finals only") else None
    a["dy"] = r(T, B, Pz) if grads_given in ("all", "dy only") else None
    for name in list(a):
        if a[name] is not None:
            a[name] = _relayout(a[name], layout)
    a["lengths"] = as_lengths(lengths, lengths_type)
    return spec, options, a


def flat_results(spec, results) -> dict:
    """run_ops' (y, finals, grads) as one dict: y, h_n[, c_n], dx, dh0, ..."""
    y, finals, grads = results
    out = {"y": y, **{f"{s}_n": f for s, f in zip(spec.states, finals)}}
    out.update({"d" + k: g for k, g in (grads or {}).items()})
    return out


def run_ops(module, spec, options, a, training=True):
    """forward (+ backward when training) through ``module``: (y, finals, grads or None)."""
    weights = [a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"]]
    if a["w_hr"] is not None:
        weights.append(a["w_hr"])
    y, finals, saved = spec.forward(
        module,
        a["x"],
        [a[f"{s}0"] for s in spec.states],
        weights,
        training=training,
        options=options,
        lengths=a["lengths"],
    )
    if not training:
        assert saved is None
        return y, finals, None
    grads = spec.backward(module, saved, a["dy"], [a[f"d{s}_n"] for s in spec.states])
    return y, finals, grads


def _events(p: dict) -> None:
    """What an example covers, for ``pytest --hypothesis-show-statistics``."""
    event(f"cell {VARIANTS[p['variant']][0].name}")
    event(f"dtype {p['dtype']}")
    for flag, label in [
        (p["T"] == 0, "T=0"),
        (p["B"] == 0, "B=0"),
        (p["lengths"] is not None, "lengths"),
        (bool(p["lengths"]) and 0 in p["lengths"], "a length 0"),
        (bool(p.get("P") or p.get("proj_size")), "projection"),
        (not p["bias"], "no bias"),
        (p["B"] > 8, "B > 8 (row tiles)"),
        (p["H"] > 16, "H > 16 (several panels)"),
        (p["B"] > 0 and p["T"] > -(-512 // p["B"]), "T > inference chunk"),
    ]:
        if flag:
            event(label)


def check_ops_example(params: dict) -> None:
    """One ops-level example: fastrnn.ops (with params' isa and threads) vs the reference."""
    spec, options, a = ops_case(**params)
    dt = DTYPES[params["dtype"]]
    before = snapshot({k: v for k, v in a.items() if k != "lengths"})
    ref_in = dict(a, lengths=None if a["lengths"] is None else np.asarray(a["lengths"], np.int64))
    y_ref, fin_ref, g_ref = run_ops(reference, spec, options, ref_in)
    check_unchanged("reference", a, before)
    truth_cache = {}

    def truth(key):
        """(the reference in TRUTH_DTYPE on the same values, [the float32/64 reference on
        perturbed values]) for one result: see check_close."""
        if not truth_cache:
            up = {
                k: v if v is None or k == "lengths" else np.asarray(v, TRUTH_DTYPE[dt])
                for k, v in ref_in.items()
            }
            truth_cache["truth"] = flat_results(spec, run_ops(reference, spec, options, up))
            rng = np.random.default_rng(params["seed"])
            truth_cache["samples"] = [
                flat_results(
                    spec,
                    run_ops(
                        reference,
                        spec,
                        options,
                        {
                            k: v if k == "lengths" else perturbed(v, dt, rng)
                            for k, v in ref_in.items()
                        },
                    ),
                )
                for _ in range(NOISE_SAMPLES)
            ]
        return truth_cache["truth"][key], [r[key] for r in truth_cache["samples"]]

    pad = params.get("padding", "random")
    a = dict(
        a,
        x=poison_padding(a["x"], a["lengths"], pad),
        dy=poison_padding(a["dy"], a["lengths"], pad),
    )
    before = snapshot({k: v for k, v in a.items() if k != "lengths"})
    with kernel_config(params.get("isa"), params.get("threads")):
        y, fin, g = run_ops(ops, spec, options, a)
        check_unchanged("fastrnn.ops (training)", a, before)
        y_inf, fin_inf, _ = run_ops(ops, spec, options, a, training=False)
        check_unchanged("fastrnn.ops (inference)", a, before)
    check_close("y", y, y_ref, dt, lambda: truth("y"))
    check_close("y (inference)", y_inf, y_ref, dt, lambda: truth("y"))
    assert len(fin) == len(fin_ref) == len(fin_inf) == len(spec.states)
    for s, got, inf, want in zip(spec.states, fin, fin_inf, fin_ref):
        check_close(f"{s}_n", got, want, dt, lambda s=s: truth(f"{s}_n"))
        check_close(f"{s}_n (inference)", inf, want, dt, lambda s=s: truth(f"{s}_n"))
    projection = a["w_hr"] is not None
    assert list(g) == list(g_ref) == list(spec.grad_names(projection)), (list(g), list(g_ref))
    if options.get("nonlinearity") == "relu" and np.any((y > 0) != (y_ref > 0)):
        # A pre-activation within rounding of 0: relu' is 1 on one side and 0 on the other,
        # so the gradients differ by that path's whole contribution, correctly on both sides
        # (found: y 5.96e-08 from the kernels, 0.0 from the reference and the float64 truth).
        event("relu kink: gradients not compared")
        return
    for name in g_ref:
        check_close("d" + name, g[name], g_ref[name], dt, lambda name=name: truth("d" + name))
    if not params["bias"]:
        assert g["b_ih"] is None and g["b_hh"] is None


@_settings(600)
@given(ops_params())
def test_ops_match_reference(params):
    note(f"reproduce: check_ops_example({params!r})")
    _events(params)
    check_ops_example(params)


# Found by this test (FASTRNN_FUZZ_EXAMPLES=2000): a tanh RNN with H=1, w_hh=2.9, float32.
# The kernels' tanh was 1 - 2/(exp(2x) + 1), which loses its relative accuracy near 0 (see
# test_tanh_is_accurate_near_zero); the recurrence amplified that to 1.9e-4 in y, against
# 4.0e-6 for the reference (np.tanh) and PyTorch, both measured from the float64 truth.
# Fixed in csrc/core/cell_math.h (the odd Taylor series below |x| = 1/8); kept as an example.
TANH_NEAR_ZERO = {
    "variant": 3,
    "T": 33,
    "B": 16,
    "I": 1,
    "H": 1,
    "P": 0,
    "bias": False,
    "lengths": None,
    "lengths_type": "list",
    "dtype": "float32",
    "scale": 2.0,
    "states_given": False,
    "grads_given": "all",
    "layout": "contiguous",
    "isa": "generic",
    "threads": 1,
    "seed": 0,
}


@_settings(150)
@given(wide_ops_params())
@example(TANH_NEAR_ZERO)
def test_ops_wide_match_reference(params):
    note(f"reproduce: check_ops_example({params!r})")
    _events(params)
    check_ops_example(params)


# ----------------------------------------------------------------------------- layer level

LAYER_CLASSES = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU, "rnn": fastrnn.RNN}


@st.composite
def layer_params(draw):
    v = draw(st.sampled_from(range(len(VARIANTS))))
    spec = VARIANTS[v][0]
    num_layers = draw(st.integers(1, 3))
    unbatched = draw(st.integers(0, 9)) == 0
    T = draw(st.integers(0, 5))
    B = 1 if unbatched else draw(st.integers(0, 4))
    H = draw(st.integers(1, 7))
    proj = spec.projection and H > 1 and draw(st.booleans())
    return dict(
        variant=v,
        num_layers=num_layers,
        bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bias=draw(st.booleans()),
        T=T,
        B=B,
        I=draw(st.integers(1, 6)),
        H=H,
        proj_size=draw(st.integers(1, H - 1)) if proj else 0,
        dropout=draw(st.sampled_from([0.0, 0.0, 0.3, 0.6])) if num_layers > 1 else 0.0,
        unbatched=unbatched,
        lengths=None
        if unbatched
        else draw(st.none() | st.lists(st.integers(0, T), min_size=B, max_size=B)),
        lengths_type=draw(st.sampled_from(["list", "int64", "int32"])),
        dtype=draw(st.sampled_from(sorted(DTYPES))),
        states_given=draw(st.sampled_from(["all", "none", "h only", "c only"])),
        grads_given=draw(st.sampled_from(["all", "dy only", "finals only", "none", "h only"])),
        rounds=draw(st.integers(1, 2)),
        padding=draw(st.sampled_from(PADDINGS)),
        isa=draw(st.sampled_from(ISAS)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def make_layer(params: dict, backend: str, dtype=None):
    """The example's layer on a backend (in the example's dtype unless given); the seed
    fixes the weights and the dropout masks."""
    p = params
    spec, options = VARIANTS[p["variant"]]
    kw = dict(
        num_layers=p["num_layers"],
        bias=p["bias"],
        batch_first=p["batch_first"],
        dropout=p["dropout"],
        bidirectional=p["bidirectional"],
        dtype=dtype or DTYPES[p["dtype"]],
        seed=p["seed"] % 2**31,
        **options,
    )
    if p["proj_size"]:
        kw["proj_size"] = p["proj_size"]
    return LAYER_CLASSES[spec.name](p["I"], p["H"], backend=backend, **kw)


def layer_case(
    variant,
    num_layers,
    bidirectional,
    batch_first,
    bias,
    T,
    B,
    I,
    H,
    proj_size,
    dropout,
    unbatched,
    lengths,
    lengths_type,
    dtype,
    states_given,
    grads_given,
    rounds,
    seed,
    **_,
):
    """The inputs of a layer-level example: (spec, rounds, lengths) with rounds a list of
    (x, state, dy, dstate) (state and dstate map "h" / "c" to an array or None)."""
    spec = VARIANTS[variant][0]
    dt = DTYPES[dtype]
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    LD = num_layers * D

    def r(*shape):
        """Random (T, B, N) or (LD, B, N) data, without the B axis when unbatched."""
        if unbatched:
            shape = shape[:1] + shape[2:]
        return rng.standard_normal(shape).astype(dt)

    def seq(*shape):
        a = r(*shape)
        return np.ascontiguousarray(a.swapaxes(0, 1)) if batch_first and not unbatched else a

    inputs = []
    for _ in range(rounds):
        x = seq(T, B, I)
        state = {s: r(LD, B, spec.state_size(s, H, proj_size)) for s in spec.states}
        dstate = {s: r(LD, B, spec.state_size(s, H, proj_size)) for s in spec.states}
        dy = seq(T, B, D * (proj_size or H))
        if states_given == "none":
            state = {s: None for s in state}
        elif states_given in ("h only", "c only"):
            state = {s: (v if s == states_given[0] else None) for s, v in state.items()}
        if grads_given in ("finals only", "none"):
            dy = None
        if grads_given in ("dy only", "none"):
            dstate = {s: None for s in dstate}
        elif grads_given == "h only":
            dstate = {s: (v if s == "h" else None) for s, v in dstate.items()}
        inputs.append((x, state, dy, dstate))
    return spec, inputs, as_lengths(lengths, lengths_type)


def layer_forward(spec, layer, x, state, lengths):
    if spec.has_cell_state:
        hx = None if all(v is None for v in state.values()) else (state["h"], state["c"])
        y, (h, c) = layer(x, hx, lengths=lengths)
        return dict(y=y, h_n=h, c_n=c)
    y, h = layer(x, state["h"], lengths=lengths)
    return dict(y=y, h_n=h)


def run_layer(spec, layer, x, state, dy, dstate, lengths):
    out = layer_forward(spec, layer, x, state, lengths)
    if spec.has_cell_state:
        dx, (dh0, dc0) = layer.backward(dy, (dstate["h"], dstate["c"]))
        return dict(out, dx=dx, dh0=dh0, dc0=dc0)
    dx, dh0 = layer.backward(dy, dstate["h"])
    return dict(out, dx=dx, dh0=dh0)


def layer_results(spec, layer, inputs, lengths) -> dict:
    """Every round's forward + backward, then the accumulated .grads, then a no_grad forward
    on the first round's input: name -> array (or None)."""
    out = {}
    for rnd, (x, state, dy, dstate) in enumerate(inputs):
        res = run_layer(spec, layer, x, state, dy, dstate, lengths)
        out.update({f"round {rnd}: {k}": v for k, v in res.items()})
        out.update(
            {f"round {rnd}: dropout mask {k}": m for k, m in layer.last_dropout_masks.items()}
        )
    out.update({f"grads[{k!r}]": g.copy() for k, g in layer.grads.items()})
    with fastrnn.no_grad():
        res = layer_forward(spec, layer, *inputs[0][:2], lengths)
    out.update({f"no_grad: {k}": v for k, v in res.items()})
    return out


def _float64(a):
    return None if a is None else np.asarray(a, np.float64)


def check_layer_example(params: dict) -> None:
    """One layer-level example: backend="cpu" (with params' isa, and params' padding past
    the lengths) vs backend="numpy" (with random padding)."""
    spec, inputs, lengths = layer_case(**params)
    cpu, ref = make_layer(params, "cpu"), make_layer(params, "numpy")
    dt = DTYPES[params["dtype"]]
    assert list(cpu.grads) == list(ref.grads)
    for k, p in ref.parameters().items():
        assert np.array_equal(cpu.parameters()[k], p), f"{k}: same seed, different weights"
    weights = ref.state_dict()
    want = layer_results(spec, ref, inputs, lengths)
    tax = 1 if params["batch_first"] else 0
    pad = params.get("padding", "random")
    poisoned = [
        (poison_padding(x, lengths, pad, tax), st_, poison_padding(dy, lengths, pad, tax), ds)
        for x, st_, dy, ds in inputs
    ]
    with kernel_config(params.get("isa")):
        got = layer_results(spec, cpu, poisoned, lengths)
    truth_cache = {}

    def truth(name):
        """(the numpy backend in float64 on the same values, [the float32 numpy backend on
        perturbed values, perturbed weights]) for one result, with the same dropout masks
        (the same seed); float32 examples only (the layers take float32 and float64)."""
        if not truth_cache:
            layer = make_layer(params, "numpy", np.float64)
            layer.load_state_dict(weights)
            up = [
                (
                    _float64(x),
                    {k: _float64(v) for k, v in st_.items()},
                    _float64(dy),
                    {k: _float64(v) for k, v in ds.items()},
                )
                for x, st_, dy, ds in inputs
            ]
            truth_cache["truth"] = layer_results(spec, layer, up, lengths)
            rng = np.random.default_rng(params["seed"])
            samples = []
            for _ in range(NOISE_SAMPLES):
                layer = make_layer(params, "numpy")
                layer.load_state_dict({k: perturbed(v, dt, rng) for k, v in weights.items()})
                pin = [
                    (
                        perturbed(x, dt, rng),
                        {k: perturbed(v, dt, rng) for k, v in st_.items()},
                        perturbed(dy, dt, rng),
                        {k: perturbed(v, dt, rng) for k, v in ds.items()},
                    )
                    for x, st_, dy, ds in inputs
                ]
                samples.append(layer_results(spec, layer, pin, lengths))
            truth_cache["samples"] = samples
        return truth_cache["truth"][name], [r[name] for r in truth_cache["samples"]]

    assert list(got) == list(want), (list(got), list(want))
    for name in want:
        if "dropout mask" in name:
            assert np.array_equal(got[name], want[name]), f"{name} differs"
        else:
            check_close(
                name,
                got[name],
                want[name],
                dt,
                (lambda name=name: truth(name)) if dt == np.float32 else None,
            )


@_settings(250)
@given(layer_params())
def test_layers_cpu_match_numpy(params):
    note(f"reproduce: check_layer_example({params!r})")
    _events(params)
    event(f"num_layers {params['num_layers']}")
    for key in ("bidirectional", "batch_first", "unbatched"):
        if params[key]:
            event(key)
    if params["dropout"]:
        event("dropout")
    check_layer_example(params)


# ----------------------------------------------------------------------------- regressions


def _variant_params():
    return [
        pytest.param(s, o, id=s.name + "".join(f"-{k}={v}" for k, v in o.items()))
        for s, o in VARIANTS
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("spec,options", _variant_params())
def test_tanh_is_accurate_near_zero(spec, options, dtype):
    """Small pre-activations (weights ~1e-4, as a small initialization gives): every output
    to a few ulps relative, as np.tanh (the reference) and PyTorch compute it. The case that
    failed before the fix: ops.rnn_forward(np.full((1, 1, 1), 1e-5, np.float32), None,
    np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32), None, None)[0] was 1.00136e-05
    (tanh(1e-5) = 9.99999e-06), and in float64 tanh(1e-12) came out as 1.000089e-12."""
    rng = np.random.default_rng(0)
    T, B, I, H = 3, 4, 5, 6
    a = dict(
        x=rng.standard_normal((T, B, I)).astype(dtype),
        w_ih=(1e-4 * rng.standard_normal((spec.G * H, I))).astype(dtype),
        w_hh=(1e-4 * rng.standard_normal((spec.G * H, H))).astype(dtype),
        b_ih=None,
        b_hh=None,
        w_hr=None,
        lengths=None,
        dy=None,
    )
    for s in spec.states:
        a[f"{s}0"] = a[f"d{s}_n"] = None
    y, finals, _ = run_ops(ops, spec, options, a, training=False)
    y_ref, finals_ref, _ = run_ops(reference, spec, options, a, training=False)
    # 32 ulps: GRU's (1 - z) n + z h may cancel (measured up to 11 ulps with an exact tanh);
    # the cancelling tanh this guards against was off by ~1000 ulps (float32, x = 1e-5).
    rel = np.finfo(dtype).eps * 32
    np.testing.assert_allclose(y, y_ref, rtol=rel, atol=0)
    for got, want in zip(finals, finals_ref):
        np.testing.assert_allclose(got, want, rtol=rel, atol=0)


@pytest.mark.parametrize("spec,options", _variant_params())
def test_reference_ignores_non_finite_padding(spec, options):
    """What the fuzz tests check of the C++ side holds for the reference too: NaN in x past
    a sequence's end reaches no result (torch's packed sequences never see it). The case that
    failed before the reference zeroed x's padding: x = [[[1.]], [[nan]]], lengths=[1],
    reference.lstm_forward with w_ih = w_hh = ones((4, 1)), then lstm_backward(saved,
    ones((2, 1, 1)), None, None): dw_ih was all NaN (ops: finite)."""
    rng = np.random.default_rng(1)
    T, B, I, H = 4, 3, 2, 3
    lengths = np.array([4, 2, 0])
    a = dict(
        x=poison_padding(rng.standard_normal((T, B, I)), lengths, "nan"),
        w_ih=rng.standard_normal((spec.G * H, I)),
        w_hh=rng.standard_normal((spec.G * H, H)),
        b_ih=None,
        b_hh=None,
        w_hr=None,
        lengths=lengths,
        dy=rng.standard_normal((T, B, H)),
    )
    for s in spec.states:
        a[f"{s}0"] = a[f"d{s}_n"] = None
    y, finals, grads = run_ops(reference, spec, options, a)
    for name, v in (
        [("y", y)]
        + [(s + "_n", f) for s, f in zip(spec.states, finals)]
        + [("d" + k, g) for k, g in grads.items() if g is not None]
    ):
        assert np.all(np.isfinite(v)), f"{name}: {int(np.sum(~np.isfinite(v)))} non-finite"
