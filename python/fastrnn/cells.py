"""Single-step cells with torch.nn's Cell signatures and parameter names: RNNCell, LSTMCell,
GRUCell. Each call is one time step (a T=1 call of the backend's kernels, which then skip
packing the weights and run the BLAS, a GEMV at batch 1); ``backward`` differentiates the
last step taken, accumulating parameter gradients into ``cell.grads``."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from .layers import _GATES, _Base, _check_dtype, _check_int, _host_array, get_backend

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]


class _CellBase(_Base):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=np.float32,
                 backend: str = "auto", seed: Optional[int] = None, **options):
        self.input_size = _check_int("input_size", input_size, 1)
        self.hidden_size = _check_int("hidden_size", hidden_size, 1)
        self.bias = bool(bias)
        self.dtype = _check_dtype(dtype)
        self.backend = backend
        self._impl = get_backend(backend)
        self._options = options
        G, H = _GATES[self._cell], self.hidden_size
        shapes = {"weight_ih": (G * H, self.input_size), "weight_hh": (G * H, H)}
        if self.bias:
            shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
        self._init_params(shapes, H, seed)
        self._saved = None
        self._last = None  # "training" | "inference" | None

    def _weights(self):
        p = self._params
        return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")

    def _x(self, x) -> Tuple[np.ndarray, bool]:
        name = type(self).__name__
        arr = _host_array(name, x)
        if arr.dtype != self.dtype:
            raise TypeError(f"{name}: input x has dtype {arr.dtype}, expected {self.dtype}")
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input x must have shape (B, {self.input_size}) or "
                             f"({self.input_size},), got {arr.shape}")
        unbatched = arr.ndim == 1
        return (arr[None, None] if unbatched else arr[None]), unbatched

    def _h(self, what: str, h, B: int, unbatched: bool) -> Optional[np.ndarray]:
        if h is None:
            return None
        name = type(self).__name__
        arr = np.asarray(h)
        want = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        if arr.shape != want:
            raise ValueError(f"{name}: {what} has shape {arr.shape}, expected {want}")
        if arr.dtype != self.dtype:
            raise TypeError(f"{name}: {what} has dtype {arr.dtype}, expected {self.dtype}")
        return arr[None] if unbatched else arr

    def _keep(self, saved, unbatched: bool) -> None:
        training = saved is not None
        self._saved = (saved, unbatched) if training else None
        self._last = "training" if training else "inference"

    def _peek_saved(self):
        name = type(self).__name__
        if self._saved is None:
            if self._last is None:
                raise RuntimeError(f"{name}.backward: called before any step")
            if self._last == "inference":
                raise RuntimeError(f"{name}.backward: the last step ran in inference mode "
                                   f"(eval() or no_grad()) and kept nothing for backward")
            raise RuntimeError(f"{name}.backward: already called for the last step")
        return self._saved

    def _names(self):
        return ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def _squeeze(a: np.ndarray, unbatched: bool) -> np.ndarray:
    return a[0] if unbatched else a


class RNNCell(_CellBase):
    """h' = act(W_ih x + b_ih + W_hh h + b_hh) for one step; ``h = cell(x, h)``."""

    _cell = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", dtype=np.float32, backend: str = "auto",
                 seed: Optional[int] = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, dtype, backend, seed,
                         nonlinearity=nonlinearity)

    def __call__(self, x: ArrayLike, hx: Optional[ArrayLike] = None) -> np.ndarray:
        x, un = self._x(x)
        h0 = self._h("hx", hx, x.shape[1], un)
        fwd = self._impl.rnn_forward if self._cell == "rnn" else self._impl.gru_forward
        _, h, saved = fwd(x, h0, *self._weights(), training=self._grad_mode(), **self._options)
        self._keep(saved, un)
        return _squeeze(h, un)

    forward = __call__

    def backward(self, dh: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """Gradients of the last step: ``dx, dh_prev``; parameter gradients accumulate."""
        saved, un = self._peek_saved()
        dh = self._h("dh", dh, saved_batch(saved), un)
        self._saved = None  # one backward per step, as the kernels' saved state
        bwd = self._impl.rnn_backward if self._cell == "rnn" else self._impl.gru_backward
        dx, dh0, *wgrads = bwd(saved, None, dh)
        self._accumulate(self._names(), wgrads)
        return _squeeze(dx[0], un), _squeeze(dh0, un)


class GRUCell(RNNCell):
    """One GRU step (reset_after as in fastrnn.GRU); ``h = cell(x, h)``."""

    _cell = "gru"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=np.float32,
                 backend: str = "auto", seed: Optional[int] = None, reset_after: bool = True):
        self.reset_after = bool(reset_after)
        _CellBase.__init__(self, input_size, hidden_size, bias, dtype, backend, seed,
                           reset_after=self.reset_after)


class LSTMCell(_CellBase):
    """One LSTM step; ``h, c = cell(x, (h, c))``, the state optional (zeros)."""

    _cell = "lstm"

    def __call__(self, x: ArrayLike, hx=None) -> Tuple[np.ndarray, np.ndarray]:
        x, un = self._x(x)
        h0 = c0 = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTMCell: the state must be a tuple (h, c)")
            h0 = self._h("h", hx[0], x.shape[1], un)
            c0 = self._h("c", hx[1], x.shape[1], un)
        _, h, c, saved = self._impl.lstm_forward(x, h0, c0, *self._weights(),
                                                 training=self._grad_mode())
        self._keep(saved, un)
        return _squeeze(h, un), _squeeze(c, un)

    forward = __call__

    def backward(self, dh: Optional[ArrayLike], dc: Optional[ArrayLike] = None):
        """Gradients of the last step: ``dx, (dh_prev, dc_prev)``; parameter gradients
        accumulate into ``self.grads``. dh or dc may be None (zeros)."""
        saved, un = self._peek_saved()
        B = saved_batch(saved)
        dh, dc = self._h("dh", dh, B, un), self._h("dc", dc, B, un)
        self._saved = None  # one backward per step, as the kernels' saved state
        dx, dh0, dc0, *wgrads = self._impl.lstm_backward(saved, None, dh, dc)
        self._accumulate(self._names(), wgrads)
        return _squeeze(dx[0], un), (_squeeze(dh0, un), _squeeze(dc0, un))


def saved_batch(saved) -> int:
    """The batch size a saved forward ran with (C++ Saved object or reference dict)."""
    return saved.B if hasattr(saved, "B") else saved["x"].shape[1]
