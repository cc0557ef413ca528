"""fastrnn.train: clipping, truncated BPTT (k1 = k2 and the documented k1 != k2), stream
batching."""

import numpy as np
import pytest

import fastrnn
from fastrnn.train import clip_grad_norm, stream_batches, truncated_bptt


def test_clip_grad_norm():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]]), "none": None}
    assert clip_grad_norm(g, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(g["a"], [3.0, 0.0])  # under the limit: unchanged
    assert clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    norm = np.sqrt(np.sum(g["a"] ** 2) + np.sum(g["b"] ** 2))
    assert norm == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="max_norm must be positive"):
        clip_grad_norm(g, 0)
    g32 = {"w": np.full(4, 10.0, np.float32)}
    clip_grad_norm(g32, 2.0)
    assert g32["w"].dtype == np.float32


def test_truncated_bptt_carries_state_and_cuts_gradients():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((23, 2, 3))
    lstm = fastrnn.LSTM(3, 5, dtype=np.float64, seed=1)
    with fastrnn.no_grad():
        y_full, _ = lstm(x)
    ys, starts = [], []
    state = None
    tbptt = truncated_bptt(lstm, x, 5)
    for t0, xc, yc in tbptt:
        ys.append(yc)
        starts.append(t0)
        lstm.zero_grad()
        lstm.backward(np.ones_like(yc))
        chunk_grads = {k: g.copy() for k, g in lstm.grads.items()}
        # The same gradients as a fresh run over the chunk from the carried state.
        fresh = fastrnn.LSTM(3, 5, dtype=np.float64)
        fresh.load_state_dict(lstm.state_dict())
        fresh(xc, state)
        fresh.backward(np.ones_like(yc))
        for k in chunk_grads:
            np.testing.assert_allclose(chunk_grads[k], fresh.grads[k], rtol=1e-12, atol=1e-14)
        state = tbptt.state
    assert starts == [0, 5, 10, 15, 20]
    np.testing.assert_allclose(np.concatenate(ys), y_full, rtol=1e-12, atol=1e-14)


def test_documented_k1_k2_example_runs_and_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    T, k1, k2 = 12, 2, 6
    x = rng.standard_normal((T, 1, 3))
    target = rng.standard_normal((T, 1, 4))
    lstm = fastrnn.LSTM(3, 4, dtype=np.float64, seed=0)
    dloss_dy = lambda y, tgt: y - tgt  # noqa: E731  (squared error)
    states, grads = [None], []
    for t in range(k1, T + 1, k1):
        t0 = max(0, t - k2)
        y, state = lstm(x[t0:t], states[t0 // k1])
        states.append(state)
        dy = np.zeros_like(y)
        dy[-k1:] = dloss_dy(y[-k1:], target[t - k1 : t])
        lstm.backward(dy)
        grads.append(lstm.grads["weight_hh_l0"].copy())
        lstm.zero_grad()
    # Direct: at t = 8 the window is steps 2..8 started from the true state entering step 2.
    with fastrnn.no_grad():
        _, s2 = lstm(x[:2])
    y, _ = lstm(x[2:8], s2)
    dy = np.zeros_like(y)
    dy[-k1:] = dloss_dy(y[-k1:], target[6:8])
    lstm.backward(dy)
    np.testing.assert_allclose(grads[3], lstm.grads["weight_hh_l0"], rtol=1e-12)


def test_stream_batches_continue_each_stream():
    data = np.arange(103)
    batches = list(stream_batches(data, batch_size=4, steps=6))
    per_stream = 103 // 4  # 25 items per stream; 24 (input, target) pairs
    assert sum(inp.shape[0] for inp, _ in batches) == per_stream - 1
    first, second = batches[0], batches[1]
    assert first[0].shape == (6, 4)
    np.testing.assert_array_equal(first[0][:, 1], np.arange(25, 31))  # stream 1 starts at 25
    np.testing.assert_array_equal(first[1], first[0] + 1)
    np.testing.assert_array_equal(second[0][0], first[0][-1] + 1)  # continues where it stopped
    with pytest.raises(ValueError, match="cannot make 4 streams"):
        list(stream_batches(np.arange(5), 4, 2))


def test_truncated_bptt_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be a positive int"):
        truncated_bptt(fastrnn.GRU(2, 3), np.zeros((4, 1, 2), np.float32), 0)


def test_softmax_cross_entropy_gradient():
    from fastrnn.train import softmax_cross_entropy

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 4, 5))
    targets = rng.integers(0, 5, (3, 4))
    weights = (rng.random((3, 4)) > 0.3).astype(float)
    loss, grad = softmax_cross_entropy(logits.copy(), targets, weights)
    eps = 1e-6
    for idx in [(0, 0, 0), (1, 2, 3), (2, 3, 4)]:
        up, down = logits.copy(), logits.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (
            softmax_cross_entropy(up, targets, weights)[0]
            - softmax_cross_entropy(down, targets, weights)[0]
        ) / (2 * eps)
        assert grad[idx] == pytest.approx(fd, abs=1e-8)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    want = (
        -(weights * np.log(np.take_along_axis(p, targets[..., None], -1)[..., 0])).sum()
        / weights.sum()
    )
    assert loss == pytest.approx(want)


def test_split_held_out_keeps_the_end_of_the_text():
    from fastrnn.charlm import split_held_out

    assert split_held_out("abcdefgh", 0.25) == ("abcdef", "gh")
    assert split_held_out("abcdefgh", 0) == ("abcdefgh", "")
    with pytest.raises(ValueError, match=r"in \[0, 0.5\), got 0.5"):
        split_held_out("abcdefgh", 0.5)


def _tiny_charlm(vocab: str):
    from fastrnn.charlm import CharLM, CharLMConfig

    return CharLM(vocab, CharLMConfig(hidden_size=8, num_layers=2, embed_size=4, seed=3))


def test_held_out_bits_of_a_uniform_model_is_log2_of_the_vocabulary():
    from fastrnn.charlm import held_out_bits

    model = _tiny_charlm("abcde")
    model.head_w[...] = 0  # every character equally likely, whatever the LSTM says
    assert held_out_bits(model, "abcdeedcbaabc" * 3) == pytest.approx(np.log2(5), rel=1e-6)


def test_held_out_bits_carries_the_state_across_chunks():
    """Chunks of 3 steps give what one chunk gives (the state carried), and each stream's
    characters are predicted from its own past only (one stream differs from four)."""
    from fastrnn.charlm import held_out_bits

    model = _tiny_charlm("abcdefgh")
    model.head_w *= 30  # an untrained model's logits are near 0: make the context matter
    text = "abcdefghhgfedcba" * 5
    whole = held_out_bits(model, text, streams=4, chunk=1024)
    assert held_out_bits(model, text, streams=4, chunk=3) == pytest.approx(whole, rel=1e-5)
    assert held_out_bits(model, text, streams=1) != pytest.approx(whole, rel=1e-3)
    with pytest.raises(ValueError, match="never saw"):
        held_out_bits(model, "xyz")
