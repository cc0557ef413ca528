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

from typing import Dict, Iterator, Optional, Tuple

import numpy as np

__all__ = ["clip_grad_norm", "truncated_bptt", "stream_batches", "Adam", "softmax_cross_entropy"]


def clip_grad_norm(grads: Dict[str, np.ndarray], max_norm: float) -> float:
    """Scales every gradient in place so that their joint L2 norm is at most ``max_norm``
    (the remedy for exploding gradients); returns the norm before clipping. A NaN or
    infinite norm is returned as is and the gradients are left alone."""
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    total = float(
        np.sqrt(
            sum(
                float(np.sum(np.square(g, dtype=np.float64)))
                for g in grads.values()
                if g is not None
            )
        )
    )
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
            chunk = self.x[t0 : t0 + self.k]
            y, self.state = self.layer(chunk, self.state)
            yield t0, chunk, y


def stream_batches(
    data: np.ndarray, batch_size: int, steps: int
) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Batches one long stream as char-rnn does: cut ``data`` (N, ...) into ``batch_size``
    contiguous streams of N // batch_size items (the remainder is dropped) and yield
    ``(inputs, targets)`` of shape (steps, batch_size, ...), targets being the inputs shifted
    by one. Consecutive batches continue each stream where the last stopped, so the state a
    model ends a batch with is the right one to start the next from."""
    data = np.asarray(data)
    if batch_size < 1 or steps < 1:
        raise ValueError(
            f"stream_batches: batch_size and steps must be positive, got {batch_size}, {steps}"
        )
    per_stream = data.shape[0] // batch_size
    if per_stream < 2:
        raise ValueError(
            f"stream_batches: {data.shape[0]} items cannot make {batch_size} streams of at least 2"
        )
    streams = data[: per_stream * batch_size].reshape((batch_size, per_stream) + data.shape[1:])
    streams = np.swapaxes(streams, 0, 1)  # (per_stream, batch_size, ...): time-major
    for t0 in range(0, per_stream - 1, steps):
        n = min(steps, per_stream - 1 - t0)
        yield streams[t0 : t0 + n], streams[t0 + 1 : t0 + 1 + n]


class Adam:
    """Adam (Kingma & Ba) over a dict of parameters, updated in place."""

    def __init__(self, params: Dict[str, np.ndarray], lr: float, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: Dict[str, np.ndarray], grads: Dict[str, np.ndarray]) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for k, p in params.items():
            g = grads[k]
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            p -= (self.lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)).astype(p.dtype)


def softmax_cross_entropy(
    logits: np.ndarray, targets: np.ndarray, weights: Optional[np.ndarray] = None
) -> Tuple[float, np.ndarray]:
    """Mean cross-entropy (nats) of integer targets under softmax(logits) over the last axis,
    and its gradient with respect to the logits. logits (..., V), targets (...); weights (...)
    (optional, e.g. a mask) make it a weighted mean."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    w = np.ones(targets.shape, p.dtype) if weights is None else weights.astype(p.dtype)
    total = max(float(w.sum()), 1e-12)
    picked = np.take_along_axis(p, targets[..., None], axis=-1)[..., 0]
    loss = float(-(w * np.log(np.maximum(picked, 1e-30))).sum() / total)
    grad = p
    np.put_along_axis(grad, targets[..., None], picked[..., None] - 1, axis=-1)
    grad *= (w / total)[..., None]
    return loss, grad
