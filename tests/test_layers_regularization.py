"""The NumPy layers' regularization keywords (issue 13): zoneout, variational recurrent
dropout and weight drop on LSTM and GRU layers, and the layer-normalized LayerNormLSTM and
LayerNormGRU -- against the reference called directly with
the layer's own masks (single layer: every output and gradient, weight drop's gradient
through its mask), on the kernels and the reference backend, with lengths and every layer
option; the masks' rates, reproducibility and evaluation's formula; bad options."""

import numpy as np
import pytest

import fastrnn
from fastrnn import reference

T, B, I, H = 6, 4, 3, 5
LENGTHS = np.array([6, 2, 0, 4])


def _layer(cls, backend="cpu", seed=0, **kw):
    return getattr(fastrnn, cls)(I, H, dtype=np.float64, backend=backend, seed=seed, **kw)


def _weights(m, suffix="_l0"):
    p = m.parameters()
    return [p[f"{n}{suffix}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


@pytest.mark.parametrize("cls", ["LSTM", "GRU"])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_a_regularized_layer_is_the_reference_with_its_masks(cls, backend, lengths):
    m = _layer(cls, backend, zoneout=0.3, recurrent_dropout=0.25, weight_drop=0.2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    y, finals = m(x, lengths=lengths)
    masks = m.last_regularization_masks[0, 0]
    w_ih, w_hh, b_ih, b_hh = _weights(m)
    kw = dict(zoneout=masks["zoneout"], recurrent_mask=masks["recurrent_mask"], lengths=lengths)
    w_eff = w_hh * masks["weight_drop"]
    if cls == "LSTM":
        y_r, h_r, c_r, saved = reference.lstm_forward(x, None, None, w_ih, w_eff, b_ih, b_hh, **kw)
        want = [y_r, h_r[None], c_r[None]]
        got = [y, *finals]
    else:
        y_r, h_r, saved = reference.gru_forward(x, None, w_ih, w_eff, b_ih, b_hh, **kw)
        want, got = [y_r, h_r[None]], [y, finals]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    m.zero_grad()
    dx, _ = m.backward(dy)
    grads = (reference.lstm_backward if cls == "LSTM" else reference.gru_backward)(
        saved, dy, *[None] * (2 if cls == "LSTM" else 1)
    )
    np.testing.assert_allclose(dx, grads[0], atol=1e-12)
    n = 3 if cls == "LSTM" else 2  # dx and the initial states' gradients come first
    np.testing.assert_allclose(m.grads["weight_ih_l0"], grads[n], atol=1e-12)
    # Weight drop: the gradient reaches W_hh through its mask.
    np.testing.assert_allclose(m.grads["weight_hh_l0"], grads[n + 1] * masks["weight_drop"],
                               atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "LayerNormLSTM", "LayerNormGRU"])
def test_every_layer_option_on_the_kernels_and_the_reference(cls):
    """Stacked, bidirectional, batch_first, lengths, dropout between layers, projection: the
    kernels and the reference backend agree (the same seed draws the same masks)."""
    kw = dict(num_layers=2, bidirectional=True, batch_first=True, dropout=0.3,
              zoneout=0.2, recurrent_dropout=0.3,
              weight_drop=0.25, **({"proj_size": 3} if cls == "LSTM" else {}))  # fmt: skip
    if cls.endswith("LSTM"):
        kw["zoneout"] = (0.2, 0.1)
    x = np.random.default_rng(2).standard_normal((B, T, I))
    runs = []
    for backend in ("cpu", "numpy"):
        m = _layer(cls, backend, seed=5, **kw)
        y, _ = m(x, lengths=LENGTHS)
        dx, _ = m.backward(np.ones_like(y))
        runs.append((y, dx, m.grads))
    (y1, dx1, g1), (y2, dx2, g2) = runs
    np.testing.assert_allclose(y1, y2, atol=1e-10)
    np.testing.assert_allclose(dx1, dx2, atol=1e-10)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], atol=1e-10, err_msg=k)


def test_mask_rates_and_scales():
    p_h, p_c, p_r, p_w = 0.3, 0.1, 0.4, 0.2
    m = fastrnn.LSTM(8, 64, seed=0, zoneout=(p_h, p_c), recurrent_dropout=p_r, weight_drop=p_w)
    m(np.zeros((50, 32, 8), np.float32))
    masks = m.last_regularization_masks[0, 0]
    d_h, d_c = masks["zoneout"]
    assert set(np.unique(d_h)) == {0, 1} and abs(d_h.mean() - p_h) < 0.01
    assert abs(d_c.mean() - p_c) < 0.01
    for name, p in (("recurrent_mask", p_r), ("weight_drop", p_w)):
        a = masks[name]
        np.testing.assert_allclose(np.unique(a), [0, 1 / (1 - p)], rtol=1e-6)
        assert abs((a == 0).mean() - p) < 0.03, name


def test_masks_are_reproducible_from_the_seed():
    """The same seed draws the same masks; another seed others (same weights)."""
    x = np.random.default_rng(3).standard_normal((T, B, I))
    weights = _layer("GRU").state_dict()
    out = []
    for s in (7, 7, 8):
        m = _layer("GRU", seed=s, zoneout=0.3, recurrent_dropout=0.3, weight_drop=0.3)
        m.load_state_dict(weights)
        out.append(m(x)[0])
    assert np.array_equal(out[0], out[1]) and not np.allclose(out[0], out[2])


def test_evaluation_uses_p_and_nothing_else():
    """eval(): zoneout's factor is p everywhere; no recurrent dropout, no weight drop."""
    m = _layer("LSTM", zoneout=(0.3, 0.2), recurrent_dropout=0.5, weight_drop=0.5).eval()
    x = np.random.default_rng(4).standard_normal((T, B, I))
    y, _ = m(x)
    masks = m.last_regularization_masks[0, 0]
    assert sorted(masks) == ["zoneout"]
    d_h, d_c = masks["zoneout"]
    assert np.all(d_h == 0.3) and np.all(d_c == 0.2)
    w_ih, w_hh, b_ih, b_hh = _weights(m)
    y_r = reference.lstm_forward(x, None, None, w_ih, w_hh, b_ih, b_hh, False,
                                 zoneout=(d_h, d_c))[0]  # fmt: skip
    np.testing.assert_allclose(y, y_r, atol=1e-12)


def test_off_by_default_and_leaves_dropout_draws_alone():
    x = np.random.default_rng(5).standard_normal((T, B, I))
    plain = _layer("LSTM", seed=3, num_layers=2, dropout=0.5)
    y = plain(x)[0]
    assert plain.last_regularization_masks == {}
    other = _layer("LSTM", seed=3, num_layers=2, dropout=0.5, recurrent_dropout=0.0)
    np.testing.assert_array_equal(other(x)[0], y)
    reg = _layer("LSTM", seed=3, num_layers=2, dropout=0.5, zoneout=0.2)
    reg(x)
    np.testing.assert_array_equal(reg.last_dropout_masks[0], plain.last_dropout_masks[0])


@pytest.mark.parametrize(
    "cls,kw,message",
    [
        ("LSTM", dict(zoneout=1.0), r"zoneout must be a number in \[0, 1\), got 1.0"),
        ("LSTM", dict(zoneout=(0.1, -0.1)), r"zoneout\[1\] must be a number in \[0, 1\)"),
        ("LSTM", dict(zoneout=(0.1, 0.2, 0.3)), r"zoneout takes \(p_h, p_c\)"),
        ("GRU", dict(zoneout=(0.1, 0.2)), "zoneout takes one p"),
        ("GRU", dict(recurrent_dropout="0.5"), "recurrent_dropout must be a number"),
        ("LSTM", dict(weight_drop=True), "weight_drop must be a number"),
    ],
)
def test_bad_options(cls, kw, message):
    with pytest.raises(ValueError, match=message):
        _layer(cls, **kw)


def test_rnn_takes_none_of_them():
    with pytest.raises(TypeError, match="zoneout"):
        fastrnn.RNN(I, H, zoneout=0.1)


@pytest.mark.parametrize("cls", ["LayerNormLSTM", "LayerNormGRU"])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_a_layer_norm_layer_is_the_reference_with_its_parameters(cls, backend):
    """One layer: outputs and every gradient, the layer-norm parameters' included, equal the
    reference's called with the layer's parameters (gains and bias moved off 1 and 0)."""
    m = _layer(cls, backend)
    rng = np.random.default_rng(6)
    ln_names = [n for n in m.parameters() if n.startswith("layer_norm_")]
    for n in ln_names:
        m.parameters()[n][...] += rng.standard_normal(m.parameters()[n].shape) * 0.3
    x = rng.standard_normal((T, B, I))
    y, finals = m(x, lengths=LENGTHS)
    w = _weights(m)
    ln = tuple(m.parameters()[n] for n in ln_names)
    kw = dict(lengths=LENGTHS, layer_norm=ln)
    if cls == "LayerNormLSTM":
        *want, saved = reference.lstm_forward(x, None, None, *w, **kw)
        got, n_states = [y, *(f[0] for f in finals)], 2
    else:
        *want, saved = reference.gru_forward(x, None, *w, **kw)
        got, n_states = [y, finals[0]], 1
    for g, v in zip(got, want):
        np.testing.assert_allclose(g, v, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    m.zero_grad()
    dx, _ = m.backward(dy)
    backward = reference.lstm_backward if cls == "LayerNormLSTM" else reference.gru_backward
    grads = backward(saved, dy, *[None] * n_states)
    np.testing.assert_allclose(dx, grads[0], atol=1e-12)
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"] + ln_names
    for name, g in zip(names, grads[1 + n_states :]):
        np.testing.assert_allclose(m.grads[name], g, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cls,n", [("LayerNormLSTM", 4), ("LayerNormGRU", 2)])
def test_layer_norm_parameters_are_named_and_initialized_as_documented(cls, n):
    m = getattr(fastrnn, cls)(I, H, num_layers=2, bidirectional=True)
    ln = {k: v for k, v in m.parameters().items() if k.startswith("layer_norm_")}
    assert len(ln) == n * 4 and "layer_norm_ih_weight_l1_reverse" in ln
    for k, v in ln.items():
        G = 4 if cls == "LayerNormLSTM" else 3
        assert v.shape == ((H,) if "_cell_" in k else (G * H,))
        assert np.all(v == (0 if "cell_bias" in k else 1)), k
    other = getattr(fastrnn, cls)(I, H, num_layers=2, bidirectional=True, seed=3)
    other.load_state_dict(m.state_dict())
    with pytest.raises(TypeError):
        getattr(fastrnn, cls)(I, H, proj_size=2)
