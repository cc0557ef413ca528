"""The drop-in classes: subclasses of torch.nn's LSTM, GRU, RNN and their cells whose
forward runs fastrnn's kernels (:mod:`fastrnn.torch.function`) on CPU tensors, and on CUDA
tensors where fastrnn's CUDA backend is usable, falling back to torch.nn's own forward
wherever the kernels do not apply (see :func:`fast_path_reason` and
:func:`fastrnn.torch.function.route_of`).

The subclasses add no state: parameters, state_dict, repr, ``.to()`` and construction are
torch.nn's. GRU and GRUCell take one more keyword, ``reset_after`` (default True, torch's
form; False is Cho et al.'s, which torch.nn cannot run, so it has no fallback).

bfloat16 runs on the kernels' bf16 products (bf16 operands, float32 sums; states, the LSTM
cell, activations and gradients in float32 inside), in two forms (see :class:`_Mode`):

- a bf16 module (``module.to(torch.bfloat16)``) on bf16 inputs and states: outputs, final
  states and gradients in bfloat16, as torch.nn's;
- ``torch.autocast("cpu", dtype=torch.bfloat16)``: float32 or bf16 tensors in, the weights
  as they are (float32 masters get float32 gradients); every cell kind runs bf16 products,
  and the outputs take the dtype torch.nn's gives under the same autocast (bfloat16 for
  LSTM, RNN and RNNCell, which torch's CPU autocast lists; the input's dtype for GRU,
  GRUCell and LSTMCell). float64 tensors are left alone, as autocast leaves them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import weakref
from typing import Iterator, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from ..cell_spec import spec
from ..packed import PackedBatch
from ..regularization import Regularization, regularization
from ..step import CellStep
from .function import HOST, Run, route_of, run

__all__ = [
    "LSTM",
    "GRU",
    "RNN",
    "LSTMCell",
    "GRUCell",
    "RNNCell",
    "LayerNormLSTM",
    "LayerNormGRU",
    "disabled",
    "fast_path_reason",
]

_disabled = contextvars.ContextVar("fastrnn_torch_disabled", default=False)
_FLOATS = (torch.float32, torch.float64)
_BF16 = torch.bfloat16
_PLAIN = (torch.Tensor, torch.nn.Parameter)
# The classes whose torch.nn forward torch's CPU autocast runs in bfloat16 (its ops lstm,
# rnn_tanh, rnn_relu, rnn_tanh_cell, rnn_relu_cell): their outputs are bfloat16 there.
_AUTOCAST_TO_BF16 = (torch.nn.LSTM, torch.nn.RNN, torch.nn.RNNCell)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within this context (in this thread or task), the drop-in classes run torch.nn's own
    implementation."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def fast_path_reason() -> Optional[str]:
    """Why the current context rules fastrnn's kernels out (None if it does not):
    ``disabled()``, TorchScript, tracing, ONNX export, torch.compile/export, autocast to a
    dtype other than bfloat16 or torch.func transforms."""
    if _disabled.get():
        return "fastrnn.torch.disabled()"
    # ONNX export runs under tracing (the TorchScript exporter) or torch.export (the dynamo
    # exporter), both caught here (tests/test_torch_onnx.py); asking
    # torch.onnx.is_in_onnx_export() as well cost 3-4 us a call.
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return "TorchScript, tracing or ONNX export"
    if torch.compiler.is_compiling():
        return "torch.compile or torch.export"
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") != _BF16:
        return f"autocast to {torch.get_autocast_dtype('cpu')}"
    if torch._C._are_functorch_transforms_active():
        return "a torch.func transform"
    return None


def _plain(t, dtypes: Tuple[torch.dtype, ...], device: torch.device) -> bool:
    """A strided tensor of one of ``dtypes`` on ``device``, not a subclass (fake,
    functional...)."""
    return (
        type(t) in _PLAIN and t.dtype in dtypes and t.device == device and t.layout == torch.strided
    )


class _Mode(NamedTuple):
    """How one call runs: ``precision`` the kernels' ("fp32": products in the tensors' dtype;
    "bf16": bf16 operands, float32 sums), ``compute`` the dtype the kernels run in (x, the
    states and the weights are cast to it: exact from bf16), ``weights`` the dtype the
    weights must have (None: float32 or bf16, all alike), ``states`` the dtypes the initial
    states may have, ``out`` the outputs' and final states' dtype."""

    precision: str
    compute: torch.dtype
    weights: Optional[torch.dtype]
    states: Tuple[torch.dtype, ...]
    out: torch.dtype


def _mode(module, x) -> Optional[_Mode]:
    """The mode of a call of ``module`` on x, or None to fall back: float32/float64 as they
    are; a bf16 module on bf16 tensors; under autocast to bfloat16 (CPU), float32 or bf16
    tensors on bf16 products (float64 untouched, as autocast leaves it)."""
    dt = x.dtype
    if x.device.type == "cuda" and torch.is_autocast_enabled("cuda") and dt != torch.float64:
        return None  # CUDA autocast (float16 by default, its own op lists): torch.nn's own
    if torch.is_autocast_enabled("cpu") and dt in (torch.float32, _BF16):
        out = _BF16 if isinstance(module, _AUTOCAST_TO_BF16) else dt
        return _Mode("bf16", torch.float32, None, (torch.float32, _BF16), out)
    if dt == _BF16:
        return _Mode("bf16", torch.float32, _BF16, (_BF16,), _BF16)
    if dt in _FLOATS:
        return _Mode("fp32", dt, dt, (dt,), dt)
    return None


def _route(x):
    """The route for x (see :func:`fastrnn.torch.function.route_of`), or None if x is not a
    plain strided tensor on a device fastrnn runs."""
    if type(x) not in _PLAIN or x.layout != torch.strided:
        return None
    return route_of(x.device)


def _states(hx, n: int) -> Optional[List]:
    """hx as a list of n tensors ([] for None), or None if it is not shaped so."""
    if hx is None:
        return []
    if n == 1:
        return [hx] if isinstance(hx, torch.Tensor) else None
    return list(hx) if isinstance(hx, tuple) and len(hx) == n else None


class _Fast:
    """What the drop-in layers and cells share (mixed in before the torch.nn class)."""

    reset_after: bool = True  # GRU, GRUCell: torch's form unless constructed with False
    # LSTM, GRU: zoneout, recurrent dropout, weight drop (fastrnn extras; set on an instance
    # only when constructed with any).
    regularization: Regularization = Regularization()
    _layer_norm = False  # LayerNormLSTM, LayerNormGRU
    _cell_name = ""  # a key of fastrnn.cell_spec.CELLS

    def _options(self) -> Tuple[Tuple[str, object], ...]:
        """The kernels' options, as (name, value) pairs: the cell table's options, read from
        the module's attributes of the same names (torch.nn's nonlinearity, reset_after)."""
        return tuple((name, getattr(self, name)) for name in spec(self._cell_name).options)

    def _weights(self, x: Tensor, mode: _Mode) -> Optional["_CheckedWeights"]:
        """The weight tensors (checked: plain tensors on x's device of the dtype ``mode``
        asks, all alike), or None to fall back. Checked once while the module holds the same
        tensors with the same memory."""
        # Read as torch.nn's forward reads them, by name (functional_call swaps the entries of
        # _parameters; a parametrization makes them properties).
        names = self._weight_names()
        params = self._parameters
        flat = [params.get(n) for n in names]
        if any(t is None for t in flat):
            flat = [getattr(self, n) for n in names]
        # The tensors' memory too: .to() / .double() give a Parameter new memory
        # (param.data = ...) while it stays the same object.
        key = (mode.weights, x.device) + tuple((t.data_ptr(), t.dtype) for t in flat)
        cached = _CHECKED.get(self)
        if (
            cached is not None
            and cached.key == key
            and all(a is b for a, b in zip(cached.tensors, flat))
        ):
            return cached
        dtype = mode.weights or flat[0].dtype
        if dtype not in ((mode.weights,) if mode.weights else (torch.float32, _BF16)) or not all(
            _plain(w, (dtype,), x.device) for w in flat
        ):
            return None
        cached = _CHECKED[self] = _CheckedWeights(key, flat)
        return cached

    def _fallback(self, input, hx):
        _CHECKED.pop(self, None)  # views of weights this call did not take: not kept alive
        reg = self.regularization
        # In evaluation, recurrent dropout and weight drop are off: torch.nn computes the same.
        drops = self.training and (reg.recurrent_dropout > 0 or reg.weight_drop > 0)
        if self._layer_norm or reg.zoneout or drops:
            what = "layer norm" if self._layer_norm else "zoneout, recurrent_dropout or weight_drop"
            with torch.no_grad():  # input torch.nn would reject: its own error, not ours
                super().forward(input, hx)
            raise RuntimeError(
                f"fastrnn.torch.{type(self).__name__} with {what} "
                f"runs on fastrnn's kernels only (float32/float64/bfloat16 tensors "
                f"on the CPU, or float32/float64 on a GPU where fastrnn's CUDA backend is "
                f"usable, outside fastrnn.torch.disabled(), TorchScript, tracing, export, "
                f"autocast to float16); torch.nn has no such {self._torch_name()} to fall "
                f"back to"
            )
        if not self.reset_after:
            raise RuntimeError(
                f"fastrnn.torch.{type(self).__name__}(reset_after=False) runs on fastrnn's "
                f"kernels only (float32/float64/bfloat16 tensors on the CPU, or float32/"
                f"float64 on a GPU where fastrnn's CUDA backend is usable, outside "
                f"fastrnn.torch.disabled(), TorchScript, tracing, export, autocast to "
                f"float16); torch.nn has no such GRU to fall back to"
            )
        return super().forward(input, hx)

    def extra_repr(self) -> str:
        """torch.nn's repr, plus reset_after=False and the regularization where set."""
        s = super().extra_repr()
        if not self.reset_after:
            s += ", reset_after=False"
        r = self.regularization
        if r.zoneout:
            z = r.zoneout_h if self._cell_name == "gru" or r.zoneout_h == r.zoneout_c else (
                r.zoneout_h, r.zoneout_c)  # fmt: skip
            s += f", zoneout={z}"
        if r.recurrent_dropout:
            s += f", recurrent_dropout={r.recurrent_dropout}"
        if r.weight_drop:
            s += f", weight_drop={r.weight_drop}"
        return s

    def _torch_name(self) -> str:
        return spec(self._cell_name).torch_class


class _Layer(_Fast):
    """The fast forward of LSTM, GRU, RNN."""

    def forward(
        self,
        input: Union[Tensor, PackedSequence],
        hx: Union[Tensor, Tuple[Tensor, Tensor], None] = None,
    ) -> Tuple[Union[Tensor, PackedSequence], Union[Tensor, Tuple[Tensor, Tensor]]]:
        """As torch.nn's forward; runs fastrnn's kernels where they apply. input (T, B, I),
        (B, T, I) with batch_first, unbatched (T, I), or a PackedSequence of data (N, I);
        hx (num_layers*D, B, P) (LSTM: a tuple with c0 (num_layers*D, B, H)) or None.
        Returns ``output, h_n`` (LSTM: ``output, (h_n, c_n)``) shaped as torch.nn's."""
        return self._forward(input, hx)

    # Disabled for torch.compile: a graph break, the RNN runs eagerly on the kernels.
    @torch.compiler.disable
    def _forward(self, input, hx):
        plan = self._plan(input, hx)
        if plan is None:
            return self._fallback(input, hx)
        plan, x, states, weights, mode = plan
        flat, arrays = weights.computed(mode, plan.route)
        drop = self.last_regularization_masks if self.regularization.weight_drop else {}
        if any("weight_drop" in m for m in drop.values()):  # W_hh * mask, through autograd
            flat, arrays = list(flat), None
            for (layer, d), m in drop.items():
                k = (layer * plan.D + d) * plan.n_w + 1  # weight_hh of (layer, d)
                flat[k] = flat[k] * m["weight_drop"]
        y, finals = run(plan, x, states, flat, arrays)
        y, finals = _cast_out(y, finals, mode)
        if plan.layout == "packed":
            y = PackedSequence(y, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        return y, (tuple(finals) if len(finals) > 1 else finals[0])

    def _weight_names(self) -> List[str]:
        if not self._layer_norm:
            return self._flat_weights_names
        return self._flat_weights_names + self._layer_norm_names()

    def _layer_norm_names(self) -> List[str]:
        """The layer-norm parameters, per (layer, direction) in order (as Run takes them)."""
        cell, names = spec(self._cell_name), []
        for layer in range(self.num_layers):
            for d in range(2 if self.bidirectional else 1):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                names += list(cell.layer_norm_params(self.hidden_size, sfx))
        return names

    def _plan(self, input, hx) -> Optional[Tuple[Run, Tensor, list, "_CheckedWeights", _Mode]]:
        """The Run for this call with the tensors it takes (x and the states in the mode's
        compute dtype), the weights and the mode, or None to fall back (any input torch.nn
        would reject falls back, so that torch.nn raises its own error)."""
        if fast_path_reason() is not None:
            return None
        cell = spec(self._cell_name)
        is_packed = isinstance(input, PackedSequence)
        x = input.data if is_packed else input
        mode = _mode(self, x)
        route = None if mode is None else _route(x)
        if route is None:
            return None
        weights = self._weights(x, mode)
        if weights is None:
            return None
        states = _states(hx, len(cell.states))
        if states is None or not all(_plain(s, mode.states, x.device) for s in states):
            return None
        D, L, H = 2 if self.bidirectional else 1, self.num_layers, self.hidden_size
        P = self.proj_size or H
        if is_packed:
            if x.dim() != 2 or x.shape[0] == 0:
                return None
            try:
                pk = PackedBatch(
                    input.batch_sizes.numpy(),
                    None if input.sorted_indices is None else input.sorted_indices.numpy(),
                    None if input.unsorted_indices is None else input.unsorted_indices.numpy(),
                )
            except (TypeError, ValueError):  # a malformed PackedSequence: torch.nn's error
                return None
            if int(pk.batch_sizes.sum()) != x.shape[0]:
                return None
            T, B, unbatched = pk.T, pk.B, False
        else:
            if x.dim() not in (2, 3):
                return None
            pk, unbatched = None, x.dim() == 2
            T, B = (x.shape[0], 1) if unbatched else x.shape[:2]
            if self.batch_first and not unbatched:
                T, B = B, T
        if x.shape[-1] != self.input_size or T == 0 or B == 0:
            return None
        for s, name in zip(states, cell.states):
            n = P if name == "h" else H
            if tuple(s.shape) != ((L * D, n) if unbatched else (L * D, B, n)):
                return None
        dropout = self.training and self.dropout > 0 and L > 1
        shape = (L, D, len(states), self.bias, bool(self.proj_size))
        options = self._options() + (("precision", mode.precision),)
        reg = self._regularization_masks(x, pk, T, B, route, mode)
        if pk is None and not dropout and not reg:  # nothing per call in the Run: shared
            plan = _seq_run(self._cell_name, options, *shape, self.batch_first, unbatched, route,
                            self._layer_norm)  # fmt: skip
        else:
            masks = self._masks(x, pk, T, B, D * P, route, mode) if dropout else None
            layout = "seq" if pk is None else "packed"
            extras = {k: {n: v for n, v in m.items() if n != "weight_drop"}
                      for k, m in reg.items()}  # fmt: skip
            plan = Run(cell, dict(options), L, D, layout, *shape[2:],
                       batch_first=self.batch_first, unbatched=unbatched, packed=pk,
                       masks=masks, route=route, extras=extras,
                       layer_norm=self._layer_norm)  # fmt: skip
        return plan, x.to(mode.compute), [s.to(mode.compute) for s in states], weights, mode

    def _regularization_masks(self, x, pk, T: int, B: int, route, mode: _Mode) -> dict:
        """(layer, d) -> this call's regularization masks, drawn from torch's RNG on x's
        device over the caller's rows (a PackedSequence's: the sequences in their order before
        packing), in the mode's compute dtype, steps in the order the direction runs:
        "zoneout" and "recurrent_mask" as the route's arrays, rows in the kernels' order;
        "weight_drop" a tensor (G*H, P). Kept as tensors over the caller's rows in
        ``last_regularization_masks``. {} without regularization."""
        reg = self.regularization
        self.last_regularization_masks = {}
        if not reg.active or not (self.training or reg.zoneout):
            return {}
        H, P, G = self.hidden_size, self.proj_size or self.hidden_size, spec(self._cell_name).G
        opts = dict(dtype=mode.compute, device=x.device)

        def keep(shape: tuple, p: float) -> Tensor:
            return (torch.rand(shape, **opts) >= p).to(mode.compute) / (1 - p)

        def zone(n: int, p: float) -> Optional[Tensor]:
            if p == 0:
                return None
            if self.training:
                return (torch.rand((T, B, n), **opts) < p).to(mode.compute)
            return torch.full((T, B, n), p, **opts)

        def kernel_rows(t: Optional[Tensor], axis: int):
            if t is None:
                return None
            a = route.of_tensors([t])[0]
            if pk is None or pk.identity:
                return a
            return route.take(a, pk.sorted_indices, axis)

        out = {}
        for layer in range(self.num_layers):
            for d in range(2 if self.bidirectional else 1):
                kept: dict = {}
                call: dict = {}
                if reg.zoneout:
                    z_h = zone(P, reg.zoneout_h)
                    if self._cell_name == "lstm":
                        kept["zoneout"] = (z_h, zone(H, reg.zoneout_c))
                        call["zoneout"] = tuple(kernel_rows(z, 1) for z in kept["zoneout"])
                    else:
                        kept["zoneout"] = z_h
                        call["zoneout"] = kernel_rows(z_h, 1)
                if self.training and reg.recurrent_dropout > 0:
                    kept["recurrent_mask"] = keep((B, P), reg.recurrent_dropout)
                    call["recurrent_mask"] = kernel_rows(kept["recurrent_mask"], 0)
                if self.training and reg.weight_drop > 0:
                    kept["weight_drop"] = call["weight_drop"] = keep((G * H, P), reg.weight_drop)
                self.last_regularization_masks[layer, d] = kept
                out[layer, d] = call
        return out

    def _masks(self, x, pk, T: int, B: int, width: int, route, mode: _Mode) -> dict:
        """Dropout masks (T, B, width) in the kernels' layout and the route's kind of array,
        one per non-last layer, drawn from torch's RNG on x's device as torch.nn draws them:
        F.dropout over each layer's whole output (time-major; a PackedSequence's packed data
        (N, width)), in x's dtype (a bf16 mask's scale is bf16's), then in the compute
        dtype."""
        shape = (x.shape[0], width) if pk is not None else (T, B, width)
        masks = {}
        for layer in range(self.num_layers - 1):
            ones = torch.ones(shape, dtype=x.dtype, device=x.device)
            drawn = F.dropout(ones, self.dropout, True).to(mode.compute)
            m = route.of_tensors([drawn])[0]
            if pk is not None:
                m = route.scatter(m, np.flatnonzero(pk.padding_mask()), T * B)
                m = m.reshape(T, B, width)
            masks[layer] = m
        return masks


class _Cell(_Fast):
    """The fast forward of LSTMCell, GRUCell, RNNCell."""

    def forward(
        self, input: Tensor, hx: Union[Tensor, Tuple[Tensor, Tensor], None] = None
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """As torch.nn's forward; runs fastrnn's kernels where they apply. input (B, I) or
        unbatched (I,); hx (B, H) or (H,) (LSTMCell: a tuple (h, c)) or None. Returns h'
        (LSTMCell: ``(h', c')``)."""
        return self._forward(input, hx)

    @torch.compiler.disable
    def _forward(self, input, hx):
        checked = self._plan(input, hx)
        if checked is None:
            return self._fallback(input, hx)
        weights, states, route, mode = checked
        flat, arrays = weights.computed(mode, route)
        x = input.to(mode.compute)
        states = [s.to(mode.compute) for s in states]
        step = None
        if (
            not route.device
            and mode.precision == "fp32"
            and (
                not torch.is_grad_enabled()
                or not any(t.requires_grad for t in (input, *states, *flat))
            )
        ):
            step = self._cell_step(weights)
        if step is not None:
            finals = self._step(step, x, states)  # a CPU streaming step: the short way
        else:
            options = self._options() + (("precision", mode.precision),)
            plan = _cell_run(
                self._cell_name, options, len(states), self.bias, input.dim() == 1, route
            )
            _, finals = run(plan, x, states, flat, arrays)
        _, finals = _cast_out(None, finals, mode)
        return tuple(finals) if len(finals) > 1 else finals[0]

    def _cell_step(self, weights: "_CheckedWeights") -> Optional[CellStep]:
        """The CellStep over the weights' NumPy views, kept with them (made again when the
        options changed), or None where it would hold copies (weights that are not
        C-contiguous: an in-place update would not reach it)."""
        options = self._options()
        if weights.step is None or weights.step[0] != options:
            step = CellStep(self._cell_name, *weights.arrays(HOST), **dict(options))
            weights.step = (options, step)
        step = weights.step[1]
        return step if step.holds_views else None

    @staticmethod
    def _step(step: CellStep, input: Tensor, states: list) -> tuple:
        """One inference step: input (B, I) or (I,), states (B, H) or (H,) (empty: zeros);
        returns the new states as tensors."""
        x = _numpy(input)
        h = [_numpy(s) for s in states]
        if input.dim() == 1:
            finals = step(x[None], *(a[None] for a in h))
            return tuple(torch.from_numpy(f[0]) for f in finals)
        return tuple(torch.from_numpy(f) for f in step(x, *h))

    def _weight_names(self) -> Tuple[str, ...]:
        return _CELL_WEIGHTS if self.bias else _CELL_WEIGHTS[:2]

    def _plan(self, input, hx) -> Optional[Tuple["_CheckedWeights", list, object, _Mode]]:
        """The weights, states, route and mode of a call the kernels take, or None to fall
        back."""
        if fast_path_reason() is not None:
            return None
        mode = _mode(self, input)
        route = None if mode is None else _route(input)
        if route is None:
            return None
        weights = self._weights(input, mode)
        if weights is None:
            return None
        states = _states(hx, len(spec(self._cell_name).states))
        if states is None or not all(_plain(s, mode.states, input.device) for s in states):
            return None
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            return None
        want = tuple(input.shape[:-1]) + (self.hidden_size,)
        if input.numel() == 0 or any(tuple(s.shape) != want for s in states):
            return None
        return weights, states, route, mode


def _cast_out(y: Optional[Tensor], finals, mode: _Mode):
    """y and the final states in the mode's output dtype (autograd carries the casts)."""
    if mode.out == mode.compute:
        return y, finals
    return None if y is None else y.to(mode.out), [f.to(mode.out) for f in finals]


_CELL_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _numpy(t: Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (detach() only where needed: it costs a new tensor)."""
    return t.detach().numpy() if t.requires_grad else t.numpy()


class _CheckedWeights:
    """A module's weight tensors as checked for one dtype and device (``key``: those and the
    tensors' data pointers and dtypes), their NumPy views once a CPU call made them, (cells)
    the CellStep over them once an inference step made it, and (bf16 weights) their float32
    copies for calls without gradients. A view shares the tensor's memory, so in-place
    updates -- optimizers, load_state_dict -- show through it; the copies are remade when a
    tensor's version counter moved."""

    def __init__(self, key: tuple, tensors: list) -> None:
        self.key, self.tensors = key, tensors
        self.views: Optional[List[np.ndarray]] = None
        self.step: Optional[Tuple[tuple, CellStep]] = None  # (the options it was made for, it)
        self.copies: Optional[Tuple[tuple, list]] = None  # (versions, float32 copies): bf16

    def computed(self, mode: _Mode, route) -> Tuple[list, Optional[list]]:
        """The weights in the mode's compute dtype and as the route's arrays (None: run()
        takes them from the tensors): the tensors and their kept views, or (bf16 weights)
        float32 copies made by autograd-tracked casts, so gradients reach the bf16
        parameters in bf16."""
        if self.tensors[0].dtype == mode.compute:
            return self.tensors, self.arrays(route)
        if torch.is_grad_enabled() and any(t.requires_grad for t in self.tensors):
            return [t.to(mode.compute) for t in self.tensors], None
        # No gradient wanted: the copies are kept while every tensor's version counter (which
        # each in-place change bumps) says it is unchanged.
        versions = tuple(t._version for t in self.tensors)
        if self.copies is None or self.copies[0] != versions:
            with torch.no_grad():
                self.copies = (versions, [t.to(mode.compute) for t in self.tensors])
        copies = self.copies[1]
        return copies, None if route.device else [c.numpy() for c in copies]

    def arrays(self, route) -> Optional[list]:
        """The weights as the route's kernels take them: NumPy views on the CPU route (made
        once), None on the CUDA route (run() takes them through DLPack each call)."""
        if route.device:
            return None
        if self.views is None:
            self.views = [t.detach().numpy() for t in self.tensors]
        return self.views


# module -> its _CheckedWeights, see _Fast._weights. Held beside the module rather than in it, so
# that pickling and state dicts never see it.
_CHECKED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=64)
def _seq_run(
    name: str, options: Tuple, L: int, D: int, n_hx: int, bias: bool, projection: bool,
    batch_first: bool, unbatched: bool, route, layer_norm: bool = False,
) -> Run:  # fmt: skip
    """The Run of a layer call on a tensor without dropout (no per-call data: shared)."""
    return Run(spec(name), dict(options), L, D, "seq", n_hx, bias, projection,
               batch_first=batch_first, unbatched=unbatched, route=route,
               layer_norm=layer_norm)  # fmt: skip


@functools.lru_cache(maxsize=64)
def _cell_run(name: str, options: Tuple, n_hx: int, bias: bool, unbatched: bool, route) -> Run:
    """The Run of a cell call (it holds no per-call data, so it is shared)."""
    return Run(spec(name), dict(options), 1, 1, "cell", n_hx, bias, False,
               unbatched=unbatched, route=route)  # fmt: skip


class _Regularized(_Layer):
    """LSTM and GRU: torch.nn's constructor plus the keywords ``zoneout``,
    ``recurrent_dropout``, ``weight_drop`` (:mod:`fastrnn.regularization`; off by default,
    and then behaviour is torch.nn's). Masks are drawn from torch's RNG on the input's device
    in each training forward (zoneout's factor p in evaluation) and kept, as tensors over
    the input's rows, in ``last_regularization_masks[(layer, direction)]``."""

    def __init__(
        self, *args, zoneout=0.0, recurrent_dropout: float = 0.0, weight_drop: float = 0.0,
        **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        reg = regularization(
            type(self).__name__, self._cell_name, zoneout, recurrent_dropout, weight_drop
        )
        if reg.active:
            self.regularization = reg
        self.last_regularization_masks: dict = {}


class LSTM(_Regularized, torch.nn.LSTM):
    """torch.nn.LSTM running fastrnn's kernels on float32/float64 tensors (CPU; CUDA where
    fastrnn's CUDA backend is usable); the regularization keywords of :class:`_Regularized`."""

    _cell_name = "lstm"


class GRU(_Regularized, torch.nn.GRU):
    """torch.nn.GRU running fastrnn's kernels on float32/float64 tensors (CPU; CUDA where
    fastrnn's CUDA backend is usable); one more keyword, ``reset_after`` (default True:
    torch's form), and the regularization keywords of :class:`_Regularized`."""

    _cell_name = "gru"

    def __init__(self, *args, reset_after: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not reset_after:
            self.reset_after = False


class RNN(_Layer, torch.nn.RNN):
    """torch.nn.RNN running fastrnn's kernels on float32/float64 tensors (CPU; CUDA where
    fastrnn's CUDA backend is usable)."""

    _cell_name = "rnn"


class LSTMCell(_Cell, torch.nn.LSTMCell):
    """torch.nn.LSTMCell running fastrnn's kernels on float32/float64 tensors (CPU; CUDA where
    fastrnn's CUDA backend is usable)."""

    _cell_name = "lstm"


class GRUCell(_Cell, torch.nn.GRUCell):
    """torch.nn.GRUCell running fastrnn's kernels; ``reset_after`` as for :class:`GRU`."""

    _cell_name = "gru"

    def __init__(self, *args, reset_after: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not reset_after:
            self.reset_after = False


class RNNCell(_Cell, torch.nn.RNNCell):
    """torch.nn.RNNCell running fastrnn's kernels on float32/float64 tensors (CPU; CUDA where
    fastrnn's CUDA backend is usable)."""

    _cell_name = "rnn"


def _regularization_only(name: str, kwargs: dict) -> None:
    """TypeError for a keyword the layer-normalized classes do not take (proj_size,
    reset_after, ...), as Python gives for an unknown one."""
    for k in kwargs:
        if k not in ("zoneout", "recurrent_dropout", "weight_drop"):
            raise TypeError(f"{name}.__init__() got an unexpected keyword argument {k!r}")


class _LayerNormed:
    """LayerNormLSTM, LayerNormGRU: torch.nn's constructor arguments (but proj_size; GRU:
    reset after), the regularization keywords, and the layer-norm parameters of each
    (layer, direction) registered after torch.nn's (gains 1, the LSTM's cell bias 0)."""

    _layer_norm = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, **regularization) -> None:  # fmt: skip
        _regularization_only(type(self).__name__, regularization)
        super().__init__(input_size, hidden_size, num_layers=num_layers, bias=bias,
                         batch_first=batch_first, dropout=dropout, bidirectional=bidirectional,
                         device=device, dtype=dtype, **regularization)  # fmt: skip
        cell = spec(self._cell_name)
        for layer in range(self.num_layers):
            for d in range(2 if self.bidirectional else 1):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                for n, shape in cell.layer_norm_params(self.hidden_size, sfx).items():
                    p = torch.nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
                    self.register_parameter(n, p)
        self._reset_layer_norm()

    def reset_parameters(self) -> None:
        """torch.nn's initialization of its parameters; the layer-norm ones to 1 and 0."""
        super().reset_parameters()
        self._reset_layer_norm()

    def _reset_layer_norm(self) -> None:
        with torch.no_grad():
            for n, p in self.named_parameters():
                if n.startswith("layer_norm_"):
                    p.fill_(0 if "cell_bias" in n else 1)


class LayerNormLSTM(_LayerNormed, LSTM):
    """The layer-normalized LSTM (Ba et al. 2016) on fastrnn's kernels: a = LN(W_ih x;
    gamma_ih) + LN(W_hh h; gamma_hh) + b_ih + b_hh over the 4H gate pre-activations,
    h = o tanh(LN(c; gamma_c, beta_c)). torch.nn.LSTM's constructor arguments but proj_size,
    and zoneout, recurrent_dropout, weight_drop; its parameters plus
    layer_norm_ih_weight_l{k}, layer_norm_hh_weight_l{k} (4H), layer_norm_cell_weight_l{k},
    layer_norm_cell_bias_l{k} (H) (``_reverse`` for the second direction). No torch.nn
    fallback: where the kernels cannot run, an error."""


class LayerNormGRU(_LayerNormed, GRU):
    """The layer-normalized GRU on fastrnn's kernels, reset after: a^x = LN(W_ih x;
    gamma_ih) + b_ih, a^h = LN(W_hh h; gamma_hh) + b_hh over the 3H pre-activations.
    torch.nn.GRU's constructor arguments and zoneout, recurrent_dropout, weight_drop; its
    parameters plus layer_norm_ih_weight_l{k}, layer_norm_hh_weight_l{k} (3H)."""
