"""The suite's layer-normalized rows (``--layer-norm``, issue 13): LayerNormLSTM and
LayerNormGRU with zoneout p = ZONEOUT, forward and training, on fastrnn (``fastrnn.ops`` with
``layer_norm`` and zoneout draws made once per case), on PyTorch as people write it without
fastrnn (a Python loop over nn.LSTMCell / nn.GRUCell's weights with nn.LayerNorm, zoneout
drawn per step) and on fastrnn.torch's LayerNormLSTM / LayerNormGRU ("dropin")."""

from __future__ import annotations

from typing import Callable

import numpy as np

from fastrnn import ops
from fastrnn.cell_spec import spec

from .peers import torch_layer_case

ZONEOUT = 0.1
LAYER_NORM_PEERS = ("fastrnn", "torch", "dropin")


def _gains(cell: str, H: int) -> tuple:
    """The layer-norm parameters at their initialization (gains 1, the LSTM's cell bias 0)."""
    G = spec(cell).G
    ones = lambda n: np.ones(n, np.float32)  # noqa: E731
    return (ones(G * H), ones(G * H)) + ((ones(H), np.zeros(H, np.float32)) if G == 4 else ())


def fastrnn_layer_norm_case(cell: str, mode: str, x, w) -> Callable[[], None]:
    s = spec(cell)
    T, B, H = x.shape[0], x.shape[1], w[1].shape[1]
    rng = np.random.default_rng(3)
    draw = lambda: (rng.random((T, B, H)) < ZONEOUT).astype(np.float32)  # noqa: E731
    kw = dict(layer_norm=_gains(cell, H))
    kw["zoneout"] = (draw(), draw()) if cell == "lstm" else draw()
    if mode == "forward":  # evaluation: zoneout's factor p
        kw["zoneout"] = tuple(np.full_like(z, ZONEOUT) for z in kw["zoneout"]) if (
            cell == "lstm") else np.full_like(kw["zoneout"], ZONEOUT)  # fmt: skip
    fwd, bwd = getattr(ops, s.forward_name), getattr(ops, s.backward_name)
    states = [None] * len(s.states)
    if mode == "forward":
        return lambda: fwd(x, *states, *w, False, **kw)

    def train():
        out = fwd(x, *states, *w, True, **kw)
        bwd(out[-1], out[0], *states)

    return train


def _torch_plain_module(cell: str, w):
    """The usual PyTorch layer-normalized cell with zoneout: nn.LSTMCell / nn.GRUCell's
    weights and nn.LayerNorm, stepped in Python."""
    import torch

    H = w[1].shape[1]
    G = spec(cell).G

    class Loop(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = (torch.nn.LSTMCell if cell == "lstm" else torch.nn.GRUCell)(H, H)
            with torch.no_grad():
                for p, v in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), w):
                    getattr(self.cell, p).copy_(torch.from_numpy(v))
            self.ln_ih = torch.nn.LayerNorm(G * H, elementwise_affine=True, bias=False)
            self.ln_hh = torch.nn.LayerNorm(G * H, elementwise_affine=True, bias=False)
            self.ln_c = torch.nn.LayerNorm(H) if cell == "lstm" else None

        def forward(self, x):
            c_, T, B = self.cell, x.shape[0], x.shape[1]
            h = x.new_zeros(B, H)
            c = x.new_zeros(B, H)
            gx = self.ln_ih(x @ c_.weight_ih.T) + c_.bias_ih
            ys = []
            for t in range(T):
                gh = self.ln_hh(h @ c_.weight_hh.T) + c_.bias_hh
                if cell == "lstm":
                    i, f, g, o = (gx[t] + gh).chunk(4, 1)
                    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h_new = torch.sigmoid(o) * torch.tanh(self.ln_c(c_new))
                else:
                    rx, zx, nx = gx[t].chunk(3, 1)
                    rh, zh, nh = gh.chunk(3, 1)
                    r, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
                    h_new = (1 - z) * torch.tanh(nx + r * nh) + z * h
                if self.training:
                    d = (torch.rand_like(h) < ZONEOUT).to(h.dtype)
                    h = d * h + (1 - d) * h_new
                    if cell == "lstm":
                        dc = (torch.rand_like(c) < ZONEOUT).to(c.dtype)
                        c = dc * c + (1 - dc) * c_new
                else:
                    h = ZONEOUT * h + (1 - ZONEOUT) * h_new
                    if cell == "lstm":
                        c = ZONEOUT * c + (1 - ZONEOUT) * c_new
                ys.append(h)
            return torch.stack(ys), h

    return Loop()


def _run(m, mode: str, x) -> Callable[[], object]:
    import torch

    m.train(mode != "forward")  # forward rows: evaluation, zoneout's factor p
    return torch_layer_case(m, mode, torch.from_numpy(x))


def torch_layer_norm_case(cell: str, mode: str, x, w) -> Callable[[], object]:
    return _run(_torch_plain_module(cell, w), mode, x)


def dropin_layer_norm_case(cell: str, mode: str, x, w) -> Callable[[], object]:
    import torch

    import fastrnn.torch as ft

    H = w[1].shape[1]
    m = getattr(ft, "LayerNorm" + spec(cell).torch_class)(H, H, zoneout=ZONEOUT)
    with torch.no_grad():
        for p, v in zip(spec(cell).param_names("_l0"), w):
            getattr(m, p).copy_(torch.from_numpy(v))
    return _run(m, mode, x)
