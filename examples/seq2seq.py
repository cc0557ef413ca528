"""Sequence to sequence: reverse a digit string with an LSTM encoder-decoder, trained with
teacher forcing and with scheduled sampling (Bengio et al. 2015) under linear, exponential
and inverse-sigmoid decay, and tested by greedy decoding, where the model only ever sees its
own predictions. Teacher forcing never shows the decoder its own mistakes during training
(exposure bias); scheduled sampling feeds it more and more of them.

How a scheduled-sampling step is computed: a no-grad pass decodes step by step, each step
taking the true previous digit with probability eps (the schedule) and otherwise the model's
own sample; then one training pass runs the decoder over that input sequence at once. The
forward states are those of step-by-step decoding, and, as in the paper, no gradient flows
through the sampling decisions.

    python examples/seq2seq.py [--quick]
"""

import argparse

import numpy as np

import fastrnn
from fastrnn.train import Adam, clip_grad_norm, softmax_cross_entropy

DIGITS, BOS = 10, 10  # tokens 0-9, and a start token for the decoder


def schedule(kind: str, i: int, steps: int) -> float:
    """Probability of feeding the true previous token at training step i."""
    if kind == "teacher forcing":
        return 1.0
    if kind == "linear":
        return max(0.2, 1.0 - i / steps)
    if kind == "exponential":
        return 0.2 + 0.8 * (0.01 ** (1 / steps)) ** i
    k = steps / 10  # inverse sigmoid
    return k / (k + np.exp(i / k))


class Seq2Seq:
    def __init__(self, H: int, seed: int):
        rng = np.random.default_rng(seed)
        self.embed = (0.3 * rng.standard_normal((DIGITS + 1, 16))).astype(np.float32)
        self.enc = fastrnn.LSTM(16, H, seed=seed)
        self.dec = fastrnn.LSTM(16, H, seed=seed + 1)
        self.w = (rng.standard_normal((DIGITS, H)) / np.sqrt(H)).astype(np.float32)
        self.b = np.zeros(DIGITS, np.float32)
        self.params = {
            "embed": self.embed,
            "w": self.w,
            "b": self.b,
            **{f"enc.{k}": v for k, v in self.enc.parameters().items()},
            **{f"dec.{k}": v for k, v in self.dec.parameters().items()},
        }

    def logits(self, y):
        return y @ self.w.T + self.b

    def decode_inputs(self, src, tgt, eps: float, rng) -> np.ndarray:
        """The decoder's input tokens (L, B): BOS, then per step the true previous token with
        probability eps, else a sample from the model's own prediction."""
        L, B = tgt.shape
        inputs = np.full((L, B), BOS)
        if eps >= 1.0:
            inputs[1:] = tgt[:-1]
            return inputs
        with fastrnn.no_grad():
            _, state = self.enc(self.embed[src])
            for t in range(1, L):
                y, state = self.dec(self.embed[inputs[t - 1 : t]], state)
                z = self.logits(y[0])
                p = np.exp(z - z.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
                sampled = (p.cumsum(1) > rng.random((B, 1))).argmax(1)  # one draw per row
                inputs[t] = np.where(rng.random(B) < eps, tgt[t - 1], sampled)
        return inputs

    def train_step(self, src, tgt, inputs, opt) -> float:
        _, state = self.enc(self.embed[src])
        y, _ = self.dec(self.embed[inputs], state)
        loss, dz = softmax_cross_entropy(self.logits(y), tgt)
        L, B, H = y.shape
        self.enc.zero_grad()
        self.dec.zero_grad()
        dx_dec, (dh, dc) = self.dec.backward(dz @ self.w)
        dx_enc, _ = self.enc.backward(None, (dh, dc))
        d_embed = np.zeros_like(self.embed)
        np.add.at(d_embed, inputs.ravel(), dx_dec.reshape(-1, 16))
        np.add.at(d_embed, src.ravel(), dx_enc.reshape(-1, 16))
        grads = {
            "embed": d_embed,
            "w": dz.reshape(-1, DIGITS).T @ y.reshape(-1, H),
            "b": dz.reshape(-1, DIGITS).sum(0),
            **{f"enc.{k}": g for k, g in self.enc.grads.items()},
            **{f"dec.{k}": g for k, g in self.dec.grads.items()},
        }
        clip_grad_norm(grads, 5.0)
        opt.step(self.params, grads)
        return loss

    def greedy(self, src, L: int) -> np.ndarray:
        with fastrnn.no_grad():
            _, state = self.enc(self.embed[src])
            token = np.full(src.shape[1], BOS)
            out = []
            for _ in range(L):
                y, state = self.dec(self.embed[token[None]], state)
                token = self.logits(y[0]).argmax(1)
                out.append(token)
        return np.stack(out)


def batch(rng, L: int, B: int):
    src = rng.integers(0, DIGITS, (L, B))
    return src, src[::-1].copy()  # the task: reverse the digit string


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes (for CI)")
    args = ap.parse_args()
    L, H, B, steps = (4, 16, 8, 4) if args.quick else (8, 128, 64, 1500)
    test_src, test_tgt = batch(np.random.default_rng(123), L, 500)
    print(
        f"reverse {L}-digit strings; LSTM encoder-decoder, H={H}; {steps} Adam steps; "
        f"greedy decoding on 500 test strings"
    )
    print(f"{'training':18} {'train loss':>10} {'token acc':>10} {'string acc':>11}")
    for kind in ("teacher forcing", "linear", "exponential", "inverse sigmoid"):
        rng = np.random.default_rng(0)
        model = Seq2Seq(H, seed=0)
        opt = Adam(model.params, 3e-3)
        losses = []
        for i in range(steps):
            src, tgt = batch(rng, L, B)
            inputs = model.decode_inputs(src, tgt, schedule(kind, i, steps), rng)
            losses.append(model.train_step(src, tgt, inputs, opt))
        pred = model.greedy(test_src, L)
        print(
            f"{kind:18} {np.mean(losses[-50:]):10.3f} {np.mean(pred == test_tgt):10.3f} "
            f"{np.mean((pred == test_tgt).all(0)):11.3f}"
        )


if __name__ == "__main__":
    main()
