"""Bad input to the layers: a clear error naming the argument and the shapes, with a test each."""

import numpy as np
import pytest

import fastrnn

x = np.zeros((5, 3, 4), np.float32)


@pytest.mark.parametrize(
    "kwargs,exc,msg",
    [
        (dict(proj_size=8), ValueError, "proj_size must be smaller than hidden_size"),
        (dict(proj_size=9), ValueError, "proj_size must be smaller than hidden_size"),
        (dict(proj_size=-1), ValueError, "proj_size must be >= 0"),
        (dict(dropout=1.0), ValueError, r"dropout must be a number in \[0, 1\)"),
        (dict(dropout=-0.1), ValueError, r"dropout must be a number in \[0, 1\)"),
        (dict(dropout="0.5"), ValueError, r"dropout must be a number in \[0, 1\)"),
        (dict(num_layers=0), ValueError, "num_layers must be >= 1"),
        (dict(num_layers=1.5), TypeError, "num_layers must be an int"),
        (dict(dtype=np.float16), TypeError, "dtype must be float32 or float64"),
        (dict(backend="tpu"), ValueError, "backend must be one of"),
    ],
)
def test_constructor_rejects(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        fastrnn.LSTM(4, 8, **kwargs)


def test_rnn_nonlinearity_and_sizes():
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        fastrnn.RNN(4, 8, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        fastrnn.GRU(4, 0)


@pytest.mark.parametrize("cls", [fastrnn.LSTM, fastrnn.GRU, fastrnn.RNN])
def test_wrong_layers_or_directions_in_state(cls):
    net = cls(4, 6, num_layers=2, bidirectional=True)
    h0 = np.zeros((2, 3, 6), np.float32)  # 2 instead of num_layers * 2 directions = 4
    state = (h0, np.zeros((4, 3, 6), np.float32)) if cls is fastrnn.LSTM else h0
    with pytest.raises(
        ValueError,
        match=r"h0 has shape \(2, 3, 6\), expected \(num_layers \* "
        r"num_directions, B, H\) = \(4, 3, 6\)",
    ):
        net(x, state)


def test_lstm_state_must_be_a_pair():
    with pytest.raises(TypeError, match=r"state must be a tuple \(h0, c0\)"):
        fastrnn.LSTM(4, 6)(x, np.zeros((1, 3, 6), np.float32))


@pytest.mark.parametrize(
    "lengths,exc,msg",
    [
        ([5, 6, 1], ValueError, r"lengths must be in \[0, T=5\], got min 1, max 6"),
        ([5, -1, 1], ValueError, r"lengths must be in \[0, T=5\]"),
        ([5, 1], ValueError, r"lengths must have shape \(B,\) = \(3,\), got \(2,\)"),
        ([5.0, 1.0, 2.0], TypeError, "lengths must be integers, got dtype float64"),
        ([True, False, True], TypeError, "lengths must be integers, got dtype bool"),
    ],
)
def test_bad_lengths(lengths, exc, msg):
    with pytest.raises(exc, match=msg):
        fastrnn.GRU(4, 6)(x, lengths=lengths)


@pytest.mark.parametrize(
    "bad,exc,msg",
    [
        (
            np.zeros((5, 3, 4), np.float64),
            TypeError,
            "x has dtype float64, but the layer's parameters are float32",
        ),
        (np.zeros((5, 3, 2), np.float32), ValueError, "x has 2 features .* expected input_size=4"),
        (np.zeros((5,), np.float32), ValueError, r"x must be 3-D \(T, B, I\) or 2-D \(T, I\)"),
    ],
)
def test_bad_x(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        fastrnn.LSTM(4, 6)(bad)


def test_load_state_dict_checks_names_and_shapes():
    net = fastrnn.LSTM(4, 6, num_layers=2)
    sd = net.state_dict()
    missing = {k: v for k, v in sd.items() if k != "weight_hh_l1"}
    with pytest.raises(KeyError, match=r"missing keys \['weight_hh_l1'\], unexpected keys \[\]"):
        net.load_state_dict(missing)
    with pytest.raises(KeyError, match=r"unexpected keys \['weight_hr_l0'\]"):
        net.load_state_dict({**sd, "weight_hr_l0": np.zeros((2, 6))})
    with pytest.raises(ValueError, match=r"'bias_ih_l0' has shape \(23,\), expected \(24,\)"):
        net.load_state_dict({**sd, "bias_ih_l0": np.zeros(23)})
    with pytest.raises(TypeError, match="expected a dict"):
        net.load_state_dict([1, 2])
    before = net.state_dict()
    with pytest.raises(ValueError):
        net.load_state_dict({**{k: v + 1 for k, v in sd.items()}, "bias_ih_l0": np.zeros(23)})
    for k in before:  # a rejected dict changes nothing
        np.testing.assert_array_equal(net.state_dict()[k], before[k])
    net.load_state_dict({k: v.astype(np.float64) * 2 for k, v in sd.items()})
    assert net.parameters()["weight_ih_l0"].dtype == np.float32
    np.testing.assert_allclose(net.parameters()["weight_ih_l0"], 2 * sd["weight_ih_l0"])


def test_backward_order_rules():
    net = fastrnn.LSTM(4, 6)
    with pytest.raises(RuntimeError, match="called before any forward"):
        net.backward(None)
    net.eval()
    net(x)
    with pytest.raises(RuntimeError, match="inference mode"):
        net.backward(None)
    net.train()
    with fastrnn.no_grad():
        net(x)
    with pytest.raises(RuntimeError, match="inference mode"):
        net.backward(None)
    y, _ = net(x)
    with pytest.raises(ValueError, match=r"dy has shape \(5, 3, 7\), expected \(5, 3, 6\)"):
        net.backward(np.zeros((5, 3, 7), np.float32))
    with pytest.raises(ValueError, match=r"dh_n has shape \(2, 3, 6\), expected \(1, 3, 6\)"):
        net.backward(None, (np.zeros((2, 3, 6), np.float32), None))
    net.backward(np.ones_like(y))  # the rejected calls left the forward usable
    with pytest.raises(RuntimeError, match="already called for the last forward"):
        net.backward(np.ones_like(y))


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        fastrnn.GRU(4, 6, dropout=0.5)


def test_backends_listed():
    status = fastrnn.backends()
    assert list(status) == ["numpy", "cpu", "cuda"]
    assert status["numpy"].usable and status["cpu"].usable
    assert str(status["cpu"]) == "available"
