"""Stateless forward and backward functions over the C++ kernels.

Each function validates its arguments (raising ``TypeError``/``ValueError`` that name the
argument and the shapes), allocates the outputs and the buffers the kernel needs, and calls
the kernel, by keyword, with the GIL released. The same functions in plain NumPy live in
:mod:`fastrnn.reference`, with identical signatures and results.

Shapes (time-major): x (T, B, I) -> y (T, B, H); states (B, H); w_ih (G*H, I),
w_hh (G*H, H), b_ih, b_hh (G*H,); G = 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), 1 (RNN).
``None`` for a state or an upstream gradient means zeros; ``None`` for both biases means a
layer without bias (its bias gradients are then ``None``). T = 0 and B = 0 are allowed:
the final state is the initial one and the gradients are zeros.

``lengths`` takes per-sequence lengths (B,) or a :class:`fastrnn.packed.PackedBatch` (what
the layers build once per call, or the index arrays of a torch PackedSequence).

Training mode returns a typed record (:mod:`fastrnn.saved`) that the matching backward
consumes: backward overwrites its buffers in place with gate gradients, so each forward
supports one backward. It keeps references to x and the weights: modifying them in place
before backward gives the gradients of the modified values.

Every function takes ``backend``: "cpu" (the C++ kernels on NumPy arrays), "cuda" (the same
kernels on a GPU; see :mod:`fastrnn.cuda` for which arrays it takes and returns), or "auto"
(the default: "cuda" for GPU-resident x, "cpu" otherwise).

The forwards take ``precision``: "fp32" (the default: products in the arrays' dtype) or
"bf16" (float32 arrays): every matrix product takes bf16-rounded operands (round to
nearest even) and accumulates in float32, as oneDNN's bf16 fpmath mode and torch's
fp32_precision="bf16" do; states, the LSTM cell, activations and gradients stay float32,
and the backward of such a forward runs the same way. On the CPU, the bf16 dot product
(AVX512-BF16) where the CPU has it, else the float32 kernels on rounded copies (the same
results class); on CUDA, operands converted to bf16 on the device and cuBLAS's bf16 GEMM
with float32 compute.

The forwards also take arrays of dtype ``ml_dtypes.bfloat16`` (the optional extra
``fastrnn[bf16]``; fastrnn tells the dtype by its name and never imports ml_dtypes), on the
CPU backend: x, the states and the weights all bfloat16 (mixed with float32 is a TypeError
naming the argument). They run as float32 copies (exact) with precision="bf16", whatever
``precision`` says, so the products are exactly bf16 x bf16 with float32 sums; the outputs
and final states come back as bfloat16: the float32 path's results on the same values,
rounded to nearest even once, at the end. The states between steps, the LSTM cell, the gates
and everything the saved record holds stay float32 (x and the weights as float32 copies).
The backward takes upstream gradients as bfloat16 or float32 (both exact in float32) and
returns every gradient as bfloat16. For float32 products on bfloat16 values, pass float32
copies.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _C, cuda
from .cell_spec import CellSpec, spec
from .packed import PackedBatch, as_packed
from .saved import GruSaved, LstmSaved, RnnSaved, SavedState, is_bfloat16

__all__ = [
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "rnn_forward",
    "rnn_backward",
    "PackedBatch",
]

_FLOATS = (np.float32, np.float64)
PRECISIONS = ("fp32", "bf16")
_INT32_MAX = 2**31 - 1  # the BLAS takes 32-bit dimensions

# What the functions return: NumPy arrays for host input (NumPy arrays, lists, ...); for GPU
# input, arrays of the input's own kind (torch.Tensor in, torch.Tensor out; see fastrnn.cuda).
DeviceArrayT = TypeVar("DeviceArrayT")
Input = Union[DeviceArrayT, ArrayLike]
Result = Union[np.ndarray, DeviceArrayT]
Array = Union[np.ndarray, Any]  # a backward's results: the forward's kind of array
Lengths = Union[ArrayLike, PackedBatch, None]


def _shape(a) -> str:
    return "None" if a is None else str(tuple(a.shape))


class _HostOps:
    """The array operations the functions below need, on NumPy arrays, for the CPU kernels
    (fastrnn.cuda.DeviceOps has the same on device memory)."""

    kernels = _C

    def asarray(self, fn: str, name: str, value):
        try:
            return np.asarray(value)
        except Exception as e:  # ragged lists and the like
            raise TypeError(
                f"{fn}: argument '{name}' is not convertible to an array: {e}"
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
    def zero_padding(x: np.ndarray, batch_sizes: np.ndarray, fresh: bool) -> np.ndarray:
        # Always a new array (NumPy's where copies), so the caller's x is never written and
        # NaN * 0 never happens.
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
        raise ValueError(
            f"{fn}: x is a GPU array but backend='cpu'; use backend='cuda' (or "
            f"'auto'), or copy x to the host"
        )
    return _HOST


def _as_float_array(
    fn: str, name: str, value: ArrayLike, dtype=None, xp=_HOST, of: str = "x", bf16: bool = False
):
    """value as a float32/float64 array, or ml_dtypes.bfloat16 with ``bf16`` (of dtype
    ``dtype``, the dtype of argument ``of``, when given); TypeError naming the argument
    otherwise."""
    arr = xp.asarray(fn, name, value)
    if is_bfloat16(arr.dtype) and not bf16:
        raise TypeError(
            f"{fn}: argument '{name}' has dtype bfloat16, which {fn} does not take "
            f"(fastrnn.ops and the layers and cells do); convert with .astype(numpy.float32)"
        )
    if arr.dtype.type not in _FLOATS and not is_bfloat16(arr.dtype):
        raise TypeError(
            f"{fn}: argument '{name}' has dtype {arr.dtype}; fastrnn computes in float32 or "
            f"float64, or takes ml_dtypes.bfloat16 (convert with .astype(numpy.float32))"
        )
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(
            f"{fn}: argument '{name}' has dtype {arr.dtype} but {of} has dtype {dtype}; "
            f"all arrays must share one dtype"
        )
    return arr


def _check_shape(fn: str, name: str, arr, expected: tuple, legend: str) -> None:
    if tuple(arr.shape) != expected:
        raise ValueError(
            f"{fn}: argument '{name}' has shape {tuple(arr.shape)}, expected {legend} = {expected}"
        )


class _Call:
    """One forward call's validated arguments, in the kernels' row order.

    x (T, B, I), the weights, states: name -> (B, P) for h0 / (B, H) for c0 (zeros for
    None), and packed: the PackedBatch of the call or None. ``dtype`` is the kernels' (float32
    for bfloat16 arrays, which arrive here as float32 copies), ``io_dtype`` the caller's when
    it differs (bfloat16), else None.
    """

    def __init__(
        self,
        fn: str,
        cell: CellSpec,
        backend: str,
        x,
        states: Dict[str, Any],
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        w_hr,
        lengths: Lengths,
        precision: str = "fp32",
    ):
        xp = self.xp = _array_ops(fn, backend, x)
        self.fn = fn
        G = cell.G
        x = _as_float_array(fn, "x", x, xp=xp, bf16=True)
        if is_bfloat16(x.dtype) and xp is not _HOST:
            raise ValueError(
                f"{fn}: bfloat16 arrays are not on the CUDA backend yet (backend='cpu' takes them)"
            )
        if x.ndim != 3:
            raise ValueError(f"{fn}: argument 'x' must be 3-D (T, B, I), got shape {_shape(x)}")
        dtype = x.dtype
        T, B, I = x.shape
        w_hh = _as_float_array(fn, "w_hh", w_hh, dtype, xp, bf16=True)
        if w_hh.ndim != 2:
            raise ValueError(
                f"{fn}: argument 'w_hh' must be 2-D ({G}*H, H), got shape {_shape(w_hh)}"
            )
        H, P = w_hh.shape[0] // G, w_hh.shape[1]
        if w_hr is None:
            H = P  # without a projection, w_hh is (G*H, H)
        if H == 0 or I == 0:
            raise ValueError(
                f"{fn}: hidden size H (w_hh.shape[1]) and input size I (x.shape[2]) "
                f"must be positive, got H={H}, I={I}"
            )
        if w_hr is not None:
            w_hr = _as_float_array(fn, "w_hr", w_hr, dtype, xp, bf16=True)
            _check_shape(fn, "w_hr", w_hr, (P, H), f"(P, H) with P={P} (w_hh.shape[1]), H={H}")
            if not 0 < P < H:
                raise ValueError(f"{fn}: the projection size P={P} must be in [1, H) with H={H}")
        _check_shape(
            fn, "w_hh", w_hh, (G * H, P), f"({G}*H, {'P' if w_hr is not None else 'H'}) with H={H}"
        )
        w_ih = _as_float_array(fn, "w_ih", w_ih, dtype, xp, bf16=True)
        _check_shape(fn, "w_ih", w_ih, (G * H, I), f"({G}*H, I) with H={H}, I={I} (from x)")
        if (b_ih is None) != (b_hh is None):
            raise ValueError(
                f"{fn}: b_ih and b_hh must both be arrays or both be None, got "
                f"b_ih {_shape(b_ih)}, b_hh {_shape(b_hh)}"
            )
        if b_ih is not None:
            b_ih = _as_float_array(fn, "b_ih", b_ih, dtype, xp, bf16=True)
            b_hh = _as_float_array(fn, "b_hh", b_hh, dtype, xp, bf16=True)
            _check_shape(fn, "b_ih", b_ih, (G * H,), f"({G}*H,) with H={H}")
            _check_shape(fn, "b_hh", b_hh, (G * H,), f"({G}*H,) with H={H}")
        checked = {}
        for name, s in states.items():
            n = P if name == "h0" else H
            if s is None:
                checked[name] = xp.zeros((B, n), dtype)
                continue
            s = _as_float_array(fn, name, s, dtype, xp, bf16=True)
            letter = "P" if n != H else "H"
            _check_shape(
                fn, name, s, (B, n), f"(B, {letter}) with B={B} (from x), {letter}={n} (from w_hh)"
            )
            checked[name] = xp.contiguous(s)
        if max(T * B, G * H, I) > _INT32_MAX:
            raise ValueError(
                f"{fn}: T*B={T * B}, G*H={G * H} and I={I} must each be below "
                f"2**31 (the BLAS takes 32-bit dimensions)"
            )
        self.io_dtype = dtype if is_bfloat16(dtype) else None
        if self.io_dtype is not None:  # run as float32 (exact) with bf16 products
            _check_precision(fn, precision, np.float32, xp)  # a valid name all the same
            x, w_ih, w_hh, b_ih, b_hh, w_hr = map(_float32, (x, w_ih, w_hh, b_ih, b_hh, w_hr))
            checked = {k: _float32(v) for k, v in checked.items()}
            dtype, precision = np.dtype(np.float32), "bf16"
        c = xp.contiguous
        self.w_ih, self.w_hh = c(w_ih), c(w_hh)
        self.b_ih = None if b_ih is None else c(b_ih)
        self.b_hh = None if b_hh is None else c(b_hh)
        self.w_hr = None if w_hr is None else c(w_hr)
        self.T, self.B, self.I, self.H, self.P, self.dtype = T, B, I, H, P, dtype
        self.precision = _check_precision(fn, precision, dtype, xp)
        self.packed = as_packed(fn, lengths, T, B)
        pk = self.packed
        if pk is None:
            self.x, self.states = c(x), checked
        else:
            self.x = xp.zero_padding(self.sort(c(x), 1), pk.batch_sizes, fresh=not pk.identity)
            self.states = {k: self.sort(v, 0) for k, v in checked.items()}

    @property
    def backend(self) -> str:
        return "cpu" if self.xp is _HOST else "cuda"

    @property
    def batch_sizes(self) -> Optional[np.ndarray]:
        return None if self.packed is None else self.packed.batch_sizes

    def kernel_args(self) -> dict:
        """The arguments every forward kernel takes, by name: x, the initial states, the
        weights, batch_sizes."""
        return dict(
            x=self.x,
            w_ih=self.w_ih,
            w_hh=self.w_hh,
            b_ih=self.b_ih,
            b_hh=self.b_hh,
            batch_sizes=self.batch_sizes,
            bf16=self.precision == "bf16",
            **self.states,
        )

    def saved_fields(self, y, gates) -> dict:
        """The fields every cell's saved record has, for a training forward that wrote y and
        gates."""
        return dict(
            backend=self.backend,
            x=self.x,
            h0=self.states["h0"],
            y=y,
            w_ih=self.w_ih,
            w_hh=self.w_hh,
            has_bias=self.b_ih is not None,
            gates=gates,
            packed=self.packed,
            precision=self.precision,
            io_dtype=self.io_dtype,
            array_ops=self.xp,
        )

    def sort(self, a, axis: int):
        return _rows(self.xp, self.packed, a, axis)

    def mask(self, name: str, value, shape: tuple, letters: str, batch_axis: int):
        """A regularization mask (zoneout's factors, the recurrent dropout mask) of the given
        shape in x's dtype, its rows in the kernels' order; None stays None."""
        if value is None:
            return None
        arr = _as_float_array(self.fn, name, value, xp=self.xp, bf16=True)
        if self.io_dtype is not None and is_bfloat16(arr.dtype):
            arr = _float32(arr)  # beside bfloat16 arrays, a bfloat16 mask too (exact)
        if arr.dtype != self.dtype:
            raise TypeError(
                f"{self.fn}: argument '{name}' has dtype {arr.dtype} but x has dtype "
                f"{self.io_dtype or self.dtype}; all arrays must share one dtype"
            )
        _check_shape(self.fn, name, arr, shape, letters)
        return self.xp.contiguous(self.sort(arr, batch_axis))

    def results(self, seqs: tuple, states: tuple) -> tuple:
        """The outputs, sequences (T, B, ...) then states (B, ...), in the caller's row
        order, kind and dtype (bfloat16 arrays in: bfloat16 out, rounded once, here)."""
        out = _unsort(self.xp, self.packed, seqs, states)
        if self.io_dtype is None:
            return out
        return tuple(a.astype(self.io_dtype) for a in out)

    def empty(self, *shape: int):
        return self.xp.empty(shape, self.dtype)


def _float32(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """A bfloat16 array as a C-contiguous float32 copy (exact); None stays None."""
    return None if a is None else np.ascontiguousarray(a, np.float32)


def _check_precision(fn: str, precision: str, dtype, xp) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"{fn}: precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "bf16":
        if dtype != np.float32:
            raise TypeError(
                f"{fn}: precision='bf16' rounds float32 operands to bf16; x has dtype {dtype}"
            )
    return precision


# The kernels' names of the layer-norm weights, in layer_norm's order.
_LSTM_LN = ("ln_ih_weight", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias")
_GRU_LN = _LSTM_LN[:2]


def _layer_norm(a: "_Call", value, sizes: tuple, letters: tuple) -> Optional[tuple]:
    """layer_norm's arrays, checked (one per size, x's dtype), or None."""
    if value is None:
        return None
    fn = a.fn
    if not isinstance(value, (tuple, list)) or len(value) != len(sizes):
        got = (
            f"a {type(value).__name__} of {len(value)}"
            if isinstance(value, (tuple, list))
            else type(value).__name__
        )
        raise TypeError(f"{fn}: layer_norm must be a tuple of {len(sizes)} arrays, got {got}")
    out = []
    for i, (v, n, letter) in enumerate(zip(value, sizes, letters)):
        name = f"layer_norm[{i}]"
        arr = _as_float_array(fn, name, v, xp=a.xp, bf16=True)
        if a.io_dtype is not None and is_bfloat16(arr.dtype):
            arr = _float32(arr)
        if arr.dtype != a.dtype:
            raise TypeError(
                f"{fn}: argument '{name}' has dtype {arr.dtype} but x has dtype "
                f"{a.io_dtype or a.dtype}; all arrays must share one dtype"
            )
        _check_shape(fn, name, arr, (n,), f"({letter},)")
        out.append(a.xp.contiguous(arr))
    return tuple(out)


def _pair(fn: str, name: str, value) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{fn}: {name} must be a pair (for h, for c), got {type(value).__name__}")
    return tuple(value)


def _rows(xp, pk: Optional[PackedBatch], a, axis: int, unsort: bool = False):
    """a's rows along ``axis`` in the kernels' order (sorted by length), or with ``unsort``
    back in the caller's; a itself when the order is the identity."""
    if pk is None or pk.identity:
        return a
    return xp.take_rows(a, pk.unsorted_indices if unsort else pk.sorted_indices, axis)


def _unsort(xp, pk: Optional[PackedBatch], seqs: tuple, states: tuple) -> tuple:
    """Outputs back in the caller's row order and kind: sequences (T, B, ...) then states
    (B, ...)."""
    seqs = tuple(_rows(xp, pk, a, 1, unsort=True) for a in seqs)
    states = tuple(_rows(xp, pk, a, 0, unsort=True) for a in states)
    if xp is _HOST:
        return seqs + states
    return tuple(xp.output(a) for a in seqs + states)


def _check_saved(fn: str, saved, kind: type) -> SavedState:
    name = fn.split("_")[0]
    if saved is None:
        raise ValueError(
            f"{fn}: saved is None: the forward ran with training=False and kept "
            f"nothing for backward; run it with training=True"
        )
    if not isinstance(saved, SavedState):
        raise TypeError(
            f"{fn}: saved must be the object returned by {name}_forward("
            f"training=True), got {type(saved).__name__}"
        )
    if not isinstance(saved, kind):
        raise TypeError(f"{fn}: saved comes from {saved.cell}_forward, not {name}_forward")
    if saved.backend == "numpy":
        raise TypeError(
            f"{fn}: saved comes from fastrnn.reference.{name}_forward; pass it to "
            f"fastrnn.reference.{fn}"
        )
    if saved.consumed:
        raise ValueError(
            f"{fn}: this saved state was already used by a backward, which "
            f"overwrites it in place; run the forward again"
        )
    return saved


def _grad_in(fn: str, name: str, value, shape: tuple, letters: str, s: SavedState):
    """An upstream gradient of the given shape (zeros for None); ``letters`` names the shape
    in the error message, e.g. "(T, B, H)"."""
    xp = s.array_ops
    if value is None:
        return xp.zeros(shape, s.dtype)
    arr = _as_float_array(fn, name, value, xp=xp, bf16=True)
    if arr.dtype != s.dtype and arr.dtype != s.grad_dtype:
        ran = (
            f"ran in {s.dtype}"
            if s.io_dtype is None
            else f"ran on {s.io_dtype} arrays (upstream gradients: {s.io_dtype} or {s.dtype})"
        )
        raise TypeError(f"{fn}: argument '{name}' has dtype {arr.dtype} but the forward {ran}")
    _check_shape(fn, name, arr, shape, f"{letters} = {shape} from the forward")
    return xp.contiguous(arr if arr.dtype == s.dtype else _float32(arr))


class _Backward:
    """One backward call: the checked upstream gradients in the kernels' row order, and the
    gradient arrays it fills: dx (T, B, I), d<state>0, dw_ih, dw_hh, db_ih, db_hh."""

    def __init__(self, fn: str, saved, kind: type, dy, finals: Dict[str, Any]):
        s = self.saved = _check_saved(fn, saved, kind)
        T, B, I = s.x.shape
        H, P, d = s.H, s.w_hh.shape[1], s.x.dtype
        GH = s.G * H
        hp = "H" if P == H else "P"
        dy = _grad_in(fn, "dy", dy, (T, B, P), f"(T, B, {hp})", s)
        fin = {}
        for name, v in finals.items():
            n, letter = (P, hp) if name == "dh_n" else (H, "H")
            fin[name] = _grad_in(fn, name, v, (B, n), f"(B, {letter})", s)
        pk, xp = s.packed, s.array_ops
        self.dy = _rows(xp, pk, dy, 1)
        self.finals = {k: _rows(xp, pk, v, 0) for k, v in fin.items()}
        empty = xp.empty
        self.dx = empty((T, B, I), d)
        self.dstates = {f"d{k[1:-2]}0": empty((B, P if k == "dh_n" else H), d) for k in finals}
        self.dw_ih, self.dw_hh = empty((GH, I), d), empty((GH, P), d)
        self.db_ih = empty((GH,), d) if s.has_bias else None
        self.db_hh = empty((GH,), d) if s.has_bias else None
        self.H = H
        s.consume()  # the kernel overwrites its buffers

    def kernel_args(self) -> dict:
        """The arguments every backward kernel takes, by name."""
        s = self.saved
        return dict(
            x=s.x,
            h0=s.h0,
            y=s.y,
            w_ih=s.w_ih,
            w_hh=s.w_hh,
            batch_sizes=(None if s.packed is None else s.packed.batch_sizes),
            gates=s.gates,
            dy=self.dy,
            dx=self.dx,
            dw_ih=self.dw_ih,
            dw_hh=self.dw_hh,
            db_ih=self.db_ih,
            db_hh=self.db_hh,
            H=self.H,
            bf16=s.precision == "bf16",
            **self.finals,
            **self.dstates,
        )

    def results(self, *extra) -> tuple:
        """(dx, d<state>0 ..., dw_ih, dw_hh, db_ih, db_hh, *extra) in the caller's order,
        kind and dtype (bfloat16 after a forward on bfloat16 arrays)."""
        s = self.saved
        head = _unsort(s.array_ops, s.packed, (self.dx,), tuple(self.dstates.values()))
        out = (self.dw_ih, self.dw_hh, self.db_ih, self.db_hh) + extra
        if s.io_dtype is not None:
            return tuple(None if a is None else a.astype(s.io_dtype) for a in head + out)
        if s.array_ops is _HOST:
            return head + out
        return head + tuple(s.array_ops.output(a) for a in out)


# ----------------------------------------------------------------------------- LSTM


def lstm_forward(
    x: Input[DeviceArrayT],
    h0: Optional[ArrayLike],
    c0: Optional[ArrayLike],
    w_ih: ArrayLike,
    w_hh: ArrayLike,
    b_ih: Optional[ArrayLike],
    b_hh: Optional[ArrayLike],
    training: bool = True,
    *,
    w_hr: Optional[ArrayLike] = None,
    lengths: Lengths = None,
    backend: str = "auto",
    precision: str = "fp32",
    zoneout: Optional[Tuple[Optional[ArrayLike], Optional[ArrayLike]]] = None,
    recurrent_mask: Optional[ArrayLike] = None,
    layer_norm: Optional[Tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike]] = None,
) -> Tuple[Result[DeviceArrayT], Result[DeviceArrayT], Result[DeviceArrayT], Optional[LstmSaved]]:
    """LSTM over T steps: ``(y (T,B,P), h_n (B,P), c_n (B,H), saved)``; saved is None unless
    ``training``. ``w_hr`` (P, H) adds a projection (LSTMP: h = W_hr (o * tanh(c)), P < H);
    ``lengths`` (B,) or a PackedBatch runs sequence b for its first lengths[b] steps only;
    ``precision`` "fp32" or "bf16" (see the module's doc).

    Regularization (fastrnn extras, as :mod:`fastrnn.reference` defines them): ``zoneout``
    (d_h (T, B, P), d_c (T, B, H)), either None, the factor d of h_t = d h_{t-1} + (1 - d) h~_t
    (and of c) -- a 0/1 draw in training, the probability p in evaluation; the outputs are
    the zoned-out h_t. ``recurrent_mask`` (B, P): h_{t-1} enters W_hh as h_{t-1} * mask
    (variational recurrent dropout, scaled by the caller). The backward uses the same.

    ``layer_norm`` (gamma_ih (4H), gamma_hh (4H), gamma_c (H), beta_c (H)): the
    layer-normalized LSTM (no projection; see :mod:`fastrnn.reference`); the backward then
    returns their gradients last, in that order."""
    a = _Call(
        "lstm_forward",
        spec("lstm"),
        backend,
        x,
        {"h0": h0, "c0": c0},
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        w_hr,
        lengths,
        precision,
    )
    T, B, H, P = a.T, a.B, a.H, a.P
    d_h, d_c = (None, None) if zoneout is None else _pair(a.fn, "zoneout", zoneout)
    extras = dict(
        zoneout_h=a.mask("zoneout[0]", d_h, (T, B, P), "(T, B, P)", 1),
        zoneout_c=a.mask("zoneout[1]", d_c, (T, B, H), "(T, B, H)", 1),
        recurrent_mask=a.mask("recurrent_mask", recurrent_mask, (B, P), "(B, P)", 0),
    )
    ln = _layer_norm(a, layer_norm, (4 * H, 4 * H, H, H), ("4H", "4H", "H", "H"))
    if ln is not None and a.w_hr is not None:
        raise ValueError("lstm_forward: layer_norm takes no projection (w_hr)")
    ln_saved = {}
    if ln is not None:
        ln_saved = dict(ln_ih=None, ln_hh=None, ln_cell=None, ln_rstd=None)
        if training:
            ln_saved = dict(
                ln_ih=a.empty(T, B, 4 * H),
                ln_hh=a.empty(T, B, 4 * H),
                ln_cell=a.empty(T, B, H),
                ln_rstd=a.empty(T, B, 3),
            )
    ln_args = dict(zip(_LSTM_LN, ln or (None,) * 4))
    y, h_n, c_n = a.empty(T, B, P), a.empty(B, P), a.empty(B, H)
    gates = a.empty(T, B, 4 * H) if training else None  # inference: chunked in C++
    cells = a.empty(T + 1, B, H) if training else a.empty(B, H)
    m = None if a.w_hr is None else (a.empty(T, B, H) if training else a.empty(B, H))
    a.xp.kernels.lstm_forward(
        **a.kernel_args(),
        w_hr=a.w_hr,
        y=y,
        h_n=h_n,
        c_n=c_n,
        gates=gates,
        cells=cells,
        m=m,
        training=bool(training),
        H=H,
        P=P,
        **extras,
        **ln_args,
        **{k: ln_saved.get(k) for k in ("ln_ih", "ln_hh", "ln_cell", "ln_rstd")},
    )
    saved = None
    if training:
        saved = LstmSaved(
            **a.saved_fields(y, gates),
            cells=cells,
            w_hr=a.w_hr,
            m=m,
            **extras,
            layer_norm=ln,
            **ln_saved,
        )
        y = _private(a, y)
    return a.results((y,), (h_n, c_n)) + (saved,)


def _private(a: _Call, y):
    """y as returned to the caller, which may write to it: a copy when y itself is what the
    saved record keeps (neither reordering nor the cast to bfloat16 makes one)."""
    fresh = a.io_dtype is not None or not (a.packed is None or a.packed.identity)
    return y if fresh else a.xp.copy(y)


def lstm_backward(
    saved: LstmSaved, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike], dc_n: Optional[ArrayLike]
) -> Tuple[Optional[Array], ...]:
    """BPTT through :func:`lstm_forward`: ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``, and
    ``dw_hr`` as an eighth when the forward had a projection. Runs on the forward's backend."""
    b = _Backward("lstm_backward", saved, LstmSaved, dy, {"dh_n": dh_n, "dc_n": dc_n})
    s = b.saved
    dw_hr = None if s.w_hr is None else s.array_ops.empty(tuple(s.w_hr.shape), s.dtype)
    ln = s.layer_norm
    dln = None if ln is None else [s.array_ops.empty(tuple(g.shape), s.dtype) for g in ln]
    s.array_ops.kernels.lstm_backward(
        **b.kernel_args(),
        cells=s.cells,
        w_hr=s.w_hr,
        m=s.m,
        dw_hr=dw_hr,
        P=s.P,
        zoneout_h=s.zoneout_h,
        zoneout_c=s.zoneout_c,
        recurrent_mask=s.recurrent_mask,
        **dict(zip(_LSTM_LN, ln or (None,) * 4)),
        ln_ih=s.ln_ih,
        ln_hh=s.ln_hh,
        ln_cell=s.ln_cell,
        ln_rstd=s.ln_rstd,
        **dict(zip((f"d{n}" for n in _LSTM_LN), dln or (None,) * 4)),
    )
    return b.results(*([] if dw_hr is None else [dw_hr]), *(dln or []))


# ----------------------------------------------------------------------------- GRU


def gru_forward(
    x: Input[DeviceArrayT],
    h0: Optional[ArrayLike],
    w_ih: ArrayLike,
    w_hh: ArrayLike,
    b_ih: Optional[ArrayLike],
    b_hh: Optional[ArrayLike],
    training: bool = True,
    reset_after: bool = True,
    *,
    lengths: Lengths = None,
    backend: str = "auto",
    precision: str = "fp32",
    zoneout: Optional[ArrayLike] = None,
    recurrent_mask: Optional[ArrayLike] = None,
    layer_norm: Optional[Tuple[ArrayLike, ArrayLike]] = None,
) -> Tuple[Result[DeviceArrayT], Result[DeviceArrayT], Optional[GruSaved]]:
    """GRU over T steps: ``(y (T,B,H), h_n (B,H), saved)``. ``reset_after`` chooses where the
    reset gate applies (True: cuDNN/PyTorch; False: Cho et al. 2014); see the README.
    ``lengths`` (B,) or a PackedBatch runs sequence b for its first lengths[b] steps only;
    ``precision`` "fp32" or "bf16" (see the module's doc). ``zoneout`` (T, B, H) and
    ``recurrent_mask`` (B, H): as for :func:`lstm_forward` (the mask applies where h enters
    W_hh; z * h takes h as it is). ``layer_norm`` (gamma_ih (3H), gamma_hh (3H)): the
    layer-normalized GRU (reset_after only; see :mod:`fastrnn.reference`); the backward then
    returns their gradients last."""
    a = _Call(
        "gru_forward", spec("gru"), backend, x, {"h0": h0}, w_ih, w_hh, b_ih, b_hh, None, lengths,
        precision,
    )  # fmt: skip
    T, B, H = a.T, a.B, a.H
    extras = dict(
        zoneout_h=a.mask("zoneout", zoneout, (T, B, H), "(T, B, H)", 1),
        recurrent_mask=a.mask("recurrent_mask", recurrent_mask, (B, H), "(B, H)", 0),
    )
    ln = _layer_norm(a, layer_norm, (3 * H, 3 * H), ("3H", "3H"))
    if ln is not None and not reset_after:
        raise ValueError("gru_forward: layer_norm takes the reset-after form (reset_after=True)")
    ln_saved = dict(ln_ih=None, ln_hh=None, ln_rstd=None)
    if ln is not None and training:
        ln_saved = dict(
            ln_ih=a.empty(T, B, 3 * H), ln_hh=a.empty(T, B, 3 * H), ln_rstd=a.empty(T, B, 2)
        )
    ln_args = dict(zip(_GRU_LN, ln or (None, None)))
    y, h_n = a.empty(T, B, H), a.empty(B, H)
    gates = a.empty(T, B, 3 * H) if training else None  # inference: chunked in C++
    extra = a.empty(T, B, H) if training else a.empty(B, H)
    a.xp.kernels.gru_forward(
        **a.kernel_args(),
        y=y,
        h_n=h_n,
        gates=gates,
        extra=extra,
        training=bool(training),
        reset_after=bool(reset_after),
        H=H,
        **extras,
        **ln_args,
        **ln_saved,
    )
    saved = None
    if training:
        saved = GruSaved(
            **a.saved_fields(y, gates),
            extra=extra,
            reset_after=bool(reset_after),
            **extras,
            layer_norm=ln,
            **ln_saved,
        )
        y = _private(a, y)
    return a.results((y,), (h_n,)) + (saved,)


def gru_backward(
    saved: GruSaved, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike]
) -> Tuple[Optional[Array], ...]:
    """BPTT through :func:`gru_forward`: ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    b = _Backward("gru_backward", saved, GruSaved, dy, {"dh_n": dh_n})
    s = b.saved
    ln = s.layer_norm
    dln = None if ln is None else [s.array_ops.empty(tuple(g.shape), s.dtype) for g in ln]
    s.array_ops.kernels.gru_backward(
        **b.kernel_args(),
        extra=s.extra,
        reset_after=s.reset_after,
        zoneout_h=s.zoneout_h,
        recurrent_mask=s.recurrent_mask,
        **dict(zip(_GRU_LN, ln or (None, None))),
        ln_ih=s.ln_ih,
        ln_hh=s.ln_hh,
        ln_rstd=s.ln_rstd,
        **dict(zip((f"d{n}" for n in _GRU_LN), dln or (None, None))),
    )
    return b.results(*(dln or []))


# ----------------------------------------------------------------------------- RNN


def rnn_forward(
    x: Input[DeviceArrayT],
    h0: Optional[ArrayLike],
    w_ih: ArrayLike,
    w_hh: ArrayLike,
    b_ih: Optional[ArrayLike],
    b_hh: Optional[ArrayLike],
    training: bool = True,
    nonlinearity: str = "tanh",
    *,
    lengths: Lengths = None,
    backend: str = "auto",
    precision: str = "fp32",
) -> Tuple[Result[DeviceArrayT], Result[DeviceArrayT], Optional[RnnSaved]]:
    """Elman RNN over T steps, act in {"tanh", "relu"}: ``(y (T,B,H), h_n (B,H), saved)``.
    ``lengths`` (B,) or a PackedBatch runs sequence b for its first lengths[b] steps only;
    ``precision`` "fp32" or "bf16" (see the module's doc)."""
    fn = "rnn_forward"
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{fn}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    a = _Call(
        fn, spec("rnn"), backend, x, {"h0": h0}, w_ih, w_hh, b_ih, b_hh, None, lengths, precision
    )
    T, B, H = a.T, a.B, a.H
    y, h_n = a.empty(T, B, H), a.empty(B, H)
    gates = a.empty(T, B, H) if training else None  # inference: chunked in C++
    a.xp.kernels.rnn_forward(
        **a.kernel_args(),
        y=y,
        h_n=h_n,
        gates=gates,
        nonlinearity=nonlinearity,
        H=H,
    )
    saved = None
    if training:
        saved = RnnSaved(
            **a.saved_fields(y, gates),
            nonlinearity=nonlinearity,
        )
        y = _private(a, y)
    return a.results((y,), (h_n,)) + (saved,)


def rnn_backward(
    saved: RnnSaved, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike]
) -> Tuple[Optional[Array], ...]:
    """BPTT through :func:`rnn_forward`: ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``."""
    b = _Backward("rnn_backward", saved, RnnSaved, dy, {"dh_n": dh_n})
    b.saved.array_ops.kernels.rnn_backward(**b.kernel_args(), nonlinearity=b.saved.nonlinearity)
    return b.results()
