"""A character-level LSTM language model, trained with fastrnn's layers and plain NumPy.

embedding (V, E) -> stacked LSTM -> linear head (V, H) -> softmax, cross-entropy on the next
character. Trained by truncated BPTT over one long text split into parallel streams
(:func:`fastrnn.train.stream_batches`), with gradient-norm clipping and Adam. The default
corpus is the English text of Python's own documentation that ships in the standard library
(``pydoc_data.topics``), so nothing is downloaded.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from .layers import LSTM, LayerNormLSTM, no_grad
from .train import Adam, clip_grad_norm, softmax_cross_entropy

__all__ = [
    "CharLMConfig",
    "CharLM",
    "default_corpus",
    "split_held_out",
    "held_out_bits",
    "train",
    "sample",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
]

CHECKPOINT_FORMAT = "fastrnn-charlm-1"


def default_corpus() -> str:
    """The help texts of Python's documentation, as shipped with the standard library."""
    import pydoc_data.topics as topics

    return "".join(topics.topics[k] for k in sorted(topics.topics))


@dataclass
class CharLMConfig:
    hidden_size: int = 256
    num_layers: int = 2
    embed_size: int = 64
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 3e-3
    clip: float = 5.0
    seed: int = 0
    backend: str = "auto"
    precision: str = "fp32"  # the LSTM's products: "fp32" or "bf16" (fastrnn.ops)
    # The LSTM's regularization (fastrnn.regularization; 0: off).
    zoneout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    layer_norm: bool = False  # a LayerNormLSTM


class CharLM:
    """The model: parameters in one dict (the LSTM's under "lstm.<torch name>")."""

    def __init__(self, vocab: str, config: CharLMConfig):
        self.vocab, self.config = vocab, config
        self.index = {ch: i for i, ch in enumerate(vocab)}
        V, c = len(vocab), config
        rng = np.random.default_rng(c.seed)
        self.lstm = (LayerNormLSTM if c.layer_norm else LSTM)(
            c.embed_size,
            c.hidden_size,
            c.num_layers,
            dtype=np.float32,
            backend=c.backend,
            seed=c.seed,
            precision=c.precision,
            zoneout=c.zoneout,
            recurrent_dropout=c.recurrent_dropout,
            weight_drop=c.weight_drop,
        )
        self.embed = (rng.standard_normal((V, c.embed_size)) * 0.1).astype(np.float32)
        k = 1 / np.sqrt(c.hidden_size)
        self.head_w = rng.uniform(-k, k, (V, c.hidden_size)).astype(np.float32)
        self.head_b = np.zeros(V, np.float32)
        self.grads: Dict[str, np.ndarray] = {}

    def params(self) -> Dict[str, np.ndarray]:
        p = {f"lstm.{k}": v for k, v in self.lstm.parameters().items()}
        p.update(embed=self.embed, head_w=self.head_w, head_b=self.head_b)
        return p

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[ch] for ch in text], np.int64)

    def logits(self, ids: np.ndarray, state=None):
        """ids (T, B) -> logits (T, B, V), the LSTM's output y and final state."""
        y, state = self.lstm(self.embed[ids], state)
        return y @ self.head_w.T + self.head_b, y, state

    def loss_and_grads(self, ids: np.ndarray, targets: np.ndarray, state=None):
        """Mean cross-entropy (nats per character) of one chunk, its gradients (in
        self.grads) and the final state, to start the next chunk from."""
        logits, y, state = self.logits(ids, state)
        loss, dlogits = softmax_cross_entropy(logits, targets)
        n = ids.size
        flat_y, flat_d = y.reshape(n, -1), dlogits.reshape(n, -1)
        self.lstm.zero_grad()
        dx, _ = self.lstm.backward(dlogits @ self.head_w)
        d_embed = np.zeros_like(self.embed)
        np.add.at(d_embed, ids.reshape(-1), dx.reshape(n, -1))
        self.grads = {f"lstm.{k}": g for k, g in self.lstm.grads.items()}
        self.grads.update(embed=d_embed, head_w=flat_d.T @ flat_y, head_b=flat_d.sum(axis=0))
        return loss, state


def split_held_out(text: str, fraction: float) -> Tuple[str, str]:
    """(training text, held-out text): the last ``fraction`` of the text is held out (never
    trained on), the rest is trained on. The split is by position, so the held-out text is
    later material of the same kind, not a shuffled sample of the training text."""
    if not 0 <= fraction < 0.5:
        raise ValueError(f"the held-out fraction must be in [0, 0.5), got {fraction}")
    cut = len(text) - int(len(text) * fraction)
    return text[:cut], text[cut:]


def held_out_bits(model: CharLM, text: str, streams: int = 16, chunk: int = 1024) -> float:
    """Bits per character of the model on ``text``: each character after the first of each
    of ``streams`` contiguous pieces, predicted from everything before it in its piece (the
    LSTM state carried over chunks of ``chunk`` steps). Characters the model has never seen
    are an error."""
    unknown = sorted(set(text) - set(model.index))
    if unknown:
        raise ValueError(f"the held-out text has characters the model never saw: {unknown!r}")
    ids = model.encode(text)
    B = max(1, min(streams, (len(ids) - 1) // 2))
    L = (len(ids) - 1) // B  # characters predicted per stream
    if L < 1:
        raise ValueError(f"the held-out text ({len(text)} characters) is too short")
    x = ids[: B * L].reshape(B, L).T  # (L, B): stream b is ids[b*L : (b+1)*L]
    y = ids[1 : B * L + 1].reshape(B, L).T
    total, state = 0.0, None
    with no_grad():
        for t in range(0, L, chunk):
            logits, _, state = model.logits(x[t : t + chunk], state)
            z = logits - logits.max(axis=-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
            total -= float(np.take_along_axis(logp, y[t : t + chunk, :, None], axis=-1).sum())
    return total / (B * L) / np.log(2)


def unigram_entropy_bits(text: str) -> float:
    """Bits per character of the best model that ignores context: the baseline to beat."""
    _, counts = np.unique(np.frombuffer(text.encode("utf-32-le"), np.uint32), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def sample(
    model: CharLM,
    length: int,
    temperature: float = 1.0,
    prime: str = "",
    seed: Optional[int] = None,
) -> str:
    """Generates `length` characters after `prime`. Temperature scales the logits; as it goes
    to 0 the choice becomes the most likely character (greedy)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    unknown = sorted(set(prime) - set(model.index))
    if unknown:
        raise ValueError(f"the prime text has characters the model has never seen: {unknown!r}")
    rng = np.random.default_rng(seed)
    with no_grad():
        state = None
        ids = model.encode(prime) if prime else np.array([rng.integers(len(model.vocab))])
        logits, _, state = model.logits(ids[:, None], state)
        last = logits[-1, 0]
        out = []
        for _ in range(length):
            z = (last - last.max()) / temperature
            p = np.exp(z - z.max())
            p /= p.sum()
            nxt = int(np.argmax(p)) if temperature < 1e-3 else int(rng.choice(len(p), p=p))
            out.append(model.vocab[nxt])
            logits, _, state = model.logits(np.array([[nxt]]), state)
            last = logits[-1, 0]
    return prime + "".join(out)


class CheckpointError(ValueError):
    """A checkpoint that is not one, is damaged, or does not fit."""


def save_checkpoint(path: str, model: CharLM, opt: Adam, step: int, state=None) -> None:
    """Parameters, Adam's moments, the step and the LSTM state carried into the next chunk
    (so that a resumed run continues exactly where this one stopped)."""
    arrays = {f"param/{k}": v for k, v in model.params().items()}
    if state is not None:
        arrays.update(state_h=state[0], state_c=state[1])
    arrays.update({f"adam_m/{k}": v for k, v in opt.m.items()})
    arrays.update({f"adam_v/{k}": v for k, v in opt.v.items()})
    meta = dict(
        format=CHECKPOINT_FORMAT,
        step=step,
        adam_t=opt.t,
        vocab=model.vocab,
        config=asdict(model.config),
    )
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def load_checkpoint(path: str, backend: Optional[str] = None):
    """Returns (model, optimizer, step, state). Raises CheckpointError for anything that is
    not a complete checkpoint of this format."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zip or npy damage
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({e})") from None
    try:
        meta = json.loads(str(files.pop("meta")))
        state = (files.pop("state_h"), files.pop("state_c")) if "state_h" in files else None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}"
            )
        config = CharLMConfig(**meta["config"])
        if backend is not None:
            config.backend = backend
        model = CharLM(meta["vocab"], config)
        params = model.params()
        opt = Adam(params, config.lr)
        for prefix, target in [("param/", params), ("adam_m/", opt.m), ("adam_v/", opt.v)]:
            names = {k[len(prefix) :] for k in files if k.startswith(prefix)}
            if names != set(target):
                raise CheckpointError(
                    f"{path}: {prefix[:-1]} entries do not match the model "
                    f"(missing {sorted(set(target) - names)}, unexpected "
                    f"{sorted(names - set(target))})"
                )
            for k, arr in target.items():
                src = files[prefix + k]
                if src.shape != arr.shape:
                    raise CheckpointError(
                        f"{path}: {prefix}{k} has shape {src.shape}, the model needs {arr.shape}"
                    )
                arr[...] = src
        opt.t = int(meta["adam_t"])
        return model, opt, int(meta["step"]), state
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged or mismatched checkpoint ({e})") from None


def batches_from(model: CharLM, text: str, start_step: int) -> Iterator:
    """Endless (inputs, targets) chunks over the text split into parallel streams, starting
    at the chunk a run that has taken `start_step` steps would be at. Yields (inputs, targets,
    new_epoch)."""
    from .train import stream_batches

    data = model.encode(text)
    c = model.config
    per_epoch = max(1, -(-(len(data) // c.batch_size - 1) // c.seq_len))
    step = start_step
    while True:
        skip = step % per_epoch
        for i, (x, y) in enumerate(stream_batches(data, c.batch_size, c.seq_len)):
            if i < skip:
                continue
            yield x, y, i == 0
            step += 1


def train(
    model: CharLM,
    opt: Adam,
    text: str,
    steps: int,
    start_step: int = 0,
    on_step: Optional[Callable[[int, float, float], None]] = None,
    on_sample: Optional[Callable[[int], None]] = None,
    sample_every: int = 0,
    state=None,
):
    """Trains for `steps` more steps from `state`; returns the LSTM state to continue from.
    The state carries from chunk to chunk within an epoch (truncated BPTT, k1 = k2 =
    seq_len) and restarts from zeros at each epoch."""
    bpc = float("nan")
    t0, chars = time.perf_counter(), 0
    params = model.params()
    for i, (x, y, new_epoch) in zip(range(steps), batches_from(model, text, start_step)):
        if new_epoch or (state is not None and state[0].shape[1] != x.shape[1]):
            state = None
        loss, state = model.loss_and_grads(x, y, state)
        clip_grad_norm(model.grads, model.config.clip)
        opt.step(params, model.grads)
        bpc = loss / np.log(2)
        chars += x.size
        step = start_step + i + 1
        if on_step:
            on_step(step, bpc, chars / max(time.perf_counter() - t0, 1e-9))
        if on_sample and sample_every and step % sample_every == 0:
            on_sample(step)
    return state
