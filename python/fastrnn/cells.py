"""Single-step cells with torch.nn's Cell signatures and parameter names: RNNCell, LSTMCell,
GRUCell. Each call is one time step (a T=1 call of the backend's kernels, which then skip
packing the weights and run the BLAS, a GEMV at batch 1); ``backward`` differentiates the
last step taken, accumulating parameter gradients into ``cell.grads``. An inference step on
the CPU kernels runs a :class:`fastrnn.step.CellStep` kept while the cell holds the same
parameter arrays (the weights checked once, not per step).

``dtype=ml_dtypes.bfloat16`` stores the parameters in bfloat16 as the layers do
(:mod:`fastrnn.layers`): states, outputs and gradients are bfloat16, each step runs
:mod:`fastrnn.ops` on them (bf16 products, float32 inside), and upstream gradients may be
bfloat16 or float32."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import ops
from .layers import (
    _Base,
    _check_dtype,
    _check_int,
    _check_precision,
    _float32_grad_ok,
    _grad_dtypes,
    _host_array,
    get_backend,
)
from .step import CellStep

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]


class _CellBase(_Base):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dtype=np.float32,
        backend: str = "auto",
        seed: Optional[int] = None,
        precision: str = "fp32",
        **options,
    ):
        self.input_size = _check_int("input_size", input_size, 1)
        self.hidden_size = _check_int("hidden_size", hidden_size, 1)
        self.bias = bool(bias)
        self.dtype = _check_dtype(dtype)
        self.backend = backend
        self._impl = get_backend(backend)
        self._forward = getattr(self._impl, self._spec.forward_name)
        self._options = self._spec.check_options(type(self).__name__, options)
        self.precision = _check_precision(type(self).__name__, precision, self.dtype, backend)
        self._param_names = self._spec.param_names()
        self._init_params(
            self._spec.param_shapes(self.input_size, self.hidden_size, bias=self.bias),
            self.hidden_size,
            seed,
        )
        self._saved = None
        self._last = None  # "training" | "inference" | None
        self._cell_step: Optional[Tuple[list, CellStep]] = None  # (weights, their CellStep)

    def _weights(self) -> list:
        return [self._params.get(n) for n in self._param_names]

    def _x(self, x) -> Tuple[np.ndarray, bool]:
        name = type(self).__name__
        arr = _host_array(name, x)
        if arr.dtype != self.dtype:
            raise TypeError(f"{name}: input x has dtype {arr.dtype}, expected {self.dtype}")
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input x must have shape (B, {self.input_size}) or "
                f"({self.input_size},), got {arr.shape}"
            )
        unbatched = arr.ndim == 1
        return (arr[None, None] if unbatched else arr[None]), unbatched

    def _h(self, what: str, h, B: int, unbatched: bool, grad: bool = False) -> Optional[np.ndarray]:
        """A state (B, H) (or (H,) unbatched), or with ``grad`` its upstream gradient, as
        (B, H); None stays None."""
        if h is None:
            return None
        name = type(self).__name__
        arr = np.asarray(h)
        want = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        if arr.shape != want:
            raise ValueError(f"{name}: {what} has shape {arr.shape}, expected {want}")
        if arr.dtype != self.dtype and not (grad and _float32_grad_ok(self.dtype, arr.dtype)):
            expected = _grad_dtypes(self) if grad else self.dtype
            raise TypeError(f"{name}: {what} has dtype {arr.dtype}, expected {expected}")
        return arr[None] if unbatched else arr

    def _step(self, x, states: list) -> tuple:
        """One step from the checked x (1, B, I) and states (B, n) or None: the final states,
        squeezed back to the caller's batching."""
        x, un = x
        training = self._grad_mode()
        fp32_kernels = self._impl is ops and self.precision == "fp32"
        step = self._inference_step() if fp32_kernels and not training else None
        if step is not None:
            B = x.shape[1]
            if any(s is not None for s in states):  # a None beside given states: zeros
                states = [np.zeros((B, step.H), step.dtype) if s is None else s for s in states]
            finals = step(x[0], *(s for s in states if s is not None))
            self._saved, self._last = None, "inference"
            return finals if not un else tuple(f[0] for f in finals)
        # The backend's <cell>_forward, called directly: a streaming loop pays this per step.
        out = self._forward(
            x, *states, *self._weights(), training, precision=self.precision, **self._options
        )
        saved = out[-1]
        self._saved = (saved, un) if saved is not None else None
        self._last = "inference" if saved is None else "training"
        return out[1:-1] if not un else tuple(f[0] for f in out[1:-1])

    def _inference_step(self) -> Optional[CellStep]:
        """The CellStep over the current parameter arrays (made again when one was replaced;
        in-place changes show through, as the step holds the arrays themselves), or None if
        it would hold a copy (a parameter that is not a C-contiguous array of the dtype)."""
        weights = self._weights()
        cached = self._cell_step
        if cached is None or any(a is not b for a, b in zip(cached[0], weights)):
            cached = self._cell_step = (weights, CellStep(self._cell, *weights, **self._options))
        return cached[1] if cached[1].holds_views else None

    def _step_backward(self, dfinals: list) -> tuple:
        """Gradients of the last step: dx and the initial states' gradients; parameter
        gradients accumulate into ``self.grads``."""
        saved, un = self._peek_saved()
        dfinals = [
            self._h(f"d{s}", g, saved.B, un, grad=True) for s, g in zip(self._spec.states, dfinals)
        ]
        self._saved = None  # one backward per step, as the kernels' saved state
        grads = self._spec.backward(self._impl, saved, None, dfinals)
        self._accumulate(self._spec.param_names(), [grads[w] for w in self._spec.weight_args()])
        return (_squeeze(grads["x"][0], un),) + tuple(
            _squeeze(grads[f"{s}0"], un) for s in self._spec.states
        )

    def _peek_saved(self):
        name = type(self).__name__
        if self._saved is None:
            if self._last is None:
                raise RuntimeError(f"{name}.backward: called before any step")
            if self._last == "inference":
                raise RuntimeError(
                    f"{name}.backward: the last step ran in inference mode "
                    f"(eval() or no_grad()) and kept nothing for backward"
                )
            raise RuntimeError(f"{name}.backward: already called for the last step")
        return self._saved


def _squeeze(a: np.ndarray, unbatched: bool) -> np.ndarray:
    return a[0] if unbatched else a


class RNNCell(_CellBase):
    """h' = act(W_ih x + b_ih + W_hh h + b_hh) for one step; ``h = cell(x, h)``."""

    _cell = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        dtype=np.float32,
        backend: str = "auto",
        seed: Optional[int] = None,
        precision: str = "fp32",
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size, hidden_size, bias, dtype, backend, seed, precision,
            nonlinearity=nonlinearity,
        )  # fmt: skip

    def __call__(self, x: ArrayLike, hx: Optional[ArrayLike] = None) -> np.ndarray:
        x = self._x(x)
        (h,) = self._step(x, [self._h("hx", hx, x[0].shape[1], x[1])])
        return h

    forward = __call__

    def backward(self, dh: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """Gradients of the last step: ``dx, dh_prev``; parameter gradients accumulate."""
        dx, dh0 = self._step_backward([dh])
        return dx, dh0


class GRUCell(RNNCell):
    """One GRU step (reset_after as in fastrnn.GRU); ``h = cell(x, h)``."""

    _cell = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dtype=np.float32,
        backend: str = "auto",
        seed: Optional[int] = None,
        reset_after: bool = True,
        precision: str = "fp32",
    ):
        self.reset_after = bool(reset_after)
        _CellBase.__init__(
            self, input_size, hidden_size, bias, dtype, backend, seed, precision,
            reset_after=self.reset_after,
        )  # fmt: skip


class LSTMCell(_CellBase):
    """One LSTM step; ``h, c = cell(x, (h, c))``, the state optional (zeros)."""

    _cell = "lstm"

    def __call__(self, x: ArrayLike, hx=None) -> Tuple[np.ndarray, np.ndarray]:
        x = self._x(x)
        states = [None, None]
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("LSTMCell: the state must be a tuple (h, c)")
            states = [self._h(name, v, x[0].shape[1], x[1]) for name, v in zip("hc", hx)]
        h, c = self._step(x, states)
        return h, c

    forward = __call__

    def backward(
        self, dh: Optional[ArrayLike], dc: Optional[ArrayLike] = None
    ) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """Gradients of the last step: ``dx, (dh_prev, dc_prev)``; parameter gradients
        accumulate into ``self.grads``. dh or dc may be None (zeros)."""
        dx, dh0, dc0 = self._step_backward([dh, dc])
        return dx, (dh0, dc0)
