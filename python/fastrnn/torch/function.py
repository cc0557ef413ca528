"""One ``torch.autograd.Function`` per RNN call: the forward runs
:func:`fastrnn.stack.stack_forward` with :mod:`fastrnn.ops` on zero-copy NumPy views of CPU
tensors, the backward :func:`fastrnn.stack.stack_backward`.

The caller's layouts (time-major, batch_first, unbatched, a PackedSequence's data (N, I), a
cell's (B, I)) are mapped to the kernels' (T, B, I) with rows sorted by length, and back,
here. A PackedSequence's data is scattered into the padded sorted layout with one index
(its rows are already sorted by length, time step by time step) and gathered back with the
same index.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import ops
from ..cell_spec import CellSpec
from ..packed import PackedBatch
from ..stack import Tape, stack_backward, stack_forward

__all__ = ["Run", "run"]

DOUBLE_BACKWARD_ERROR = (
    "fastrnn.torch: double backward (gradients of gradients, create_graph=True) is not "
    "supported by fastrnn's fused kernels (as with cuDNN's RNNs). Use torch.nn's class for "
    "this computation, or run it inside `with fastrnn.torch.disabled():`, which runs "
    "torch.nn's own implementation."
)


class Run:
    """One call's configuration: everything but the tensors.

    ``layout``: "seq" (x (T, B, I), (B, T, I) with batch_first, or unbatched (T, I)),
    "packed" (a PackedSequence's data (N, I)) or "cell" (x (B, I) or unbatched (I,)).
    ``masks``: layer -> dropout mask (T, B, D*P) in the kernels' layout, or None.
    """

    def __init__(
        self,
        cell: CellSpec,
        options: Mapping[str, Any],
        L: int,
        D: int,
        layout: str,
        n_hx: int,
        bias: bool,
        projection: bool,
        *,
        batch_first: bool = False,
        unbatched: bool = False,
        packed: Optional[PackedBatch] = None,
        masks: Optional[Dict[int, np.ndarray]] = None,
    ) -> None:
        self.cell, self.options, self.L, self.D = cell, options, L, D
        self.layout, self.n_hx, self.bias, self.projection = layout, n_hx, bias, projection
        self.batch_first, self.unbatched = batch_first, unbatched
        self.packed = packed
        self.run_packed = None if packed is None else packed.sorted()
        # Flat (T*B) positions of a PackedSequence's rows in the padded sorted layout.
        self.index = None if packed is None else np.flatnonzero(packed.padding_mask())
        self.masks = masks
        self.n_w = 2 + 2 * bias + projection  # weight tensors per (layer, direction)

    # -- layouts: caller's <-> kernels' (T, B, N), rows sorted
    def seq_in(self, a: np.ndarray) -> np.ndarray:
        """x or dy in the caller's layout -> (T, B, N)."""
        if self.layout == "cell":
            return a.reshape(1, -1, a.shape[-1])
        if self.layout == "packed":
            pk = self.packed
            out = np.zeros((pk.T * pk.B, a.shape[1]), a.dtype)
            out[self.index] = a
            return out.reshape(pk.T, pk.B, -1)
        if self.unbatched:
            return a[:, None]
        return a.transpose(1, 0, 2) if self.batch_first else a

    def seq_out(self, a: np.ndarray) -> np.ndarray:
        """(T, B, N) -> the caller's layout."""
        if self.layout == "cell":
            return a[0, 0] if self.unbatched else a[0]
        if self.layout == "packed":
            return a.reshape(-1, a.shape[2])[self.index]
        if self.unbatched:
            return a[:, 0]
        return a.transpose(1, 0, 2) if self.batch_first else a

    def state_in(self, a: np.ndarray) -> np.ndarray:
        """An initial state or a final state's gradient -> (L*D, B, n), rows sorted."""
        if self.layout == "cell":
            return a.reshape(1, -1, a.shape[-1])
        if self.unbatched:
            return a[:, None]
        return a if self.packed is None else self.packed.sort(a, 1)

    def state_out(self, a: np.ndarray) -> np.ndarray:
        """(L*D, B, n), rows sorted -> the caller's layout and row order."""
        if self.layout == "cell":
            return a[0, 0] if self.unbatched else a[0]
        if self.unbatched:
            return a[:, 0]
        return a if self.packed is None else self.packed.unsort(a, 1)

    def weights(self, flat: Sequence[np.ndarray]) -> List[List[List[Optional[np.ndarray]]]]:
        """torch's flat weight list -> weights[layer][d] as the kernels take them."""
        out = []
        for layer in range(self.L):
            dirs = []
            for d in range(self.D):
                w = flat[(layer * self.D + d) * self.n_w :][: self.n_w]
                dirs.append(
                    [w[0], w[1]]
                    + ([w[2], w[3]] if self.bias else [None, None])
                    + ([w[-1]] if self.projection else [])
                )
            out.append(dirs)
        return out

    # -- the computation on NumPy arrays
    def forward(
        self, arrays: Sequence[np.ndarray], training: bool
    ) -> Tuple[np.ndarray, List[np.ndarray], Optional[Tape]]:
        """arrays: x, the n_hx initial states, the flat weights. Returns y and the final
        states in the caller's layout, and the tape (training)."""
        hx = arrays[1 : 1 + self.n_hx]
        init = [self.state_in(h) for h in hx] if hx else [None] * len(self.cell.states)
        y, finals, tape = stack_forward(
            ops,
            self.cell,
            self.options,
            self.seq_in(arrays[0]),
            init,
            self.weights(arrays[1 + self.n_hx :]),
            self.run_packed,
            self.D,
            self.masks,
            training,
        )
        return self.seq_out(y), [self.state_out(f) for f in finals], tape

    def backward(
        self, tape: Tape, dy: Optional[np.ndarray], dfinals: Sequence, needs: Sequence[bool]
    ) -> List[Optional[np.ndarray]]:
        """Gradients of (x, the initial states, the flat weights) as NumPy arrays, None
        where ``needs`` (ctx.needs_input_grad without the leading Run) is False."""
        dx, dinit, wgrads = stack_backward(
            tape,
            None if dy is None else self.seq_in(dy),
            [None if g is None else self.state_in(g) for g in dfinals],
            need_dx=needs[0],
        )
        out: List[Optional[np.ndarray]] = [
            np.ascontiguousarray(self.seq_out(dx)) if needs[0] else None
        ]
        out += [self.state_out(g) for g in dinit[: self.n_hx]]
        names = self.cell.weight_args(self.projection)
        if not self.bias:
            names = tuple(n for n in names if not n.startswith("b_"))
        for layer in range(self.L):
            for d in range(self.D):
                out += [wgrads[layer][d][n] for n in names]
        return [g if need else None for g, need in zip(out, needs)]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _tensors(arrays: Sequence[np.ndarray]) -> Tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in arrays)


class _NoDoubleBackward(torch.autograd.Function):
    """Under create_graph=True, the gradients pass through this node, which is connected
    to the RNN's inputs and parameters and refuses to be differentiated: a second
    derivative through the fused kernels raises instead of silently missing terms."""

    @staticmethod
    def forward(ctx, n: int, *args: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(g.clone() for g in args[:n])

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(DOUBLE_BACKWARD_ERROR)


class _StackFunction(torch.autograd.Function):
    """Inputs: the Run, x, the initial states, the flat weights. Outputs: y, the final
    states."""

    @staticmethod
    def forward(ctx, plan: Run, x: torch.Tensor, *rest: torch.Tensor):
        ctx.set_materialize_grads(False)
        y, finals, tape = plan.forward([_numpy(t) for t in (x, *rest)], training=True)
        ctx.plan, ctx.tape = plan, tape
        ctx.save_for_backward(x, *rest)
        return _tensors([y, *finals])

    @staticmethod
    def backward(ctx, dy, *dfinals):
        plan: Run = ctx.plan
        inputs = ctx.saved_tensors  # checks that no input was modified in place
        tape = ctx.tape
        if tape.consumed:  # retain_graph: the kernels' records were used up; run again
            _, _, tape = plan.forward([_numpy(t) for t in inputs], training=True)
        needs = ctx.needs_input_grad[1:]
        grads = plan.backward(
            tape,
            None if dy is None else _numpy(dy),
            [None if g is None else _numpy(g) for g in dfinals],
            needs,
        )
        out = [None if g is None else torch.from_numpy(g) for g in grads]
        if torch.is_grad_enabled():  # create_graph=True
            connected = [t for t in inputs if t.requires_grad]
            present = [i for i, g in enumerate(out) if g is not None]
            if connected and present:
                wrapped = _NoDoubleBackward.apply(
                    len(present), *(out[i] for i in present), *connected
                )
                for i, g in zip(present, wrapped):
                    out[i] = g
        return (None, *out)


def run(plan: Run, x: torch.Tensor, hx: Sequence[torch.Tensor], flat: Sequence[torch.Tensor]):
    """Runs one call: through the autograd Function when a gradient may be asked for, else
    in the kernels' inference mode (nothing kept). Returns (y, final states) as tensors."""
    if torch.is_grad_enabled() and (
        x.requires_grad or any(t.requires_grad for t in hx) or any(w.requires_grad for w in flat)
    ):
        out = _StackFunction.apply(plan, x, *hx, *flat)
    else:
        y, finals, _ = plan.forward([_numpy(t) for t in (x, *hx, *flat)], training=False)
        out = _tensors([y, *finals])
    return out[0], out[1:]
