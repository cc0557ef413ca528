"""Bad input gets a clear TypeError / ValueError / MemoryError naming the argument and the
shapes, never a crash or a silently wrong answer."""

import numpy as np
import pytest

from fastrnn import _C, ops
from fastrnn.cell_spec import spec

from cells import VARIANT_IDS, VARIANTS, backward, forward, make_problem


def base(v, dtype=np.float32):
    return make_problem(v, T=3, B=2, I=4, H=5, dtype=dtype)


# (what to change, expected exception, fragment of the message)
FORWARD_CASES = {
    "x_2d": (lambda p: setattr(p, "x", p.x[0]), ValueError, "'x' must be 3-D (T, B, I)"),
    "w_hh_1d": (lambda p: setattr(p, "w_hh", p.w_hh[0]), ValueError, "'w_hh' must be 2-D"),
    "w_ih_wrong_I": (lambda p: setattr(p, "w_ih", p.w_ih[:, :3]), ValueError, "'w_ih' has shape"),
    "w_hh_wrong_GH": (lambda p: setattr(p, "w_hh", p.w_hh[:-1]), ValueError, "'w_hh' has shape"),
    "w_ih_wrong_GH": (lambda p: setattr(p, "w_ih", p.w_ih[:-1]), ValueError, "'w_ih' has shape"),
    "h0_wrong_B": (lambda p: setattr(p, "h0", p.h0[:1]), ValueError, "'h0' has shape (1, 5)"),
    "h0_3d": (lambda p: setattr(p, "h0", p.h0[None]), ValueError, "'h0' has shape (1, 2, 5)"),
    "b_ih_wrong": (lambda p: setattr(p, "b_ih", p.b_ih[:-2]), ValueError, "'b_ih' has shape"),
    "b_hh_missing": (
        lambda p: setattr(p, "b_hh", None),
        ValueError,
        "b_ih and b_hh must both be arrays or both be None",
    ),
    "x_float16": (
        lambda p: setattr(p, "x", p.x.astype(np.float16)),
        TypeError,
        "'x' has dtype float16",
    ),
    "x_int": (lambda p: setattr(p, "x", p.x.astype(np.int64)), TypeError, "'x' has dtype int64"),
    "x_object": (lambda p: setattr(p, "x", p.x.astype(object)), TypeError, "'x' has dtype object"),
    "mixed_dtypes": (
        lambda p: setattr(p, "w_hh", p.w_hh.astype(np.float64)),
        TypeError,
        "'w_hh' has dtype float64 but x has dtype float32",
    ),
    "h0_mixed": (
        lambda p: setattr(p, "h0", p.h0.astype(np.float64)),
        TypeError,
        "'h0' has dtype float64",
    ),
    "ragged_list": (lambda p: setattr(p, "x", [[[1.0, 2.0]], [[1.0]]]), TypeError, "'x'"),
    "zero_hidden": (
        lambda p: (setattr(p, "w_hh", p.w_hh[:0, :0]), setattr(p, "w_ih", p.w_ih[:0])),
        ValueError,
        "must be positive",
    ),
}


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("case", list(FORWARD_CASES))
def test_forward_rejects(v, case):
    change, exc, fragment = FORWARD_CASES[case]
    p = base(v)
    change(p)
    with pytest.raises(exc) as info:
        forward(ops, v, p)
    print(info.value)
    assert fragment in str(info.value)
    assert f"{v.cell}_forward" in str(info.value)


def test_lstm_c0_wrong_shape():
    v = VARIANTS[0]
    p = base(v)
    p.c0 = p.c0[:, :2]
    with pytest.raises(ValueError, match=r"'c0' has shape \(2, 2\), expected \(B, H\)"):
        forward(ops, v, p)


@pytest.mark.parametrize("bad", ["sigmoid", None, 3])
def test_rnn_nonlinearity(bad):
    v = VARIANTS[3]
    p = base(v)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        ops.rnn_forward(p.x, p.h0, p.w_ih, p.w_hh, p.b_ih, p.b_hh, nonlinearity=bad)


BACKWARD_CASES = {
    "dy_wrong_T": (
        lambda p: setattr(p, "dy", p.dy[:-1]),
        ValueError,
        "'dy' has shape (2, 2, 5), expected (T, B, H) = (3, 2, 5)",
    ),
    "dy_wrong_dtype": (
        lambda p: setattr(p, "dy", p.dy.astype(np.float64)),
        TypeError,
        "'dy' has dtype float64 but the forward ran in float32",
    ),
    "dh_n_wrong": (lambda p: setattr(p, "dh_n", p.dh_n[:, :3]), ValueError, "'dh_n' has shape"),
}


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("case", list(BACKWARD_CASES))
def test_backward_rejects(v, case):
    change, exc, fragment = BACKWARD_CASES[case]
    p = base(v)
    _, saved = forward(ops, v, p)
    change(p)
    with pytest.raises(exc) as info:
        backward(ops, v, saved, p)
    assert fragment in str(info.value)
    # A rejected call leaves the saved state usable.
    assert not saved.consumed


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_backward_after_inference_forward(v):
    p = base(v)
    _, saved = forward(ops, v, p, training=False)
    with pytest.raises(ValueError, match="forward ran with training=False"):
        backward(ops, v, saved, p)


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_backward_twice(v):
    p = base(v)
    _, saved = forward(ops, v, p)
    backward(ops, v, saved, p)
    with pytest.raises(ValueError, match="already used by a backward"):
        backward(ops, v, saved, p)


def test_saved_from_another_cell():
    lstm, gru = VARIANTS[0], VARIANTS[1]
    _, saved = forward(ops, lstm, base(lstm))
    with pytest.raises(TypeError, match="saved comes from lstm_forward, not gru_forward"):
        backward(ops, gru, saved, base(gru))
    with pytest.raises(TypeError, match="saved must be the object returned by"):
        ops.rnn_backward({"x": 1}, None, None)


def test_workspace_too_large_raises_memory_error():
    # A 2**20-unit LSTM needs a 16 TiB W_hh: a broadcast view costs nothing until copied.
    H = 2**20
    x = np.zeros((1, 1, 1), np.float32)
    w_ih = np.broadcast_to(np.float32(0.1), (4 * H, 1))
    w_hh = np.broadcast_to(np.float32(0.1), (4 * H, H))
    with pytest.raises(MemoryError):
        ops.lstm_forward(x, None, None, w_ih, w_hh, None, None)


def test_dimensions_beyond_32_bit_blas():
    x = np.broadcast_to(np.float32(0), (2**16, 2**16, 1))
    w = np.zeros((4, 1), np.float32)
    with pytest.raises(ValueError, match="must each be below 2\\*\\*31"):
        ops.lstm_forward(x, None, None, w, w, None, None, training=False)


def test_binding_checks_shapes_itself():
    """The C++ module checks every array even when called without ops.py."""
    v = VARIANTS[2]
    p = base(v)
    T, B, H = 3, 2, 5
    y = np.empty((T, B, H), np.float32)
    with pytest.raises(
        ValueError, match="gru_forward: argument 'h_n' has shape \\(2, 4\\), expected \\(2, 5\\)"
    ):
        _C.gru_forward(
            x=p.x,
            h0=p.h0,
            w_ih=p.w_ih,
            w_hh=p.w_hh,
            b_ih=p.b_ih,
            b_hh=p.b_hh,
            batch_sizes=None,
            y=y,
            h_n=np.empty((B, 4), np.float32),
            gates=np.empty((T, B, 3 * H), np.float32),
            extra=np.empty((T, B, H), np.float32),
            training=True,
            reset_after=False,
            H=H,
            bf16=False,
            **dict.fromkeys(spec("gru").forward_extras),
        )
    with pytest.raises(TypeError, match="argument 'w_hh' has dtype float64, expected float32"):
        _C.gru_forward(
            x=p.x,
            h0=p.h0,
            w_ih=p.w_ih,
            w_hh=p.w_hh.astype(np.float64),
            b_ih=p.b_ih,
            b_hh=p.b_hh,
            batch_sizes=None,
            y=y,
            h_n=np.empty((B, H), np.float32),
            gates=np.empty((T, B, 3 * H), np.float32),
            extra=np.empty((T, B, H), np.float32),
            training=True,
            reset_after=False,
            H=H,
            bf16=False,
            **dict.fromkeys(spec("gru").forward_extras),
        )
    with pytest.raises(ValueError, match="argument 'y' must be C-contiguous"):
        _C.gru_forward(
            x=p.x,
            h0=p.h0,
            w_ih=p.w_ih,
            w_hh=p.w_hh,
            b_ih=p.b_ih,
            b_hh=p.b_hh,
            batch_sizes=None,
            y=np.empty((B, T, H), np.float32).transpose(1, 0, 2),
            h_n=np.empty((B, H), np.float32),
            gates=np.empty((T, B, 3 * H), np.float32),
            extra=np.empty((T, B, H), np.float32),
            training=True,
            reset_after=False,
            H=H,
            bf16=False,
            **dict.fromkeys(spec("gru").forward_extras),
        )


def test_binding_checks_batch_sizes():
    v = VARIANTS[3]
    p = base(v)
    T, B, H = 3, 2, 5
    out = lambda *shape: np.empty(shape, np.float32)  # noqa: E731
    for bad in ([2, 3, 1], [1, 2, 2], [3, 2, 1], [2, -1, 0]):
        with pytest.raises(ValueError, match="batch_sizes must be non-increasing, each in"):
            _C.rnn_forward(
                x=p.x,
                h0=p.h0,
                w_ih=p.w_ih,
                w_hh=p.w_hh,
                b_ih=p.b_ih,
                b_hh=p.b_hh,
                batch_sizes=np.array(bad, np.int64),
                y=out(T, B, H),
                h_n=out(B, H),
                gates=out(T, B, H),
                nonlinearity="tanh",
                H=H,
                bf16=False,
            )
