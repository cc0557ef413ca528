"""One ``torch.autograd.Function`` per RNN call: the forward runs
:func:`fastrnn.stack.stack_forward`, the backward :func:`fastrnn.stack.stack_backward`, on
one of two routes (:func:`route_of`):

- CPU tensors: :mod:`fastrnn.ops`'s CPU kernels on zero-copy NumPy views of the tensors;
- CUDA tensors, where fastrnn's CUDA backend is usable: its kernels on views of the tensors
  taken through DLPack (no copies), the stack's own array operations in torch on the device.

The caller's layouts (time-major, batch_first, unbatched, a PackedSequence's data (N, I), a
cell's (B, I)) are mapped to the kernels' (T, B, I) with rows sorted by length, and back,
here. A PackedSequence's data is scattered into the padded sorted layout with one index
(its rows are already sorted by length, time step by time step) and gathered back with the
same index.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import cuda, ops
from ..cell_spec import CellSpec
from ..packed import PackedBatch
from ..saved import SavedState
from ..stack import Arrays, Tape, stack_backward, stack_forward

__all__ = ["Run", "run", "route_of"]

DOUBLE_BACKWARD_ERROR = (
    "fastrnn.torch: double backward (gradients of gradients, create_graph=True) is not "
    "supported by fastrnn's fused kernels (as with cuDNN's RNNs). Use torch.nn's class for "
    "this computation, or run it inside `with fastrnn.torch.disabled():`, which runs "
    "torch.nn's own implementation."
)


class _NumpyViews(Arrays):
    """The CPU route: tensors as NumPy views of their memory, fastrnn.ops's CPU kernels, the
    stack's array operations in NumPy."""

    impl = ops
    device = False

    @staticmethod
    def of_tensors(tensors: Sequence[torch.Tensor]) -> List[np.ndarray]:
        return [t.detach().numpy() for t in tensors]

    @staticmethod
    def tensors(arrays: Sequence[np.ndarray]) -> Tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(a) for a in arrays)

    @staticmethod
    def scatter(a: np.ndarray, index: np.ndarray, rows: int) -> np.ndarray:
        """(rows, N) zeros with a (len(index), N) written to rows ``index``."""
        out = np.zeros((rows, a.shape[1]), a.dtype)
        out[index] = a
        return out

    @staticmethod
    def gather(a: np.ndarray, index: np.ndarray) -> np.ndarray:
        return a[index]

    @staticmethod
    def take(a: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
        return np.take(a, index, axis=axis)


class _DLPackOps:
    """fastrnn.ops's functions on torch tensors of a device that fastrnn's CUDA backend runs:
    each tensor goes to the kernels as a view (the backend's DeviceArray) through DLPack, each
    result comes back as a tensor the same way. The backend orders its work (on the legacy
    default stream) after the tensors' producers and before the results' consumers through
    DLPack's stream argument."""

    def __init__(self, kernels) -> None:
        self.kernels = kernels  # fastrnn._cuda, or the tests' emulated device

    def _in(self, value):
        if not isinstance(value, torch.Tensor):
            return value
        t = value.detach().contiguous()
        capsule = t.__dlpack__(stream=1) if t.is_cuda else t.__dlpack__()  # 1: legacy default
        return self.kernels.DeviceArray.from_dlpack(capsule)

    @staticmethod
    def _out(value):
        if value is None or isinstance(value, SavedState):
            return value
        return torch.from_dlpack(value)

    def __getattr__(self, name: str):
        fn = getattr(ops, name)  # {lstm,gru,rnn}_{forward,backward}
        forward = name.endswith("_forward")

        def call(*args, **kwargs):
            args = [self._in(a) for a in args]
            kwargs = {k: self._in(v) for k, v in kwargs.items()}
            if forward:
                kwargs["backend"] = "cuda"
            return tuple(self._out(r) for r in fn(*args, **kwargs))

        return call


class _DeviceTensors(Arrays):
    """The CUDA route: the tensors themselves, the CUDA backend's kernels through DLPack
    (:class:`_DLPackOps`), the stack's array operations in torch on the tensors' device."""

    device = True

    def __init__(self, kernels) -> None:
        self.impl = _DLPackOps(kernels)

    @staticmethod
    def of_tensors(tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        return [t.detach() for t in tensors]

    @staticmethod
    def tensors(arrays: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        return tuple(arrays)

    @staticmethod
    def concat(arrays: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(arrays), dim=2)

    @staticmethod
    def stack(arrays: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(arrays))

    @staticmethod
    def zeros(shape: Tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)

    @staticmethod
    def empty(shape: Tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.empty(shape, dtype=like.dtype, device=like.device)

    @staticmethod
    def contiguous(a: torch.Tensor) -> torch.Tensor:
        return a.contiguous()

    @staticmethod
    def reverse(a: torch.Tensor, packed: Optional[PackedBatch]) -> torch.Tensor:
        if packed is None:
            return a.flip(0)
        index = _index(packed.reverse_index.ravel(), device=a.device)
        out = a.reshape(a.shape[0] * a.shape[1], -1)[index].reshape(a.shape)
        out[_index(~packed.padding_mask(), device=a.device)] = 0
        return out

    @staticmethod
    def scatter(a: torch.Tensor, index: np.ndarray, rows: int) -> torch.Tensor:
        out = torch.zeros((rows, a.shape[1]), dtype=a.dtype, device=a.device)
        out[_index(index, device=a.device)] = a
        return out

    @staticmethod
    def gather(a: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        return a[_index(index, device=a.device)]

    @staticmethod
    def take(a: torch.Tensor, index: np.ndarray, axis: int) -> torch.Tensor:
        return a.index_select(axis, _index(index, device=a.device))


def _index(index: np.ndarray, device: torch.device) -> torch.Tensor:
    """A NumPy index array (the packed batch's, read-only) as a tensor on ``device``."""
    return torch.tensor(index, device=device)


HOST = _NumpyViews()
_device_routes: Dict[Any, _DeviceTensors] = {}  # device module -> its route
_cpu_as_cuda = contextvars.ContextVar("fastrnn_torch_cpu_as_cuda", default=False)


@contextlib.contextmanager
def _cpu_tensors_as_cuda(module) -> Iterator[None]:
    """Private, for the tests: within this context (this thread or task) CPU tensors take the
    CUDA route, on ``module`` (``fastrnn._testing.cuda_emulation``, whose device memory is
    host memory and whose DLPack device is the CPU), so that the route's code runs on
    machines without a GPU."""
    token = _cpu_as_cuda.set(True)
    try:
        with cuda._use_device_module(module):
            yield
    finally:
        _cpu_as_cuda.reset(token)


def route_of(device: torch.device):
    """The route for tensors on ``device``: the CPU kernels on NumPy views for the CPU; the
    CUDA backend for a CUDA device where it is usable and torch runs on the device's
    default stream (fastrnn's kernels run there); None otherwise (fall back to torch)."""
    if device.type == "cpu" and not _cpu_as_cuda.get():
        return HOST
    if device.type not in ("cpu", "cuda"):
        return None
    kernels = cuda.usable_module()
    if kernels is None:
        return None
    if device.type == "cuda" and torch.cuda.current_stream(device) != torch.cuda.default_stream(
        device
    ):
        return None
    route = _device_routes.get(kernels)
    if route is None:
        route = _device_routes[kernels] = _DeviceTensors(kernels)
    return route


class Run:
    """One call's configuration: everything but the tensors.

    ``layout``: "seq" (x (T, B, I), (B, T, I) with batch_first, or unbatched (T, I)),
    "packed" (a PackedSequence's data (N, I)) or "cell" (x (B, I) or unbatched (I,)).
    ``masks``: layer -> dropout mask (T, B, D*P) in the kernels' layout, or None.
    ``extras``: (layer, d) -> the regularization arguments of that call's kernel
    (``zoneout``, ``recurrent_mask``; the route's arrays, rows in the kernels' order), or None.
    ``layer_norm``: the flat weights end with each (layer, direction)'s layer-norm parameters.
    ``route``: where the tensors go (:func:`route_of`).
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
        masks: Optional[Dict[int, Any]] = None,
        route: Arrays = HOST,
        extras: Optional[Dict[Tuple[int, int], Dict[str, Any]]] = None,
        layer_norm: bool = False,
    ) -> None:
        self.cell, self.options, self.L, self.D = cell, options, L, D
        self.layout, self.n_hx, self.bias, self.projection = layout, n_hx, bias, projection
        self.batch_first, self.unbatched = batch_first, unbatched
        self.packed = packed
        self.run_packed = None if packed is None else packed.sorted()
        # Flat (T*B) positions of a PackedSequence's rows in the padded sorted layout.
        self.index = None if packed is None else np.flatnonzero(packed.padding_mask())
        self.masks, self.route, self.extras = masks, route, extras
        self.n_w = 2 + 2 * bias + projection  # weight tensors per (layer, direction)
        # Layer norm: its parameters per (layer, direction), after all the weights in the flat
        # list (the layer-normalized classes' order).
        self.n_ln = len(cell.layer_norm_args) if layer_norm else 0

    # -- layouts: caller's <-> kernels' (T, B, N), rows sorted
    def seq_in(self, a: np.ndarray) -> np.ndarray:
        """x or dy in the caller's layout -> (T, B, N)."""
        if self.layout == "cell":
            return a.reshape(1, -1, a.shape[-1])
        if self.layout == "packed":
            pk = self.packed
            return self.route.scatter(a, self.index, pk.T * pk.B).reshape(pk.T, pk.B, -1)
        if self.unbatched:
            return a[:, None]
        return a.swapaxes(0, 1) if self.batch_first else a

    def seq_out(self, a: np.ndarray) -> np.ndarray:
        """(T, B, N) -> the caller's layout."""
        if self.layout == "cell":
            return a[0, 0] if self.unbatched else a[0]
        if self.layout == "packed":
            return self.route.gather(a.reshape(-1, a.shape[2]), self.index)
        if self.unbatched:
            return a[:, 0]
        return a.swapaxes(0, 1) if self.batch_first else a

    def state_in(self, a: np.ndarray) -> np.ndarray:
        """An initial state or a final state's gradient -> (L*D, B, n), rows sorted."""
        if self.layout == "cell":
            return a.reshape(1, -1, a.shape[-1])
        if self.unbatched:
            return a[:, None]
        if self.packed is None or self.packed.identity:
            return a
        return self.route.take(a, self.packed.sorted_indices, 1)

    def state_out(self, a: np.ndarray) -> np.ndarray:
        """(L*D, B, n), rows sorted -> the caller's layout and row order."""
        if self.layout == "cell":
            return a[0, 0] if self.unbatched else a[0]
        if self.unbatched:
            return a[:, 0]
        if self.packed is None or self.packed.identity:
            return a
        return self.route.take(a, self.packed.unsorted_indices, 1)

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

    def call_extras(self, flat: Sequence[np.ndarray]):
        """(layer, d) -> the extra keyword arguments of that call's kernel (the
        regularization masks, the layer-norm parameters from the flat weights), or None."""
        if not self.extras and not self.n_ln:
            return None
        tail = flat[self.L * self.D * self.n_w :]

        def extras(layer: int, d: int) -> dict:
            out = dict(self.extras[layer, d]) if self.extras else {}
            if self.n_ln:
                k = (layer * self.D + d) * self.n_ln
                out["layer_norm"] = tuple(tail[k : k + self.n_ln])
            return out

        return extras

    # -- the computation on NumPy arrays
    def forward(
        self, arrays: Sequence[np.ndarray], training: bool
    ) -> Tuple[np.ndarray, List[np.ndarray], Optional[Tape]]:
        """arrays: x, the n_hx initial states, the flat weights. Returns y and the final
        states in the caller's layout, and the tape (training)."""
        hx = arrays[1 : 1 + self.n_hx]
        init = [self.state_in(h) for h in hx] if hx else [None] * len(self.cell.states)
        y, finals, tape = stack_forward(
            self.route.impl,
            self.cell,
            self.options,
            self.seq_in(arrays[0]),
            init,
            self.weights(arrays[1 + self.n_hx :]),
            self.run_packed,
            self.D,
            self.masks,
            training,
            self.route,
            extras=self.call_extras(arrays[1 + self.n_hx :]),
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
            self.route.contiguous(self.seq_out(dx)) if needs[0] else None
        ]
        out += [self.state_out(g) for g in dinit[: self.n_hx]]
        names = self.cell.weight_args(self.projection)
        if not self.bias:
            names = tuple(n for n in names if not n.startswith("b_"))
        for layer in range(self.L):
            for d in range(self.D):
                out += [wgrads[layer][d][n] for n in names]
        for layer in range(self.L):
            for d in range(self.D):
                out += [wgrads[layer][d][n] for n in self.cell.layer_norm_args[: self.n_ln]]
        return [g if need else None for g, need in zip(out, needs)]


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
    """Inputs: the Run, the weights as the route's arrays (or None), x, the initial states,
    the flat weights. Outputs: y, the final states."""

    @staticmethod
    def forward(ctx, plan: Run, flat_arrays: Optional[list], x: torch.Tensor, *rest: torch.Tensor):
        ctx.set_materialize_grads(False)
        y, finals, tape = plan.forward(_arrays(plan, x, rest, flat_arrays), training=True)
        ctx.plan, ctx.tape = plan, tape
        ctx.save_for_backward(x, *rest)
        return plan.route.tensors([y, *finals])

    @staticmethod
    def backward(ctx, dy, *dfinals):
        plan: Run = ctx.plan
        inputs = ctx.saved_tensors  # checks that no input was modified in place
        tape = ctx.tape
        if tape.consumed:  # retain_graph: the kernels' records were used up; run again
            _, _, tape = plan.forward(plan.route.of_tensors(inputs), training=True)
        needs = ctx.needs_input_grad[2:]
        route = plan.route
        grads = plan.backward(
            tape,
            None if dy is None else route.of_tensors([dy])[0],
            [None if g is None else route.of_tensors([g])[0] for g in dfinals],
            needs,
        )
        out = [None if g is None else route.tensors([g])[0] for g in grads]
        if torch.is_grad_enabled():  # create_graph=True
            connected = [t for t in inputs if t.requires_grad]
            present = [i for i, g in enumerate(out) if g is not None]
            if connected and present:
                wrapped = _NoDoubleBackward.apply(
                    len(present), *(out[i] for i in present), *connected
                )
                for i, g in zip(present, wrapped):
                    out[i] = g
        return (None, None, *out)


def _arrays(plan: Run, x: torch.Tensor, rest: Sequence[torch.Tensor], flat_arrays) -> list:
    """x, the initial states and the weights (rest: states then weights) as the route's
    arrays; the weights' from ``flat_arrays`` where given."""
    if flat_arrays is None:
        return plan.route.of_tensors((x, *rest))
    return plan.route.of_tensors((x, *rest[: plan.n_hx])) + list(flat_arrays)


def run(
    plan: Run,
    x: torch.Tensor,
    hx: Sequence[torch.Tensor],
    flat: Sequence[torch.Tensor],
    flat_arrays: Optional[list] = None,
):
    """Runs one call: through the autograd Function when a gradient may be asked for, else
    in the kernels' inference mode (nothing kept). ``flat_arrays``: the weights already as
    the route's arrays (the module keeps their NumPy views), or None. Returns (y, final
    states) as tensors."""
    if torch.is_grad_enabled() and (
        x.requires_grad or any(t.requires_grad for t in hx) or any(w.requires_grad for w in flat)
    ):
        out = _StackFunction.apply(plan, flat_arrays, x, *hx, *flat)
    else:
        y, finals, _ = plan.forward(_arrays(plan, x, (*hx, *flat), flat_arrays), training=False)
        out = plan.route.tensors([y, *finals])
    return out[0], out[1:]
