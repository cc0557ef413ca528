"""The table of cell kinds: one :class:`CellSpec` per kind, read by the layers, the cells, the
kernels' Python side, the benchmark suite, ``fastrnn check`` and the tests, so that nothing
else branches on a cell's name. Adding a cell kind means one entry here plus its kernels
(``<name>_forward`` / ``<name>_backward`` in :mod:`fastrnn.ops` and
:mod:`fastrnn.reference`).

Conventions (as in :mod:`fastrnn.ops`): time-major x (T, B, I) -> y (T, B, P); states
(B, H), h of size P (= H unless an LSTM has a projection, proj_size P < H); weights
w_ih (G*H, I), w_hh (G*H, P), biases (G*H,), w_hr (P, H); gates stacked along G*H in
torch.nn's order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["CellSpec", "Option", "CELLS", "spec", "variants"]


@dataclass(frozen=True)
class Option:
    """A keyword option of a cell kind: its default, the values it takes, and whether
    torch.nn's class takes it too (fastrnn extras such as GRU's reset_after do not: torch
    runs only the default)."""

    default: Any
    choices: Tuple[Any, ...]
    in_torch: bool = True


@dataclass(frozen=True)
class CellSpec:
    """What every layer of the package needs to know about one cell kind.

    - ``gates``: the gate blocks along the G*H axis, in torch.nn's order.
    - ``states``: the recurrent states, ``("h",)`` or ``("h", "c")``; h has size P, the
      others H.
    - ``options``: keyword options of the kernels beyond the shapes (``reset_after``,
      ``nonlinearity``), each with its default and choices.
    - ``projection``: whether ``w_hr`` (torch's ``proj_size``) is supported.
    - ``torch_class``: the torch.nn class of the same cell (``LSTM``; ``LSTMCell`` for cells).
    """

    name: str
    gates: Tuple[str, ...]
    states: Tuple[str, ...]
    options: Mapping[str, Option] = field(default_factory=dict)
    projection: bool = False
    torch_class: str = ""

    @property
    def G(self) -> int:
        """Gates per hidden unit: the weights have G*H rows."""
        return len(self.gates)

    @property
    def has_cell_state(self) -> bool:
        return "c" in self.states

    # -- names
    @property
    def forward_name(self) -> str:
        return f"{self.name}_forward"

    @property
    def backward_name(self) -> str:
        return f"{self.name}_backward"

    def weight_args(self, projection: bool = False) -> Tuple[str, ...]:
        """The kernels' weight arguments, in the order of torch.nn's parameters."""
        return ("w_ih", "w_hh", "b_ih", "b_hh") + (("w_hr",) if projection else ())

    @property
    def layer_norm_args(self) -> Tuple[str, ...]:
        """The kernels' layer-norm weights (``layer_norm=``, in order); () for none."""
        return {
            "lstm": ("ln_ih_weight", "ln_hh_weight", "ln_cell_weight", "ln_cell_bias"),
            "gru": ("ln_ih_weight", "ln_hh_weight"),
        }.get(self.name, ())

    @property
    def forward_extras(self) -> Tuple[str, ...]:
        """The forward kernel's arguments for fastrnn's extras (the regularization masks, layer
        norm's weights and saved values), all None when they are off."""
        return {
            "lstm": ("zoneout_h", "zoneout_c", "recurrent_mask")
            + self.layer_norm_args
            + ("ln_ih", "ln_hh", "ln_cell", "ln_rstd"),
            "gru": ("zoneout_h", "recurrent_mask")
            + self.layer_norm_args
            + ("ln_ih", "ln_hh", "ln_rstd"),
        }.get(self.name, ())

    def layer_norm_params(self, hidden_size: int, suffix: str = "") -> Dict[str, Tuple[int, ...]]:
        """Name -> shape of the layer-norm parameters of one (layer, direction), in the order
        of :attr:`layer_norm_args`: layer_norm_ih_weight, layer_norm_hh_weight (G*H) and the
        LSTM's layer_norm_cell_weight, layer_norm_cell_bias (H)."""
        GH = self.G * hidden_size
        names = ("ih_weight", "hh_weight", "cell_weight", "cell_bias")[: len(self.layer_norm_args)]
        shapes = ((GH,), (GH,), (hidden_size,), (hidden_size,))
        return {f"layer_norm_{n}{suffix}": s for n, s in zip(names, shapes)}

    def grad_names(self, projection: bool = False) -> Tuple[str, ...]:
        """What ``<name>_backward`` returns, in order: d of x, of each initial state, of each
        weight argument."""
        return ("x",) + tuple(f"{s}0" for s in self.states) + self.weight_args(projection)

    def param_names(self, suffix: str = "", projection: bool = False) -> Tuple[str, ...]:
        """torch.nn's parameter names for one (layer, direction), e.g. suffix "_l0_reverse"
        (layers) or "" (cells); in the order of :meth:`weight_args`."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        if projection:
            names += ("weight_hr",)
        return tuple(n + suffix for n in names)

    def param_shapes(
        self,
        input_size: int,
        hidden_size: int,
        proj_size: int = 0,
        bias: bool = True,
        suffix: str = "",
    ) -> Dict[str, Tuple[int, ...]]:
        """Name -> shape of the parameters of one (layer, direction), as torch.nn has them."""
        GH, P = self.G * hidden_size, proj_size or hidden_size
        names = self.param_names(suffix, projection=bool(proj_size))
        shapes = [(GH, input_size), (GH, P), (GH,), (GH,)]
        if proj_size:
            shapes.append((P, hidden_size))
        return {n: s for n, s in zip(names, shapes) if bias or not n.startswith("bias")}

    def state_size(self, state: str, hidden_size: int, proj_size: int = 0) -> int:
        """The width of a state: P for h, H for the cell state."""
        return (proj_size or hidden_size) if state == "h" else hidden_size

    # -- options
    def check_options(self, fn: str, options: Mapping[str, Any]) -> Dict[str, Any]:
        """The options with defaults filled in; ValueError naming an unknown option or value."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"{fn}: {self.name} takes no option {unknown[0]!r} (it takes "
                f"{sorted(self.options) or 'none'})"
            )
        out = {}
        for key, opt in self.options.items():
            value = options.get(key, opt.default)
            if isinstance(opt.default, bool):
                value = bool(value)  # a flag: any truthy value, as torch.nn takes them
            if value not in opt.choices:
                raise ValueError(f"{fn}: {key} must be one of {list(opt.choices)}, got {value!r}")
            out[key] = value
        return out

    def torch_options(self, options: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The options as torch.nn's class takes them, or None if torch.nn cannot run them
        (a fastrnn extra away from its default)."""
        if any(
            not self.options[k].in_torch and v != self.options[k].default
            for k, v in options.items()
        ):
            return None
        return {k: v for k, v in options.items() if self.options[k].in_torch}

    # -- calls on any module with this cell's forward and backward
    def forward(
        self,
        module,
        x,
        states: Sequence,
        weights: Sequence,
        *,
        training: bool = True,
        options: Optional[Mapping[str, Any]] = None,
        lengths=None,
    ):
        """``module.<name>_forward`` on x with ``states`` (one per :attr:`states`, None for
        zeros) and ``weights`` (w_ih, w_hh, b_ih, b_hh[, w_hr]). Returns ``(y, finals,
        saved)`` with finals a tuple of the final states."""
        # The forwards of ops and reference share one positional order: x, the initial
        # states, w_ih, w_hh, b_ih, b_hh; the rest by keyword.
        kw = dict(options or (), training=training)
        if len(weights) > 4:
            kw["w_hr"] = weights[4]
        if lengths is not None:
            kw["lengths"] = lengths
        out = getattr(module, self.forward_name)(x, *states, *weights[:4], **kw)
        return out[0], out[1:-1], out[-1]

    def backward(self, module, saved, dy, dfinals: Sequence) -> Dict[str, Any]:
        """``module.<name>_backward``; ``dfinals`` holds the final-state gradients (None for
        zeros). Returns name -> gradient, named as in :meth:`grad_names`."""
        kw = {f"d{s}_n": g for s, g in zip(self.states, dfinals)}
        n_ln = len(getattr(saved, "layer_norm", None) or ())  # read before the call uses it up
        grads = getattr(module, self.backward_name)(saved, dy=dy, **kw)
        projection = len(grads) - n_ln > len(self.grad_names())
        names = self.grad_names(projection) + self.layer_norm_args[:n_ln]
        return dict(zip(names, grads))


CELLS: Dict[str, CellSpec] = {
    "lstm": CellSpec("lstm", ("i", "f", "g", "o"), ("h", "c"), projection=True, torch_class="LSTM"),
    "gru": CellSpec(
        "gru",
        ("r", "z", "n"),
        ("h",),
        {"reset_after": Option(True, (True, False), in_torch=False)},
        torch_class="GRU",
    ),
    "rnn": CellSpec(
        "rnn", ("h",), ("h",), {"nonlinearity": Option("tanh", ("tanh", "relu"))}, torch_class="RNN"
    ),
}


def spec(cell: str) -> CellSpec:
    """The spec of a cell kind by name; ValueError for an unknown name."""
    try:
        return CELLS[cell]
    except KeyError:
        raise ValueError(f"unknown cell kind {cell!r}; fastrnn has {sorted(CELLS)}") from None


def variants() -> List[Tuple[CellSpec, Dict[str, Any]]]:
    """Every (cell, options) combination, e.g. for tests: gru with reset_after True and
    False, rnn with tanh and relu, lstm once."""
    out = []
    for s in CELLS.values():
        keys = list(s.options)
        for values in itertools.product(*(s.options[k].choices for k in keys)):
            out.append((s, dict(zip(keys, values))))
    return out
