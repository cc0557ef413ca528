"""ml_dtypes.bfloat16 arrays: fastrnn.ops, fastrnn.reference, the layers and the cells take
them and give bfloat16 back. The numbers are those of float32 arrays holding the same values
with precision="bf16", rounded to bfloat16 once at the end (the same kernels run on the
same float32 values, so the rounded results are equal, not just close); the errors name the
argument; and fastrnn imports and runs without ml_dtypes."""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn import _testing, cuda, ops, reference
from fastrnn.step import CellStep

from cells import VARIANTS, Problem, backward, forward, make_problem, with_variants

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)


class _Pinned:
    """A module (ops or reference) with keyword arguments added to every forward."""

    def __init__(self, module, **kwargs):
        self._module, self._kwargs = module, kwargs

    def __getattr__(self, name: str):
        fn = getattr(self._module, name)
        return functools.partial(fn, **self._kwargs) if name.endswith("_forward") else fn


def _cast(p: Problem, dtype) -> Problem:
    """p with every float array in ``dtype`` (lengths left alone)."""
    return dataclasses.replace(
        p,
        **{
            f.name: getattr(p, f.name).astype(dtype)
            for f in dataclasses.fields(p)
            if f.name != "lengths" and getattr(p, f.name) is not None
        },
    )


def _bf16_valued(p: Problem) -> Problem:
    """p (float32) with every value rounded to bfloat16: the float32 twin of _cast(p, BF16)."""
    return _cast(_cast(p, BF16), F32)


def _run(module, v, p: Problem, **kwargs) -> dict:
    """Outputs and every gradient of one forward + backward, by name (None ones left out)."""
    outs, saved = forward(_Pinned(module, **kwargs), v, p)
    named = {f"out{i}": o for i, o in enumerate(outs)}
    named.update({f"d{k}": g for k, g in backward(module, v, saved, p).items() if g is not None})
    return named


def _assert_rounded_equal(got: dict, want: dict) -> None:
    """got (bfloat16) is want (float32) rounded to bfloat16, name by name."""
    assert set(got) == set(want)
    for name, w in want.items():
        assert w.dtype == F32, name
        assert got[name].dtype == BF16, name
        err = float(np.max(np.abs(got[name].astype(F32) - w), initial=0))
        print(f"{name}: max |bf16 - float32| {err:.3e}")
        np.testing.assert_array_equal(got[name], w.astype(BF16), err_msg=name)


# (T, B, I, H, lengths, proj): plain; unsorted lengths with 0 and T; an LSTM projection with
# random lengths; T = 0; products large enough for the packed bf16 GEMM (M*N*K >= 2^20).
CASES = [
    (6, 3, 8, 16, None, 0),
    (7, 5, 6, 24, [3, 0, 7, 1, 5], 0),
    (5, 4, 9, 33, "random", 12),
    (0, 2, 3, 4, None, 0),
    (20, 16, 65, 67, "random", 31),
]


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("v,T,B,I,H,lengths,proj", with_variants(CASES, 5))
def test_bf16_arrays_are_the_float32_path_in_bf16_rounded(module, v, T, B, I, H, lengths, proj):
    """precision="fp32" given with bfloat16 arrays changes nothing: they mean bf16 products."""
    p32 = _bf16_valued(make_problem(v, T, B, I, H, np.float32, T + B, proj=proj, lengths=lengths))
    want = _run(module, v, p32, precision="bf16")
    got = _run(module, v, _cast(p32, BF16), precision="fp32")
    _assert_rounded_equal(got, want)


@pytest.mark.parametrize("v", VARIANTS, ids=[v.id for v in VARIANTS])
def test_no_bias_zero_states_and_float32_upstream_gradients(v):
    """Bias None, states None (zeros), dy given as float32 (also taken after a bfloat16
    forward) and the final states' gradients None: gradients still bfloat16, the biases'
    None."""
    p32 = _bf16_valued(make_problem(v, 5, 3, 4, 6, np.float32, seed=7, bias=False))
    states = [None] * len(v.spec.states)
    runs = {}
    for dtype in (F32, BF16):
        p = _cast(p32, dtype)
        fwd = getattr(ops, v.spec.forward_name)
        out = fwd(p.x, *states, p.w_ih, p.w_hh, None, None, precision="bf16", **v.options)
        grads = getattr(ops, v.spec.backward_name)(out[-1], p32.dy, *states)
        runs[dtype] = [*out[:-1], *grads]
    for got, want in zip(runs[BF16], runs[F32]):
        if want is None:
            assert got is None
        else:
            assert got.dtype == BF16
            np.testing.assert_array_equal(got, want.astype(BF16))


def test_the_saved_record_holds_float32_and_says_bfloat16():
    v = VARIANTS[0]  # lstm
    p = _cast(make_problem(v, 4, 2, 3, 5, np.float32), BF16)
    y, h_n, c_n, saved = ops.lstm_forward(p.x, p.h0, p.c0, p.w_ih, p.w_hh, p.b_ih, p.b_hh)
    assert saved.precision == "bf16" and saved.io_dtype == BF16 and saved.grad_dtype == BF16
    assert {a.dtype for a in saved.arrays().values()} == {F32}
    y[...] = 0  # the caller's y is its own: the record keeps the float32 one
    assert np.any(saved.y != 0)
    y, h_n, c_n, saved = ops.lstm_forward(p.x, p.h0, p.c0, p.w_ih, p.w_hh, p.b_ih, p.b_hh, False)
    assert saved is None and y.dtype == h_n.dtype == c_n.dtype == BF16


# ----------------------------------------------------------------------------- errors

LSTMP = make_problem(VARIANTS[0], 3, 2, 4, 5, np.float32, proj=3)
_ARGS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")


def _lstm_call(p: Problem, **override):
    a = {n: getattr(p, n) for n in _ARGS}
    a.update(override)
    return ops.lstm_forward(
        a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], w_hr=a["w_hr"]
    )


@pytest.mark.parametrize("name", _ARGS[1:])
def test_a_float32_array_beside_bfloat16_ones_is_named(name):
    p = _cast(LSTMP, BF16)
    with pytest.raises(TypeError, match=f"'{name}' has dtype float32 but x has dtype bfloat16"):
        _lstm_call(p, **{name: getattr(LSTMP, name)})


@pytest.mark.parametrize("name", _ARGS[1:])
def test_a_bfloat16_array_beside_float32_ones_is_named(name):
    with pytest.raises(TypeError, match=f"'{name}' has dtype bfloat16 but x has dtype float32"):
        _lstm_call(LSTMP, **{name: getattr(LSTMP, name).astype(BF16)})


def test_upstream_gradient_dtypes():
    p = _cast(LSTMP, BF16)
    saved = _lstm_call(p)[-1]
    with pytest.raises(TypeError, match="'dy' has dtype float64 but the forward ran on bfloat16"):
        ops.lstm_backward(saved, p.dy.astype(np.float64), None, None)
    saved = _lstm_call(LSTMP)[-1]
    with pytest.raises(TypeError, match="'dc_n' has dtype bfloat16 but the forward ran in float32"):
        ops.lstm_backward(saved, None, None, p.dc_n)


def test_precision_is_still_checked_and_cuda_refuses_bfloat16():
    p = _cast(LSTMP, BF16)
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16'\]"):
        ops.lstm_forward(p.x, None, None, p.w_ih, p.w_hh, None, None, w_hr=p.w_hr, precision="x")
    with cuda._use_device_module(_testing.cuda_emulation):
        with pytest.raises(ValueError, match="bfloat16 arrays are not on the CUDA backend"):
            ops.lstm_forward(p.x, None, None, p.w_ih, p.w_hh, None, None, w_hr=p.w_hr,
                             backend="cuda")  # fmt: skip
        with pytest.raises(ValueError, match="dtype bfloat16 is not on the CUDA backend"):
            fastrnn.GRU(3, 4, dtype=BF16, backend="cuda")


def test_cellstep_refuses_bfloat16_by_name():
    p = _cast(make_problem(VARIANTS[-1], 1, 2, 3, 4, np.float32), BF16)
    with pytest.raises(TypeError, match="'w_hh' has dtype bfloat16, which CellStep does not"):
        CellStep("rnn", p.w_ih, p.w_hh)


# ----------------------------------------------------------------------------- layers, cells

# (layer class, its options): every cell kind and option, and an LSTM with a projection.
LAYERS = [
    ("LSTM", {}),
    ("LSTM", {"proj_size": 3}),
    ("GRU", {"reset_after": True}),
    ("GRU", {"reset_after": False}),
    ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu"}),
]
LAYER_IDS = [c + "".join(f"-{k}={v}" for k, v in o.items()) for c, o in LAYERS]


def _layer_twins(cls: str, options: dict, **kw):
    """A bfloat16 layer and a float32 one with precision="bf16" and the same parameters."""
    ours = getattr(fastrnn, cls)(5, 7, dtype=BF16, seed=3, **options, **kw)
    twin = getattr(fastrnn, cls)(5, 7, precision="bf16", **options, **kw)
    twin.load_state_dict(ours.state_dict())
    return ours, twin


def _layer_run(layer, x, dy, dtype, lengths=None):
    """y, the final states, dx, the initial states' gradients and the parameter gradients."""
    y, finals = layer(x.astype(dtype), lengths=lengths)
    finals = finals if isinstance(finals, tuple) else (finals,)
    dfinals = tuple(np.ones_like(f) for f in finals)
    dx, dinit = layer.backward(dy.astype(dtype), dfinals if len(finals) > 1 else dfinals[0])
    dinit = dinit if isinstance(dinit, tuple) else (dinit,)
    named = {"y": y, "dx": dx}
    named.update({f"final{i}": f for i, f in enumerate(finals)})
    named.update({f"dinit{i}": g for i, g in enumerate(dinit)})
    named.update({f"d{k}": g for k, g in layer.grads.items()})
    return named


@pytest.mark.parametrize("cls,options", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("batch_first,lengths", [(False, None), (True, [4, 0, 6, 2])])
def test_a_bfloat16_layer_is_the_float32_layer_in_bf16_rounded(cls, options, batch_first, lengths):
    """One layer, one direction: the bfloat16 layer's kernels see exactly the float32 twin's
    values, so every result is the twin's rounded once; its parameters and grads are
    bfloat16."""
    ours, twin = _layer_twins(cls, options, batch_first=batch_first)
    assert ours.precision == "bf16" and all(p.dtype == BF16 for p in ours.parameters().values())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 5) if batch_first else (6, 4, 5))
    P = options.get("proj_size") or 7
    dy = rng.standard_normal(x.shape[:2] + (P,))
    x, dy = (a.astype(BF16).astype(F32) for a in (x, dy))
    _assert_rounded_equal(
        _layer_run(ours, x, dy, BF16, lengths), _layer_run(twin, x, dy, F32, lengths)
    )


def _rel(a, b) -> float:
    a, b = (np.asarray(v, np.float64) for v in (a, b))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("cls,options", LAYERS, ids=LAYER_IDS)
def test_a_stacked_bidirectional_bfloat16_layer(cls, options):
    """Two layers, both directions, lengths, dropout: between layers the output is bfloat16
    (as torch's bfloat16 modules have it), so the results are close to, not equal to, the
    float32 layer's in bf16; the kernels and the reference agree on bfloat16 arrays too;
    float32 upstream gradients give the bfloat16 ones' results."""
    kw = dict(num_layers=2, bidirectional=True, dropout=0.25, **options)
    ours, twin = _layer_twins(cls, options, **{k: v for k, v in kw.items() if k not in options})
    ref = getattr(fastrnn, cls)(5, 7, dtype=BF16, backend="numpy", **kw)
    ref.load_state_dict(ours.state_dict())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 4, 5)).astype(BF16).astype(F32)
    P = options.get("proj_size") or 7
    dy = rng.standard_normal((6, 4, 2 * P)).astype(BF16).astype(F32)
    lengths = [6, 3, 0, 5]
    runs = {}
    for name, layer, dtype in (("bf16", ours, BF16), ("ref", ref, BF16), ("f32", twin, F32),
                               ("bf16_f32_grads", ours, BF16)):  # fmt: skip
        layer._dropout_rng = np.random.default_rng(5)  # the same masks in each
        layer.zero_grad()
        grad_dtype = F32 if name == "bf16_f32_grads" else dtype
        y, finals = layer(x.astype(dtype), lengths=lengths)
        finals = finals if isinstance(finals, tuple) else (finals,)
        dfin = tuple(np.ones(f.shape, grad_dtype) for f in finals)
        dx, dinit = layer.backward(dy.astype(grad_dtype), dfin if len(dfin) > 1 else dfin[0])
        runs[name] = [y, *finals, dx, *(dinit if isinstance(dinit, tuple) else (dinit,))]
        runs[name] += [layer.grads[k].copy() for k in sorted(layer.grads)]
    for got, ref_, f32, got32 in zip(runs["bf16"], runs["ref"], runs["f32"],
                                     runs["bf16_f32_grads"]):  # fmt: skip
        assert got.dtype == ref_.dtype == BF16 and f32.dtype == F32
        assert _rel(got, ref_) < 2**-7
        assert _rel(got, f32) < (2**-4 if options.get("nonlinearity") == "relu" else 2**-6)
        np.testing.assert_array_equal(got, got32)


@pytest.mark.parametrize("cls,options", [("LSTMCell", {}), ("GRUCell", {"reset_after": True}),
                                         ("GRUCell", {"reset_after": False}),
                                         ("RNNCell", {"nonlinearity": "tanh"}),
                                         ("RNNCell", {"nonlinearity": "relu"})])  # fmt: skip
@pytest.mark.parametrize("unbatched", [False, True])
def test_a_bfloat16_cell_is_the_float32_cell_in_bf16_rounded(cls, options, unbatched):
    ours = getattr(fastrnn, cls)(5, 7, dtype=BF16, seed=4, **options)
    twin = getattr(fastrnn, cls)(5, 7, precision="bf16", **options)
    twin.load_state_dict(ours.state_dict())
    rng = np.random.default_rng(2)
    shape = (5,) if unbatched else (3, 5)
    x = rng.standard_normal(shape).astype(BF16).astype(F32)
    h = rng.standard_normal(shape[:-1] + (7,)).astype(BF16).astype(F32)
    state = (h, h * 0.5) if cls == "LSTMCell" else h
    named = {}
    for cell, dtype in ((ours, BF16), (twin, F32)):
        st = tuple(s.astype(dtype) for s in state) if cls == "LSTMCell" else state.astype(dtype)
        with fastrnn.no_grad():
            inference = cell(x.astype(dtype), st)
        out = cell(x.astype(dtype), st)
        outs = out if isinstance(out, tuple) else (out,)
        grads = cell.backward(*(np.ones_like(o) for o in outs))
        flat = [grads[0], *(grads[1] if isinstance(grads[1], tuple) else grads[1:])]
        inference = inference if isinstance(inference, tuple) else (inference,)
        named[dtype] = {f"inf{i}": o for i, o in enumerate(inference)}
        named[dtype].update({f"out{i}": o for i, o in enumerate(outs)})
        named[dtype].update({f"grad{i}": g for i, g in enumerate(flat)})
        named[dtype].update({f"d{k}": g for k, g in cell.grads.items()})
    _assert_rounded_equal(named[BF16], named[F32])


def test_bfloat16_layers_refuse_other_dtypes_by_name():
    layer = fastrnn.LSTM(3, 4, dtype=BF16)
    with pytest.raises(TypeError, match="input x has dtype float32, but the layer's parameters"):
        layer(np.zeros((2, 1, 3), np.float32))
    y, _ = layer(np.zeros((2, 1, 3), BF16))
    with pytest.raises(TypeError, match="dy has dtype float64, expected bfloat16 or float32"):
        layer.backward(np.zeros(y.shape))
    cell = fastrnn.GRUCell(3, 4, dtype=BF16)
    with pytest.raises(TypeError, match="hx has dtype float32, expected bfloat16"):
        cell(np.zeros((1, 3), BF16), np.zeros((1, 4), np.float32))


def test_state_dicts_cross_dtypes():
    """A bfloat16 layer loads float32 parameters (rounded) and a float32 layer bfloat16 ones."""
    f32 = fastrnn.GRU(3, 4, seed=0)
    bf16 = fastrnn.GRU(3, 4, dtype=BF16)
    bf16.load_state_dict(f32.state_dict())
    for k, p in f32.parameters().items():
        np.testing.assert_array_equal(bf16.parameters()[k], p.astype(BF16))
    f32.load_state_dict(bf16.state_dict())
    for k, p in bf16.parameters().items():
        assert f32.parameters()[k].dtype == F32
        np.testing.assert_array_equal(f32.parameters()[k], p.astype(F32))


# ----------------------------------------------------------------------------- without it

_WITHOUT = """
import sys
sys.modules["ml_dtypes"] = None  # `import ml_dtypes` now raises ImportError
import numpy as np
import fastrnn
from fastrnn import ops

rng = np.random.default_rng(0)
x = rng.standard_normal((4, 2, 3)).astype(np.float32)
w_ih, w_hh = (rng.standard_normal((16, n)).astype(np.float32) * 0.3 for n in (3, 4))
for precision in ("fp32", "bf16"):
    y, h, c, saved = ops.lstm_forward(x, None, None, w_ih, w_hh, None, None, precision=precision)
    grads = ops.lstm_backward(saved, np.ones_like(y), None, None)
    assert y.dtype == np.float32 and grads[0].dtype == np.float32
layer = fastrnn.GRU(3, 5, num_layers=2, precision="bf16", backend="numpy")
y, h = layer(x)
layer.backward(np.ones_like(y))
cell = fastrnn.LSTMCell(3, 4)
cell(x[0])
print("ok")
"""


def test_fastrnn_works_without_ml_dtypes():
    p = subprocess.run(
        [sys.executable, "-c", _WITHOUT], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ok"]


def test_fastrnn_never_imports_ml_dtypes_itself():
    code = (
        "import sys, numpy as np, fastrnn\n"
        "x = np.ones((2, 1, 3), np.float32)\n"
        "fastrnn.RNN(3, 4, precision='bf16')(x)\n"
        "print('ml_dtypes' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False"]
