"""The reference's layer-normalized cells, zoneout and variational recurrent dropout (issue
13) against central finite differences in float64, with fixed masks: every gradient the
backward returns, including the layer-norm parameters', alone and combined, with lengths
and a projection; and, switched off, exactly the plain cells."""

import numpy as np
import pytest

from fastrnn import reference

T, B, I, H = 4, 3, 3, 4

# (cell, extras, options): extras from "ln" (layer norm), "zo" (zoneout, training draws),
# "zo_eval" (zoneout's evaluation factor p), "rd" (recurrent dropout); options: "lengths",
# "proj" (LSTM), "reset_before" (GRU).
CASES = [
    ("lstm", {"ln"}, set()),
    ("lstm", {"zo"}, set()),
    ("lstm", {"zo_eval"}, {"lengths"}),
    ("lstm", {"rd"}, {"proj"}),
    ("lstm", {"ln", "zo", "rd"}, {"lengths"}),
    ("lstm", {"zo", "rd"}, {"proj", "lengths"}),
    ("gru", {"ln"}, set()),
    ("gru", {"zo"}, {"lengths"}),
    ("gru", {"rd"}, set()),
    ("gru", {"ln", "zo", "rd"}, {"lengths"}),
    ("gru", {"zo", "rd"}, {"reset_before"}),
    ("gru", {"zo_eval", "rd"}, {"reset_before", "lengths"}),
]
IDS = [f"{c}-{'+'.join(sorted(e))}-{'+'.join(sorted(o)) or 'plain'}" for c, e, o in CASES]


def _problem(cell, extras, options, seed=0):
    """Inputs (name -> array, those with gradients), the forward's keyword arguments and
    the loss weights."""
    rng = np.random.default_rng(seed)
    G = 4 if cell == "lstm" else 3
    P = 2 if "proj" in options else H
    a = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, P)) * 0.5,
        "w_ih": rng.standard_normal((G * H, I)) * 0.6,
        "w_hh": rng.standard_normal((G * H, P)) * 0.6,
        "b_ih": rng.standard_normal(G * H) * 0.3,
        "b_hh": rng.standard_normal(G * H) * 0.3,
    }
    if cell == "lstm":
        a["c0"] = rng.standard_normal((B, H)) * 0.5
        if "proj" in options:
            a["w_hr"] = rng.standard_normal((P, H)) * 0.6
    kw = {}
    if "lengths" in options:
        kw["lengths"] = np.array([4, 0, 2])
    if "reset_before" in options:
        kw["reset_after"] = False
    if "ln" in extras:
        names = ["g_ih", "g_hh"] + (["g_c", "b_c"] if cell == "lstm" else [])
        sizes = [G * H, G * H, H, H]
        for name, n in zip(names, sizes):
            a[name] = (1 if name.startswith("g") else 0) + rng.standard_normal(n) * 0.3
    zoneout = None
    if "zo" in extras:
        zoneout = [(rng.random((T, B, n)) < 0.4).astype(float) for n in (P, H)]
    if "zo_eval" in extras:
        zoneout = [np.full((T, B, n), p) for n, p in ((P, 0.3), (H, 0.2))]
    if zoneout is not None:
        kw["zoneout"] = tuple(zoneout) if cell == "lstm" else zoneout[0]
    if "rd" in extras:
        kw["recurrent_mask"] = (rng.random((B, P)) < 0.7) / 0.7
    n_out = 3 if cell == "lstm" else 2
    shapes = [(T, B, P), (B, P), (B, H)][:n_out]
    weights = [rng.standard_normal(s) for s in shapes]
    return a, kw, weights


def _forward(cell, a, kw, training=True):
    kw = dict(kw)
    if "g_ih" in a:
        kw["layer_norm"] = tuple(a[n] for n in ("g_ih", "g_hh", "g_c", "b_c") if n in a)
    if cell == "lstm":
        return reference.lstm_forward(
            a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], training,
            w_hr=a.get("w_hr"), **kw,
        )  # fmt: skip
    return reference.gru_forward(
        a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], training, **kw
    )


def _loss(cell, a, kw, weights) -> float:
    outs = _forward(cell, a, kw, training=False)[:-1]
    return float(sum((o * w).sum() for o, w in zip(outs, weights)))


def _grads(cell, a, kw, weights) -> dict:
    *outs, saved = _forward(cell, a, kw)
    if cell == "lstm":
        g = reference.lstm_backward(saved, *weights)
        names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"] + (
            ["w_hr"] if "w_hr" in a else []
        )
    else:
        g = reference.gru_backward(saved, *weights)
        names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
    names += [n for n in ("g_ih", "g_hh", "g_c", "b_c") if n in a]
    assert len(g) == len(names)
    return dict(zip(names, g))


@pytest.mark.parametrize("cell,extras,options", CASES, ids=IDS)
def test_extras_gradients_match_finite_differences(cell, extras, options):
    a, kw, weights = _problem(cell, extras, options)
    grads = _grads(cell, a, kw, weights)
    eps = 1e-6
    for name, g in grads.items():
        arr = a[name]
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            up = _loss(cell, a, kw, weights)
            arr[idx] = old - eps
            down = _loss(cell, a, kw, weights)
            arr[idx] = old
            num[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(g, num, atol=1e-7, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_extras_change_the_result(cell):
    """Each extra does something (a mutation that ignored one would pass the gradient test
    on its own consistency): outputs differ from the plain cell's."""
    base, kw0, _ = _problem(cell, set(), set())
    plain = _forward(cell, base, kw0, training=False)[0]
    for extra in ("ln", "zo", "zo_eval", "rd"):
        a, kw, _ = _problem(cell, {extra}, set())
        y = _forward(cell, a, kw, training=False)[0]
        assert not np.allclose(y, plain), extra


def test_zoneout_keeps_the_previous_state_where_drawn():
    """Where d = 1 a unit keeps h_{t-1} (and c_{t-1}) exactly; d = 0 everywhere is the plain
    cell; evaluation's factor p mixes the two."""
    a, kw, _ = _problem("lstm", set(), set())
    ones = (np.ones((T, B, H)), np.ones((T, B, H)))
    y, h, c, _ = _forward("lstm", a, dict(kw, zoneout=ones), training=False)
    np.testing.assert_array_equal(y[-1], a["h0"])
    np.testing.assert_array_equal(c, a["c0"])
    zeros = (np.zeros((T, B, H)), np.zeros((T, B, H)))
    y0 = _forward("lstm", a, dict(kw, zoneout=zeros), training=False)[0]
    np.testing.assert_array_equal(y0, _forward("lstm", a, kw, training=False)[0])


def test_layer_norm_gru_needs_reset_after():
    a, kw, _ = _problem("gru", {"ln"}, set())
    with pytest.raises(ValueError, match="layer_norm takes the reset-after form"):
        _forward("gru", a, dict(kw, reset_after=False))
