"""Stateless orchestration of a stack of recurrent layers, shared by the NumPy layers
(:mod:`fastrnn.layers`) and the PyTorch drop-in (:mod:`fastrnn.torch`).

A stack is ``num_layers`` layers of ``D`` directions (1 or 2). Each (layer, direction) is one
call of ``impl``'s ``<cell>_forward`` / ``<cell>_backward`` (:mod:`fastrnn.ops` or
:mod:`fastrnn.reference`); the reverse direction runs the forward kernel on each sequence
reversed within its own length. The directions' outputs are concatenated along the last
axis, and a dropout mask (if any) multiplies each non-last layer's output.

Everything here works on rows already in the kernels' order: x (T, B, I) sorted by
decreasing length when ``packed`` (a :class:`fastrnn.packed.PackedBatch` whose rows are in
order, see :meth:`PackedBatch.sorted`) is given. Sorting and unsorting the caller's rows is
the caller's business.

The arrays are NumPy arrays by default; the few operations the stack makes on them itself
(concatenating directions, reversing sequences, zeros) go through an :class:`Arrays`, so
that the PyTorch drop-in runs the same code on CUDA tensors (``fastrnn.torch.function``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .cell_spec import CellSpec
from .packed import PackedBatch

__all__ = ["stack_forward", "stack_backward", "Tape", "Arrays", "HOST"]


class Arrays:
    """The array operations of a stack, on NumPy arrays; a subclass gives them for another
    kind of array (fastrnn.torch's for tensors)."""

    @staticmethod
    def concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
        """The directions' outputs (T, B, P) each, side by side: (T, B, D*P)."""
        return np.concatenate(arrays, axis=2)

    @staticmethod
    def stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Final states (B, n) each -> (len, B, n)."""
        return np.stack(arrays)

    @staticmethod
    def zeros(shape: Tuple[int, ...], like: np.ndarray) -> np.ndarray:
        return np.zeros(shape, like.dtype)

    @staticmethod
    def empty(shape: Tuple[int, ...], like: np.ndarray) -> np.ndarray:
        return np.empty(shape, like.dtype)

    @staticmethod
    def contiguous(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a)

    @staticmethod
    def reverse(a: np.ndarray, packed: Optional[PackedBatch]) -> np.ndarray:
        """a (T, B, N) with each sequence reversed in time within its own length."""
        return a[::-1] if packed is None else packed.reverse(a)


HOST = Arrays()

# layer -> the (T, B, D*P) mask for that layer's output, or a callback drawing it from the
# output (layer, output) -> mask or None (no dropout after that layer).
Masks = Union[Mapping[int, np.ndarray], Callable[[int, np.ndarray], Optional[np.ndarray]], None]
# weights[layer][d]: the kernels' weight arguments (w_ih, w_hh, b_ih, b_hh[, w_hr]).
Weights = Sequence[Sequence[Sequence[Optional[np.ndarray]]]]


class Tape:
    """What :func:`stack_forward` in training mode keeps for :func:`stack_backward`: the
    kernels' saved records per (layer*D + d), the dropout masks per layer, and the shapes.
    The records are consumed by one backward (the kernels overwrite them in place)."""

    def __init__(self, impl, cell: CellSpec, packed, D: int, L: int, T: int, B: int, x, arrays):
        self.impl, self.cell, self.packed, self.arrays = impl, cell, packed, arrays
        self.D, self.L, self.T, self.B = D, L, T, B
        self.like = arrays.empty((0,), x)  # x's kind, dtype and device (not x's memory)
        self.saved: Dict[int, Any] = {}
        self.masks: Dict[int, np.ndarray] = {}
        self.P = 0  # the width of one direction's output
        self.widths: List[int] = []  # the width of each state
        self.consumed = False


def stack_forward(
    impl,
    cell: CellSpec,
    options: Mapping[str, Any],
    x: np.ndarray,
    init: Sequence[Optional[Sequence[Optional[np.ndarray]]]],
    weights: Weights,
    packed: Optional[PackedBatch],
    D: int,
    masks: Masks = None,
    training: bool = True,
    arrays: Arrays = HOST,
    extras: Optional[Callable[[int, int], Dict[str, Any]]] = None,
) -> Tuple[np.ndarray, Tuple[np.ndarray, ...], Optional[Tape]]:
    """Runs the stack on x (T, B, I), rows in the kernels' order.

    - ``init``: one entry per state of the cell (``cell.states``): None (zeros everywhere) or
      indexable by layer*D + d giving that (layer, direction)'s initial state (B, n) or None,
      e.g. an array (L*D, B, n).
    - ``weights[layer][d]``: (w_ih, w_hh, b_ih, b_hh[, w_hr]); None biases for none.
    - ``packed``: the lengths, rows already in order, or None (every row runs T steps).
    - ``masks``: dropout masks, see :data:`Masks`; the masks used are kept in the tape.
    - ``training``: the kernels' mode; inference keeps nothing and returns no tape.
    - ``arrays``: the operations on x's kind of array (NumPy's by default).
    - ``extras``: (layer, d) -> more keyword arguments of that call's kernel (the
      regularization masks, ``zoneout`` and ``recurrent_mask``), or None.

    Returns ``y`` (T, B, D*P), the final states (one (L*D, B, n) array per state) and the
    tape (None in inference).
    """
    L = len(weights)
    T, B = x.shape[:2]
    tape = Tape(impl, cell, packed, D, L, T, B, x, arrays) if training else None
    finals: List[List[np.ndarray]] = [[] for _ in cell.states]
    inp = x
    for layer in range(L):
        outs = []
        for d in range(D):
            k = layer * D + d
            xi = inp if d == 0 else arrays.reverse(inp, packed)
            y, fin, saved = cell.forward(
                impl,
                xi,
                [None if s is None else s[k] for s in init],
                weights[layer][d],
                training=training,
                options=options if extras is None else {**options, **extras(layer, d)},
                lengths=packed,
            )
            outs.append(y if d == 0 else arrays.reverse(y, packed))
            for out, f in zip(finals, fin):
                out.append(f)
            if tape is not None:
                tape.saved[k] = saved
        inp = arrays.concat(outs) if D == 2 else outs[0]
        if layer < L - 1 and masks is not None:
            mask = masks(layer, inp) if callable(masks) else masks.get(layer)
            if mask is not None:
                inp = inp * mask
                if tape is not None:
                    tape.masks[layer] = mask
    stacked = tuple(arrays.stack(f) if len(f) > 1 else f[0][None] for f in finals)
    if tape is not None:
        tape.P = inp.shape[2] // D
        tape.widths = [f.shape[2] for f in stacked]
    return inp, stacked, tape


def stack_backward(
    tape: Tape,
    dy: Optional[np.ndarray],
    dfinals: Sequence[Optional[np.ndarray]],
    need_dx: bool = True,
) -> Tuple[Optional[np.ndarray], List[np.ndarray], List[List[Dict[str, Any]]]]:
    """BPTT through the forward that made ``tape`` (consuming it).

    dy (T, B, D*P) and each of ``dfinals`` (one (L*D, B, n) per state) may be None (zeros).
    Returns ``dx`` (T, B, I) (None unless ``need_dx``), the initial states' gradients (one
    (L*D, B, n) array per state) and the weights' gradients ``grads[layer][d]``: name ->
    gradient, named as ``cell.weight_args`` (None for absent biases).
    """
    if tape.consumed:
        raise RuntimeError("stack_backward: this tape was already used by a backward")
    tape.consumed = True
    cell, impl, packed, arrays = tape.cell, tape.impl, tape.packed, tape.arrays
    D, L, T, B, P = tape.D, tape.L, tape.T, tape.B, tape.P
    dinit = [arrays.empty((L * D, B, n), tape.like) for n in tape.widths]
    wgrads: List[List[Dict[str, Any]]] = [[{} for _ in range(D)] for _ in range(L)]
    d_out = dy if dy is not None else arrays.zeros((T, B, D * P), tape.like)
    for layer in reversed(range(L)):
        if layer in tape.masks:
            d_out = d_out * tape.masks[layer]
        dx = None
        for d in range(D):
            k = layer * D + d
            dy_d = arrays.contiguous(d_out[:, :, d * P : (d + 1) * P])
            if d == 1:
                dy_d = arrays.reverse(dy_d, packed)
            grads = cell.backward(
                impl, tape.saved.pop(k), dy_d, [None if g is None else g[k] for g in dfinals]
            )
            for out, s in zip(dinit, cell.states):
                out[k] = grads[f"{s}0"]
            names = cell.weight_args("w_hr" in grads) + cell.layer_norm_args
            wgrads[layer][d] = {w: grads[w] for w in names if w in grads}
            if layer == 0 and not need_dx:
                continue
            dx_d = grads["x"] if d == 0 else arrays.reverse(grads["x"], packed)
            dx = dx_d if dx is None else dx + dx_d
        d_out = dx
    return d_out, dinit, wgrads
