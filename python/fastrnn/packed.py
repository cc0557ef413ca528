"""A batch of variable-length sequences, packed as the kernels take it (torch's
PackedSequence and cuDNN's order): rows sorted by decreasing length, and ``batch_sizes[t]``
the number of sequences still running at step t.

A :class:`PackedBatch` is built once per layer call -- from plain ``lengths``
(:meth:`PackedBatch.from_lengths`) or from the three index arrays of a torch
PackedSequence (the constructor) -- and carried through every layer and direction: the
input is sorted once (:meth:`sort`), each direction runs on the sorted rows
(:meth:`sorted`, a batch already in order), the reverse direction reverses each sequence
within its own length by one index gather (:meth:`reverse`), and the outputs are unsorted
once (:meth:`unsort`). Every function of :mod:`fastrnn.ops` takes one as ``lengths``.

Length 0 is allowed (torch's PackedSequence does not allow it): such a sequence produces
zeros and passes its initial state through.
"""

from __future__ import annotations

from functools import cached_property
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["PackedBatch"]


def _integers(fn: str, name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.astype(np.int64)  # [] is float64 to NumPy
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{fn}: {name} must be integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _index_array(fn: str, name: str, value, n: Optional[int] = None) -> np.ndarray:
    arr = _integers(fn, name, value)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = "(B,)" if n is None else f"(B,) = ({n},)"
        raise ValueError(f"{fn}: {name} must have shape {want}, got {tuple(arr.shape)}")
    return arr


def as_packed(fn: str, lengths, T: int, B: int) -> Optional["PackedBatch"]:
    """``lengths`` as a caller gave it -- None, (B,) integers on the host, or a PackedBatch --
    checked against x's (T, B) and packed; errors name ``fn``."""
    if lengths is None:
        return None
    if isinstance(lengths, PackedBatch):
        if (lengths.T, lengths.B) != (T, B):
            raise ValueError(
                f"{fn}: lengths is a PackedBatch of (T, B) = "
                f"{(lengths.T, lengths.B)} but x has (T, B) = {(T, B)}"
            )
        return lengths
    from .cuda import is_device_array

    if is_device_array(lengths):
        raise TypeError(
            f"{fn}: lengths must be on the host (a list or NumPy array), as for "
            f"torch's pack_padded_sequence"
        )
    arr = _integers(fn, "lengths", lengths)
    if arr.shape != (B,):
        raise ValueError(f"{fn}: lengths must have shape (B,) = ({B},), got {tuple(arr.shape)}")
    return PackedBatch.from_lengths(arr, T, fn=fn)


class PackedBatch:
    """Variable lengths as the kernels run them; immutable.

    - ``batch_sizes`` (T,): sequences running at step t, non-increasing, in [0, B].
    - ``sorted_indices`` (B,): sorted row k is the caller's row ``sorted_indices[k]``.
    - ``unsorted_indices`` (B,): the caller's row b is sorted row ``unsorted_indices[b]``.

    Both index arrays may be None, as in torch, for a batch already sorted; B is then
    ``batch_size`` if given, else ``batch_sizes[0]``.
    """

    def __init__(
        self,
        batch_sizes: ArrayLike,
        sorted_indices: Optional[ArrayLike] = None,
        unsorted_indices: Optional[ArrayLike] = None,
        *,
        batch_size: Optional[int] = None,
        fn: str = "PackedBatch",
    ) -> None:
        bs = _index_array(fn, "batch_sizes", batch_sizes)
        if sorted_indices is None and unsorted_indices is not None:
            sorted_indices = np.argsort(_index_array(fn, "unsorted_indices", unsorted_indices))
        if sorted_indices is not None:
            order = _index_array(fn, "sorted_indices", sorted_indices)
            B = order.shape[0]
        else:
            B = int(batch_size if batch_size is not None else (bs[0] if bs.size else 0))
            order = np.arange(B, dtype=np.int64)
        if batch_size is not None and batch_size != B:
            raise ValueError(f"{fn}: batch_size={batch_size} but sorted_indices has {B} rows")
        if bs.size and (bs.min() < 0 or bs.max() > B or np.any(np.diff(bs) > 0)):
            raise ValueError(
                f"{fn}: batch_sizes must be non-increasing, each in [0, B={B}], got {bs.tolist()}"
            )
        if not np.array_equal(np.sort(order), np.arange(B)):
            raise ValueError(f"{fn}: sorted_indices must be a permutation of range({B})")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(B, dtype=np.int64)
        if unsorted_indices is not None and not np.array_equal(
            _index_array(fn, "unsorted_indices", unsorted_indices, B), inverse
        ):
            raise ValueError(f"{fn}: unsorted_indices must be the inverse of sorted_indices")
        self.batch_sizes = bs
        self.sorted_indices = order
        self.unsorted_indices = inverse
        self.B = B
        self.T = int(bs.shape[0])
        self.identity = bool(np.array_equal(order, np.arange(B)))
        for a in (self.batch_sizes, self.sorted_indices, self.unsorted_indices):
            a.flags.writeable = False

    @classmethod
    def from_lengths(cls, lengths: ArrayLike, T: int, fn: str = "PackedBatch") -> "PackedBatch":
        """From lengths (B,) in the caller's row order, each in [0, T]; the sort is stable,
        so equal lengths keep their order."""
        arr = _index_array(fn, "lengths", lengths)
        if arr.size and (arr.min() < 0 or arr.max() > T):
            raise ValueError(
                f"{fn}: lengths must be in [0, T={T}], got min {arr.min()}, max {arr.max()}"
            )
        B = arr.shape[0]
        order = np.argsort(-arr, kind="stable")
        counts = np.bincount(arr, minlength=T + 1)  # sequences of each length
        batch_sizes = B - np.cumsum(counts)[:T]  # lengths > t
        return cls(batch_sizes, order, batch_size=B, fn=fn)

    # -- lengths
    @cached_property
    def sorted_lengths(self) -> np.ndarray:
        """(B,) the length of each sorted row (non-increasing)."""
        k = np.arange(self.B)
        return (self.batch_sizes[None, :] > k[:, None]).sum(axis=1).astype(np.int64)

    @cached_property
    def lengths(self) -> np.ndarray:
        """(B,) the length of each of the caller's rows."""
        return self.sorted_lengths[self.unsorted_indices]

    def sorted(self) -> "PackedBatch":
        """The same batch with its rows already in sorted order: for arrays :meth:`sort`
        has put in order, which the kernels then take as they are."""
        if self.identity:
            return self
        return PackedBatch(self.batch_sizes, batch_size=self.B)

    # -- rows (host arrays; fastrnn.ops does the same on device arrays)
    def sort(self, a: np.ndarray, axis: int) -> np.ndarray:
        """The caller's rows along ``axis`` in sorted order (a new array unless already
        sorted)."""
        return a if self.identity else np.take(a, self.sorted_indices, axis=axis)

    def unsort(self, a: np.ndarray, axis: int) -> np.ndarray:
        """Sorted rows along ``axis`` back in the caller's order."""
        return a if self.identity else np.take(a, self.unsorted_indices, axis=axis)

    @cached_property
    def reverse_index(self) -> np.ndarray:
        """(T, B) flat index into the (T*B) rows of a sorted (T, B, N) array: step t of
        sorted row k reads step L_k - 1 - t; padding (t >= L_k) reads itself (and
        :meth:`reverse` zeroes it after)."""
        t = np.arange(self.T)[:, None]
        L = self.sorted_lengths[None, :]
        src_t = np.where(t < L, L - 1 - t, t)
        return src_t * self.B + np.arange(self.B)[None, :]

    def reverse(self, a: np.ndarray) -> np.ndarray:
        """a (T, B, N) in sorted row order with each sequence reversed within its own
        length; the padding past each end is zero. One gather; returns a new array."""
        T, B = a.shape[:2]
        if (T, B) != (self.T, self.B):
            raise ValueError(
                f"PackedBatch.reverse: array has (T, B) = {(T, B)}, the batch {(self.T, self.B)}"
            )
        if a.size == 0:
            return a.copy()
        out = a.reshape(T * B, -1)[self.reverse_index.ravel()].reshape(a.shape)
        out[np.arange(T)[:, None] >= self.sorted_lengths[None, :]] = 0
        return out

    def padding_mask(self) -> np.ndarray:
        """(T, B) bool, True where sorted row k runs step t."""
        return np.arange(self.B)[None, :] < self.batch_sizes[:, None]

    def __repr__(self) -> str:
        return (
            f"PackedBatch(T={self.T}, B={self.B}, batch_sizes={self.batch_sizes.tolist()}, "
            f"sorted_indices={self.sorted_indices.tolist()})"
        )
