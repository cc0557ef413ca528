"""RNN, LSTM and GRU layers with torch.nn's arguments, parameter names and shapes.

A layer stacks ``num_layers`` layers of one or two directions. Each (layer, direction) is one
call of the backend's ``*_forward`` / ``*_backward`` (the C++ kernels for ``backend="cpu"``,
the NumPy reference for ``"numpy"``); this module only arranges the calls. With ``lengths``,
the batch is packed once per call (:class:`fastrnn.packed.PackedBatch`): the rows are sorted
by length once, every (layer, direction) runs on the sorted rows, the reverse direction runs
the forward kernel on each sequence reversed within its own length (one index gather), and
the outputs are unsorted once. The directions' outputs are concatenated, and dropout
(training only) sits between layers.

Gradients of the parameters accumulate into ``layer.grads`` until ``zero_grad()``, as in
PyTorch, so truncated BPTT and gradient accumulation work.

``dtype=ml_dtypes.bfloat16`` (with the optional extra ``fastrnn[bf16]``) stores the
parameters in bfloat16, as torch's ``module.to(torch.bfloat16)`` does: inputs, states,
outputs, the gradients returned and ``grads`` (accumulated in bfloat16) are bfloat16, and
every call runs :mod:`fastrnn.ops`' bfloat16 arrays (float32 inside, bf16 products), so
``precision`` is "bf16". Between layers the output is bfloat16, as torch's is; upstream
gradients may be bfloat16 or float32.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from . import cuda, ops, reference
from .cell_spec import CELLS, CellSpec, spec
from .packed import as_packed
from .regularization import Regularization, regularization
from .saved import is_bfloat16
from .stack import stack_backward, stack_forward

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "LayerNormLSTM",
    "LayerNormGRU",
    "backends",
    "no_grad",
    "get_backend",
]

_no_grad_depth = contextvars.ContextVar("fastrnn_no_grad", default=0)


def backends() -> dict:
    """Every backend and its status on this machine: ``{"numpy": ..., "cpu": ..., "cuda": ...}``
    mapping a name to a :class:`fastrnn.cuda.BackendStatus` (``.compiled``, ``.usable``, and a
    ``str()`` such as "available" or "compiled, no device: no CUDA driver (...)").
    "numpy" (the reference) and "cpu" (the C++ kernels) are always available; "cuda" when
    this install was built with a CUDA compiler and the machine has a GPU."""
    return {
        "numpy": cuda.BackendStatus(True, True),
        "cpu": cuda.BackendStatus(True, True),
        "cuda": cuda.status(),
    }


def get_backend(name: str) -> object:
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
        raise TypeError(
            f"{name}: layers and cells take host (NumPy) input, even with "
            f"backend='cuda' (which copies each call's data to the GPU); for "
            f"GPU-resident arrays use fastrnn.ops, which takes them in place"
        )
    return np.asarray(x)


class _OpsOn:
    """fastrnn.ops with every forward pinned to one backend (backward follows its forward)."""

    def __init__(self, backend: str):
        for cell in CELLS.values():
            setattr(
                self,
                cell.forward_name,
                functools.partial(getattr(ops, cell.forward_name), backend=backend),
            )
            setattr(self, cell.backward_name, getattr(ops, cell.backward_name))


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
    if dt not in (np.float32, np.float64) and not is_bfloat16(dt):
        raise TypeError(f"dtype must be float32 or float64 (or ml_dtypes.bfloat16), got {dt}")
    return dt


def _check_precision(name: str, precision: str, dtype: np.dtype, backend: str) -> str:
    """precision="fp32" | "bf16" (see fastrnn.ops); bf16 takes float32 and the CPU kernels or
    the NumPy reference. A bfloat16 dtype always means "bf16" (on those backends too)."""
    if precision not in ops.PRECISIONS:
        raise ValueError(
            f"{name}: precision must be one of {list(ops.PRECISIONS)}, got {precision!r}"
        )
    if is_bfloat16(dtype):
        if backend == "cuda":
            raise ValueError(f"{name}: dtype bfloat16 is not on the CUDA backend yet")
        return "bf16"
    if precision == "bf16" and dtype != np.float32:
        raise TypeError(f"{name}: precision='bf16' rounds float32 operands; dtype is {dtype}")
    return precision


def _float32_grad_ok(dtype: np.dtype, grad_dtype: np.dtype) -> bool:
    """Whether an upstream gradient of ``grad_dtype`` goes with parameters of ``dtype``
    besides that dtype itself: float32 with bfloat16 (the kernels' own dtype there)."""
    return is_bfloat16(dtype) and grad_dtype == np.float32


def _grad_dtypes(module) -> str:
    """The upstream gradients' dtypes that a layer or cell takes, for messages."""
    return f"{module.dtype} or float32" if is_bfloat16(module.dtype) else str(module.dtype)


class _Base:
    """What the layers and the cells share: parameters, gradients, modes, state dicts."""

    _cell = ""  # the cell kind: a key of fastrnn.cell_spec.CELLS

    @property
    def _spec(self) -> CellSpec:
        return spec(self._cell)

    def _init_params(self, shapes: Dict[str, tuple], hidden_size: int, seed) -> None:
        # torch.nn's default: every parameter U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(hidden_size)
        self._params: Dict[str, np.ndarray] = {
            name: rng.uniform(-k, k, shape).astype(self.dtype) for name, shape in shapes.items()
        }
        self.grads: Dict[str, np.ndarray] = {n: np.zeros_like(p) for n, p in self._params.items()}
        self.training = True

    # -- modes
    def train(self, mode: bool = True) -> "_Base":
        """Training mode (the default): forward keeps what backward needs; dropout is on."""
        self.training = bool(mode)
        return self

    def eval(self) -> "_Base":
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
            raise KeyError(
                f"{name}.load_state_dict: missing keys {missing}, unexpected keys {extra}"
            )
        converted = {}
        for k, v in state.items():
            arr = np.asarray(v)
            numeric = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            if not (numeric or is_bfloat16(arr.dtype)):
                raise TypeError(f"{name}.load_state_dict: '{k}' has dtype {arr.dtype}")
            if arr.shape != self._params[k].shape:
                raise ValueError(
                    f"{name}.load_state_dict: '{k}' has shape {arr.shape}, expected "
                    f"{self._params[k].shape}"
                )
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
    _layer_norm = False  # LayerNormLSTM, LayerNormGRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        dtype=np.float32,
        backend: str = "auto",
        seed: Optional[int] = None,
        precision: str = "fp32",
        regularization: Optional[Regularization] = None,
        **options,
    ):
        name = type(self).__name__
        self.regularization = regularization or Regularization()
        self.input_size = _check_int("input_size", input_size, 1)
        self.hidden_size = _check_int("hidden_size", hidden_size, 1)
        self.num_layers = _check_int("num_layers", num_layers, 1)
        self.proj_size = _check_int("proj_size", proj_size, 0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"{name}: proj_size must be smaller than hidden_size, got "
                f"proj_size={proj_size}, hidden_size={hidden_size}"
            )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"{name}: dropout must be a number in [0, 1), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"{name}: dropout={dropout} acts between layers and has no effect with "
                f"num_layers=1",
                stacklevel=3,
            )
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.dtype = _check_dtype(dtype)
        self.backend = backend
        self._impl = get_backend(backend)
        self._options = self._spec.check_options(name, options)
        self.precision = _check_precision(name, precision, self.dtype, backend)
        self._dropout_rng = np.random.default_rng(None if seed is None else seed + 1)
        # zoneout, recurrent dropout and weight drop draw from their own generator, so that
        # turning them on leaves the dropout masks of a seed as they were.
        self._regularization_rng = np.random.default_rng(None if seed is None else seed + 2)
        H, D = self.hidden_size, self._D
        shapes = {}
        for layer in range(self.num_layers):
            for d in range(D):
                shapes.update(
                    self._spec.param_shapes(
                        self.input_size if layer == 0 else D * self._P,
                        H,
                        self.proj_size,
                        self.bias,
                        suffix=self._suffix(layer, d),
                    )
                )
        self._init_params(shapes, H, seed)
        if self._layer_norm:  # gains 1, biases 0, as torch.nn.LayerNorm's
            for layer in range(self.num_layers):
                for d in range(D):
                    for n, shape in self._spec.layer_norm_params(H, self._suffix(layer, d)).items():
                        init = np.zeros if n.startswith("layer_norm_cell_bias") else np.ones
                        self._params[n] = init(shape, self.dtype)
                        self.grads[n] = np.zeros(shape, self.dtype)
        self._tape = None  # what the last training forward keeps for backward
        # layer -> the (T, B, D*P) mask applied to that layer's output by the last training
        # forward (0 or 1/(1-dropout)); backward applies the same.
        self.last_dropout_masks: Dict[int, np.ndarray] = {}
        # (layer, d) -> the regularization masks of the last forward, rows in the caller's
        # order and steps in the order the direction runs: "zoneout" (the factor d of each
        # state: LSTM (d_h, d_c), either None; GRU d_h), "recurrent_mask" (B, P),
        # "weight_drop" (G*H, P) (training only; the last two scaled by 1/(1-p)).
        self.last_regularization_masks: Dict[Tuple[int, int], Dict[str, Any]] = {}
        self._last_forward = None  # "training" | "inference"

    @property
    def _D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _P(self) -> int:
        return self.proj_size or self.hidden_size

    @staticmethod
    def _suffix(layer: int, d: int) -> str:
        return f"_l{layer}" + ("_reverse" if d else "")

    def _names(self, layer: int, d: int) -> tuple:
        return self._spec.param_names(self._suffix(layer, d), projection=bool(self.proj_size))

    def _weights(self, layer: int, d: int) -> list:
        return [self._params.get(n) for n in self._names(layer, d)]

    def _ln_names(self, layer: int, d: int) -> tuple:
        """The layer-norm parameters of (layer, d), in the order the kernels take them."""
        return tuple(self._spec.layer_norm_params(self.hidden_size, self._suffix(layer, d)))

    def _draw_regularization(self, T: int, B: int, training: bool) -> Dict[Tuple[int, int], dict]:
        """The regularization masks of one forward, per (layer, direction), over the caller's
        rows (see last_regularization_masks); {} when there is none."""
        reg, rng, dtype = self.regularization, self._regularization_rng, self.dtype
        if not reg.active or not (training or reg.zoneout):
            return {}
        H, P, G = self.hidden_size, self._P, self._spec.G

        def keep(shape: tuple, p: float) -> np.ndarray:  # 1/(1-p) with probability 1 - p
            return (rng.random(shape) >= p).astype(dtype) / dtype.type(1 - p)

        def zone(n: int, p: float) -> Optional[np.ndarray]:
            if p == 0:
                return None
            if training:  # d = 1 (keep the previous value) with probability p
                return (rng.random((T, B, n)) < p).astype(dtype)
            return np.full((T, B, n), p, dtype)

        out: Dict[Tuple[int, int], dict] = {}
        for layer in range(self.num_layers):
            for d in range(self._D):
                m: Dict[str, Any] = {}
                if reg.zoneout:
                    z_h = zone(P, reg.zoneout_h)
                    m["zoneout"] = (z_h, zone(H, reg.zoneout_c)) if self._cell == "lstm" else z_h
                if training and reg.recurrent_dropout > 0:
                    m["recurrent_mask"] = keep((B, P), reg.recurrent_dropout)
                if training and reg.weight_drop > 0:
                    m["weight_drop"] = keep((G * H, P), reg.weight_drop)
                out[layer, d] = m
        return out

    # -- argument handling
    def _input(self, x) -> Tuple[np.ndarray, bool]:
        name = type(self).__name__
        arr = _host_array(name, x)
        if arr.dtype != self.dtype:
            raise TypeError(
                f"{name}: input x has dtype {arr.dtype}, but the layer's parameters "
                f"are {self.dtype} (convert x, or build the layer with "
                f"dtype={arr.dtype})"
            )
        if arr.ndim == 2:
            arr, unbatched = arr[:, None, :], True
        elif arr.ndim == 3:
            unbatched = False
            if self.batch_first:
                arr = arr.transpose(1, 0, 2)
        else:
            raise ValueError(
                f"{name}: input x must be 3-D ({'B, T' if self.batch_first else 'T, B'}"
                f", I) or 2-D (T, I), got shape {arr.shape}"
            )
        if arr.shape[2] != self.input_size:
            raise ValueError(
                f"{name}: input x has {arr.shape[2]} features (shape {np.shape(x)}), "
                f"expected input_size={self.input_size}"
            )
        return arr, unbatched

    def _state(self, what: str, s, B: int, unbatched: bool) -> Optional[np.ndarray]:
        """One initial state (h0 or c0) as (num_layers*D, B, n), or None."""
        if s is None:
            return None
        name = type(self).__name__
        arr = np.asarray(s)
        LD, n = (
            self.num_layers * self._D,
            self._spec.state_size(what[0], self.hidden_size, self.proj_size),
        )
        want = (LD, n) if unbatched else (LD, B, n)
        if arr.shape != want:
            letter = "proj_size" if n != self.hidden_size else "H"
            raise ValueError(
                f"{name}: {what} has shape {arr.shape}, expected (num_layers * "
                f"num_directions, {'' if unbatched else 'B, '}{letter}) = {want}"
            )
        if arr.dtype != self.dtype:
            raise TypeError(f"{name}: {what} has dtype {arr.dtype}, expected {self.dtype}")
        return arr[:, None, :] if unbatched else arr

    def _split_hx(self, hx, B: int, unbatched: bool) -> list:
        """The initial states, one entry per state of the cell (None: zeros)."""
        states = self._spec.states
        if len(states) == 1:
            return [self._state("h0", hx, B, unbatched)]
        if hx is None:
            return [None] * len(states)
        name = type(self).__name__
        if not isinstance(hx, (tuple, list)) or len(hx) != len(states):
            raise TypeError(
                f"{name}: the state must be a tuple ({', '.join(s + '0' for s in states)}"
                f") (either may be None), got {type(hx).__name__}"
            )
        return [self._state(f"{s}0", v, B, unbatched) for s, v in zip(states, hx)]

    # -- forward / backward
    def forward(
        self, x: ArrayLike, hx=None, lengths: Optional[ArrayLike] = None
    ) -> Tuple[np.ndarray, Union[np.ndarray, Tuple[np.ndarray, ...]]]:
        """Runs the layer. x (T, B, I) (batch_first: (B, T, I)) or unbatched (T, I). Returns
        ``y, h_n`` (GRU, RNN) or ``y, (h_n, c_n)`` (LSTM), shaped as torch.nn documents:
        y (T, B, D*P), h_n (num_layers*D, B, P), c_n (num_layers*D, B, H). ``lengths``: (B,)
        or a :class:`fastrnn.packed.PackedBatch`."""
        cell = self._spec
        x, unbatched = self._input(x)
        T, B = x.shape[:2]
        init = self._split_hx(hx, B, unbatched)
        pk = as_packed(f"{type(self).__name__}.forward", lengths, T, B)
        training = self._grad_mode()
        D, L = self._D, self.num_layers
        # Sorted once: every (layer, direction) runs on rows in the kernels' order.
        if pk is not None:
            x = pk.sort(x, 1)
            init = [None if s is None else pk.sort(s, 1) for s in init]
        masks = {}  # layer -> dropout mask over the caller's rows

        def draw(layer: int, out: np.ndarray) -> Optional[np.ndarray]:
            # Drawn over the caller's rows, so a seed gives the same masks with or without
            # lengths; applied to the sorted rows.
            keep = self._dropout_rng.random(out.shape) >= self.dropout
            masks[layer] = keep.astype(self.dtype) / self.dtype.type(1 - self.dropout)
            return masks[layer] if pk is None else pk.sort(masks[layer], 1)

        reg = self._draw_regularization(T, B, training)
        weights = [[self._weights(layer, d) for d in range(D)] for layer in range(L)]
        for (layer, d), m in reg.items():
            if "weight_drop" in m:  # W_hh * mask for this call; backward masks dW_hh
                weights[layer][d][1] = weights[layer][d][1] * m["weight_drop"]

        def extras(layer: int, d: int) -> dict:  # the kernels' rows: sorted by length
            m = reg.get((layer, d), {})
            out = {}
            if self._layer_norm:
                out["layer_norm"] = tuple(self._params[n] for n in self._ln_names(layer, d))
            if "zoneout" in m:
                z = m["zoneout"]
                sort = (lambda a: a) if pk is None else (lambda a: pk.sort(a, 1))
                out["zoneout"] = (
                    tuple(None if a is None else sort(a) for a in z)
                    if isinstance(z, tuple)
                    else sort(z)
                )
            if "recurrent_mask" in m:
                r = m["recurrent_mask"]
                out["recurrent_mask"] = r if pk is None else pk.sort(r, 0)
            return out

        y, finals, tape = stack_forward(
            self._impl,
            cell,
            dict(self._options, precision=self.precision),
            x,
            init,
            weights,
            None if pk is None else pk.sorted(),
            D,
            draw if training and self.dropout > 0 else None,
            training,
            extras=extras if reg or self._layer_norm else None,
        )
        self.last_dropout_masks = masks
        self.last_regularization_masks = reg
        self._tape = (tape, pk, unbatched) if training else None
        self._last_forward = "training" if training else "inference"
        if pk is not None:
            y = pk.unsort(y, 1)
            finals = [pk.unsort(f, 1) for f in finals]
        if self.batch_first and not unbatched:
            y = y.transpose(1, 0, 2)
        if unbatched:
            y, finals = y[:, 0], [f[:, 0] for f in finals]
        return (y, tuple(finals)) if len(finals) > 1 else (y, finals[0])

    __call__ = forward

    def _check_backward(self) -> tuple:
        name = type(self).__name__
        if self._tape is None:
            if self._last_forward is None:
                raise RuntimeError(f"{name}.backward: called before any forward")
            if self._last_forward == "inference":
                raise RuntimeError(
                    f"{name}.backward: the last forward ran in inference mode "
                    f"(eval() or no_grad()) and kept nothing for backward"
                )
            raise RuntimeError(
                f"{name}.backward: already called for the last forward; run forward again"
            )
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
            raise ValueError(
                f"{name}.backward: {what} has shape {arr.shape}, expected {want} "
                f"(the shape of the forward's matching output)"
            )
        if arr.dtype != self.dtype and not _float32_grad_ok(self.dtype, arr.dtype):
            raise TypeError(
                f"{name}.backward: {what} has dtype {arr.dtype}, expected {_grad_dtypes(self)}"
            )
        if what == "dy" and self.batch_first and not unbatched:
            arr = arr.transpose(1, 0, 2)
        return arr[:, None] if unbatched else arr

    def _backward(self, dy, dfinals: list) -> Tuple[np.ndarray, list]:
        """dx and the initial states' gradients, from dy and the final states' gradients."""
        cell = self._spec
        tape, pk, un = self._check_backward()
        T, B, L, D = tape.T, tape.B, self.num_layers, self._D
        widths = [cell.state_size(s, self.hidden_size, self.proj_size) for s in cell.states]
        dy = self._grad_in("dy", dy, (T, B, D * self._P), un)
        dfinals = [
            self._grad_in(f"d{s}_n", g, (L * D, B, n), un)
            for s, g, n in zip(cell.states, dfinals, widths)
        ]
        self._tape = None  # one backward per forward, like the kernels' saved state
        if pk is not None:
            dy = None if dy is None else pk.sort(dy, 1)
            dfinals = [None if g is None else pk.sort(g, 1) for g in dfinals]
        dx, dinit, wgrads = stack_backward(tape, dy, dfinals)
        for (layer, d), m in self.last_regularization_masks.items():
            if "weight_drop" in m:  # the gradient through W_hh * mask
                wgrads[layer][d]["w_hh"] = wgrads[layer][d]["w_hh"] * m["weight_drop"]
        projection = bool(self.proj_size)
        for layer in range(L):
            for d in range(D):
                args = cell.weight_args(projection)
                names = self._names(layer, d)
                if self._layer_norm:
                    args, names = args + cell.layer_norm_args, names + self._ln_names(layer, d)
                self._accumulate(names, [wgrads[layer][d][w] for w in args])
        if pk is not None:
            dx = pk.unsort(dx, 1)
            dinit = [pk.unsort(g, 1) for g in dinit]
        if self.batch_first and not un:
            dx = dx.transpose(1, 0, 2)
        if un:
            dx, dinit = dx[:, 0], [g[:, 0] for g in dinit]
        return dx, dinit


class _OneStateLayer(_RNNBase):
    """GRU and RNN: the state is h alone."""

    def backward(
        self, dy: Optional[ArrayLike], dh_n: Optional[ArrayLike] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """BPTT through the last forward: ``dx, dh0``; parameter gradients accumulate into
        ``self.grads``. dy (shaped as y) and dh_n (as h_n) may be None (zeros)."""
        dx, (dh0,) = self._backward(dy, [dh_n])
        return dx, dh0


class RNN(_OneStateLayer):
    """Elman RNN layers, h' = act(W_ih x + b_ih + W_hh h + b_hh), act = "tanh" | "relu".
    Arguments as torch.nn.RNN, plus dtype (float32, float64 or ml_dtypes.bfloat16), backend
    ("auto" | "cpu" | "numpy"), seed and precision ("fp32" | "bf16", as fastrnn.ops; a
    bfloat16 dtype means "bf16")."""

    _cell = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype=np.float32,
        backend: str = "auto",
        seed: Optional[int] = None,
        precision: str = "fp32",
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            dtype,
            backend,
            seed,
            precision,
            nonlinearity=nonlinearity,
        )


class GRU(_OneStateLayer):
    """GRU layers. Arguments as torch.nn.GRU, plus reset_after (True: PyTorch/cuDNN's
    n = tanh(W_in x + b_in + r (W_hn h + b_hn)); False: Cho et al.'s
    n = tanh(W_in x + b_in + W_hn (r h) + b_hn)), dtype, backend, seed and precision, and the
    regularization keywords zoneout, recurrent_dropout, weight_drop
    (:mod:`fastrnn.regularization`; off by default)."""

    _cell = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype=np.float32,
        backend: str = "auto",
        seed: Optional[int] = None,
        reset_after: bool = True,
        precision: str = "fp32",
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
    ):
        self.reset_after = bool(reset_after)
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            dtype,
            backend,
            seed,
            precision,
            regularization(type(self).__name__, "gru", zoneout, recurrent_dropout, weight_drop),
            reset_after=self.reset_after,
        )


class LSTM(_RNNBase):
    """LSTM layers. Arguments as torch.nn.LSTM (proj_size included), plus dtype, backend,
    seed and precision, and the regularization keywords zoneout (p, or (p_h, p_c)),
    recurrent_dropout, weight_drop (:mod:`fastrnn.regularization`; off by default)."""

    _cell = "lstm"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        dtype=np.float32,
        backend: str = "auto",
        seed: Optional[int] = None,
        precision: str = "fp32",
        *,
        zoneout: Union[float, Tuple[float, float]] = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            dtype,
            backend,
            seed,
            precision,
            regularization(type(self).__name__, "lstm", zoneout, recurrent_dropout, weight_drop),
        )

    def backward(
        self,
        dy: Optional[ArrayLike],
        dstate: Optional[Tuple[Optional[ArrayLike], Optional[ArrayLike]]] = None,
    ) -> Tuple[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """BPTT through the last forward: ``dx, (dh0, dc0)``; parameter gradients accumulate
        into ``self.grads``. dy (shaped as y) and either of dstate = (dh_n, dc_n) may be None."""
        if dstate is None:
            dstate = (None, None)
        if not isinstance(dstate, (tuple, list)) or len(dstate) != 2:
            raise TypeError("LSTM.backward: dstate must be a tuple (dh_n, dc_n)")
        dx, (dh0, dc0) = self._backward(dy, list(dstate))
        return dx, (dh0, dc0)


class LayerNormLSTM(LSTM):
    """Layer-normalized LSTM layers (Ba et al. 2016; the math in :mod:`fastrnn.reference`):
    a = LN(W_ih x; gamma_ih) + LN(W_hh h; gamma_hh) + b_ih + b_hh over the 4H gate
    pre-activations, h = o tanh(LN(c; gamma_c, beta_c)). Arguments as :class:`LSTM` but
    proj_size; the parameters torch.nn.LSTM has plus layer_norm_ih_weight_l{k},
    layer_norm_hh_weight_l{k} (4H), layer_norm_cell_weight_l{k}, layer_norm_cell_bias_l{k}
    (H) (``_reverse`` for the second direction); the gains start at 1, the bias at 0."""

    _layer_norm = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype=np.float32,
        backend: str = "auto",
        seed: Optional[int] = None,
        precision: str = "fp32",
        *,
        zoneout: Union[float, Tuple[float, float]] = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
            dtype, backend, seed, precision, zoneout=zoneout,
            recurrent_dropout=recurrent_dropout, weight_drop=weight_drop,
        )  # fmt: skip


class LayerNormGRU(GRU):
    """Layer-normalized GRU layers, reset after (the math in :mod:`fastrnn.reference`):
    a^x = LN(W_ih x; gamma_ih) + b_ih, a^h = LN(W_hh h; gamma_hh) + b_hh over the 3H
    pre-activations. Arguments as :class:`GRU` but reset_after; the parameters torch.nn.GRU
    has plus layer_norm_ih_weight_l{k}, layer_norm_hh_weight_l{k} (3H), starting at 1."""

    _layer_norm = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype=np.float32,
        backend: str = "auto",
        seed: Optional[int] = None,
        precision: str = "fp32",
        *,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            dtype, backend, seed, True, precision, zoneout=zoneout,
            recurrent_dropout=recurrent_dropout, weight_drop=weight_drop,
        )  # fmt: skip
