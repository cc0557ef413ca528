"""RNN, LSTM and GRU layers with torch.nn's arguments, parameter names and shapes.

A layer stacks ``num_layers`` layers of one or two directions. Each (layer, direction) is one
call of the backend's ``*_forward`` / ``*_backward`` (the C++ kernels for ``backend="cpu"``,
the NumPy reference for ``"numpy"``); this module only arranges the calls: the reverse
direction runs the forward kernel on each sequence reversed within its own length, the
directions' outputs are concatenated, and dropout (training only) sits between layers.

Gradients of the parameters accumulate into ``layer.grads`` until ``zero_grad()``, as in
PyTorch, so truncated BPTT and gradient accumulation work.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import cuda, ops, reference
from .ops import _Lengths

__all__ = ["RNN", "LSTM", "GRU", "backends", "no_grad", "get_backend"]

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
_no_grad_depth = contextvars.ContextVar("fastrnn_no_grad", default=0)


def backends() -> dict:
    """Every backend and its status on this machine: ``{"numpy": ..., "cpu": ..., "cuda": ...}``
    mapping a name to a :class:`fastrnn.cuda.BackendStatus` (``.compiled``, ``.usable``, and a
    ``str()`` such as "available" or "compiled, no device: no CUDA driver (...)").
    "numpy" (the reference) and "cpu" (the C++ kernels) are always available; "cuda" when
    this install was built with a CUDA compiler and the machine has a GPU."""
    return {"numpy": cuda.BackendStatus(True, True), "cpu": cuda.BackendStatus(True, True),
            "cuda": cuda.status()}


def get_backend(name: str):
    """The module implementing ``{lstm,gru,rnn}_{forward,backward}`` for a backend name;
    "auto" picks the fastest available for NumPy data: "cpu". "cuda" runs each call on the
    GPU, copying NumPy inputs there and the results back (RuntimeError if it is not usable)."""
    if name == "auto":
        name = "cpu"
    if name == "cpu":
        return ops
    if name == "numpy":
        return reference
    if name == "cuda":
        cuda.require()
        return _OpsOn("cuda")
    raise ValueError(f"backend must be one of {['auto'] + list(backends())}, got {name!r}")


def _host_array(name: str, x) -> np.ndarray:
    """x as a NumPy array; TypeError for GPU-resident arrays, which layers and cells do not
    take (fastrnn.ops does)."""
    if cuda.is_device_array(x):
        raise TypeError(f"{name}: layers and cells take host (NumPy) input, even with "
                        f"backend='cuda' (which copies each call's data to the GPU); for "
                        f"GPU-resident arrays use fastrnn.ops, which takes them in place")
    return np.asarray(x)


class _OpsOn:
    """fastrnn.ops with every forward pinned to one backend (backward follows its forward)."""

    def __init__(self, backend: str):
        for cell in ("lstm", "gru", "rnn"):
            setattr(self, f"{cell}_forward",
                    functools.partial(getattr(ops, f"{cell}_forward"), backend=backend))
            setattr(self, f"{cell}_backward", getattr(ops, f"{cell}_backward"))


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Within this context, layers and cells run in inference mode (they keep nothing for
    backward, and their memory does not grow with T), whatever their train()/eval() mode."""
    token = _no_grad_depth.set(_no_grad_depth.get() + 1)
    try:
        yield
    finally:
        _no_grad_depth.reset(token)


def _grad_enabled() -> bool:
    return _no_grad_depth.get() == 0


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _reverse_in_lengths(a: np.ndarray, lengths: Optional[np.ndarray]) -> np.ndarray:
    """a (T, B, N) with each sequence reversed within its own length (padding stays zero)."""
    if lengths is None:
        return a[::-1]
    T, B = a.shape[:2]
    t = np.arange(T)[:, None]
    src = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    out = a[src, np.arange(B)[None, :]]
    out[t >= lengths[None, :]] = 0
    return out


class _Base:
    """What the layers and the cells share: parameters, gradients, modes, state dicts."""

    _cell = ""

    def _init_params(self, shapes: Dict[str, tuple], hidden_size: int, seed) -> None:
        # torch.nn's default: every parameter U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(hidden_size)
        self._params: Dict[str, np.ndarray] = {
            name: rng.uniform(-k, k, shape).astype(self.dtype) for name, shape in shapes.items()}
        self.grads: Dict[str, np.ndarray] = {n: np.zeros_like(p) for n, p in self._params.items()}
        self.training = True

    # -- modes
    def train(self, mode: bool = True):
        """Training mode (the default): forward keeps what backward needs; dropout is on."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Inference mode: forward keeps nothing; dropout is off."""
        return self.train(False)

    def _grad_mode(self) -> bool:
        return self.training and _grad_enabled()

    # -- parameters
    def parameters(self) -> Dict[str, np.ndarray]:
        """The parameters themselves (update them in place), under torch.nn's names."""
        return self._params

    def state_dict(self) -> Dict[str, np.ndarray]:
        """A copy of the parameters under torch.nn's names."""
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state: Dict[str, ArrayLike]) -> None:
        """Copies parameters in, e.g. from ``{k: v.numpy() for k, v in
        torch_module.state_dict().items()}``: the names must be exactly this layer's and the
        shapes equal; values are converted to the layer's dtype."""
        name = type(self).__name__
        if not isinstance(state, dict):
            raise TypeError(f"{name}.load_state_dict: expected a dict, got {type(state).__name__}")
        missing = [k for k in self._params if k not in state]
        extra = [k for k in state if k not in self._params]
        if missing or extra:
            raise KeyError(f"{name}.load_state_dict: missing keys {missing}, unexpected keys "
                           f"{extra}")
        converted = {}
        for k, v in state.items():
            arr = np.asarray(v)
            if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
                raise TypeError(f"{name}.load_state_dict: '{k}' has dtype {arr.dtype}")
            if arr.shape != self._params[k].shape:
                raise ValueError(f"{name}.load_state_dict: '{k}' has shape {arr.shape}, expected "
                                 f"{self._params[k].shape}")
            converted[k] = arr
        for k, arr in converted.items():
            self._params[k][...] = arr

    def zero_grad(self) -> None:
        """Sets every accumulated gradient to zero."""
        for g in self.grads.values():
            g.fill(0)

    def _accumulate(self, names, grads) -> None:
        for name, g in zip(names, grads):
            if g is not None:
                self.grads[name] += g


class _RNNBase(_Base):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, dtype=np.float32, backend: str = "auto",
                 seed: Optional[int] = None, **options):
        name = type(self).__name__
        self.input_size = _check_int("input_size", input_size, 1)
        self.hidden_size = _check_int("hidden_size", hidden_size, 1)
        self.num_layers = _check_int("num_layers", num_layers, 1)
        self.proj_size = _check_int("proj_size", proj_size, 0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"{name}: proj_size must be smaller than hidden_size, got "
                             f"proj_size={proj_size}, hidden_size={hidden_size}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or \
                not 0 <= dropout < 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} acts between layers and has no effect with "
                          f"num_layers=1", stacklevel=3)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.dtype = _check_dtype(dtype)
        self.backend = backend
        self._impl = get_backend(backend)
        self._options = options
        self._dropout_rng = np.random.default_rng(None if seed is None else seed + 1)
        G, H = _GATES[self._cell], self.hidden_size
        P = self.proj_size or H
        D = 2 if self.bidirectional else 1
        shapes = {}
        for layer in range(self.num_layers):
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes[f"weight_ih{sfx}"] = (G * H, self.input_size if layer == 0 else D * P)
                shapes[f"weight_hh{sfx}"] = (G * H, P)
                if self.bias:
                    shapes[f"bias_ih{sfx}"] = (G * H,)
                    shapes[f"bias_hh{sfx}"] = (G * H,)
                if self.proj_size:
                    shapes[f"weight_hr{sfx}"] = (P, H)
        self._init_params(shapes, H, seed)
        self._tape = None  # what the last training forward keeps for backward
        # layer -> the (T, B, D*P) mask applied to that layer's output by the last training
        # forward (0 or 1/(1-dropout)); backward applies the same.
        self.last_dropout_masks: Dict[int, np.ndarray] = {}
        self._last_forward = None  # "training" | "inference"

    @property
    def _D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _P(self) -> int:
        return self.proj_size or self.hidden_size

    def _names(self, layer: int, d: int) -> list:
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        names = [f"weight_ih{sfx}", f"weight_hh{sfx}", f"bias_ih{sfx}", f"bias_hh{sfx}"]
        return names + ([f"weight_hr{sfx}"] if self.proj_size else [])

    def _weights(self, layer: int, d: int) -> list:
        return [self._params.get(n) for n in self._names(layer, d)]

    # -- argument handling
    def _input(self, x) -> Tuple[np.ndarray, bool]:
        name = type(self).__name__
        arr = _host_array(name, x)
        if arr.dtype != self.dtype:
            raise TypeError(f"{name}: input x has dtype {arr.dtype}, but the layer's parameters "
                            f"are {self.dtype} (convert x, or build the layer with "
                            f"dtype={arr.dtype})")
        if arr.ndim == 2:
            arr, unbatched = arr[:, None, :], True
        elif arr.ndim == 3:
            unbatched = False
            if self.batch_first:
                arr = arr.transpose(1, 0, 2)
        else:
            raise ValueError(f"{name}: input x must be 3-D ({'B, T' if self.batch_first else 'T, B'}"
                             f", I) or 2-D (T, I), got shape {arr.shape}")
        if arr.shape[2] != self.input_size:
            raise ValueError(f"{name}: input x has {arr.shape[2]} features (shape {np.shape(x)}), "
                             f"expected input_size={self.input_size}")
        return arr, unbatched

    def _state(self, what: str, s, B: int, n: int, unbatched: bool) -> Optional[np.ndarray]:
        if s is None:
            return None
        name = type(self).__name__
        arr = np.asarray(s)
        LD = self.num_layers * self._D
        want = (LD, n) if unbatched else (LD, B, n)
        if arr.shape != want:
            raise ValueError(f"{name}: {what} has shape {arr.shape}, expected (num_layers * "
                             f"num_directions, {'' if unbatched else 'B, '}{'H' if what[0] == 'c' or not self.proj_size else 'proj_size'}) = {want}")
        if arr.dtype != self.dtype:
            raise TypeError(f"{name}: {what} has dtype {arr.dtype}, expected {self.dtype}")
        return arr[:, None, :] if unbatched else arr

    def _split_hx(self, hx, B: int, unbatched: bool):
        raise NotImplementedError

    # -- forward / backward
    def forward(self, x: ArrayLike, hx=None, lengths: Optional[ArrayLike] = None):
        """Runs the layer. x (T, B, I) (batch_first: (B, T, I)) or unbatched (T, I). Returns
        ``y, h_n`` (GRU, RNN) or ``y, (h_n, c_n)`` (LSTM), shaped as torch.nn documents:
        y (T, B, D*P), h_n (num_layers*D, B, P), c_n (num_layers*D, B, H)."""
        name = type(self).__name__
        x, unbatched = self._input(x)
        T, B = x.shape[:2]
        h0, c0 = self._split_hx(hx, B, unbatched)
        lens = None
        if lengths is not None:
            lens = _Lengths(f"{name}.forward", lengths, T, B).lengths
        training = self._grad_mode()
        impl, D, L, P, H = self._impl, self._D, self.num_layers, self._P, self.hidden_size
        h_n = np.empty((L * D, B, P), self.dtype)
        c_n = np.empty((L * D, B, H), self.dtype) if self._cell == "lstm" else None
        tape = {"saved": {}, "masks": {}, "lengths": lens, "T": T, "B": B,
                "unbatched": unbatched}
        inp = x
        for layer in range(L):
            outs = []
            for d in range(D):
                k = layer * D + d
                xi = inp if d == 0 else _reverse_in_lengths(inp, lens)
                y, h, c, saved = self._run(impl, xi, None if h0 is None else h0[k],
                                           None if c0 is None else c0[k], layer, d, training, lens)
                outs.append(y if d == 0 else _reverse_in_lengths(y, lens))
                h_n[k] = h
                if c_n is not None:
                    c_n[k] = c
                tape["saved"][k] = saved
            inp = np.concatenate(outs, axis=2) if D == 2 else outs[0]
            if training and self.dropout > 0 and layer < L - 1:
                keep = self._dropout_rng.random(inp.shape) >= self.dropout
                mask = keep.astype(self.dtype) / self.dtype.type(1 - self.dropout)
                tape["masks"][layer] = mask
                inp = inp * mask
        self._tape = tape if training else None
        self.last_dropout_masks = tape["masks"]
        self._last_forward = "training" if training else "inference"
        y = inp
        if self.batch_first and not unbatched:
            y = y.transpose(1, 0, 2)
        if unbatched:
            y, h_n = y[:, 0], h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        return (y, (h_n, c_n)) if self._cell == "lstm" else (y, h_n)

    __call__ = forward

    def _run(self, impl, x, h0, c0, layer, d, training, lens):
        w = self._weights(layer, d)
        kw = {} if lens is None else {"lengths": lens}
        if self._cell == "lstm":
            if self.proj_size:
                kw["w_hr"] = w[4]
            y, h, c, saved = impl.lstm_forward(x, h0, c0, *w[:4], training=training, **kw)
            return y, h, c, saved
        fwd = impl.gru_forward if self._cell == "gru" else impl.rnn_forward
        y, h, saved = fwd(x, h0, *w[:4], training=training, **self._options, **kw)
        return y, h, None, saved

    def _check_backward(self) -> dict:
        name = type(self).__name__
        if self._tape is None:
            if self._last_forward is None:
                raise RuntimeError(f"{name}.backward: called before any forward")
            if self._last_forward == "inference":
                raise RuntimeError(f"{name}.backward: the last forward ran in inference mode "
                                   f"(eval() or no_grad()) and kept nothing for backward")
            raise RuntimeError(f"{name}.backward: already called for the last forward; run "
                               f"forward again")
        return self._tape

    def _grad_in(self, what: str, g, shape: tuple, unbatched: bool) -> Optional[np.ndarray]:
        if g is None:
            return None
        name = type(self).__name__
        arr = np.asarray(g)
        want = shape if not unbatched else tuple(s for i, s in enumerate(shape) if i != 1)
        if what == "dy" and self.batch_first and not unbatched:
            want = (shape[1], shape[0], shape[2])
        if arr.shape != want:
            raise ValueError(f"{name}.backward: {what} has shape {arr.shape}, expected {want} "
                             f"(the shape of the forward's matching output)")
        if arr.dtype != self.dtype:
            raise TypeError(f"{name}.backward: {what} has dtype {arr.dtype}, expected {self.dtype}")
        if what == "dy" and self.batch_first and not unbatched:
            arr = arr.transpose(1, 0, 2)
        return arr[:, None] if unbatched else arr

    def _backward(self, dy, dh_n, dc_n):
        tape = self._check_backward()
        T, B, un = tape["T"], tape["B"], tape["unbatched"]
        impl, D, L, P, H = self._impl, self._D, self.num_layers, self._P, self.hidden_size
        dy = self._grad_in("dy", dy, (T, B, D * P), un)
        dh_n = self._grad_in("dh_n", dh_n, (L * D, B, P), un)
        dc_n = self._grad_in("dc_n", dc_n, (L * D, B, H), un) if self._cell == "lstm" else None
        self._tape = None  # one backward per forward, like the kernels' saved state
        lens = tape["lengths"]
        dh0 = np.empty((L * D, B, P), self.dtype)
        dc0 = np.empty((L * D, B, H), self.dtype) if self._cell == "lstm" else None
        d_out = dy if dy is not None else np.zeros((T, B, D * P), self.dtype)
        for layer in reversed(range(L)):
            if layer in tape["masks"]:
                d_out = d_out * tape["masks"][layer]
            dx = None
            for d in range(D):
                k = layer * D + d
                dy_d = np.ascontiguousarray(d_out[:, :, d * P:(d + 1) * P])
                if d == 1:
                    dy_d = _reverse_in_lengths(dy_d, lens)
                dhk = None if dh_n is None else dh_n[k]
                saved = tape["saved"][k]
                if self._cell == "lstm":
                    g = impl.lstm_backward(saved, dy_d, dhk, None if dc_n is None else dc_n[k])
                    dx_d, dh0[k], dc0[k] = g[0], g[1], g[2]
                    wgrads = list(g[3:7]) + ([g[7]] if self.proj_size else [])
                else:
                    bwd = impl.gru_backward if self._cell == "gru" else impl.rnn_backward
                    g = bwd(saved, dy_d, dhk)
                    dx_d, dh0[k] = g[0], g[1]
                    wgrads = list(g[2:6])
                self._accumulate(self._names(layer, d), wgrads)
                if d == 1:
                    dx_d = _reverse_in_lengths(dx_d, lens)
                dx = dx_d if dx is None else dx + dx_d
            d_out = dx
        dx = d_out
        if self.batch_first and not un:
            dx = dx.transpose(1, 0, 2)
        if un:
            dx, dh0 = dx[:, 0], dh0[:, 0]
            dc0 = None if dc0 is None else dc0[:, 0]
        return dx, dh0, dc0


class _OneStateLayer(_RNNBase):
    """GRU and RNN: the state is h alone."""

    def _split_hx(self, hx, B, unbatched):
        return self._state("h0", hx, B, self.hidden_size, unbatched), None

    def backward(self, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike] = None):
        """BPTT through the last forward: ``dx, dh0``; parameter gradients accumulate into
        ``self.grads``. dy (shaped as y) and dh_n (as h_n) may be None (zeros)."""
        dx, dh0, _ = self._backward(dy, dh_n, None)
        return dx, dh0


class RNN(_OneStateLayer):
    """Elman RNN layers, h' = act(W_ih x + b_ih + W_hh h + b_hh), act = "tanh" | "relu".
    Arguments as torch.nn.RNN, plus dtype, backend ("auto" | "cpu" | "numpy") and seed."""

    _cell = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, dtype=np.float32,
                 backend: str = "auto", seed: Optional[int] = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, dtype, backend, seed, nonlinearity=nonlinearity)



class GRU(_OneStateLayer):
    """GRU layers. Arguments as torch.nn.GRU, plus reset_after (True: PyTorch/cuDNN's
    n = tanh(W_in x + b_in + r (W_hn h + b_hn)); False: Cho et al.'s
    n = tanh(W_in x + b_in + W_hn (r h) + b_hn)), dtype, backend and seed."""

    _cell = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype=np.float32, backend: str = "auto", seed: Optional[int] = None,
                 reset_after: bool = True):
        self.reset_after = bool(reset_after)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, dtype, backend, seed, reset_after=self.reset_after)



class LSTM(_RNNBase):
    """LSTM layers. Arguments as torch.nn.LSTM (proj_size included), plus dtype, backend and
    seed."""

    _cell = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, dtype=np.float32, backend: str = "auto",
                 seed: Optional[int] = None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, dtype, backend, seed)

    def _split_hx(self, hx, B, unbatched):
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("LSTM: the state must be a tuple (h0, c0) (either may be None), got "
                            f"{type(hx).__name__}")
        return (self._state("h0", hx[0], B, self._P, unbatched),
                self._state("c0", hx[1], B, self.hidden_size, unbatched))

    def backward(self, dy: Optional[ArrayLike],
                 dstate: Optional[Tuple[Optional[ArrayLike], Optional[ArrayLike]]] = None):
        """BPTT through the last forward: ``dx, (dh0, dc0)``; parameter gradients accumulate
        into ``self.grads``. dy (shaped as y) and either of dstate = (dh_n, dc_n) may be None."""
        if dstate is None:
            dstate = (None, None)
        if not isinstance(dstate, (tuple, list)) or len(dstate) != 2:
            raise TypeError("LSTM.backward: dstate must be a tuple (dh_n, dc_n)")
        dx, dh0, dc0 = self._backward(dy, dstate[0], dstate[1])
        return dx, (dh0, dc0)

