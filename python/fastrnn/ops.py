"""Stateless forward and backward functions over the C++ kernels.

Each function validates its arguments (raising ``TypeError``/``ValueError`` that name the
argument and the shapes), allocates the outputs and the buffers the kernel needs, and calls
the kernel with the GIL released. The same functions in plain NumPy live in
:mod:`fastrnn.reference`, with identical signatures and results.

Shapes (time-major): x (T, B, I) -> y (T, B, H); states (B, H); w_ih (G*H, I),
w_hh (G*H, H), b_ih, b_hh (G*H,); G = 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), 1 (RNN).
``None`` for a state or an upstream gradient means zeros; ``None`` for both biases means a
layer without bias (its bias gradients are then ``None``). T = 0 and B = 0 are allowed:
the final state is the initial one and the gradients are zeros.

Training mode returns a ``saved`` object that the matching backward consumes: backward
overwrites its buffers in place with gate gradients, so each forward supports one backward.
It keeps references to x and the weights: modifying them in place before backward gives
the gradients of the modified values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import _C

__all__ = [
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "rnn_forward",
    "rnn_backward",
    "Saved",
]

_FLOATS = (np.float32, np.float64)
_INT32_MAX = 2**31 - 1  # the BLAS takes 32-bit dimensions


@dataclass
class Saved:
    """What a training forward keeps for its backward. Opaque to users; one backward each."""

    cell: str  # "lstm" | "gru" | "rnn"
    dtype: np.dtype
    T: int
    B: int
    I: int
    H: int
    has_bias: bool
    arrays: dict  # name -> np.ndarray, as the kernel's backward takes them
    options: dict = field(default_factory=dict)
    consumed: bool = False

    @property
    def nbytes(self) -> int:
        """Memory held for backward, in bytes."""
        return sum(a.nbytes for a in self.arrays.values())


def _shape(a: Optional[np.ndarray]) -> str:
    return "None" if a is None else str(tuple(a.shape))


def _as_float_array(fn: str, name: str, value: ArrayLike, dtype=None) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{fn}: argument '{name}' is not convertible to an array: {e}") from None
    if arr.dtype.type not in _FLOATS:
        raise TypeError(
            f"{fn}: argument '{name}' has dtype {arr.dtype}; fastrnn computes in float32 or "
            f"float64 (convert with .astype(numpy.float32))")
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(
            f"{fn}: argument '{name}' has dtype {arr.dtype} but x has dtype {dtype}; "
            f"all arrays must share one dtype")
    return arr


def _check_shape(fn: str, name: str, arr: np.ndarray, expected: tuple, legend: str) -> None:
    if arr.shape != expected:
        raise ValueError(
            f"{fn}: argument '{name}' has shape {tuple(arr.shape)}, expected {legend} = "
            f"{expected}")


def _contiguous(arr: Optional[np.ndarray]) -> Optional[np.ndarray]:
    return None if arr is None else np.ascontiguousarray(arr)


def _prepare(fn: str, G: int, x, w_ih, w_hh, b_ih, b_hh, states: dict):
    """Validates the forward arguments; returns (x, w_ih, w_hh, b_ih, b_hh, states, T, B, I, H)."""
    x = _as_float_array(fn, "x", x)
    if x.ndim != 3:
        raise ValueError(f"{fn}: argument 'x' must be 3-D (T, B, I), got shape {_shape(x)}")
    dtype = x.dtype
    T, B, I = x.shape
    w_hh = _as_float_array(fn, "w_hh", w_hh, dtype)
    if w_hh.ndim != 2:
        raise ValueError(f"{fn}: argument 'w_hh' must be 2-D ({G}*H, H), got shape {_shape(w_hh)}")
    H = w_hh.shape[1]
    if H == 0 or I == 0:
        raise ValueError(f"{fn}: hidden size H (w_hh.shape[1]) and input size I (x.shape[2]) must "
                         f"be positive, got H={H}, I={I}")
    _check_shape(fn, "w_hh", w_hh, (G * H, H), f"({G}*H, H) with H={H}")
    w_ih = _as_float_array(fn, "w_ih", w_ih, dtype)
    _check_shape(fn, "w_ih", w_ih, (G * H, I), f"({G}*H, I) with H={H}, I={I} (from x)")
    if (b_ih is None) != (b_hh is None):
        raise ValueError(f"{fn}: b_ih and b_hh must both be arrays or both be None, got "
                         f"b_ih {_shape(b_ih)}, b_hh {_shape(b_hh)}")
    if b_ih is not None:
        b_ih = _as_float_array(fn, "b_ih", b_ih, dtype)
        b_hh = _as_float_array(fn, "b_hh", b_hh, dtype)
        _check_shape(fn, "b_ih", b_ih, (G * H,), f"({G}*H,) with H={H}")
        _check_shape(fn, "b_hh", b_hh, (G * H,), f"({G}*H,) with H={H}")
    out_states = {}
    for name, s in states.items():
        if s is None:
            out_states[name] = np.zeros((B, H), dtype)
        else:
            s = _as_float_array(fn, name, s, dtype)
            _check_shape(fn, name, s, (B, H), f"(B, H) with B={B} (from x), H={H} (from w_hh)")
            out_states[name] = np.ascontiguousarray(s)
    if max(T * B, G * H, I) > _INT32_MAX:
        raise ValueError(f"{fn}: T*B={T * B}, G*H={G * H} and I={I} must each be below 2**31 "
                         f"(the BLAS takes 32-bit dimensions)")
    return (np.ascontiguousarray(x), np.ascontiguousarray(w_ih), np.ascontiguousarray(w_hh),
            _contiguous(b_ih), _contiguous(b_hh), out_states, T, B, I, H)


def _empty(shape: tuple, dtype) -> np.ndarray:
    # numpy raises MemoryError (a subclass) itself when the allocation cannot be made.
    return np.empty(shape, dtype)


def _check_saved(fn: str, saved, cell: str) -> Saved:
    if saved is None:
        raise ValueError(f"{fn}: saved is None: the forward ran with training=False and kept "
                         f"nothing for backward; run it with training=True")
    if not isinstance(saved, Saved):
        raise TypeError(f"{fn}: saved must be the object returned by {cell}_forward("
                        f"training=True), got {type(saved).__name__}")
    if saved.cell != cell:
        raise TypeError(f"{fn}: saved comes from {saved.cell}_forward, not {cell}_forward")
    if saved.consumed:
        raise ValueError(f"{fn}: this saved state was already used by a backward, which "
                         f"overwrites it in place; run the forward again")
    return saved


def _grad_in(fn: str, name: str, value, shape: tuple, legend: str, dtype) -> np.ndarray:
    if value is None:
        return np.zeros(shape, dtype)
    arr = _as_float_array(fn, name, value)
    if arr.dtype != dtype:
        raise TypeError(f"{fn}: argument '{name}' has dtype {arr.dtype} but the forward ran in "
                        f"{dtype}")
    _check_shape(fn, name, arr, shape, legend)
    return np.ascontiguousarray(arr)


def _weight_grads(s: Saved, G: int):
    d = s.dtype
    dw_ih, dw_hh = _empty((G * s.H, s.I), d), _empty((G * s.H, s.H), d)
    db_ih = _empty((G * s.H,), d) if s.has_bias else None
    db_hh = _empty((G * s.H,), d) if s.has_bias else None
    return dw_ih, dw_hh, db_ih, db_hh


def _upstream(fn: str, s: Saved, dy, finals: dict):
    legend = f"(T, B, H) = ({s.T}, {s.B}, {s.H}) from the forward"
    dy = _grad_in(fn, "dy", dy, (s.T, s.B, s.H), legend, s.dtype)
    out = {name: _grad_in(fn, name, v, (s.B, s.H), f"(B, H) = ({s.B}, {s.H}) from the forward",
                          s.dtype) for name, v in finals.items()}
    return dy, out


# ----------------------------------------------------------------------------- LSTM


def lstm_forward(x: ArrayLike, h0: Optional[ArrayLike], c0: Optional[ArrayLike], w_ih: ArrayLike,
                 w_hh: ArrayLike, b_ih: Optional[ArrayLike], b_hh: Optional[ArrayLike],
                 training: bool = True
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[Saved]]:
    """LSTM over T steps: ``(y (T,B,H), h_n (B,H), c_n (B,H), saved)``; saved is None unless
    ``training``."""
    fn = "lstm_forward"
    x, w_ih, w_hh, b_ih, b_hh, st, T, B, I, H = _prepare(fn, 4, x, w_ih, w_hh, b_ih, b_hh,
                                                        {"h0": h0, "c0": c0})
    d = x.dtype
    y, h_n, c_n = _empty((T, B, H), d), _empty((B, H), d), _empty((B, H), d)
    gates = _empty((T, B, 4 * H), d)
    cells = _empty((T + 1, B, H) if training else (B, H), d)
    _C.lstm_forward(x, st["h0"], st["c0"], w_ih, w_hh, b_ih, b_hh, y, h_n, c_n, gates, cells,
                    bool(training), H)
    if not training:
        return y, h_n, c_n, None
    saved = Saved("lstm", d, T, B, I, H, b_ih is not None,
                  dict(x=x, h0=st["h0"], y=y, w_ih=w_ih, w_hh=w_hh, gates=gates, cells=cells))
    return y.copy(), h_n, c_n, saved


def lstm_backward(saved: Saved, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike],
                  dc_n: Optional[ArrayLike]):
    """BPTT through :func:`lstm_forward`: ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``."""
    fn = "lstm_backward"
    s = _check_saved(fn, saved, "lstm")
    dy, fin = _upstream(fn, s, dy, {"dh_n": dh_n, "dc_n": dc_n})
    d, a = s.dtype, s.arrays
    dx, dh0, dc0 = _empty((s.T, s.B, s.I), d), _empty((s.B, s.H), d), _empty((s.B, s.H), d)
    dw_ih, dw_hh, db_ih, db_hh = _weight_grads(s, 4)
    s.consumed = True
    _C.lstm_backward(a["x"], a["h0"], a["y"], a["w_ih"], a["w_hh"], a["gates"], a["cells"], dy,
                     fin["dh_n"], fin["dc_n"], dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, s.H)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


# ----------------------------------------------------------------------------- GRU


def gru_forward(x: ArrayLike, h0: Optional[ArrayLike], w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: Optional[ArrayLike], b_hh: Optional[ArrayLike], training: bool = True,
                reset_after: bool = True) -> Tuple[np.ndarray, np.ndarray, Optional[Saved]]:
    """GRU over T steps: ``(y (T,B,H), h_n (B,H), saved)``. ``reset_after`` chooses where the
    reset gate applies (True: cuDNN/PyTorch; False: Cho et al. 2014); see the README."""
    fn = "gru_forward"
    x, w_ih, w_hh, b_ih, b_hh, st, T, B, I, H = _prepare(fn, 3, x, w_ih, w_hh, b_ih, b_hh,
                                                        {"h0": h0})
    d = x.dtype
    y, h_n = _empty((T, B, H), d), _empty((B, H), d)
    gates = _empty((T, B, 3 * H), d)
    extra = _empty((T, B, H) if training else (B, H), d)
    _C.gru_forward(x, st["h0"], w_ih, w_hh, b_ih, b_hh, y, h_n, gates, extra, bool(training),
                   bool(reset_after), H)
    if not training:
        return y, h_n, None
    saved = Saved("gru", d, T, B, I, H, b_ih is not None,
                  dict(x=x, h0=st["h0"], y=y, w_ih=w_ih, w_hh=w_hh, gates=gates, extra=extra),
                  dict(reset_after=bool(reset_after)))
    return y.copy(), h_n, saved


def gru_backward(saved: Saved, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike]):
    """BPTT through :func:`gru_forward`: ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    fn = "gru_backward"
    s = _check_saved(fn, saved, "gru")
    dy, fin = _upstream(fn, s, dy, {"dh_n": dh_n})
    d, a = s.dtype, s.arrays
    dx, dh0 = _empty((s.T, s.B, s.I), d), _empty((s.B, s.H), d)
    dw_ih, dw_hh, db_ih, db_hh = _weight_grads(s, 3)
    s.consumed = True
    _C.gru_backward(a["x"], a["h0"], a["y"], a["w_ih"], a["w_hh"], a["gates"], a["extra"], dy,
                    fin["dh_n"], dx, dh0, dw_ih, dw_hh, db_ih, db_hh,
                    s.options["reset_after"], s.H)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# ----------------------------------------------------------------------------- RNN


def _check_nonlinearity(fn: str, nonlinearity) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{fn}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity


def rnn_forward(x: ArrayLike, h0: Optional[ArrayLike], w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: Optional[ArrayLike], b_hh: Optional[ArrayLike], training: bool = True,
                nonlinearity: str = "tanh") -> Tuple[np.ndarray, np.ndarray, Optional[Saved]]:
    """Elman RNN over T steps, act in {"tanh", "relu"}: ``(y (T,B,H), h_n (B,H), saved)``."""
    fn = "rnn_forward"
    _check_nonlinearity(fn, nonlinearity)
    x, w_ih, w_hh, b_ih, b_hh, st, T, B, I, H = _prepare(fn, 1, x, w_ih, w_hh, b_ih, b_hh,
                                                        {"h0": h0})
    d = x.dtype
    y, h_n = _empty((T, B, H), d), _empty((B, H), d)
    gates = _empty((T, B, H), d)
    _C.rnn_forward(x, st["h0"], w_ih, w_hh, b_ih, b_hh, y, h_n, gates, nonlinearity, H)
    if not training:
        return y, h_n, None
    # The gates buffer is reused by backward for the pre-activation gradients.
    saved = Saved("rnn", d, T, B, I, H, b_ih is not None,
                  dict(x=x, h0=st["h0"], y=y, w_ih=w_ih, w_hh=w_hh, gates=gates),
                  dict(nonlinearity=nonlinearity))
    return y.copy(), h_n, saved


def rnn_backward(saved: Saved, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike]):
    """BPTT through :func:`rnn_forward`: ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    fn = "rnn_backward"
    s = _check_saved(fn, saved, "rnn")
    dy, fin = _upstream(fn, s, dy, {"dh_n": dh_n})
    d, a = s.dtype, s.arrays
    dx, dh0 = _empty((s.T, s.B, s.I), d), _empty((s.B, s.H), d)
    dw_ih, dw_hh, db_ih, db_hh = _weight_grads(s, 1)
    s.consumed = True
    _C.rnn_backward(a["x"], a["h0"], a["y"], a["w_ih"], a["w_hh"], a["gates"], dy, fin["dh_n"],
                    dx, dh0, dw_ih, dw_hh, db_ih, db_hh, s.options["nonlinearity"], s.H)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
