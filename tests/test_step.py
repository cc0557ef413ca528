"""fastrnn.step.CellStep: one inference step with the weights checked once, against
fastrnn.ops's T=1 forward; its per-call checks; weights held, not copied."""

import numpy as np
import pytest

from fastrnn import ops
from fastrnn.step import CellStep

from cells import VARIANT_IDS, VARIANTS


def _weights(v, I, H, dtype, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    G = v.gates
    w = [rng.uniform(-0.5, 0.5, s).astype(dtype) for s in ((G * H, I), (G * H, H))]
    b = [rng.uniform(-0.5, 0.5, (G * H,)).astype(dtype) for _ in range(2)]
    return w + (b if bias else [None, None])


def _ops_step(v, x, states, w):
    """The same step through fastrnn.ops (T = 1): the final states."""
    fwd = getattr(ops, v.spec.forward_name)
    states = list(states) or [None] * len(v.spec.states)
    out = fwd(x[None], *states, *w, False, **v.options)
    return out[1:-1]


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_states", [True, False])
def test_step_matches_ops(v, dtype, bias, with_states):
    I, H, B = 3, 5, 4
    w = _weights(v, I, H, dtype, bias)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, I)).astype(dtype)
    states = [rng.standard_normal((B, H)).astype(dtype) for _ in v.spec.states] * with_states
    step = CellStep(v.cell, *w, **v.options)
    got = step(x, *states)
    want = _ops_step(v, x, states, w)
    assert len(got) == len(v.spec.states)
    for g, e in zip(got, want):
        assert g.dtype == dtype and g.shape == (B, H)
        np.testing.assert_array_equal(g, e)


def test_weights_are_held_not_copied():
    v = next(v for v in VARIANTS if v.cell == "lstm")
    w = _weights(v, 3, 4, np.float32)
    step = CellStep("lstm", *w)
    x = np.ones((1, 3), np.float32)
    before = step(x)
    w[1] *= 2  # in place: seen by the next step
    w[0] *= 2
    after = step(x)
    assert not np.array_equal(before[0], after[0])
    np.testing.assert_array_equal(after[0], _ops_step(v, x, [], w)[0])


def test_non_contiguous_input_is_copied():
    v = next(v for v in VARIANTS if v.cell == "gru")
    w = _weights(v, 3, 4, np.float64)
    x = np.random.default_rng(0).standard_normal((3, 2)).T  # (2, 3), not C-contiguous
    (h,) = CellStep("gru", *w)(x)
    np.testing.assert_array_equal(h, _ops_step(v, np.ascontiguousarray(x), [], w)[0])


BAD_CALLS = {
    "x dtype": (lambda x, h: (x.astype(np.float64), h), ValueError, "x must be a float32"),
    "x width": (lambda x, h: (x[:, :2], h), ValueError, r"x must be a float32 array \(B, 3\)"),
    "x 1-D": (lambda x, h: (x[0], h), ValueError, "x must be"),
    "x list": (lambda x, h: (x.tolist(), h), ValueError, "got list"),
    "h batch": (lambda x, h: (x, h[:1]), ValueError, r"state h must be .* \(2, 4\)"),
    "h dtype": (lambda x, h: (x, h.astype(np.float64)), ValueError, "state h"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_calls_name_the_argument(case):
    v = next(v for v in VARIANTS if v.cell == "rnn")
    step = CellStep("rnn", *_weights(v, 3, 4, np.float32))
    make, error, match = BAD_CALLS[case]
    x, h = make(np.ones((2, 3), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(error, match=match):
        step(x, h)


def test_wrong_number_of_states():
    v = next(v for v in VARIANTS if v.cell == "lstm")
    step = CellStep("lstm", *_weights(v, 3, 4, np.float32))
    h = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match=r"takes 2 states \(h, c\) or none, got 1"):
        step(np.ones((1, 3), np.float32), h)


BAD_WEIGHTS = {
    "w_hh not square": (((8, 3), (8, 3)), {}, ValueError, r"'w_hh' must be \(4\*H, H\)"),
    "w_ih rows": (((9, 3), (8, 2)), {}, ValueError, r"'w_ih' has shape \(9, 3\)"),
    "one bias": (((16, 3), (16, 4), (16,)), {}, ValueError, "both"),
    "bias length": (((16, 3), (16, 4), (15,), (16,)), {}, ValueError, r"'b_ih' has shape"),
    "unknown option": (((16, 3), (16, 4)), {"reset_after": False}, ValueError, "no option"),
}


@pytest.mark.parametrize("case", sorted(BAD_WEIGHTS))
def test_bad_weights_name_the_argument(case):
    shapes, kwargs, error, match = BAD_WEIGHTS[case]
    with pytest.raises(error, match=match):
        CellStep("lstm", *(np.zeros(s) for s in shapes), **kwargs)


def test_weights_of_other_dtypes_are_refused():
    with pytest.raises(TypeError, match="'w_ih' has dtype float32 but w_hh has dtype float64"):
        CellStep("lstm", np.zeros((16, 3), np.float32), np.zeros((16, 4)))
    with pytest.raises(TypeError, match="'w_hh' has dtype int64"):
        CellStep("lstm", np.zeros((16, 3)), np.zeros((16, 4), np.int64))


def test_numpy_cells_step_on_a_cell_step_in_inference():
    """fastrnn's NumPy cells run inference steps on a CellStep kept across steps; training
    steps (which keep state for backward) still go through fastrnn.ops; both agree."""
    import fastrnn

    cell = fastrnn.GRUCell(3, 4, seed=0, reset_after=False)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    trained = cell(x)
    with fastrnn.no_grad():
        first = cell(x)
        kept = cell._cell_step
        again = cell(x, first)
    assert kept is not None and cell._cell_step is kept  # made once, reused
    np.testing.assert_array_equal(first, trained)
    np.testing.assert_array_equal(again, cell(x, first))  # training step, same numbers
    cell.load_state_dict({k: v * 2 for k, v in cell.state_dict().items()})  # in place
    with fastrnn.no_grad():
        doubled = cell(x)
    np.testing.assert_array_equal(doubled, cell(x))
    assert not np.array_equal(doubled, first)


@pytest.mark.parametrize("case", ["batch 0", "c None", "h None"])
def test_numpy_cell_inference_takes_what_training_takes(case):
    """The inference steps (on a CellStep) accept what the training steps (on ops) do: an
    empty batch, and an LSTM state with one part None (zeros)."""
    import fastrnn

    cell = fastrnn.LSTMCell(3, 4, seed=1)
    rng = np.random.default_rng(0)
    B = 0 if case == "batch 0" else 2
    x = rng.standard_normal((B, 3)).astype(np.float32)
    h, c = (rng.standard_normal((B, 4)).astype(np.float32) for _ in range(2))
    state = {"batch 0": (h, c), "c None": (h, None), "h None": (None, c)}[case]
    trained = cell(x, state)
    with fastrnn.no_grad():
        inferred = cell(x, state)
    for a, b in zip(inferred, trained):
        assert a.shape == (B, 4)
        np.testing.assert_array_equal(a, b)


def test_a_step_over_copied_weights_says_so():
    """A CellStep holds the caller's arrays when it can (in-place changes show); otherwise
    copies, and says so: callers that keep one across calls (the cells) use it only while it
    holds views."""
    v = next(v for v in VARIANTS if v.cell == "gru")
    w = _weights(v, 3, 4, np.float32)
    assert CellStep("gru", *w).holds_views
    assert not CellStep("gru", np.asfortranarray(w[0]), *w[1:]).holds_views
    strided_bias = np.repeat(w[2], 2)[::2]  # equal values, not C-contiguous
    assert not CellStep("gru", w[0], w[1], strided_bias, w[3]).holds_views
