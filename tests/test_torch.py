"""fastrnn (C++ kernels and the NumPy reference) against torch.nn.LSTM / GRU / RNN with the
same weights: outputs, final states and every gradient. Skipped where PyTorch is absent
(install the test extra `torch`, the CPU build: pip install torch==2.13.0)."""

import numpy as np
import pytest

from fastrnn import ops, reference
from cells import TOL, VARIANTS, assert_close, backward, forward, make_problem, with_variants

torch = pytest.importorskip("torch")

# reset_after=False (Cho et al.) has no torch.nn counterpart.
TORCH_VARIANTS = [v for v in VARIANTS if v.options.get("reset_after", True)]


def torch_run(v, p, dtype):
    """Forward + backward through torch.nn; returns (outputs, grads) as NumPy arrays."""
    T, B, I = p.x.shape
    H = p.w_ih.shape[0] // v.gates
    P = p.w_hh.shape[1]
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    bias = p.b_ih is not None
    if v.cell == "lstm":
        m = torch.nn.LSTM(I, H, bias=bias, dtype=tdt, proj_size=P if P != H else 0)
    elif v.cell == "gru":
        m = torch.nn.GRU(I, H, bias=bias, dtype=tdt)
    else:
        m = torch.nn.RNN(I, H, bias=bias, nonlinearity=v.options["nonlinearity"], dtype=tdt)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.from_numpy(p.w_ih))
        m.weight_hh_l0.copy_(torch.from_numpy(p.w_hh))
        if bias:
            m.bias_ih_l0.copy_(torch.from_numpy(p.b_ih))
            m.bias_hh_l0.copy_(torch.from_numpy(p.b_hh))
        if p.w_hr is not None:
            m.weight_hr_l0.copy_(torch.from_numpy(p.w_hr))
    x = torch.from_numpy(p.x).requires_grad_()
    h0 = torch.from_numpy(p.h0)[None].clone().requires_grad_()
    inp = x
    if p.lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(p.lengths),
                                                      enforce_sorted=False)

    def unpack(y):
        if p.lengths is None:
            return y
        return torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)[0]

    if v.cell == "lstm":
        c0 = torch.from_numpy(p.c0)[None].clone().requires_grad_()
        y, (h, c) = m(inp, (h0, c0))
        y = unpack(y)
        loss = (y * torch.from_numpy(p.dy)).sum() + (h[0] * torch.from_numpy(p.dh_n)).sum() \
            + (c[0] * torch.from_numpy(p.dc_n)).sum()
        outs = (y, h[0], c[0])
    else:
        y, h = m(inp, h0)
        y = unpack(y)
        loss = (y * torch.from_numpy(p.dy)).sum() + (h[0] * torch.from_numpy(p.dh_n)).sum()
        outs = (y, h[0])
    loss.backward()
    grads = {"x": x.grad, "h0": h0.grad[0], "w_ih": m.weight_ih_l0.grad, "w_hh": m.weight_hh_l0.grad,
             "b_ih": m.bias_ih_l0.grad if bias else None, "b_hh": m.bias_hh_l0.grad if bias else None}
    if v.cell == "lstm":
        grads["c0"] = c0.grad[0]
        if p.w_hr is not None:
            grads["w_hr"] = m.weight_hr_l0.grad
    to_np = lambda t: None if t is None else t.detach().numpy()  # noqa: E731
    return [to_np(o) for o in outs], {k: to_np(g) for k, g in grads.items()}


def check_against_torch(v, impl, p, dtype):
    torch.set_num_threads(1)
    want_outs, want_grads = torch_run(v, p, dtype)
    outs, saved = forward(impl, v, p)
    grads = backward(impl, v, saved, p)
    atol, rtol = TOL[dtype]
    for name, g, w in zip(["y", "h_n", "c_n"], outs, want_outs):
        assert_close(name, g, w, atol, rtol)
    for name, w in want_grads.items():
        assert_close("d" + name, grads[name], w, atol, rtol)


@pytest.mark.parametrize("v", TORCH_VARIANTS, ids=[v.id for v in TORCH_VARIANTS])
@pytest.mark.parametrize("impl", [ops, reference], ids=["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape,bias", [((6, 3, 5, 7), True), ((1, 1, 2, 1), True),
                                        ((20, 8, 16, 33), False)])
def test_matches_torch(v, impl, dtype, shape, bias):
    check_against_torch(v, impl, make_problem(v, *shape, dtype=dtype, bias=bias, seed=11), dtype)


@pytest.mark.parametrize("v,lengths,proj", [
    p for p in with_variants([([3, 7, 1, 7, 2], 0), (None, 4), ([5, 1, 2, 6, 6], 3)], 1)
    if p.values[0] in TORCH_VARIANTS])
@pytest.mark.parametrize("impl", [ops, reference], ids=["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_lengths_and_projection_match_torch(v, impl, dtype, lengths, proj):
    """torch's PackedSequence (lengths >= 1: torch rejects 0) and proj_size."""
    check_against_torch(v, impl, make_problem(v, 7, 5, 6, 9, dtype=dtype, seed=13, proj=proj,
                                              lengths=lengths), dtype)
