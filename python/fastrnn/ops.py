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

Every function takes ``backend``: "cpu" (the C++ kernels on NumPy arrays), "cuda" (the same
kernels on a GPU; see :mod:`fastrnn.cuda` for which arrays it takes and returns), or "auto"
(the default: "cuda" for GPU-resident x, "cpu" otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import _C, cuda

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


class _HostOps:
    """The array operations the functions below need, on NumPy arrays, for the CPU kernels
    (fastrnn.cuda.DeviceOps has the same on device memory)."""

    kernels = _C

    def asarray(self, fn: str, name: str, value):
        try:
            return np.asarray(value)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{fn}: argument '{name}' is not convertible to an array: {e}"
                            ) from None

    contiguous = staticmethod(np.ascontiguousarray)
    # numpy raises MemoryError (a subclass) itself when the allocation cannot be made.
    empty = staticmethod(np.empty)
    zeros = staticmethod(np.zeros)

    @staticmethod
    def copy(a: np.ndarray) -> np.ndarray:
        return a.copy()

    @staticmethod
    def take_rows(a: np.ndarray, order: np.ndarray, axis: int) -> np.ndarray:
        return np.ascontiguousarray(np.take(a, order, axis=axis))

    @staticmethod
    def put_rows(a: np.ndarray, order: np.ndarray, axis: int) -> np.ndarray:
        out = np.empty_like(a)
        index = [slice(None)] * a.ndim
        index[axis] = order
        out[tuple(index)] = a
        return out

    @staticmethod
    def zero_padding(x: np.ndarray, batch_sizes: np.ndarray, fresh: bool) -> np.ndarray:
        # A new array whether or not x is the caller's (fresh), so NaN * 0 never happens.
        running = np.arange(x.shape[1])[None, :] < batch_sizes[:, None]  # (T, B)
        return np.where(running[:, :, None], x, x.dtype.type(0))

    @staticmethod
    def output(a):
        return a


_HOST = _HostOps()


def _array_ops(fn: str, backend: str, x):
    """The array operations and kernels for a call on x: _HOST or a fastrnn.cuda.DeviceOps."""
    if backend not in ("auto", "cpu", "cuda"):
        raise ValueError(f"{fn}: backend must be 'auto', 'cpu' or 'cuda', got {backend!r}")
    on_device = cuda.is_device_array(x)
    if backend == "cuda" or (backend == "auto" and on_device):
        return cuda.DeviceOps(x)
    if on_device:
        raise ValueError(f"{fn}: x is a GPU array but backend='cpu'; use backend='cuda' (or "
                         f"'auto'), or copy x to the host")
    return _HOST


def _as_float_array(fn: str, name: str, value: ArrayLike, dtype=None, xp=_HOST):
    arr = xp.asarray(fn, name, value)
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


def _prepare(fn: str, xp, G: int, x, w_ih, w_hh, b_ih, b_hh, states: dict, w_hr=None):
    """Validates the forward arguments.

    Returns (x, w_ih, w_hh, b_ih, b_hh, w_hr, states, T, B, I, H, P): P is the size of h (H,
    or the projection size with w_hr (P, H)); states maps a name to its array, zeros for None.
    """
    x = _as_float_array(fn, "x", x, xp=xp)
    if x.ndim != 3:
        raise ValueError(f"{fn}: argument 'x' must be 3-D (T, B, I), got shape {_shape(x)}")
    dtype = x.dtype
    T, B, I = x.shape
    w_hh = _as_float_array(fn, "w_hh", w_hh, dtype, xp)
    if w_hh.ndim != 2:
        raise ValueError(f"{fn}: argument 'w_hh' must be 2-D ({G}*H, H), got shape {_shape(w_hh)}")
    H, P = w_hh.shape[0] // G, w_hh.shape[1]
    if w_hr is None:
        H = P  # without a projection, w_hh is (G*H, H)
    if H == 0 or I == 0:
        raise ValueError(f"{fn}: hidden size H (w_hh.shape[1]) and input size I (x.shape[2]) must "
                         f"be positive, got H={H}, I={I}")
    if w_hr is not None:
        w_hr = _as_float_array(fn, "w_hr", w_hr, dtype, xp)
        _check_shape(fn, "w_hr", w_hr, (P, H), f"(P, H) with P={P} (w_hh.shape[1]), H={H}")
        if not 0 < P < H:
            raise ValueError(f"{fn}: the projection size P={P} must be in [1, H) with H={H}")
    _check_shape(fn, "w_hh", w_hh, (G * H, P), f"({G}*H, {'P' if w_hr is not None else 'H'}) "
                 f"with H={H}")
    w_ih = _as_float_array(fn, "w_ih", w_ih, dtype, xp)
    _check_shape(fn, "w_ih", w_ih, (G * H, I), f"({G}*H, I) with H={H}, I={I} (from x)")
    if (b_ih is None) != (b_hh is None):
        raise ValueError(f"{fn}: b_ih and b_hh must both be arrays or both be None, got "
                         f"b_ih {_shape(b_ih)}, b_hh {_shape(b_hh)}")
    if b_ih is not None:
        b_ih = _as_float_array(fn, "b_ih", b_ih, dtype, xp)
        b_hh = _as_float_array(fn, "b_hh", b_hh, dtype, xp)
        _check_shape(fn, "b_ih", b_ih, (G * H,), f"({G}*H,) with H={H}")
        _check_shape(fn, "b_hh", b_hh, (G * H,), f"({G}*H,) with H={H}")
    out_states = {}
    for name, s in states.items():
        n = P if name == "h0" else H
        if s is None:
            out_states[name] = xp.zeros((B, n), dtype)
        else:
            s = _as_float_array(fn, name, s, dtype, xp)
            legend = "(B, P)" if n != H else "(B, H)"
            _check_shape(fn, name, s, (B, n), f"{legend} with B={B} (from x), "
                         f"{'P' if n != H else 'H'}={n} (from w_hh)")
            out_states[name] = xp.contiguous(s)
    if max(T * B, G * H, I) > _INT32_MAX:
        raise ValueError(f"{fn}: T*B={T * B}, G*H={G * H} and I={I} must each be below 2**31 "
                         f"(the BLAS takes 32-bit dimensions)")
    c = xp.contiguous
    return (c(x), c(w_ih), c(w_hh), b_ih if b_ih is None else c(b_ih),
            b_hh if b_hh is None else c(b_hh), w_hr if w_hr is None else c(w_hr), out_states, T,
            B, I, H, P)


class _Lengths:
    """Variable lengths, arranged as the kernels take them (cuDNN's packed order): rows sorted
    by decreasing length (a stable sort, hidden from the caller) and batch_sizes[t], the
    number of sequences still running at step t."""

    def __init__(self, fn: str, lengths, T: int, B: int, xp=_HOST):
        if cuda.is_device_array(lengths):
            raise TypeError(f"{fn}: lengths must be on the host (a list or NumPy array), as "
                            f"for torch's pack_padded_sequence")
        arr = np.asarray(lengths)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{fn}: lengths must be integers, got dtype {arr.dtype}")
        if arr.shape != (B,):
            raise ValueError(f"{fn}: lengths must have shape (B,) = ({B},), got {tuple(arr.shape)}")
        if B and (arr.min() < 0 or arr.max() > T):
            raise ValueError(f"{fn}: lengths must be in [0, T={T}], got min {arr.min()}, "
                             f"max {arr.max()}")
        self.lengths = arr.astype(np.int64)
        self.order = np.argsort(-self.lengths, kind="stable")  # sorted row k is caller row order[k]
        self.identity = bool(np.all(self.order == np.arange(B)))
        counts = np.bincount(self.lengths, minlength=T + 1)  # sequences of each length
        self.batch_sizes = (B - np.cumsum(counts)[:T]).astype(np.int64)  # lengths > t
        self.xp = xp

    def rows(self, a, axis: int):
        """The caller's rows in sorted order (a new C-contiguous array)."""
        return a if self.identity else self.xp.take_rows(a, self.order, axis)

    def unsort(self, a, axis: int):
        return a if self.identity else self.xp.put_rows(a, self.order, axis)

    def zero_padding(self, x):
        """x (T, B, ...) in sorted order with the steps past each sequence's end zeroed, so that
        whatever the caller left there (NaN included) never reaches a gradient. x is the
        caller's own array when the order is the identity: then it is not written."""
        return self.xp.zero_padding(x, self.batch_sizes, fresh=not self.identity)


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


def _grad_in(fn: str, name: str, value, shape: tuple, legend: str, dtype, xp):
    if value is None:
        return xp.zeros(shape, dtype)
    arr = _as_float_array(fn, name, value, xp=xp)
    if arr.dtype != dtype:
        raise TypeError(f"{fn}: argument '{name}' has dtype {arr.dtype} but the forward ran in "
                        f"{dtype}")
    _check_shape(fn, name, arr, shape, legend)
    return xp.contiguous(arr)


def _weight_grads(s: Saved, G: int, P: int):
    d, empty = s.dtype, s.options["xp"].empty
    dw_ih, dw_hh = empty((G * s.H, s.I), d), empty((G * s.H, P), d)
    db_ih = empty((G * s.H,), d) if s.has_bias else None
    db_hh = empty((G * s.H,), d) if s.has_bias else None
    return dw_ih, dw_hh, db_ih, db_hh


def _upstream(fn: str, s: Saved, dy, finals: dict, P: int):
    """dy (T, B, P) and the final-state gradients (B, P) for dh_n, (B, H) for dc_n."""
    hp = "H" if P == s.H else "P"
    legend = f"(T, B, {hp}) = ({s.T}, {s.B}, {P}) from the forward"
    xp = s.options["xp"]
    dy = _grad_in(fn, "dy", dy, (s.T, s.B, P), legend, s.dtype, xp)
    out = {}
    for name, v in finals.items():
        n, nn = (P, hp) if name == "dh_n" else (s.H, "H")
        out[name] = _grad_in(fn, name, v, (s.B, n), f"(B, {nn}) = ({s.B}, {n}) from the forward",
                             s.dtype, xp)
    return dy, out


def _sorted_inputs(fn, xp, lengths, T, B, x, states):
    """Applies variable lengths: (packing or None, x, states) in the kernels' row order."""
    pk = None if lengths is None else _Lengths(fn, lengths, T, B, xp)
    if pk is None:
        return None, x, states
    return pk, pk.zero_padding(pk.rows(x, 1)), {k: pk.rows(v, 0) for k, v in states.items()}


def _unsorted(pk: Optional[_Lengths], seqs: tuple, states: tuple) -> tuple:
    """Outputs back in the caller's row order: sequences (T, B, ...) then states (B, ...)."""
    if pk is None:
        return seqs + states
    return tuple(pk.unsort(a, 1) for a in seqs) + tuple(pk.unsort(a, 0) for a in states)


def _outputs(xp, arrays: tuple) -> tuple:
    """The results as the caller's kind of array (NumPy, or as fastrnn.cuda describes)."""
    return tuple(xp.output(a) for a in arrays)


def _batch_sizes(pk: Optional[_Lengths]):
    return None if pk is None else pk.batch_sizes


def _begin_backward(fn: str, saved, cell: str, G: int, dy, finals: dict):
    """Checks a backward's arguments and allocates its outputs. Returns (s, dy, finals,
    outputs) with dy and finals in the kernels' row order and outputs = (dx, dh0, dw_ih,
    dw_hh, db_ih, db_hh); marks the saved state consumed (the kernel overwrites it)."""
    s = _check_saved(fn, saved, cell)
    pk, P, xp = s.options["lengths"], s.options.get("P", s.H), s.options["xp"]
    dy, fin = _upstream(fn, s, dy, finals, P)
    if pk is not None:
        dy, fin = pk.rows(dy, 1), {k: pk.rows(v, 0) for k, v in fin.items()}
    dx, dh0 = xp.empty((s.T, s.B, s.I), s.dtype), xp.empty((s.B, P), s.dtype)
    s.consumed = True
    return s, dy, fin, (dx, dh0) + _weight_grads(s, G, P)


# ----------------------------------------------------------------------------- LSTM


def lstm_forward(x: ArrayLike, h0: Optional[ArrayLike], c0: Optional[ArrayLike], w_ih: ArrayLike,
                 w_hh: ArrayLike, b_ih: Optional[ArrayLike], b_hh: Optional[ArrayLike],
                 training: bool = True, *, w_hr: Optional[ArrayLike] = None,
                 lengths: Optional[ArrayLike] = None, backend: str = "auto"
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[Saved]]:
    """LSTM over T steps: ``(y (T,B,P), h_n (B,P), c_n (B,H), saved)``; saved is None unless
    ``training``. ``w_hr`` (P, H) adds a projection (LSTMP: h = W_hr (o * tanh(c)), P < H);
    ``lengths`` (B,) runs sequence b for its first lengths[b] steps only."""
    fn = "lstm_forward"
    xp = _array_ops(fn, backend, x)
    x, w_ih, w_hh, b_ih, b_hh, w_hr, st, T, B, I, H, P = _prepare(
        fn, xp, 4, x, w_ih, w_hh, b_ih, b_hh, {"h0": h0, "c0": c0}, w_hr)
    pk, x, st = _sorted_inputs(fn, xp, lengths, T, B, x, st)
    d = x.dtype
    y, h_n, c_n = xp.empty((T, B, P), d), xp.empty((B, P), d), xp.empty((B, H), d)
    gates = xp.empty((T, B, 4 * H), d) if training else None  # inference: chunked in C++
    cells = xp.empty((T + 1, B, H) if training else (B, H), d)
    m = None if w_hr is None else xp.empty((T, B, H) if training else (B, H), d)
    xp.kernels.lstm_forward(x=x, h0=st["h0"], c0=st["c0"], w_ih=w_ih, w_hh=w_hh, b_ih=b_ih,
                            b_hh=b_hh, w_hr=w_hr, batch_sizes=_batch_sizes(pk), y=y, h_n=h_n,
                            c_n=c_n, gates=gates, cells=cells, m=m, training=bool(training), H=H,
                            P=P)
    y_out, h_out, c_out = _unsorted(pk, (y,), (h_n, c_n))
    saved = None
    if training:
        saved = Saved("lstm", d, T, B, I, H, b_ih is not None,
                      dict(x=x, h0=st["h0"], y=y, w_ih=w_ih, w_hh=w_hh, gates=gates, cells=cells),
                      dict(P=P, w_hr=w_hr, m=m, lengths=pk, xp=xp))
        y_out = xp.copy(y) if y_out is y else y_out  # the caller may write to y; saved keeps it
    return _outputs(xp, (y_out, h_out, c_out)) + (saved,)


def lstm_backward(saved: Saved, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike],
                  dc_n: Optional[ArrayLike]):
    """BPTT through :func:`lstm_forward`: ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``, and
    ``dw_hr`` as an eighth when the forward had a projection. Runs on the forward's backend."""
    s, dy, fin, out = _begin_backward("lstm_backward", saved, "lstm", 4, dy,
                                      {"dh_n": dh_n, "dc_n": dc_n})
    a, pk, w_hr, P, xp = (s.arrays, s.options["lengths"], s.options["w_hr"], s.options["P"],
                          s.options["xp"])
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = out
    dc0 = xp.empty((s.B, s.H), s.dtype)
    dw_hr = None if w_hr is None else xp.empty(w_hr.shape, s.dtype)
    xp.kernels.lstm_backward(x=a["x"], h0=a["h0"], y=a["y"], w_ih=a["w_ih"], w_hh=a["w_hh"],
                             w_hr=w_hr, batch_sizes=_batch_sizes(pk), gates=a["gates"],
                             cells=a["cells"], m=s.options["m"], dy=dy, dh_n=fin["dh_n"],
                             dc_n=fin["dc_n"], dx=dx, dh0=dh0, dc0=dc0, dw_ih=dw_ih, dw_hh=dw_hh,
                             dw_hr=dw_hr, db_ih=db_ih, db_hh=db_hh, H=s.H, P=P)
    grads = _unsorted(pk, (dx,), (dh0, dc0)) + (dw_ih, dw_hh, db_ih, db_hh)
    return _outputs(xp, grads if w_hr is None else grads + (dw_hr,))


# ----------------------------------------------------------------------------- GRU


def gru_forward(x: ArrayLike, h0: Optional[ArrayLike], w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: Optional[ArrayLike], b_hh: Optional[ArrayLike], training: bool = True,
                reset_after: bool = True, *, lengths: Optional[ArrayLike] = None,
                backend: str = "auto") -> Tuple[np.ndarray, np.ndarray, Optional[Saved]]:
    """GRU over T steps: ``(y (T,B,H), h_n (B,H), saved)``. ``reset_after`` chooses where the
    reset gate applies (True: cuDNN/PyTorch; False: Cho et al. 2014); see the README.
    ``lengths`` (B,) runs sequence b for its first lengths[b] steps only."""
    fn = "gru_forward"
    xp = _array_ops(fn, backend, x)
    x, w_ih, w_hh, b_ih, b_hh, _, st, T, B, I, H, _ = _prepare(fn, xp, 3, x, w_ih, w_hh, b_ih,
                                                              b_hh, {"h0": h0})
    pk, x, st = _sorted_inputs(fn, xp, lengths, T, B, x, st)
    d = x.dtype
    y, h_n = xp.empty((T, B, H), d), xp.empty((B, H), d)
    gates = xp.empty((T, B, 3 * H), d) if training else None  # inference: chunked in C++
    extra = xp.empty((T, B, H) if training else (B, H), d)
    xp.kernels.gru_forward(x=x, h0=st["h0"], w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh,
                           batch_sizes=_batch_sizes(pk), y=y, h_n=h_n, gates=gates, extra=extra,
                           training=bool(training), reset_after=bool(reset_after), H=H)
    y_out, h_out = _unsorted(pk, (y,), (h_n,))
    saved = None
    if training:
        saved = Saved("gru", d, T, B, I, H, b_ih is not None,
                      dict(x=x, h0=st["h0"], y=y, w_ih=w_ih, w_hh=w_hh, gates=gates, extra=extra),
                      dict(reset_after=bool(reset_after), lengths=pk, xp=xp))
        y_out = xp.copy(y) if y_out is y else y_out
    return _outputs(xp, (y_out, h_out)) + (saved,)


def gru_backward(saved: Saved, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike]):
    """BPTT through :func:`gru_forward`: ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    s, dy, fin, out = _begin_backward("gru_backward", saved, "gru", 3, dy, {"dh_n": dh_n})
    a, pk, xp = s.arrays, s.options["lengths"], s.options["xp"]
    xp.kernels.gru_backward(x=a["x"], h0=a["h0"], y=a["y"], w_ih=a["w_ih"], w_hh=a["w_hh"],
                            batch_sizes=_batch_sizes(pk), gates=a["gates"], extra=a["extra"],
                            dy=dy, dh_n=fin["dh_n"], dx=out[0], dh0=out[1], dw_ih=out[2],
                            dw_hh=out[3], db_ih=out[4], db_hh=out[5],
                            reset_after=s.options["reset_after"], H=s.H)
    return _outputs(xp, _unsorted(pk, out[:1], out[1:2]) + out[2:])


# ----------------------------------------------------------------------------- RNN


def _check_nonlinearity(fn: str, nonlinearity) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{fn}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity


def rnn_forward(x: ArrayLike, h0: Optional[ArrayLike], w_ih: ArrayLike, w_hh: ArrayLike,
                b_ih: Optional[ArrayLike], b_hh: Optional[ArrayLike], training: bool = True,
                nonlinearity: str = "tanh", *, lengths: Optional[ArrayLike] = None,
                backend: str = "auto") -> Tuple[np.ndarray, np.ndarray, Optional[Saved]]:
    """Elman RNN over T steps, act in {"tanh", "relu"}: ``(y (T,B,H), h_n (B,H), saved)``.
    ``lengths`` (B,) runs sequence b for its first lengths[b] steps only."""
    fn = "rnn_forward"
    _check_nonlinearity(fn, nonlinearity)
    xp = _array_ops(fn, backend, x)
    x, w_ih, w_hh, b_ih, b_hh, _, st, T, B, I, H, _ = _prepare(fn, xp, 1, x, w_ih, w_hh, b_ih,
                                                              b_hh, {"h0": h0})
    pk, x, st = _sorted_inputs(fn, xp, lengths, T, B, x, st)
    d = x.dtype
    y, h_n = xp.empty((T, B, H), d), xp.empty((B, H), d)
    gates = xp.empty((T, B, H), d) if training else None  # inference: chunked in C++
    xp.kernels.rnn_forward(x=x, h0=st["h0"], w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh,
                           batch_sizes=_batch_sizes(pk), y=y, h_n=h_n, gates=gates,
                           nonlinearity=nonlinearity, H=H)
    y_out, h_out = _unsorted(pk, (y,), (h_n,))
    saved = None
    if training:
        # The gates buffer is reused by backward for the pre-activation gradients.
        saved = Saved("rnn", d, T, B, I, H, b_ih is not None,
                      dict(x=x, h0=st["h0"], y=y, w_ih=w_ih, w_hh=w_hh, gates=gates),
                      dict(nonlinearity=nonlinearity, lengths=pk, xp=xp))
        y_out = xp.copy(y) if y_out is y else y_out
    return _outputs(xp, (y_out, h_out)) + (saved,)


def rnn_backward(saved: Saved, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike]):
    """BPTT through :func:`rnn_forward`: ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    s, dy, fin, out = _begin_backward("rnn_backward", saved, "rnn", 1, dy, {"dh_n": dh_n})
    a, pk, xp = s.arrays, s.options["lengths"], s.options["xp"]
    xp.kernels.rnn_backward(x=a["x"], h0=a["h0"], y=a["y"], w_ih=a["w_ih"], w_hh=a["w_hh"],
                            batch_sizes=_batch_sizes(pk), gates=a["gates"], dy=dy,
                            dh_n=fin["dh_n"], dx=out[0], dh0=out[1], dw_ih=out[2], dw_hh=out[3],
                            db_ih=out[4], db_hh=out[5], nonlinearity=s.options["nonlinearity"],
                            H=s.H)
    return _outputs(xp, _unsorted(pk, out[:1], out[1:2]) + out[2:])
