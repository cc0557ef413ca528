"""precision="bf16": every matrix product on bf16-rounded operands (round to nearest even)
with float32 accumulation, the rest in float32 -- the C++ kernels against the NumPy
reference in the same mode, the results class itself, the error against float32 that the
docs state, and the errors."""

import functools

import numpy as np
import pytest

from fastrnn import _C, _testing, cuda, ops, reference
from fastrnn.cell_spec import variants
from fastrnn.reference import to_bf16

from cells import VARIANT_IDS, VARIANTS, backward, forward, make_problem, with_variants


class _InPrecision:
    """A module's forwards pinned to one precision (backwards follow their forward)."""

    def __init__(self, module, precision: str):
        for name in dir(module):
            if name.endswith("_forward"):
                fn = functools.partial(getattr(module, name), precision=precision)
                setattr(self, name, fn)
            elif name.endswith("_backward"):
                setattr(self, name, getattr(module, name))


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _run(module, v, p, precision):
    """Outputs and every gradient of one forward + backward, by name."""
    m = _InPrecision(module, precision)
    outs, saved = forward(m, v, p)
    grads = backward(m, v, saved, p)
    named = {f"out{i}": o for i, o in enumerate(outs) if o is not None}
    named.update({f"d{k}": g for k, g in grads.items() if g is not None})
    return named


# (T, B, I, H, lengths, proj): plain, unsorted lengths with 0 and T, an LSTM projection, a
# batch of one with W_hh over 64 KiB (the GEMV path), products large enough for the packed
# bf16 GEMM of the avx512bf16 build (M*N*K >= 2^20), odd sizes and lengths included, and one
# step of one row (a streaming step: every product a GEMV rounding W as it reads it; K not a
# multiple of the bf16 kernel's 32).
CASES = [
    (6, 3, 8, 16, None, 0),
    (7, 5, 6, 24, [3, 0, 7, 1, 5], 0),
    (5, 4, 9, 33, "random", 12),
    (6, 1, 10, 140, [4], 0),
    (20, 16, 65, 67, "random", 31),
    (1, 1, 70, 45, None, 0),
]


@pytest.mark.parametrize("v,T,B,I,H,lengths,proj", with_variants(CASES, 5))
def test_kernels_match_the_reference_in_bf16(v, T, B, I, H, lengths, proj, cpu_isa):
    """Both round the same operands: they agree as the float32 modes do (~1e-7), but for an
    operand that lands within float32 rounding of a bf16 tie and rounds the other way."""
    p = make_problem(v, T, B, I, H, dtype=np.float32, seed=T + B, proj=proj, lengths=lengths)
    got, want = _run(ops, v, p, "bf16"), _run(reference, v, p, "bf16")
    fp32 = _run(ops, v, p, "fp32")
    for name in want:
        assert got[name].dtype == np.float32
        assert _rel(got[name], want[name]) < 1e-3, name
    # bf16 products really ran: the outputs moved off float32's by bf16's rounding.
    assert _rel(got["out0"], fp32["out0"]) > 1e-5


# GRU with reset_after=False is left out: its step multiplies W_hn by r * h, an operand made
# inside the step, which bf16 mode rounds and float32 mode on rounded inputs does not.
ONE_STEP = [v for v in VARIANTS if v.options.get("reset_after", True)]


@pytest.mark.parametrize("v", ONE_STEP, ids=[v.id for v in ONE_STEP])
def test_the_results_class_is_bf16_operands_with_float32_sums(v):
    """One step from a given h0 that bf16 represents exactly: the products' operands are x,
    h0 and the weights, so bf16 mode equals float32 mode on x and the weights rounded to
    bf16 (c0 and the biases enter no product: they stay as they are)."""
    p = make_problem(v, 1, 4, 12, 20, dtype=np.float32, seed=3)
    fwd = getattr(ops, v.spec.forward_name)
    h0 = to_bf16(p.h0)
    states = [h0] + ([p.c0] if v.cell == "lstm" else [])
    got = fwd(p.x, *states, p.w_ih, p.w_hh, p.b_ih, p.b_hh, False, precision="bf16",
              **v.options)  # fmt: skip
    want = fwd(to_bf16(p.x), *states, to_bf16(p.w_ih), to_bf16(p.w_hh), p.b_ih, p.b_hh, False,
               **v.options)  # fmt: skip
    for g, w in zip(got[:-1], want[:-1]):
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=2e-6)
    assert not np.allclose(got[0], fwd(p.x, *states, p.w_ih, p.w_hh, p.b_ih, p.b_hh, False,
                                       **v.options)[0], rtol=1e-5, atol=1e-5)  # fmt: skip


# The bound the docs state, relative error in the Frobenius norm of the outputs and of every
# gradient against float32, with torch.nn's initialization (uniform +-1/sqrt(H)), x ~ N(0, 1),
# T <= 50, H <= 256: 2^-7 (measured 2.5e-3 to 3.3e-3), and 2^-4 for the relu RNN (measured
# 3e-2 to 5e-2: a pre-activation near 0 that changes sign moves its derivative from 0 to 1).
def _bound(cell, options) -> float:
    return 2.0**-4 if options.get("nonlinearity") == "relu" else 2.0**-7


@pytest.mark.parametrize("cell,options", variants(), ids=VARIANT_IDS)
@pytest.mark.parametrize("T,H", [(10, 64), (50, 256)])
def test_error_against_float32_within_the_stated_bound(cell, options, T, H):
    rng = np.random.default_rng(T + H)
    B, G, k = 8, cell.G, 1 / np.sqrt(H)
    shapes = [(G * H, H), (G * H, H), (G * H,), (G * H,)]
    w = [rng.uniform(-k, k, s).astype(np.float32) for s in shapes]
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    states = [None] * len(cell.states)
    runs = {}
    for precision in ("fp32", "bf16"):
        out = getattr(ops, cell.forward_name)(x, *states, *w, precision=precision, **options)
        grads = getattr(ops, cell.backward_name)(out[-1], np.ones_like(out[0]), *states)
        runs[precision] = [a for a in (*out[:-1], *grads) if a is not None]
    errors = [_rel(a, b) for a, b in zip(runs["bf16"], runs["fp32"])]
    assert max(errors) < _bound(cell, options)
    assert min(errors) > 0


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_bf16_is_float32_only(backend):
    v = VARIANTS[0]
    p = make_problem(v, 2, 2, 3, 4, dtype=np.float64)
    with cuda._use_device_module(_testing.cuda_emulation):
        with pytest.raises(TypeError, match="precision='bf16' rounds float32 operands.*float64"):
            ops.lstm_forward(p.x, None, None, p.w_ih, p.w_hh, None, None, precision="bf16",
                             backend=backend)  # fmt: skip
        with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16'\]"):
            ops.lstm_forward(p.x, None, None, p.w_ih, p.w_hh, None, None, precision="fp16",
                             backend=backend)  # fmt: skip


def test_the_kernel_bindings_refuse_bf16_on_float64():
    """bf16=True on float64 arrays is refused by every backend's bindings (the CPU module's
    and the CUDA backend's, here the emulated device's) rather than run otherwise."""
    emu = _testing.cuda_emulation
    T, B, I, H = 2, 1, 3, 4
    arr = functools.partial(np.zeros, dtype=np.float64)
    for module, to in [(_C, lambda a: a), (emu, cuda.to_device)]:
        with cuda._use_device_module(emu), pytest.raises(TypeError, match="x is float64"):
            module.rnn_forward(x=to(arr((T, B, I))), h0=to(arr((B, H))), w_ih=to(arr((H, I))),
                               w_hh=to(arr((H, H))), b_ih=None, b_hh=None, batch_sizes=None,
                               y=to(arr((T, B, H))), h_n=to(arr((B, H))), gates=None,
                               nonlinearity="tanh", H=H, bf16=True)  # fmt: skip


def test_to_bf16_rounds_to_nearest_even():
    bits = np.array(
        [0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0xFF800000, 0x7FC00001],
        dtype=np.uint32,
    )
    got = to_bf16(bits.view(np.float32)).view(np.uint32)
    want = [0x3F800000, 0x3F800000, 0x3F820000, 0x3F810000, 0x7F800000, 0xFF800000]
    assert got[:-1].tolist() == want  # 1, a tie down, a tie up, above a tie, overflow, -inf
    assert np.isnan(got.view(np.float32)[-1])  # NaN stays NaN


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_layers_take_precision(cls):
    """A stacked bidirectional layer with precision="bf16" on the kernels agrees with the
    same layer on the reference in bf16, and differs from float32."""
    import fastrnn

    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    kw = dict(num_layers=2, bidirectional=True, seed=1)
    runs = {}
    for backend, precision in (("cpu", "bf16"), ("numpy", "bf16"), ("cpu", "fp32")):
        layer = getattr(fastrnn, cls)(5, 7, backend=backend, precision=precision, **kw)
        y = layer(x)[0]
        dx = layer.backward(np.ones_like(y))[0]
        runs[backend, precision] = (y, dx, layer.grads["weight_hh_l0"])
    for got, want in zip(runs["cpu", "bf16"], runs["numpy", "bf16"]):
        assert _rel(got, want) < 1e-3
    assert _rel(runs["cpu", "bf16"][0], runs["cpu", "fp32"][0]) > 1e-5


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_take_precision(cls):
    import fastrnn

    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    outs = {}
    for backend, precision, grad in (("cpu", "bf16", False), ("cpu", "bf16", True),
                                     ("numpy", "bf16", False), ("cpu", "fp32", False)):  # fmt: skip
        cell = getattr(fastrnn, cls)(5, 7, seed=2, backend=backend, precision=precision)
        if grad:
            outs[backend, precision, grad] = cell(x)
        else:
            with fastrnn.no_grad():
                outs[backend, precision, grad] = cell(x)
    flat = {k: v if isinstance(v, tuple) else (v,) for k, v in outs.items()}
    for a, b, c in zip(flat["cpu", "bf16", False], flat["cpu", "bf16", True],
                       flat["numpy", "bf16", False]):  # fmt: skip
        np.testing.assert_array_equal(a, b)
        assert _rel(a, c) < 1e-3
    assert _rel(flat["cpu", "bf16", False][0], flat["cpu", "fp32", False][0]) > 1e-5


def test_layers_and_cells_refuse_bf16_where_it_does_not_run():
    import fastrnn

    with pytest.raises(TypeError, match="precision='bf16' rounds float32 operands"):
        fastrnn.GRU(3, 4, dtype=np.float64, precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        fastrnn.LSTMCell(3, 4, precision="int8")
