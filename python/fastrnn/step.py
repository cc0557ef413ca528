"""One cell's inference step with its weights checked once: the streaming path.

A streaming caller runs one time step per call with the same weights (an online model, a
decoder, the PyTorch drop-in's cells under ``torch.no_grad()``). :func:`fastrnn.ops`'s
functions check and convert every argument of every call, which at batch 1 costs several
times what the kernel does (measured, AMD EPYC 2-vCPU: an LSTM step at H=8 is 2.7 us in the
kernel and 12 us through ``ops.lstm_forward``). :class:`CellStep` checks the weights when it
is made and, per call, only x's and the states' dtype and shapes, then calls the CPU kernel
for one step (T = 1) by keyword.

The weights are held, not copied, when they are C-contiguous arrays of the dtype (then
changing them in place shows in the next step; :attr:`CellStep.holds_views` says so);
others are copied once, a snapshot. A CellStep made from other arrays is needed after
replacing them.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import _C
from .cell_spec import spec
from .ops import _as_float_array, _check_shape

__all__ = ["CellStep"]

# Per cell kind: the kernel's arguments that do not change between inference steps (besides
# the weights), and its scratch outputs of shape (B, H) (what the kernel keeps of the step).
_STATIC: Dict[str, Dict[str, Any]] = {
    "lstm": dict(w_hr=None, gates=None, m=None, training=False),
    "gru": dict(gates=None, training=False),
    "rnn": dict(gates=None),
}
_SCRATCH = {"lstm": ("cells",), "gru": ("extra",), "rnn": ()}


class CellStep:
    """``step(x, *states)``: one inference step of a cell kind ("lstm", "gru", "rnn") on the
    CPU kernels, with the weights checked once.

    - ``w_ih`` (G*H, I), ``w_hh`` (G*H, H), ``b_ih``, ``b_hh`` (G*H,) or both None; float32
      or float64, the dtype of every call; options as the cell's forward takes them
      (``reset_after`` for "gru", ``nonlinearity`` for "rnn").
    - A call takes x (B, I) and the cell's states (B, H) each (``h``; ``h, c`` for "lstm"),
      or no states (zeros), and returns the new states as new arrays (B, H); B = 0 gives
      the (empty) states back.
    """

    def __init__(
        self,
        cell: str,
        w_ih: ArrayLike,
        w_hh: ArrayLike,
        b_ih: Optional[ArrayLike] = None,
        b_hh: Optional[ArrayLike] = None,
        **options: Any,
    ) -> None:
        fn = "CellStep"
        self.cell = spec(cell)
        G = self.cell.G
        given = (w_ih, w_hh, b_ih, b_hh)
        w_hh = _as_float_array(fn, "w_hh", w_hh)
        if w_hh.ndim != 2 or w_hh.shape[0] != G * w_hh.shape[1] or w_hh.shape[1] == 0:
            raise ValueError(
                f"{fn}: argument 'w_hh' must be ({G}*H, H) with H > 0, got shape {w_hh.shape}"
            )
        H = w_hh.shape[1]
        self.dtype = w_hh.dtype
        w_ih = _as_float_array(fn, "w_ih", w_ih, self.dtype, of="w_hh")
        if w_ih.ndim != 2 or w_ih.shape[1] == 0:
            raise ValueError(f"{fn}: argument 'w_ih' must be ({G}*H, I), got shape {w_ih.shape}")
        _check_shape(fn, "w_ih", w_ih, (G * H, w_ih.shape[1]), f"({G}*H, I) with H={H}")
        if (b_ih is None) != (b_hh is None):
            raise ValueError(f"{fn}: b_ih and b_hh must both be arrays or both be None")
        biases = []
        for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
            if b is not None:
                b = _as_float_array(fn, name, b, self.dtype, of="w_hh")
                _check_shape(fn, name, b, (G * H,), f"({G}*H,) with H={H}")
            biases.append(b)
        self.H, self.I = H, w_ih.shape[1]
        options = self.cell.check_options(fn, options)
        self._kernel = getattr(_C, self.cell.forward_name)
        held = [None if a is None else np.ascontiguousarray(a) for a in (w_ih, w_hh, *biases)]
        # Whether the step holds the caller's own arrays (in-place changes show) or copies.
        self.holds_views = all(h is g for h, g in zip(held, given))
        self._static = dict(
            _STATIC[self.cell.name],
            **dict.fromkeys(self.cell.forward_extras),
            w_ih=held[0],
            w_hh=held[1],
            b_ih=held[2],
            b_hh=held[3],
            batch_sizes=None,
            H=H,
            bf16=False,
            **options,
        )
        if self.cell.name == "lstm":
            self._static["P"] = H
        self._states = tuple(f"{s}0" for s in self.cell.states)
        self._finals = tuple(f"{s}_n" for s in self.cell.states)
        self._scratch = _SCRATCH[self.cell.name]

    def __call__(self, x: np.ndarray, *states: np.ndarray) -> Tuple[np.ndarray, ...]:
        """The states after one step from x (B, I) and ``states`` (B, H) each (none:
        zeros); new arrays (B, H)."""
        fn, dtype, H = "CellStep", self.dtype, self.H
        if type(x) is not np.ndarray or x.dtype != dtype or x.ndim != 2 or x.shape[1] != self.I:
            raise ValueError(
                f"{fn}: x must be a {dtype} array (B, {self.I}), got "
                f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
            )
        B = x.shape[0]
        if states and len(states) != len(self._states):
            raise ValueError(
                f"{fn}: a {self.cell.name} step takes {len(self._states)} states "
                f"({', '.join(self.cell.states)}) or none, got {len(states)}"
            )
        args = dict(self._static, x=np.ascontiguousarray(x).reshape(1, B, self.I))
        for name, s in zip(self._states, states):
            if type(s) is not np.ndarray or s.dtype != dtype or s.shape != (B, H):
                raise ValueError(
                    f"{fn}: state {name[:-1]} must be a {dtype} array (B, H) = {(B, H)}, got "
                    f"{getattr(s, 'dtype', type(s).__name__)} {getattr(s, 'shape', '')}"
                )
            args[name] = np.ascontiguousarray(s)
        for name in self._states[len(states) :]:
            args[name] = np.zeros((B, H), dtype)
        finals = tuple(np.empty((B, H), dtype) for _ in self._finals)
        args.update(zip(self._finals, finals))
        for name in self._scratch:
            args[name] = np.empty((B, H), dtype)
        args["y"] = np.empty((1, B, H), dtype)
        self._kernel(**args)
        return finals
