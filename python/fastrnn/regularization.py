"""Regularization of the LSTM and GRU layers: fastrnn extras that torch.nn's classes do not
have, off by default (issue 13; the math is in :mod:`fastrnn.reference`'s doc).

- ``zoneout`` (Krueger et al. 2016): in training each unit of h (and the LSTM's c) keeps its
  previous value with probability p, drawn per element and step; in evaluation
  h_t = p h_{t-1} + (1 - p) h~_t. The LSTM takes p for both states or (p_h, p_c).
- ``recurrent_dropout`` (Gal and Ghahramani 2016, "variational"): one mask per sequence,
  layer and direction, the same at every step, on h_{t-1} where it enters W_hh, scaled by
  1 / (1 - p); training only.
- ``weight_drop`` (DropConnect on W_hh, Merity et al. 2017): one mask per forward call on
  each recurrent matrix, scaled by 1 / (1 - p), the gradient through the mask; training only.

This module checks the options; the layers draw the masks, from their own generator (the
NumPy layers) or from torch's (:mod:`fastrnn.torch`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Tuple, Union

__all__ = ["Regularization", "regularization"]

Zoneout = Union[float, Tuple[float, float]]


@dataclass(frozen=True)
class Regularization:
    """The probabilities of a layer's regularization (0: off)."""

    zoneout_h: float = 0.0
    zoneout_c: float = 0.0  # the LSTM's cell state
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0

    @property
    def zoneout(self) -> bool:
        return self.zoneout_h > 0 or self.zoneout_c > 0

    @property
    def active(self) -> bool:
        return self.zoneout or self.recurrent_dropout > 0 or self.weight_drop > 0


def _probability(name: str, what: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"{name}: {what} must be a number in [0, 1), got {p!r}")
    return float(p)


def regularization(
    name: str, cell: str, zoneout: Zoneout = 0.0, recurrent_dropout: float = 0.0,
    weight_drop: float = 0.0,
) -> Regularization:  # fmt: skip
    """The checked options of layer class ``name`` of cell kind ``cell`` ("lstm" | "gru");
    ValueError naming the option for a probability outside [0, 1) or a zoneout pair on a
    GRU (one state)."""
    if isinstance(zoneout, (tuple, list)):
        if cell != "lstm" or len(zoneout) != 2:
            states = "(p_h, p_c) for the LSTM's h and c" if cell == "lstm" else "one p (h)"
            raise ValueError(f"{name}: zoneout takes {states}, got {zoneout!r}")
        p_h, p_c = (_probability(name, f"zoneout[{i}]", p) for i, p in enumerate(zoneout))
    else:
        p_h = _probability(name, "zoneout", zoneout)
        p_c = p_h if cell == "lstm" else 0.0
    return Regularization(
        p_h,
        p_c,
        _probability(name, "recurrent_dropout", recurrent_dropout),
        _probability(name, "weight_drop", weight_drop),
    )
