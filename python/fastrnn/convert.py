"""Weights of one recurrent layer (one layer, one direction) converted between torch.nn's
names and layouts (fastrnn's) and those of Keras and Haste.

torch.nn / fastrnn keep, per (layer, direction) with a suffix such as ``"_l0"``:
``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih`` (G*H,), ``bias_hh`` (G*H,), gates
stacked along G*H as i, f, g, o (LSTM), r, z, n (GRU), one block (RNN).

- **Keras** (``tf.keras.layers.LSTM / GRU / SimpleRNN``, ``layer.get_weights()`` and
  ``layer.set_weights()``): ``kernel`` (I, G*H), ``recurrent_kernel`` (H, G*H) and, unless
  ``use_bias=False``, ``bias``; gates along the columns as i, f, c, o (LSTM; c is torch's g),
  z, r, h (GRU; h is torch's n). LSTM and SimpleRNN have one bias (G*H,). A GRU with
  ``reset_after=True`` (the Keras 2+ default, cuDNN's and torch's form) has ``bias`` (2, 3H):
  row 0 the input bias, row 1 the recurrent bias; with ``reset_after=False`` (Cho et al.
  2014, ``h~ = tanh(W_h x + U_h (r * h) + b_h)``) one bias (3H,), and it runs as
  ``fastrnn.GRU(..., reset_after=False)``, which torch.nn has no form of.
- **Haste** (lmnt-com/haste; its documented variables ``kernel``, ``recurrent_kernel``,
  ``bias``, ``recurrent_bias``): LSTM ``kernel`` (I, 4H), ``recurrent_kernel`` (H, 4H),
  ``bias`` (4H,), gates i, g, f, o; GRU ``kernel`` (I, 3H), ``recurrent_kernel`` (H, 3H),
  ``bias`` (3H,) (input side) and ``recurrent_bias`` (3H,), gates z, r, n, with the reset gate
  applied after the recurrent matrix product and its bias (torch's form). Haste has no plain
  (Elman) RNN. Source: Haste's docs/pytorch/haste_pytorch/LSTM.md and GRU.md ("Variables"),
  and its CUDA kernels' gate indices (lib/lstm_forward_gpu.cu.cc, lib/gru_forward_gpu.cu.cc).

Where the other library has one bias for what torch splits in two (Keras LSTM and SimpleRNN,
Keras GRU with reset_after=False, Haste LSTM), the conversion into torch names puts the bias
in ``bias_ih`` and zeros in ``bias_hh``, and the conversion out sums the two: the model is
the same, since only the sum enters the equations.

The gate activations are the libraries' defaults (sigmoid for the gates, tanh otherwise;
Keras 2.3+/TF2's default ``recurrent_activation`` is "sigmoid"). A Keras layer built with
other activations (e.g. "hard_sigmoid", the Keras < 2.3 default) computes another function,
which no weight conversion can fix; neither can its weights say so.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from .cell_spec import CellSpec, spec

__all__ = ["from_keras", "to_keras", "from_haste", "to_haste", "KERAS_GATES", "HASTE_GATES"]

# Each library's gate order along G*H, in torch's gate names (CellSpec.gates).
KERAS_GATES: Dict[str, Tuple[str, ...]] = {
    "lstm": ("i", "f", "g", "o"),
    "gru": ("z", "r", "n"),
    "rnn": ("h",),
}
HASTE_GATES: Dict[str, Tuple[str, ...]] = {
    "lstm": ("i", "g", "f", "o"),
    "gru": ("z", "r", "n"),
}

_KERAS_NAMES = ("kernel", "recurrent_kernel", "bias")
_HASTE_NAMES = {
    "lstm": ("kernel", "recurrent_kernel", "bias"),
    "gru": ("kernel", "recurrent_kernel", "bias", "recurrent_bias"),
}

Weights = Union[Sequence[ArrayLike], Mapping[str, ArrayLike]]


# ----------------------------------------------------------------------------- helpers


def _cell(fn: str, cell: str, gates: Mapping[str, Tuple[str, ...]], library: str) -> CellSpec:
    """The spec of ``cell``; ValueError if it is unknown or the library has no such layer."""
    name = cell.lower() if isinstance(cell, str) else None
    if name not in gates:
        raise ValueError(
            f"{fn}: cell must be one of {sorted(gates)} ({library} layers), got {cell!r}"
        )
    return spec(name)


def _float(fn: str, arg: str, a: ArrayLike) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(f"{fn}: {arg} must be a float array, got dtype {a.dtype}")
    return a


def _check_shape(fn: str, arg: str, a: np.ndarray, shape: Tuple[int, ...], hint: str = "") -> None:
    if a.shape != shape:
        raise ValueError(f"{fn}: {arg} must have shape {shape}, got {a.shape}{hint}")


def _unpack(
    fn: str, weights: Weights, names: Tuple[str, ...], optional: Tuple[str, ...] = ()
) -> Dict[str, np.ndarray]:
    """``weights`` (arrays in the order of ``names``, or a mapping by those names) as a dict;
    the ``optional`` names (trailing) may be left out. Arrays come back in one float dtype."""
    required = tuple(n for n in names if n not in optional)
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(names))
        missing = [n for n in required if n not in weights]
        if unknown or missing:
            raise ValueError(
                f"{fn}: weights must have the keys {list(names)}"
                + (f" ({list(optional)} optional)" if optional else "")
                + f"; missing {missing}, unknown {unknown}"
            )
        got = {n: weights[n] for n in names if n in weights}
    elif isinstance(weights, (list, tuple)):
        if len(weights) not in (len(names), len(required)):
            counts = sorted({len(names), len(required)})
            raise ValueError(
                f"{fn}: weights must be {' or '.join(map(str, counts))} arrays "
                f"({', '.join(names)}), got {len(weights)}"
            )
        got = dict(zip(names, weights))
    else:
        raise ValueError(
            f"{fn}: weights must be a list of arrays or a dict, got {type(weights).__name__}"
        )
    arrays = {n: _float(fn, n, a) for n, a in got.items()}
    dtype = np.result_type(*arrays.values())
    return {n: a.astype(dtype, copy=False) for n, a in arrays.items()}


def _kernel_dims(fn: str, kernel: np.ndarray, G: int) -> Tuple[int, int]:
    """(I, H) of a column-gated ``kernel`` (I, G*H)."""
    if kernel.ndim != 2 or kernel.shape[1] % G or 0 in kernel.shape:
        raise ValueError(
            f"{fn}: kernel must have shape (input_size, {G} * hidden_size) with both > 0, "
            f"got {kernel.shape}"
        )
    return kernel.shape[0], kernel.shape[1] // G


def _regate(a: np.ndarray, src: Sequence[str], dst: Sequence[str], axis: int) -> np.ndarray:
    """A copy of ``a`` with its len(src) gate blocks along ``axis`` reordered from the gate
    order ``src`` to ``dst``."""
    blocks = np.split(a, len(src), axis=axis)
    return np.ascontiguousarray(np.concatenate([blocks[src.index(g)] for g in dst], axis=axis))


def _rows(kernel: np.ndarray, src: Sequence[str], dst: Sequence[str]) -> np.ndarray:
    """Column-gated (N, G*H) in gate order ``src`` -> torch's row-gated (G*H, N) in ``dst``."""
    return _regate(kernel.T, src, dst, axis=0)


def _cols(weight: np.ndarray, src: Sequence[str], dst: Sequence[str]) -> np.ndarray:
    """torch's row-gated (G*H, N) in gate order ``src`` -> column-gated (N, G*H) in ``dst``."""
    return np.ascontiguousarray(_regate(weight, src, dst, axis=0).T)


def _torch_state(
    fn: str, s: CellSpec, state, suffix: str, reset_after: Optional[bool]
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """(w_ih, w_hh, b_ih, b_hh) of one (layer, direction) of ``state`` (a dict under torch's
    names, or a fastrnn layer or cell), shapes checked; the biases are None for a layer
    without bias. ``reset_after``: the GRU form the caller converts, checked against a
    fastrnn GRU layer's own (a dict does not say which form it holds)."""
    if hasattr(state, "state_dict") and hasattr(state, "_cell"):
        if state._cell != s.name:
            raise ValueError(f"{fn}: cell is {s.name!r} but the layer given is a {state._cell}")
        layer_form = getattr(state, "reset_after", True)
        if s.name == "gru" and reset_after is not None and layer_form != reset_after:
            raise ValueError(
                f"{fn}: the GRU given has reset_after={layer_form}, but reset_after="
                f"{reset_after} was asked for; the two GRU forms are different functions "
                f"and no weight conversion turns one into the other"
            )
        state = state.state_dict()
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{fn}: state must be a dict of torch.nn-named arrays or a fastrnn layer, "
            f"got {type(state).__name__}"
        )
    names = s.param_names(suffix)
    if f"weight_hr{suffix}" in state:
        raise ValueError(
            f"{fn}: {'weight_hr' + suffix!r} is an LSTM projection (proj_size), which this "
            f"library's layers do not have"
        )
    missing = [n for n in names[:2] if n not in state]
    if missing:
        near = sorted(k for k in state if str(k).startswith(("weight_", "bias_")))
        raise ValueError(f"{fn}: state has no {missing} (suffix={suffix!r}); it has {near}")
    has_bias = [n in state for n in names[2:]]
    if any(has_bias) and not all(has_bias):
        raise ValueError(f"{fn}: state must have both {names[2]!r} and {names[3]!r} or neither")
    arrays = [_float(fn, n, state[n]) for n in names if n in state]
    dtype = np.result_type(*arrays)
    arrays = [a.astype(dtype, copy=False) for a in arrays]
    w_ih, w_hh = arrays[:2]
    if w_hh.ndim != 2 or w_hh.shape[0] != s.G * w_hh.shape[1] or w_hh.shape[1] == 0:
        H = w_hh.shape[1] if w_hh.ndim == 2 else "H"
        raise ValueError(f"{fn}: {names[1]} must have shape ({s.G} * {H}, {H}), got {w_hh.shape}")
    GH = w_hh.shape[0]
    if w_ih.ndim != 2 or w_ih.shape[0] != GH or w_ih.shape[1] == 0:
        I = w_ih.shape[1] if w_ih.ndim == 2 and w_ih.shape[1] else "I"
        raise ValueError(f"{fn}: {names[0]} must have shape ({GH}, {I}), got {w_ih.shape}")
    b_ih = b_hh = None
    if len(arrays) == 4:
        b_ih, b_hh = arrays[2:]
        _check_shape(fn, names[2], b_ih, (GH,))
        _check_shape(fn, names[3], b_hh, (GH,))
    return w_ih, w_hh, b_ih, b_hh


def _check_flag(fn: str, arg: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{fn}: {arg} must be True or False, got {value!r}")
    return bool(value)


# ----------------------------------------------------------------------------- Keras


def from_keras(
    cell: str,
    weights: Weights,
    *,
    reset_after: bool = True,
    suffix: str = "_l0",
    for_torch: bool = False,
) -> Dict[str, np.ndarray]:
    """A Keras layer's weights under torch.nn's names, for ``fastrnn.LSTM / GRU / RNN``'s
    ``load_state_dict`` (and torch.nn's, see ``for_torch``).

    Args:
        cell: "lstm" (``keras.layers.LSTM``), "gru" (``GRU``) or "rnn" (``SimpleRNN``).
        weights: ``layer.get_weights()``: ``[kernel, recurrent_kernel, bias]``, or without
            ``bias`` for ``use_bias=False``; or a dict by those names.
            kernel (I, G*H); recurrent_kernel (H, G*H); bias (G*H,), or (2, 3H) for a GRU
            with reset_after=True (row 0 input bias, row 1 recurrent bias).
        reset_after: the Keras GRU's ``reset_after`` (only GRUs take False). False gives the
            weights of ``fastrnn.GRU(..., reset_after=False)``, the same model; torch.nn has
            no such GRU.
        suffix: appended to torch's names: "_l0" (first layer), "_l1_reverse", "" (cells).
        for_torch: the result is meant for torch.nn: ValueError for a reset_after=False GRU.

    Returns:
        ``{"weight_ih" + suffix: (G*H, I), "weight_hh" + suffix: (G*H, H), "bias_ih" +
        suffix: (G*H,), "bias_hh" + suffix: (G*H,)}``: new arrays in the weights' dtype; no
        biases for a layer without bias. A single Keras bias goes to bias_ih, zeros to
        bias_hh.
    """
    fn = "from_keras"
    s = _cell(fn, cell, KERAS_GATES, "Keras")
    reset_after = _check_flag(fn, "reset_after", reset_after)
    if not reset_after and s.name != "gru":
        raise ValueError(f"{fn}: reset_after=False is a GRU option; cell is {s.name!r}")
    if for_torch and not reset_after:
        raise ValueError(
            f"{fn}: a Keras GRU with reset_after=False (Cho et al.: U_h (r * h)) has no "
            f"torch.nn form (torch.nn.GRU computes r * (W_hn h + b_hn)); load it into "
            f"fastrnn.GRU(..., reset_after=False) instead"
        )
    w = _unpack(fn, weights, _KERAS_NAMES, optional=("bias",))
    I, H = _kernel_dims(fn, w["kernel"], s.G)
    GH = s.G * H
    _check_shape(fn, "recurrent_kernel", w["recurrent_kernel"], (H, GH))
    order = KERAS_GATES[s.name]
    names = s.param_names(suffix)
    out = {
        names[0]: _rows(w["kernel"], order, s.gates),
        names[1]: _rows(w["recurrent_kernel"], order, s.gates),
    }
    if "bias" in w:
        bias = w["bias"]
        if s.name == "gru" and reset_after:
            hint = (
                " (a bias (3H,) is a reset_after=False GRU's: pass reset_after=False)"
                if bias.shape == (GH,)
                else ""
            )
            _check_shape(fn, "bias", bias, (2, GH), hint)
            b_ih, b_hh = bias[0], bias[1]
        else:
            hint = ""
            if s.name == "gru" and bias.shape == (2, GH):
                hint = " (a bias (2, 3H) is a reset_after=True GRU's: pass reset_after=True)"
            _check_shape(fn, "bias", bias, (GH,), hint)
            b_ih, b_hh = bias, np.zeros_like(bias)
        out[names[2]] = _regate(b_ih, order, s.gates, axis=0)
        out[names[3]] = _regate(b_hh, order, s.gates, axis=0)
    return out


def to_keras(
    cell: str,
    state,
    *,
    reset_after: bool = True,
    suffix: str = "_l0",
) -> List[np.ndarray]:
    """One (layer, direction) of torch.nn-named weights as a Keras layer's weight list, for
    ``layer.set_weights()``.

    Args:
        cell: "lstm", "gru" or "rnn" (Keras ``LSTM``, ``GRU``, ``SimpleRNN``).
        state: a dict under torch's names (a ``state_dict()`` of fastrnn or of torch.nn, as
            NumPy arrays; other keys are ignored) or a fastrnn layer or cell itself.
            ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh``
            (G*H,) (both, or neither for a layer without bias). No projection (weight_hr).
        reset_after: the GRU form, the same on both sides (a conversion never changes it):
            True for torch.nn.GRU and fastrnn.GRU()'s default, to Keras ``GRU(...,
            reset_after=True)``; False for ``fastrnn.GRU(..., reset_after=False)``, to
            Keras ``GRU(..., reset_after=False)``. With a fastrnn GRU given as ``state``, it
            must match the layer's own; a dict cannot be checked.
        suffix: which (layer, direction) of ``state``: "_l0", "_l1_reverse", "" (cells).

    Returns:
        ``[kernel (I, G*H), recurrent_kernel (H, G*H), bias]``: bias (G*H,) = bias_ih +
        bias_hh (in Cho et al.'s GRU form, too, only that sum is a parameter of the model),
        or (2, 3H) for a GRU with reset_after=True; ``[kernel, recurrent_kernel]`` for a
        layer without bias (Keras ``use_bias=False``). New arrays in the state's dtype.
    """
    fn = "to_keras"
    s = _cell(fn, cell, KERAS_GATES, "Keras")
    reset_after = _check_flag(fn, "reset_after", reset_after)
    if not reset_after and s.name != "gru":
        raise ValueError(f"{fn}: reset_after=False is a GRU option; cell is {s.name!r}")
    w_ih, w_hh, b_ih, b_hh = _torch_state(fn, s, state, suffix, reset_after)
    order = KERAS_GATES[s.name]
    out = [_cols(w_ih, s.gates, order), _cols(w_hh, s.gates, order)]
    if b_ih is not None:
        if s.name == "gru" and reset_after:
            out.append(np.stack([_regate(b, s.gates, order, axis=0) for b in (b_ih, b_hh)], axis=0))
        else:
            out.append(_regate(b_ih + b_hh, s.gates, order, axis=0))
    return out


# ----------------------------------------------------------------------------- Haste


def from_haste(cell: str, weights: Weights, *, suffix: str = "_l0") -> Dict[str, np.ndarray]:
    """A Haste layer's weights under torch.nn's names, for ``fastrnn.LSTM / GRU``'s (or
    torch.nn's) ``load_state_dict``; Haste's GRU is torch's form (reset after the product).

    Args:
        cell: "lstm" (``haste.LSTM``) or "gru" (``haste.GRU``).
        weights: a dict by Haste's variable names (a haste_pytorch ``state_dict()`` as NumPy
            arrays), or the arrays in this order:
            LSTM: kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,); gates i, g, f, o.
            GRU: kernel (I, 3H), recurrent_kernel (H, 3H), bias (3H,), recurrent_bias (3H,);
            gates z, r, n.
        suffix: appended to torch's names: "_l0", "_l1_reverse", "" (cells).

    Returns:
        ``{"weight_ih" + suffix: (G*H, I), "weight_hh" + suffix: (G*H, H), "bias_ih" +
        suffix: (G*H,), "bias_hh" + suffix: (G*H,)}``, new arrays in the weights' dtype; the
        LSTM's single bias goes to bias_ih, zeros to bias_hh.
    """
    fn = "from_haste"
    s = _cell(fn, cell, HASTE_GATES, "Haste")
    w = _unpack(fn, weights, _HASTE_NAMES[s.name])
    I, H = _kernel_dims(fn, w["kernel"], s.G)
    GH = s.G * H
    _check_shape(fn, "recurrent_kernel", w["recurrent_kernel"], (H, GH))
    _check_shape(fn, "bias", w["bias"], (GH,))
    if s.name == "gru":
        _check_shape(fn, "recurrent_bias", w["recurrent_bias"], (GH,))
        b_hh = w["recurrent_bias"]
    else:
        b_hh = np.zeros_like(w["bias"])
    order = HASTE_GATES[s.name]
    names = s.param_names(suffix)
    return {
        names[0]: _rows(w["kernel"], order, s.gates),
        names[1]: _rows(w["recurrent_kernel"], order, s.gates),
        names[2]: _regate(w["bias"], order, s.gates, axis=0),
        names[3]: _regate(b_hh, order, s.gates, axis=0),
    }


def to_haste(cell: str, state, *, suffix: str = "_l0") -> Dict[str, np.ndarray]:
    """One (layer, direction) of torch.nn-named weights as a Haste layer's variables.

    Args:
        cell: "lstm" or "gru" (Haste has no Elman RNN).
        state: a dict under torch's names (other keys ignored) or a fastrnn layer or cell:
            ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih``, ``bias_hh`` (G*H,)
            (a layer without bias gets zero biases). A GRU must be torch's form (a fastrnn
            GRU with reset_after=False is refused: Haste has no such GRU).
        suffix: which (layer, direction) of ``state``: "_l0", "_l1_reverse", "" (cells).

    Returns:
        A dict in Haste's variable order, e.g. for haste_pytorch's ``load_state_dict`` after
        ``torch.from_numpy``: LSTM ``kernel`` (I, 4H), ``recurrent_kernel`` (H, 4H),
        ``bias`` (4H,) = bias_ih + bias_hh; GRU ``kernel`` (I, 3H), ``recurrent_kernel``
        (H, 3H), ``bias`` (3H,) = bias_ih, ``recurrent_bias`` (3H,) = bias_hh.
    """
    fn = "to_haste"
    s = _cell(fn, cell, HASTE_GATES, "Haste")
    w_ih, w_hh, b_ih, b_hh = _torch_state(fn, s, state, suffix, True)
    if b_ih is None:
        b_ih = b_hh = np.zeros(w_ih.shape[0], w_ih.dtype)
    order = HASTE_GATES[s.name]
    out = {
        "kernel": _cols(w_ih, s.gates, order),
        "recurrent_kernel": _cols(w_hh, s.gates, order),
    }
    if s.name == "gru":
        out["bias"] = _regate(b_ih, s.gates, order, axis=0)
        out["recurrent_bias"] = _regate(b_hh, s.gates, order, axis=0)
    else:
        out["bias"] = _regate(b_ih + b_hh, s.gates, order, axis=0)
    return out
