"""Training helpers for recurrent models: gradient-norm clipping, truncated BPTT, and the
char-rnn way of batching one long stream.

Truncated BPTT with k1 = k2 = k (the common case) is :func:`truncated_bptt`: run the layer
over chunks of k steps, each starting from the previous chunk's final state, and backpropagate
within the chunk only. The general case, every k1 steps backpropagate through the last k2 >= k1
steps, re-runs the last k2 steps from the state that entered them (k2 a multiple of k1)::

    states = [None]                                  # states[i]: the state entering step i*k1
    for t in range(k1, T + 1, k1):
        t0 = max(0, t - k2)
        y, state = lstm(x[t0:t], states[t0 // k1])   # the last k2 steps, again
        states.append(state)                         # the state entering step t
        dy = np.zeros_like(y)
        dy[-k1:] = dloss_dy(y[-k1:], targets[t - k1:t])  # the loss is on the k1 new steps
        lstm.backward(dy)                            # and flows back through all k2
        clip_grad_norm(lstm.grads, 5.0); optimizer step; lstm.zero_grad()

tests/test_train.py runs this example.
"""

from __future__ import annotations

from typing import Dict, Iterator, Tuple

import numpy as np

__all__ = ["clip_grad_norm", "truncated_bptt", "stream_batches"]


def clip_grad_norm(grads: Dict[str, np.ndarray], max_norm: float) -> float:
    """Scales every gradient in place so that their joint L2 norm is at most ``max_norm``
    (the remedy for exploding gradients); returns the norm before clipping. A NaN or
    infinite norm is returned as is and the gradients are left alone."""
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    total = float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64)))
                              for g in grads.values() if g is not None)))
    if np.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads.values():
            if g is not None:
                g *= g.dtype.type(scale)
    return total


class truncated_bptt:  # noqa: N801  (used like a function returning an iterator)
    """Truncated BPTT with k1 = k2 = k over a long time-major sequence x (T, B, ...)::

        tbptt = truncated_bptt(lstm, x, k=35)
        for t0, x_chunk, y_chunk in tbptt:
            dy = ...                                  # loss gradient on y_chunk
            lstm.backward(dy)                         # BPTT within the chunk only
            clip_grad_norm(lstm.grads, 5.0); step; lstm.zero_grad()
        final_state = tbptt.state

    Each chunk of k steps (the last may be shorter) runs forward from the state the previous
    chunk ended in (``state``, initially the argument); call backward before asking for the
    next chunk. Gradients stop at chunk boundaries because the carried state is a plain array.
    """

    def __init__(self, layer, x: np.ndarray, k: int, state=None):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"truncated_bptt: k must be a positive int, got {k!r}")
        self.layer, self.x, self.k, self.state = layer, x, int(k), state

    def __iter__(self) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
        for t0 in range(0, np.shape(self.x)[0], self.k):
            chunk = self.x[t0:t0 + self.k]
            y, self.state = self.layer(chunk, self.state)
            yield t0, chunk, y


def stream_batches(data: np.ndarray, batch_size: int, steps: int
                   ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Batches one long stream as char-rnn does: cut ``data`` (N, ...) into ``batch_size``
    contiguous streams of N // batch_size items (the remainder is dropped) and yield
    ``(inputs, targets)`` of shape (steps, batch_size, ...), targets being the inputs shifted
    by one. Consecutive batches continue each stream where the last stopped, so the state a
    model ends a batch with is the right one to start the next from."""
    data = np.asarray(data)
    if batch_size < 1 or steps < 1:
        raise ValueError(f"stream_batches: batch_size and steps must be positive, got "
                         f"{batch_size}, {steps}")
    per_stream = data.shape[0] // batch_size
    if per_stream < 2:
        raise ValueError(f"stream_batches: {data.shape[0]} items cannot make {batch_size} "
                         f"streams of at least 2")
    streams = data[:per_stream * batch_size].reshape((batch_size, per_stream) + data.shape[1:])
    streams = np.swapaxes(streams, 0, 1)  # (per_stream, batch_size, ...): time-major
    for t0 in range(0, per_stream - 1, steps):
        n = min(steps, per_stream - 1 - t0)
        yield streams[t0:t0 + n], streams[t0 + 1:t0 + 1 + n]
