"""Why regularized and layer-normalized LSTMs exist, on the char-level language model.

The same model (fastrnn.charlm: embedding, a 2 x 256 LSTM, a linear head; Adam, clipping),
seed and steps, trained with and without zoneout, variational recurrent dropout, weight drop
and layer norm, on the text of Python's documentation that ships with the standard library,
its last 5% held out. Reported per run: bits/char on the last stretch of the training text
and on the held-out text, both in evaluation mode (so the regularizers' noise is off), and
the gap between them. Each run is what `fastrnn train-charlm --steps N` does with the
matching flags.

    python examples/regularization.py [--quick] [--steps N] [--threads K]
"""

import argparse
import time

import fastrnn
from fastrnn import charlm
from fastrnn.train import Adam

RUNS = {
    "none": {},
    "zoneout 0.1": dict(zoneout=0.1),
    "rec. dropout 0.2 + weight drop 0.3": dict(recurrent_dropout=0.2, weight_drop=0.3),
    "all three": dict(zoneout=0.1, recurrent_dropout=0.2, weight_drop=0.3),
    "layer norm": dict(layer_norm=True),
    "layer norm + rec. dropout + weight drop": dict(
        layer_norm=True, recurrent_dropout=0.2, weight_drop=0.3
    ),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny model for a few steps")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    args = p.parse_args()
    if args.threads:
        fastrnn.set_num_threads(args.threads)
    fastrnn.set_numpy_blas_threads(1)
    text = charlm.default_corpus()
    size = dict(hidden_size=256, num_layers=2, embed_size=64, batch_size=32, seq_len=64)
    steps = args.steps
    if args.quick:
        text, steps = text[:20000], 5
        size = dict(hidden_size=16, num_layers=1, embed_size=8, batch_size=4, seq_len=16)
    train_text, held = charlm.split_held_out(text, 0.05)
    vocab = "".join(sorted(set(text)))
    print(f"{len(train_text):,} characters to train on, {len(held):,} held out; {steps} steps")
    print(f"{'regularization':40} {'train':>7} {'held out':>9} {'gap':>6} {'time':>7}")
    for name, extra in RUNS.items():
        model = charlm.CharLM(vocab, charlm.CharLMConfig(**size, **extra))
        t0 = time.perf_counter()
        charlm.train(model, Adam(model.params(), model.config.lr), train_text, steps)
        elapsed = time.perf_counter() - t0
        tr = charlm.held_out_bits(model, train_text[-len(held) :])
        ho = charlm.held_out_bits(model, held)
        print(f"{name:40} {tr:7.3f} {ho:9.3f} {ho - tr:6.3f} {elapsed:6.0f}s", flush=True)


if __name__ == "__main__":
    main()
