"""Vanishing gradients, seen, and the adding problem.

1. The norm of d h_T / d h_t against the distance T - t for a tanh RNN, an LSTM and a GRU
   with torch.nn's default initialization: the RNN's falls off exponentially, the gated
   cells' much more slowly. (Computed exactly: the gradient reaching the state h_t from a
   loss on h_T is dh0 of a backward over the steps t..T started from h_t.)
2. The adding problem (Hochreiter & Schmidhuber 1997): two of T random numbers are marked;
   predict their sum. Predicting the mean scores an MSE of 1/6 ~ 0.167; the RNN stays near it
   at long lags, LSTM and GRU learn.

    python examples/vanishing_gradients.py [--quick] [--plot FILE.png]
"""

import argparse

import numpy as np

import fastrnn
from fastrnn.train import Adam, clip_grad_norm

MODELS = {"rnn (tanh)": fastrnn.RNN, "lstm": fastrnn.LSTM, "gru": fastrnn.GRU}


def gradient_norms(cls, T: int, H: int, seed: int = 0) -> np.ndarray:
    """||d <v, h_T> / d h_t|| for t = T-1 .. 0, i.e. at distances 1 .. T."""
    rng = np.random.default_rng(seed)
    net = cls(H, H, dtype=np.float64, seed=seed)
    x = rng.standard_normal((T, 1, H))
    v = rng.standard_normal((1, 1, H))
    lstm = cls is fastrnn.LSTM
    with fastrnn.no_grad():  # the states entering each step
        states, state = [], None
        for t in range(T):
            states.append(state)
            _, state = net(x[t : t + 1], state)
    norms = []
    for t in reversed(range(T)):
        net(x[t:], states[t])
        if lstm:
            _, (dh0, _) = net.backward(None, (v, None))
        else:
            _, dh0 = net.backward(None, v)
        norms.append(np.linalg.norm(dh0))
    return np.array(norms)


def adding_batch(rng, T: int, B: int):
    values = rng.random((T, B))
    marks = np.zeros((T, B))
    for b in range(B):
        i = rng.integers(0, T // 2)
        j = rng.integers(T // 2, T)
        marks[i, b] = marks[j, b] = 1
    x = np.stack([values, marks], axis=2).astype(np.float32)
    return x, (values * marks).sum(axis=0).astype(np.float32)


def adding_problem(cls, T: int, steps: int, H: int = 32, B: int = 32, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    net = cls(2, H, seed=seed)
    w = np.zeros((1, H), np.float32)
    b = np.ones(1, np.float32)
    params = dict(net.parameters(), head_w=w, head_b=b)
    opt = Adam(params, 1e-2)
    for _ in range(steps):
        x, target = adding_batch(rng, T, B)
        y, _ = net(x)
        pred = y[-1] @ w.T + b  # (B, 1)
        err = pred[:, 0] - target
        dpred = (2 * err / B)[:, None].astype(np.float32)
        dy = np.zeros_like(y)
        dy[-1] = dpred @ w
        net.zero_grad()
        net.backward(dy)
        grads = dict(net.grads, head_w=dpred.T @ y[-1], head_b=dpred.sum(0))
        clip_grad_norm(grads, 1.0)
        opt.step(params, grads)
    x, target = adding_batch(np.random.default_rng(seed + 1), T, 256)
    with fastrnn.no_grad():
        y, _ = net(x)
    return float(np.mean((y[-1] @ w.T + b - target[:, None]) ** 2))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes (for CI)")
    ap.add_argument("--plot", help="save the gradient-norm curves here (needs matplotlib)")
    args = ap.parse_args()
    T, H = (12, 8) if args.quick else (100, 64)
    norms = {name: gradient_norms(cls, T, H) for name, cls in MODELS.items()}
    print(f"||d h_T / d h_t|| (H={H}, torch's default init) at distance T - t:")
    print("distance " + "".join(f"{name:>14}" for name in norms))
    for d in sorted({1, 2, 5, 10, 20, 50, T} & set(range(1, T + 1))):
        print(f"{d:8} " + "".join(f"{n[d - 1]:14.3e}" for n in norms.values()))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for name, n in norms.items():
            plt.semilogy(np.arange(1, T + 1), n, label=name)
        plt.xlabel("T - t")
        plt.ylabel("|| d h_T / d h_t ||")
        plt.legend()
        plt.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    lag, steps = (8, 5) if args.quick else (60, 1000)
    print(f"\nadding problem, T={lag}, {steps} Adam steps; predicting the mean scores 0.167:")
    for name, cls in MODELS.items():
        print(f"  {name:12} test MSE {adding_problem(cls, lag, steps):.4f}")


if __name__ == "__main__":
    main()
