"""The kernels' regularization extras (issue 13) -- zoneout and variational recurrent
dropout in the LSTM's and GRU's time loops -- against the reference (tests/test_reference_extras.py
checks it against finite differences): outputs, final states and every gradient, on every
CPU instruction set and the CUDA backend (the emulated device; a GPU where one is usable),
with projections, unsorted lengths with 0 and T, batch 1; and the errors."""

import numpy as np
import pytest

from fastrnn import ops, reference
from fastrnn.layers import _OpsOn

# (T, B, I, H, proj, lengths, extras): extras from "zo" (training draws), "zo_eval" (p),
# "zo_h" (h only), "rd" (recurrent dropout).
CASES = [
    (5, 3, 4, 6, 0, None, {"zo"}),
    (5, 3, 4, 6, 0, None, {"rd"}),
    (6, 4, 5, 7, 0, [3, 0, 6, 1], {"zo", "rd"}),
    (6, 4, 5, 7, 3, [3, 0, 6, 1], {"zo", "rd"}),
    (4, 2, 3, 5, 2, None, {"zo_eval"}),
    (4, 2, 3, 5, 0, [4, 2], {"zo_h", "rd"}),
    (7, 1, 3, 40, 0, None, {"zo", "rd"}),
    (20, 16, 33, 67, 0, "random", {"zo", "rd"}),
    (5, 3, 4, 6, 0, None, {"ln"}),
    (6, 4, 5, 7, 0, [3, 0, 6, 1], {"ln", "zo", "rd"}),
    (4, 2, 3, 5, 0, None, {"ln", "zo_eval"}),
    (7, 1, 3, 40, 0, None, {"ln", "rd"}),
    (20, 16, 33, 67, 0, "random", {"ln", "zo", "rd"}),
]
IDS = [f"T{c[0]}-B{c[1]}-H{c[3]}-p{c[4]}-{'len' if c[5] else 'full'}-{'+'.join(sorted(c[6]))}"
       for c in CASES]  # fmt: skip
TOL = {np.float64: 1e-10, np.float32: 2e-4}


def _problem(T, B, I, H, proj, lengths, extras, dtype, seed=0):
    rng = np.random.default_rng(seed)
    P = proj or H
    arr = lambda *s, scale=1.0: (rng.standard_normal(s) * scale).astype(dtype)  # noqa: E731
    a = dict(x=arr(T, B, I), h0=arr(B, P, scale=0.5), c0=arr(B, H, scale=0.5),
             w_ih=arr(4 * H, I, scale=0.4), w_hh=arr(4 * H, P, scale=0.4),
             b_ih=arr(4 * H, scale=0.2), b_hh=arr(4 * H, scale=0.2))  # fmt: skip
    kw = {"w_hr": arr(P, H, scale=0.4)} if proj else {}
    if lengths == "random":
        lengths = rng.integers(0, T + 1, B)
    if lengths is not None:
        kw["lengths"] = np.asarray(lengths)
    if "zo" in extras:
        kw["zoneout"] = tuple((rng.random((T, B, n)) < 0.3).astype(dtype) for n in (P, H))
    if "zo_h" in extras:
        kw["zoneout"] = ((rng.random((T, B, P)) < 0.3).astype(dtype), None)
    if "zo_eval" in extras:
        kw["zoneout"] = (np.full((T, B, P), 0.25, dtype), np.full((T, B, H), 0.1, dtype))
    if "rd" in extras:
        kw["recurrent_mask"] = ((rng.random((B, P)) < 0.75) / 0.75).astype(dtype)
    if "ln" in extras:
        kw["layer_norm"] = tuple(
            (1 if i < 3 else 0) + arr(n, scale=0.3) for i, n in enumerate((4 * H, 4 * H, H, H))
        )
    grads_in = [arr(T, B, P), arr(B, P), arr(B, H)]
    return a, kw, grads_in


def _run(module, a, kw, grads_in):
    args = [a[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")]
    *outs, saved = module.lstm_forward(*args, True, **kw)
    grads = module.lstm_backward(saved, *grads_in)
    return [np.asarray(o) for o in outs], [None if g is None else np.asarray(g) for g in grads]


def _check(got, want, tol):
    for name, g, w in zip(("outputs", "gradients"), got, want):
        assert len(g) == len(w)
        for i, (x, y) in enumerate(zip(g, w)):
            np.testing.assert_allclose(x, y, atol=tol, rtol=tol, err_msg=f"{name}[{i}]")


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_lstm_extras_match_the_reference(case, dtype, cpu_isa):
    a, kw, g = _problem(*case, dtype)
    want = _run(reference, a, kw, g)
    _check(_run(ops, a, kw, g), want, TOL[dtype])
    plain = {k: v for k, v in kw.items() if k not in ("zoneout", "recurrent_mask", "layer_norm")}
    assert not np.allclose(_run(ops, a, plain, g)[0][0], want[0][0])  # the extras acted


@pytest.mark.parametrize(
    "case", CASES[:4] + CASES[5:7] + CASES[8:12], ids=IDS[:4] + IDS[5:7] + IDS[8:12]
)
def test_lstm_extras_on_the_cuda_backend(case, cuda_device):
    a, kw, g = _problem(*case, np.float64)
    _check(_run(_OpsOn("cuda"), a, kw, g), _run(reference, a, kw, g), TOL[np.float64])


# GRU: (T, B, I, H, reset_after, lengths, extras).
GRU_CASES = [
    (5, 3, 4, 6, True, None, {"zo"}),
    (5, 3, 4, 6, False, None, {"rd"}),
    (6, 4, 5, 7, True, [3, 0, 6, 1], {"zo", "rd"}),
    (6, 4, 5, 7, False, [3, 0, 6, 1], {"zo", "rd"}),
    (4, 2, 3, 5, True, None, {"zo_eval", "rd"}),
    (7, 1, 3, 40, False, None, {"zo", "rd"}),
    (20, 16, 33, 67, True, "random", {"zo", "rd"}),
    (5, 3, 4, 6, True, None, {"ln"}),
    (6, 4, 5, 7, True, [3, 0, 6, 1], {"ln", "zo", "rd"}),
    (4, 2, 3, 5, True, None, {"ln", "zo_eval"}),
    (7, 1, 3, 40, True, None, {"ln", "rd"}),
    (20, 16, 33, 67, True, "random", {"ln", "zo", "rd"}),
]
GRU_IDS = [f"T{c[0]}-B{c[1]}-H{c[3]}-{'after' if c[4] else 'before'}-"
           f"{'len' if c[5] else 'full'}-{'+'.join(sorted(c[6]))}" for c in GRU_CASES]  # fmt: skip


def _gru_problem(T, B, I, H, reset_after, lengths, extras, dtype, seed=1):
    a, kw, g = _problem(T, B, I, H, 0, lengths, extras, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    a["w_ih"], a["w_hh"] = a["w_ih"][: 3 * H], a["w_hh"][: 3 * H]
    a["b_ih"], a["b_hh"] = a["b_ih"][: 3 * H], a["b_hh"][: 3 * H]
    if "zoneout" in kw:
        kw["zoneout"] = kw["zoneout"][0]
    if "zo_eval" in extras:
        kw["zoneout"] = np.full((T, B, H), rng.uniform(0.1, 0.5), dtype)
    if "ln" in extras:
        kw["layer_norm"] = kw["layer_norm"][0][: 3 * H], kw["layer_norm"][1][: 3 * H]
    kw["reset_after"] = reset_after
    return a, kw, g[:2]


def _gru_run(module, a, kw, grads_in):
    kw = dict(kw)
    reset_after = kw.pop("reset_after")
    args = [a[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")]
    *outs, saved = module.gru_forward(*args, True, reset_after, **kw)
    grads = module.gru_backward(saved, *grads_in)
    return [np.asarray(o) for o in outs], [None if g is None else np.asarray(g) for g in grads]


@pytest.mark.parametrize("case", GRU_CASES, ids=GRU_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_gru_extras_match_the_reference(case, dtype, cpu_isa):
    a, kw, g = _gru_problem(*case, dtype)
    want = _gru_run(reference, a, kw, g)
    _check(_gru_run(ops, a, kw, g), want, TOL[dtype])
    plain = {k: v for k, v in kw.items() if k not in ("zoneout", "recurrent_mask", "layer_norm")}
    assert not np.allclose(_gru_run(ops, a, plain, g)[0][0], want[0][0])


@pytest.mark.parametrize("case", GRU_CASES[:6] + GRU_CASES[7:11], ids=GRU_IDS[:6] + GRU_IDS[7:11])
def test_gru_extras_on_the_cuda_backend(case, cuda_device):
    a, kw, g = _gru_problem(*case, np.float64)
    _check(_gru_run(_OpsOn("cuda"), a, kw, g), _gru_run(reference, a, kw, g), 1e-10)


@pytest.mark.parametrize("case", [CASES[3], CASES[9]], ids=[IDS[3], IDS[9]])
def test_lstm_extras_in_inference_equal_training(case):
    a, kw, _ = _problem(*case, np.float64)
    args = [a[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")]
    train = ops.lstm_forward(*args, True, **kw)[:3]
    infer = ops.lstm_forward(*args, False, **kw)[:3]
    for x, y in zip(train, infer):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "change,error,message",
    [
        (dict(zoneout=np.zeros((5, 3, 6))), TypeError, "zoneout must be a pair"),
        (dict(zoneout=(np.zeros((5, 3, 5)), None)), ValueError, r"'zoneout\[0\]' has shape"),
        (dict(zoneout=(None, np.zeros((5, 3, 6), np.float32))), TypeError, "share one dtype"),
        (dict(recurrent_mask=np.zeros((6, 3))), ValueError, "'recurrent_mask' has shape"),
        (dict(layer_norm=(np.ones(24),) * 3), TypeError, "layer_norm must be a tuple of 4"),
        (
            dict(layer_norm=(np.ones(24), np.ones(24), np.ones(5), np.zeros(6))),
            ValueError,
            r"'layer_norm\[2\]' has shape \(5,\), expected \(H,\)",
        ),  # fmt: skip
        # fmt: skip
    ],
    ids=[
        "not-a-pair",
        "zoneout-shape",
        "zoneout-dtype",
        "mask-shape",
        "ln-count",
        "ln-shape",
    ],  # fmt: skip
)
def test_lstm_extras_bad_input(change, error, message):
    a, kw, _ = _problem(*CASES[0], np.float64)
    args = [a[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")]
    with pytest.raises(error, match=message):
        ops.lstm_forward(*args, True, **change)


def test_layer_norm_takes_no_projection():
    a, kw, _ = _problem(*CASES[3], np.float64)  # a projection to P = 3, H = 7
    args = [a[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")]
    ln = (np.ones(28), np.ones(28), np.ones(7), np.zeros(7))
    with pytest.raises(ValueError, match="layer_norm takes no projection"):
        ops.lstm_forward(*args, True, w_hr=kw["w_hr"], layer_norm=ln)


def test_layer_norm_gru_needs_reset_after():
    a, kw, _ = _gru_problem(*GRU_CASES[7], np.float64)
    args = [a[k] for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")]
    with pytest.raises(ValueError, match="layer_norm takes the reset-after form"):
        ops.gru_forward(*args, True, False, layer_norm=kw["layer_norm"])
