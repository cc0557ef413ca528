"""fastrnn (C++ kernels and the NumPy reference) against torch.nn.LSTM / GRU / RNN with the
same weights: outputs, final states and every gradient. Skipped where PyTorch is absent
(install the test extra `torch`, the CPU build: pip install torch==2.13.0)."""

import numpy as np
import pytest

from fastrnn import ops, reference

from cells import TOL, VARIANTS, assert_close, backward, forward, make_problem, with_variants

torch = pytest.importorskip("torch")

# Options torch.nn lacks (GRU reset_after=False, Cho et al.) have no torch counterpart.
TORCH_VARIANTS = [v for v in VARIANTS if v.spec.torch_options(v.options) is not None]


def torch_run(v, p, dtype):
    """Forward + backward through torch.nn; returns (outputs, grads) as NumPy arrays."""
    T, B, I = p.x.shape
    H = p.w_ih.shape[0] // v.gates
    P = p.w_hh.shape[1]
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    bias = p.b_ih is not None
    kw = v.spec.torch_options(v.options)
    if P != H:
        kw["proj_size"] = P
    m = getattr(torch.nn, v.spec.torch_class)(I, H, bias=bias, dtype=tdt, **kw)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.from_numpy(p.w_ih))
        m.weight_hh_l0.copy_(torch.from_numpy(p.w_hh))
        if bias:
            m.bias_ih_l0.copy_(torch.from_numpy(p.b_ih))
            m.bias_hh_l0.copy_(torch.from_numpy(p.b_hh))
        if p.w_hr is not None:
            m.weight_hr_l0.copy_(torch.from_numpy(p.w_hr))
    x = torch.from_numpy(p.x).requires_grad_()
    states = [
        torch.from_numpy(getattr(p, f"{s}0"))[None].clone().requires_grad_() for s in v.spec.states
    ]
    inp = x
    if p.lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.from_numpy(p.lengths), enforce_sorted=False
        )

    def unpack(y):
        if p.lengths is None:
            return y
        return torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)[0]

    y, finals = m(inp, tuple(states) if len(states) > 1 else states[0])
    finals = finals if isinstance(finals, tuple) else (finals,)
    y = unpack(y)
    outs = (y,) + tuple(f[0] for f in finals)
    loss = (y * torch.from_numpy(p.dy)).sum()
    for f, s in zip(finals, v.spec.states):
        loss = loss + (f[0] * torch.from_numpy(getattr(p, f"d{s}_n"))).sum()
    loss.backward()
    names = v.spec.param_names(projection=p.w_hr is not None)
    grads = {"x": x.grad}
    grads.update({f"{s}0": t.grad[0] for s, t in zip(v.spec.states, states)})
    grads.update(
        {
            w: getattr(m, f"{n}_l0").grad if bias or not n.startswith("bias") else None
            for w, n in zip(v.spec.weight_args(p.w_hr is not None), names)
        }
    )
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
@pytest.mark.parametrize(
    "shape,bias", [((6, 3, 5, 7), True), ((1, 1, 2, 1), True), ((20, 8, 16, 33), False)]
)
def test_matches_torch(v, impl, dtype, shape, bias):
    check_against_torch(v, impl, make_problem(v, *shape, dtype=dtype, bias=bias, seed=11), dtype)


@pytest.mark.parametrize(
    "v,lengths,proj",
    [
        p
        for p in with_variants([([3, 7, 1, 7, 2], 0), (None, 4), ([5, 1, 2, 6, 6], 3)], 1)
        if p.values[0] in TORCH_VARIANTS
    ],
)
@pytest.mark.parametrize("impl", [ops, reference], ids=["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_lengths_and_projection_match_torch(v, impl, dtype, lengths, proj):
    """torch's PackedSequence (lengths >= 1: torch rejects 0) and proj_size."""
    check_against_torch(
        v,
        impl,
        make_problem(v, 7, 5, 6, 9, dtype=dtype, seed=13, proj=proj, lengths=lengths),
        dtype,
    )
