"""The NumPy reference against central finite differences in float64: the ground truth first."""

import numpy as np
import pytest

from fastrnn import reference

from cells import (
    VARIANT_IDS,
    VARIANTS,
    assert_close,
    backward,
    forward,
    loss,
    make_problem,
    with_variants,
)

# (bias, lengths, proj): lengths include 0 and T, unsorted; proj applies to LSTM only.
OPTIONS = [
    (True, None, 0),
    (False, None, 0),
    (True, [2, 0, 4, 1], 0),
    (True, None, 2),
    (False, [3, 4, 0, 1], 3),
]


@pytest.mark.parametrize("v,bias,lengths,proj", with_variants(OPTIONS, 2))
def test_reference_gradients_match_finite_differences(v, bias, lengths, proj):
    p = make_problem(
        v, T=4, B=4, I=5, H=4, bias=bias, seed=1, scale=1.5, proj=proj, lengths=lengths
    )
    _, saved = forward(reference, v, p)
    grads = backward(reference, v, saved, p)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for name, g in grads.items():
        arr = getattr(p, name)
        if arr is None:
            assert g is None, name
            continue
        # 12 random entries of each input: central differences cost two forwards each.
        for idx in map(tuple, rng.integers(0, arr.shape, size=(12, arr.ndim))):
            old = arr[idx]
            arr[idx] = old + eps
            up = loss(reference, v, p)
            arr[idx] = old - eps
            down = loss(reference, v, p)
            arr[idx] = old
            assert_close(
                f"{name}{list(idx)}", g[idx], (up - down) / (2 * eps), atol=1e-7, rtol=1e-6
            )


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_reference_steps_compose(v):
    """Running T steps at once equals running them one call at a time, carrying the state."""
    p = make_problem(v, T=5, B=2, I=3, H=4)
    whole, _ = forward(reference, v, p, training=False)
    state = [getattr(p, f"{s}0") for s in v.spec.states]
    ys = []
    for t in range(5):
        q = make_problem(v, T=5, B=2, I=3, H=4)
        q.x = p.x[t : t + 1]
        for s, value in zip(v.spec.states, state):
            setattr(q, f"{s}0", value)
        outs, _ = forward(reference, v, q, training=False)
        ys.append(outs[0])
        state = list(outs[1:])
    np.testing.assert_allclose(np.concatenate(ys), whole[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state[0], whole[1], rtol=1e-12, atol=1e-12)
