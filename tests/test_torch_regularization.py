"""fastrnn.torch's LSTM and GRU with zoneout, recurrent_dropout and weight_drop (issue 13)
against a plain PyTorch implementation of the same equations written here, run with the
module's own masks: outputs, final states and the gradients of the input, the initial
states and every parameter (weight drop's through its mask), stacked and bidirectional;
evaluation's formula, torch's RNG, state dicts, and what cannot fall back."""

import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastrnn.torch")

from test_torch_dropin import FAST  # noqa: E402

T, B, I, H = 5, 3, 4, 6


def _ln(v, gain, bias=None):
    return torch.nn.functional.layer_norm(v, v.shape[-1:], gain, bias, 1e-5)


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, d_h, d_c, r, ln=None):
    if ln is None:
        a = x @ w_ih.T + (h * r) @ w_hh.T + b_ih + b_hh
    else:
        a = _ln(x @ w_ih.T, ln[0]) + _ln((h * r) @ w_hh.T, ln[1]) + b_ih + b_hh
    i, f, g, o = a.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new if ln is None else _ln(c_new, ln[2], ln[3]))
    if w_hr is not None:
        h_new = h_new @ w_hr.T
    if d_c is not None:
        c_new = d_c * c + (1 - d_c) * c_new
    if d_h is not None:
        h_new = d_h * h + (1 - d_h) * h_new
    return h_new, c_new


def _gru_step(x, h, w_ih, w_hh, b_ih, b_hh, d_h, r, ln=None):
    if ln is None:
        gx, gh = x @ w_ih.T + b_ih, (h * r) @ w_hh.T + b_hh
    else:
        gx, gh = _ln(x @ w_ih.T, ln[0]) + b_ih, _ln((h * r) @ w_hh.T, ln[1]) + b_hh
    rx, zx, nx = gx.chunk(3, dim=1)
    rh, zh, nh = gh.chunk(3, dim=1)
    rg, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
    n = torch.tanh(nx + rg * nh)
    h_new = (1 - z) * n + z * h
    return h_new if d_h is None else d_h * h + (1 - d_h) * h_new


def _plain(m, x, hx):
    """The module's equations in plain torch with its last masks (full-length sequences)."""
    lstm = isinstance(m, torch.nn.LSTM)
    D = 2 if m.bidirectional else 1
    P = m.proj_size or m.hidden_size
    h0 = hx[0] if lstm else hx
    inp, h_n, c_n = x, [], []
    for layer in range(m.num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w = [getattr(m, f"{n}{sfx}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            ln = [p for n, p in m.named_parameters() if n.startswith("layer_norm_") and
                  n.endswith(sfx) and (d or not n.endswith("_reverse"))] or None  # fmt: skip
            masks = m.last_regularization_masks.get((layer, d), {})
            if "weight_drop" in masks:
                w[1] = w[1] * masks["weight_drop"]
            r = masks.get("recurrent_mask", torch.ones(B, P, dtype=x.dtype, device=x.device))
            z = masks.get("zoneout", (None, None) if lstm else None)
            k = layer * D + d
            h, c = h0[k], (hx[1][k] if lstm else None)
            seq = inp if d == 0 else inp.flip(0)
            ys = []
            for t in range(T):
                if lstm:
                    d_h = None if z[0] is None else z[0][t]
                    d_c = None if z[1] is None else z[1][t]
                    w_hr = getattr(m, f"weight_hr{sfx}", None)
                    h, c = _lstm_step(seq[t], h, c, *w, w_hr, d_h, d_c, r, ln)
                else:
                    h = _gru_step(seq[t], h, *w, None if z is None else z[t], r, ln)
                ys.append(h)
            y = torch.stack(ys)
            outs.append(y if d == 0 else y.flip(0))
            h_n.append(h)
            c_n.append(c)
        inp = torch.cat(outs, dim=2)
    finals = (torch.stack(h_n), torch.stack(c_n)) if lstm else torch.stack(h_n)
    return inp, finals


def _flat(out):
    y, finals = out
    return [y, *finals] if isinstance(finals, tuple) else [y, finals]


CASES = [
    ("LSTM", dict(zoneout=0.3)),
    ("LSTM", dict(zoneout=(0.3, 0.1), recurrent_dropout=0.3, weight_drop=0.25)),
    (
        "LSTM",
        dict(zoneout=0.2, recurrent_dropout=0.2, proj_size=3, num_layers=2, bidirectional=True),
    ),  # fmt: skip
    ("GRU", dict(zoneout=0.3)),
    ("GRU", dict(recurrent_dropout=0.3, weight_drop=0.3, num_layers=2, bidirectional=True)),
    ("LayerNormLSTM", dict()),
    ("LayerNormLSTM", dict(zoneout=0.2, recurrent_dropout=0.2, num_layers=2, bidirectional=True)),
    ("LayerNormGRU", dict()),
    ("LayerNormGRU", dict(zoneout=0.2, weight_drop=0.2, num_layers=2, bidirectional=True)),
]


@pytest.mark.parametrize("cls,kw", CASES, ids=[f"{c}-{'-'.join(k)}" for c, k in CASES])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_the_drop_in_is_the_plain_torch_equations_with_its_masks(cls, kw, training):
    torch.manual_seed(0)
    m = getattr(ft, cls)(I, H, dtype=torch.float64, **kw).train(training)
    with torch.no_grad():  # gains and biases away from 1 and 0
        for n, p in m.named_parameters():
            if n.startswith("layer_norm_"):
                p.add_(torch.randn(p.shape, dtype=p.dtype) * 0.3)
    P = m.proj_size or H
    D, L = 2 if m.bidirectional else 1, m.num_layers
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    hx = [torch.randn(L * D, B, P, dtype=torch.float64, requires_grad=True)]
    lstm = cls.endswith("LSTM")
    if lstm:
        hx.append(torch.randn(L * D, B, H, dtype=torch.float64, requires_grad=True))
    arg = tuple(hx) if lstm else hx[0]
    got = _flat(m(x, arg))
    assert type(got[0].grad_fn).__name__ == FAST
    want = _flat(_plain(m, x, arg))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-10)
    masks = m.last_regularization_masks.get((0, 0), {})
    assert ("recurrent_mask" in masks) == (training and "recurrent_dropout" in kw)
    leaves = [x, *hx, *m.parameters()]
    weights = [torch.randn(o.shape, dtype=o.dtype) for o in got]
    g_got = torch.autograd.grad(sum((o * w).sum() for o, w in zip(got, weights)), leaves)
    g_want = torch.autograd.grad(sum((o * w).sum() for o, w in zip(want, weights)), leaves)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_evaluation_zoneout_is_p():
    m = ft.LSTM(I, H, zoneout=(0.3, 0.2)).eval()
    m(torch.randn(T, B, I))
    d_h, d_c = m.last_regularization_masks[0, 0]["zoneout"]
    assert torch.all(d_h == 0.3) and torch.all(d_c == 0.2)


def test_masks_come_from_torchs_rng():
    m = ft.GRU(I, H, zoneout=0.3, recurrent_dropout=0.3, weight_drop=0.3)
    x = torch.randn(T, B, I)
    out = []
    for seed in (4, 4, 5):
        torch.manual_seed(seed)
        out.append(m(x)[0])
    assert torch.equal(out[0], out[1]) and not torch.allclose(out[0], out[2])


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
def test_packed_sequences_take_the_masks_of_their_rows(cls):
    """A PackedSequence (unsorted lengths, batch_first): the masks are over the sequences in
    their order before packing; each sequence run alone (unbatched) with its rows of the
    masks gives its part of the output."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(2)
    kw = dict(zoneout=0.4, recurrent_dropout=0.4, weight_drop=0.3)
    m = getattr(ft, cls)(I, H, batch_first=True, dtype=torch.float64, **kw)
    x = torch.randn(B, T, I, dtype=torch.float64)
    lengths = [5, 2, 4]
    y, _ = m(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    y, _ = pad_packed_sequence(y, batch_first=True)
    masks = m.last_regularization_masks[0, 0]
    lstm = cls == "LSTM"
    w = [getattr(m, f"{n}_l0") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    w[1] = w[1] * masks["weight_drop"]
    for b, n in enumerate(lengths):
        h = torch.zeros(1, H, dtype=x.dtype)
        c = torch.zeros(1, H, dtype=x.dtype)
        r = masks["recurrent_mask"][b : b + 1]
        z = masks["zoneout"]
        for t in range(n):
            if lstm:
                zh, zc = z[0][t, b : b + 1], z[1][t, b : b + 1]
                h, c = _lstm_step(x[b, t : t + 1], h, c, *w, None, zh, zc, r)
            else:
                h = _gru_step(x[b, t : t + 1], h, *w, z[t, b : b + 1], r)
            torch.testing.assert_close(y[b, t : t + 1], h, atol=1e-10, rtol=1e-10)
        assert torch.all(y[b, n:] == 0)


def test_state_dict_names_are_torchs_and_repr_shows_the_options():
    m = ft.LSTM(I, H, num_layers=2, zoneout=(0.2, 0.1), weight_drop=0.3)
    assert list(m.state_dict()) == list(torch.nn.LSTM(I, H, num_layers=2).state_dict())
    assert "zoneout=(0.2, 0.1), weight_drop=0.3" in repr(m)
    assert "zoneout" not in repr(ft.LSTM(I, H))


def test_without_the_kernels_it_is_an_error_not_torchs_lstm():
    m = ft.GRU(I, H, zoneout=0.1)
    with ft.disabled(), pytest.raises(RuntimeError, match="torch.nn has no such GRU"):
        m(torch.randn(T, B, I))


@pytest.mark.parametrize("kw", [dict(zoneout=1.5), dict(recurrent_dropout=-0.1)])
def test_bad_probabilities(kw):
    with pytest.raises(ValueError, match="must be a number in"):
        ft.LSTM(I, H, **kw)


@pytest.mark.parametrize("cls,names", [
    ("LayerNormLSTM", ["ih_weight", "hh_weight", "cell_weight", "cell_bias"]),
    ("LayerNormGRU", ["ih_weight", "hh_weight"]),
])  # fmt: skip
def test_layer_norm_classes_state_dict_names(cls, names):
    m = getattr(ft, cls)(I, H, num_layers=2, bidirectional=True)
    base = torch.nn.LSTM if cls == "LayerNormLSTM" else torch.nn.GRU
    plain = list(base(I, H, num_layers=2, bidirectional=True).state_dict())
    want = plain + [f"layer_norm_{n}_l{k}{s}" for k in range(2) for s in ("", "_reverse")
                    for n in names]  # fmt: skip
    assert list(m.state_dict()) == want
    for n, p in m.state_dict().items():
        if n.startswith("layer_norm_"):
            assert torch.all(p == (0 if "cell_bias" in n else 1))
    other = getattr(ft, cls)(I, H, num_layers=2, bidirectional=True)
    other.load_state_dict(m.state_dict())
    with ft.disabled(), pytest.raises(RuntimeError, match=f"{cls} with layer norm runs on"):
        m(torch.randn(T, B, I))


def test_mask_rates_and_scales():
    m = ft.LSTM(8, 64, zoneout=(0.3, 0.1), recurrent_dropout=0.4, weight_drop=0.2)
    torch.manual_seed(0)
    m(torch.zeros(50, 32, 8))
    masks = m.last_regularization_masks[0, 0]
    d_h, d_c = masks["zoneout"]
    assert set(d_h.unique().tolist()) == {0.0, 1.0} and abs(d_h.mean().item() - 0.3) < 0.01
    assert abs(d_c.mean().item() - 0.1) < 0.01
    for name, p in (("recurrent_mask", 0.4), ("weight_drop", 0.2)):
        a = masks[name]
        torch.testing.assert_close(a.unique(), torch.tensor([0.0, 1 / (1 - p)]))
        assert abs((a == 0).float().mean().item() - p) < 0.03, name


@pytest.mark.parametrize("cls,kw", [("LayerNormLSTM", dict(proj_size=2)),
                                    ("LayerNormGRU", dict(reset_after=False))])  # fmt: skip
def test_layer_norm_classes_refuse_what_they_do_not_take(cls, kw):
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{next(iter(kw))}'"):
        getattr(ft, cls)(I, H, **kw)


@pytest.mark.parametrize("cls,kw", [("LSTM", dict(zoneout=0.3)), ("LayerNormGRU", {})])
def test_bad_input_gets_torch_nns_own_error(cls, kw):
    """Input torch.nn rejects (here a wrong input size) raises torch.nn's error, not the
    kernels-only one."""
    m, base = getattr(ft, cls)(I, H, **kw), getattr(torch.nn, cls.replace("LayerNorm", ""))(I, H)
    x = torch.randn(T, B, I + 1)
    with pytest.raises(RuntimeError) as want:
        base(x)
    with pytest.raises(RuntimeError) as got:
        m(x)
    assert str(got.value) == str(want.value)


def test_in_evaluation_dropouts_fall_back_to_torch():
    """recurrent_dropout and weight_drop are off in evaluation, where torch.nn computes the
    same: a float16 module falls back rather than raising (zoneout would not)."""
    m = ft.LSTM(I, H, recurrent_dropout=0.3, weight_drop=0.3).eval().half()
    assert m(torch.randn(T, B, I).half())[0].dtype == torch.float16
    with pytest.raises(RuntimeError, match="runs on fastrnn's kernels only"):
        ft.LSTM(I, H, zoneout=0.3).eval().half()(torch.randn(T, B, I).half())


def test_numpy_scalars_are_probabilities():
    import numpy as np

    assert ft.GRU(I, H, zoneout=np.float32(0.25)).regularization.zoneout_h == 0.25
