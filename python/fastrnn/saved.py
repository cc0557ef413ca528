"""What a training forward keeps for its backward: one typed, immutable record per cell kind,
made by :mod:`fastrnn.ops` (the C++ kernels) and :mod:`fastrnn.reference` (NumPy) alike,
with the same fields and the same meaning (the saved-buffer contract of the kernels, stated
in csrc/include/fastrnn/{lstm,gru,rnn}.h).

Shapes: T steps, B batch, I input, H hidden, P the size of h (H without a projection),
G gates. Rows are in the kernels' order: sorted by decreasing length when ``packed`` is
given (the C++ backends), the caller's order for the reference (which masks instead).

A record serves one backward: backward overwrites ``gates`` (and GRU's ``extra``) in place
with gradients, then marks it consumed. It refers to x and the weights without copying
them: change those in place only after backward.

A forward on ``ml_dtypes.bfloat16`` arrays runs in float32 (with bf16 products): its record
holds float32 arrays and says in ``io_dtype`` that the caller's arrays, and so the
gradients, are bfloat16. :func:`is_bfloat16` tells that dtype without importing ml_dtypes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from .cell_spec import spec
from .packed import PackedBatch

__all__ = ["SavedState", "LstmSaved", "GruSaved", "RnnSaved", "is_bfloat16"]


def is_bfloat16(dtype: Any) -> bool:
    """Whether ``dtype`` is ml_dtypes' bfloat16, told by its name: ml_dtypes is an optional
    extra that fastrnn never imports (an array of that dtype means it is installed)."""
    return getattr(dtype, "name", None) == "bfloat16"


@dataclass(frozen=True, eq=False)
class SavedState:
    """Fields every cell kind keeps."""

    backend: str  # "cpu" | "cuda" | "numpy": the backward must run on the same
    x: Any  # (T, B, I) the forward's input
    h0: Any  # (B, P) the initial state (zeros if none was given)
    y: Any  # (T, B, P) the outputs h_1 .. h_T, zero past each sequence's end
    w_ih: Any  # (G*H, I)
    w_hh: Any  # (G*H, P)
    has_bias: bool
    gates: Any  # (T, B, G*H): forward values in, gradients out (see each cell)
    packed: Optional[PackedBatch]  # variable lengths, or None: every row runs every step
    precision: str = "fp32"  # the forward's products ("bf16": bf16 operands); backward's too
    # The dtype of the caller's arrays when it is not x's (bfloat16 arrays, run as float32):
    # backward takes upstream gradients in it (or x's) and returns the gradients in it.
    io_dtype: Any = None
    # The reference's layer norm, zoneout and recurrent dropout (issue 13): the forward's
    # keyword arguments and the intermediates its backward needs, by name; None without.
    extras: Optional[dict] = dataclasses.field(default=None, repr=False)
    array_ops: Any = dataclasses.field(default=None, repr=False)  # the backend's array ops
    consumed: bool = False

    cell = ""  # the cell kind's name, per subclass
    G = 0  # its gates per hidden unit, from the cell table

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.G = spec(cls.cell).G

    @property
    def T(self) -> int:
        return int(self.x.shape[0])

    @property
    def B(self) -> int:
        return int(self.x.shape[1])

    @property
    def I(self) -> int:  # noqa: E743 (the shape letter used throughout)
        return int(self.x.shape[2])

    @property
    def H(self) -> int:
        return int(self.w_ih.shape[0]) // self.G

    @property
    def P(self) -> int:
        return int(self.w_hh.shape[1])

    @property
    def dtype(self):
        """The dtype of the arrays held (and computed in)."""
        return self.x.dtype

    @property
    def grad_dtype(self):
        """The dtype of the gradients backward returns: the forward's caller's."""
        return self.dtype if self.io_dtype is None else self.io_dtype

    def arrays(self) -> dict:
        """Name -> every array this record holds (None fields left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if hasattr(getattr(self, f.name), "nbytes")
        }

    @property
    def nbytes(self) -> int:
        """Memory held for backward, in bytes: every array, each counted once (x and the
        weights are the caller's arrays, kept alive rather than copied)."""
        seen, total = set(), 0
        for a in self.arrays().values():
            if id(a) not in seen:
                seen.add(id(a))
                total += int(a.nbytes)
        return total

    def consume(self) -> None:
        """Marks the record used: its buffers are about to be overwritten by backward."""
        object.__setattr__(self, "consumed", True)


@dataclass(frozen=True, eq=False)
class LstmSaved(SavedState):
    """LSTM: ``gates`` holds the activated i, f, g, o of every step (their pre-activation
    gradients after backward)."""

    cells: Any = None  # (T + 1, B, H) c_0 .. c_T
    w_hr: Any = None  # (P, H) with a projection, else None
    m: Any = None  # (T, B, H) o * tanh(c_t) with a projection (the input of W_hr), else None
    # The forward's regularization (fastrnn.ops: in the kernels' row order), or None:
    zoneout_h: Any = None  # (T, B, P) zoneout's factor d for h
    zoneout_c: Any = None  # (T, B, H) ... for c
    recurrent_mask: Any = None  # (B, P) the recurrent dropout mask
    # Layer norm (fastrnn.ops): its weights (gamma_ih, gamma_hh, gamma_c, beta_c) or None, and
    # the normalized values the kernels keep (see csrc/core/lstm_layer_norm.h).
    layer_norm: Any = None
    ln_ih: Any = None  # (T, B, 4H)
    ln_hh: Any = None  # (T, B, 4H)
    ln_cell: Any = None  # (T, B, H)
    ln_rstd: Any = None  # (T, B, 3)

    cell = "lstm"

    @property
    def H(self) -> int:
        return int(self.cells.shape[2])


@dataclass(frozen=True, eq=False)
class GruSaved(SavedState):
    """GRU: ``gates`` holds the activated r, z, n of every step; ``extra`` is
    W_hn h_{t-1} + b_hn (reset_after) or r * h_{t-1} (reset before): the input of W_hn."""

    extra: Any = None  # (T, B, H)
    reset_after: bool = True
    # The forward's regularization (fastrnn.ops: in the kernels' row order), or None:
    zoneout_h: Any = None  # (T, B, H) zoneout's factor d
    recurrent_mask: Any = None  # (B, H) the recurrent dropout mask
    # Layer norm (fastrnn.ops): its weights (gamma_ih, gamma_hh) or None, and the normalized
    # values the kernels keep (see csrc/core/gru_layer_norm.h).
    layer_norm: Any = None
    ln_ih: Any = None  # (T, B, 3H)
    ln_hh: Any = None  # (T, B, 3H)
    ln_rstd: Any = None  # (T, B, 2)

    cell = "gru"


@dataclass(frozen=True, eq=False)
class RnnSaved(SavedState):
    """Elman RNN: ``gates`` is the pre-activations' workspace (their gradients after
    backward); the activation's derivative is taken from ``y``."""

    nonlinearity: str = "tanh"

    cell = "rnn"
