"""Many-to-one and many-to-many with GRUs.

1. Many-to-one: a bidirectional GRU reads a random token sequence of variable length and says
   whether token A comes before token B in it (both occur once). The answer depends on the
   whole sequence; the classifier reads the final states of both directions.
2. Many-to-many (synced): a GRU reads a random bit stream and, at every position, flags
   whether the pattern 1101 has just ended there.

    python examples/classify.py [--quick]
"""

import argparse

import numpy as np

import fastrnn
from fastrnn.train import Adam, clip_grad_norm, softmax_cross_entropy

A, B_TOKEN, VOCAB = 0, 1, 8


def order_batch(rng, T: int, n: int):
    """Sequences of lengths in [4, T] holding tokens A and B once each; label 1 if A first."""
    lengths = rng.integers(4, T + 1, n)
    x = rng.integers(2, VOCAB, (T, n))
    labels = rng.integers(0, 2, n)
    for b, L in enumerate(lengths):
        i, j = sorted(rng.choice(L, 2, replace=False))
        x[i, b], x[j, b] = (A, B_TOKEN) if labels[b] else (B_TOKEN, A)
    return np.eye(VOCAB, dtype=np.float32)[x], labels, lengths


def many_to_one(T: int, H: int, steps: int, n: int) -> float:
    rng = np.random.default_rng(0)
    gru = fastrnn.GRU(VOCAB, H, bidirectional=True, seed=0)
    w = np.zeros((2, 2 * H), np.float32)
    b = np.zeros(2, np.float32)
    params = dict(gru.parameters(), w=w, b=b)
    opt = Adam(params, 3e-3)
    for _ in range(steps):
        x, labels, lengths = order_batch(rng, T, n)
        _, h_n = gru(x, lengths=lengths)  # (2, n, H): each direction's final state
        feat = np.concatenate([h_n[0], h_n[1]], axis=1)
        _, dz = softmax_cross_entropy(feat @ w.T + b, labels)
        dfeat = dz @ w
        gru.zero_grad()
        gru.backward(None, np.stack([dfeat[:, :H], dfeat[:, H:]]))
        grads = dict(gru.grads, w=dz.T @ feat, b=dz.sum(0))
        clip_grad_norm(grads, 5.0)
        opt.step(params, grads)
    x, labels, lengths = order_batch(np.random.default_rng(1), T, 1000)
    with fastrnn.no_grad():
        _, h_n = gru(x, lengths=lengths)
    pred = (np.concatenate([h_n[0], h_n[1]], 1) @ w.T + b).argmax(1)
    return float(np.mean(pred == labels))


PATTERN = [1, 1, 0, 1]


def detector_batch(rng, T: int, n: int):
    bits = rng.integers(0, 2, (T, n))
    hits = np.zeros((T, n), np.int64)
    k = len(PATTERN)
    for t in range(k - 1, T):
        hits[t] = np.all(bits[t - k + 1 : t + 1] == np.array(PATTERN)[:, None], axis=0)
    return np.eye(2, dtype=np.float32)[bits], hits


def many_to_many(T: int, H: int, steps: int, n: int):
    rng = np.random.default_rng(0)
    gru = fastrnn.GRU(2, H, seed=0)
    w = np.zeros((2, H), np.float32)
    b = np.zeros(2, np.float32)
    params = dict(gru.parameters(), w=w, b=b)
    opt = Adam(params, 3e-3)
    for _ in range(steps):
        x, hits = detector_batch(rng, T, n)
        y, _ = gru(x)
        _, dz = softmax_cross_entropy(y @ w.T + b, hits)
        gru.zero_grad()
        gru.backward(dz @ w)
        grads = dict(
            gru.grads, w=dz.reshape(-1, 2).T @ y.reshape(-1, H), b=dz.reshape(-1, 2).sum(0)
        )
        clip_grad_norm(grads, 5.0)
        opt.step(params, grads)
    x, hits = detector_batch(np.random.default_rng(1), T, 500)
    with fastrnn.no_grad():
        y, _ = gru(x)
    pred = (y @ w.T + b).argmax(2)
    recall = float(np.mean(pred[hits == 1] == 1))
    precision = float(np.mean(hits[pred == 1] == 1)) if (pred == 1).any() else 0.0
    return recall, precision, float(np.mean(hits))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes (for CI)")
    args = ap.parse_args()
    T, H, steps, n = (8, 8, 3, 8) if args.quick else (30, 64, 600, 64)
    acc = many_to_one(T, H, steps, n)
    print(
        f"many-to-one, bidirectional GRU: does A come before B? (lengths 4..{T}) "
        f"test accuracy {acc:.3f} (chance 0.5)"
    )
    recall, precision, rate = many_to_many(T, H, steps, n)
    print(
        f"many-to-many, GRU: flag where {''.join(map(str, PATTERN))} just ended: "
        f"recall {recall:.3f}, precision {precision:.3f} (pattern rate {rate:.3f})"
    )


if __name__ == "__main__":
    main()
