"""fastrnn.convert: weights between torch.nn's names and Keras's and Haste's layouts.

- Round trips are exact (bitwise): Keras/Haste -> torch names -> back, and torch names ->
  Keras/Haste -> back (where one bias stands for torch's two, its sum comes back).
- The converted weights compute the source library's model: each library's equations are
  written here again in plain NumPy from its documentation, over its own weight layout
  (x @ kernel + h @ recurrent_kernel + bias, its gate order), independent of fastrnn's
  kernels and reference, and compared in float64 with fastrnn's layers running the
  converted weights: outputs and final states, both directions of conversion.
- Bad input raises, naming the argument and the shapes.
"""

import numpy as np
import pytest

import fastrnn
from fastrnn import convert
from fastrnn.cell_spec import spec

T, B, I, H = 7, 3, 5, 4
TOL = 1e-12
LAYERS = {"lstm": fastrnn.LSTM, "gru": fastrnn.GRU, "rnn": fastrnn.RNN}
G = {"lstm": 4, "gru": 3, "rnn": 1}

# (cell, reset_after) of every Keras layer form
KERAS_FORMS = [("lstm", True), ("gru", True), ("gru", False), ("rnn", True)]
KERAS_IDS = ["lstm", "gru", "gru-reset_before", "simplernn"]


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def split(a, n):
    """a's last axis cut into n equal gate blocks."""
    return np.split(a, n, axis=-1)


# ----------------------------------------------------------------------------- Keras's model


def keras_weights(cell, reset_after=True, bias=True, rng=None, dtype=np.float64):
    """Random weights shaped as keras.layers.{LSTM,GRU,SimpleRNN}(H).get_weights() returns
    them for input size I (biases nonzero, so that misplacing one shows)."""
    rng = rng or np.random.default_rng(0)
    GH = G[cell] * H
    shapes = [(I, GH), (H, GH)]
    if bias:
        shapes.append((2, GH) if cell == "gru" and reset_after else (GH,))
    return [(0.5 * rng.standard_normal(s)).astype(dtype) for s in shapes]


def keras_run(cell, weights, x, state, reset_after=True):
    """Keras's recurrence, step by step, as its documentation and layer definitions state it:
    x (T, B, I) and weights [kernel (I, G*H), recurrent_kernel (H, G*H)[, bias]];
    state h0 (B, H), or (h0, c0) for LSTM. Returns y (T, B, H) and the final state(s).

    - LSTM, gates i, f, c, o: i, f, o = sigmoid, c~ = tanh; c = f c + i c~; h = o tanh(c).
    - GRU, gates z, r, h: z, r = sigmoid(x W + h U + b); h = z h_prev + (1 - z) h~, with
      reset_after=True: h~ = tanh(x W_h + b_in_h + r * (h U_h + b_rec_h)), bias (2, 3H);
      reset_after=False: h~ = tanh(x W_h + (r * h) U_h + b_h), bias (3H,).
    - SimpleRNN: h = tanh(x W + h U + b).
    Keras 2.3+/TF2's default recurrent_activation, "sigmoid", is the logistic sigmoid.
    """
    kernel, recurrent = weights[0], weights[1]
    bias = weights[2] if len(weights) > 2 else None
    ys = []
    if cell == "lstm":
        h, c = state
        b = 0.0 if bias is None else bias
        for xt in x:
            zi, zf, zc, zo = split(xt @ kernel + h @ recurrent + b, 4)
            c = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zc)
            h = sigmoid(zo) * np.tanh(c)
            ys.append(h)
        return np.stack(ys), (h, c)
    h = state
    if cell == "rnn":
        b = 0.0 if bias is None else bias
        for xt in x:
            h = np.tanh(xt @ kernel + h @ recurrent + b)
            ys.append(h)
        return np.stack(ys), h
    uz, ur, uh = split(recurrent, 3)
    if reset_after:
        b_in, b_rec = (0.0, 0.0) if bias is None else (bias[0], bias[1])
        for xt in x:
            xz, xr, xh = split(xt @ kernel + b_in, 3)
            rz, rr, rh = split(h @ recurrent + b_rec, 3)
            z, r = sigmoid(xz + rz), sigmoid(xr + rr)
            h = z * h + (1 - z) * np.tanh(xh + r * rh)
            ys.append(h)
    else:
        b = 0.0 if bias is None else bias
        for xt in x:
            xz, xr, xh = split(xt @ kernel + b, 3)
            z, r = sigmoid(xz + h @ uz), sigmoid(xr + h @ ur)
            h = z * h + (1 - z) * np.tanh(xh + (r * h) @ uh)
            ys.append(h)
    return np.stack(ys), h


# ----------------------------------------------------------------------------- Haste's model


def haste_weights(cell, rng=None, dtype=np.float64):
    """Random weights by Haste's documented variable names and shapes."""
    rng = rng or np.random.default_rng(1)
    GH = G[cell] * H
    shapes = {"kernel": (I, GH), "recurrent_kernel": (H, GH), "bias": (GH,)}
    if cell == "gru":
        shapes["recurrent_bias"] = (GH,)
    return {n: (0.5 * rng.standard_normal(s)).astype(dtype) for n, s in shapes.items()}


def haste_run(cell, w, x, state):
    """Haste's recurrence, as its docs (variables, gate layouts, "reset gate applied to the
    hidden state after matrix multiplication", 1406.1078v1) and CUDA kernels state it:

    - LSTM, gates i, g, f, o of x @ kernel + h @ recurrent_kernel + bias: i, f, o sigmoid,
      g tanh; c = f c + i g; h = o tanh(c).
    - GRU, gates z, r, n: a = x @ kernel + bias, u = h @ recurrent_kernel + recurrent_bias;
      z, r = sigmoid(a + u); g = tanh(a_n + r * u_n); h = z h_prev + (1 - z) g.
    """
    ys = []
    if cell == "lstm":
        h, c = state
        for xt in x:
            zi, zg, zf, zo = split(xt @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"], 4)
            c = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zg)
            h = sigmoid(zo) * np.tanh(c)
            ys.append(h)
        return np.stack(ys), (h, c)
    h = state
    for xt in x:
        az, ar, an = split(xt @ w["kernel"] + w["bias"], 3)
        uz, ur, un = split(h @ w["recurrent_kernel"] + w["recurrent_bias"], 3)
        z, r = sigmoid(az + uz), sigmoid(ar + ur)
        h = z * h + (1 - z) * np.tanh(an + r * un)
        ys.append(h)
    return np.stack(ys), h


# ----------------------------------------------------------------------------- fastrnn's side


def inputs(cell, seed=2):
    """x (T, B, I) and a nonzero initial state: h0 (B, H), or (h0, c0) for LSTM."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I))
    h0 = 0.5 * rng.standard_normal((B, H))
    return x, ((h0, 0.5 * rng.standard_normal((B, H))) if cell == "lstm" else h0)


def fastrnn_layer(cell, reset_after=True, bias=True, seed=3):
    kw = {"reset_after": reset_after} if cell == "gru" else {}
    return LAYERS[cell](I, H, bias=bias, dtype=np.float64, seed=seed, **kw)


def fastrnn_run(layer, x, state):
    """The layer on x with state (unbatched states, as keras_run takes them); returns y and
    the final state(s) in the same form."""
    if isinstance(state, tuple):
        y, (h, c) = layer(x, (state[0][None], state[1][None]))
        return y, (h[0], c[0])
    y, h = layer(x, state[None])
    return y, h[0]


def assert_same_run(got, want):
    (y, fin), (y_ref, fin_ref) = got, want
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=TOL)
    fin, fin_ref = (f if isinstance(f, tuple) else (f,) for f in (fin, fin_ref))
    assert len(fin) == len(fin_ref)
    for a, b in zip(fin, fin_ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def assert_same_arrays(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)


# ----------------------------------------------------------------------------- the gate tables


def test_gate_tables_name_the_torch_gates():
    for table in (convert.KERAS_GATES, convert.HASTE_GATES):
        for cell, gates in table.items():
            assert sorted(gates) == sorted(spec(cell).gates)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("cell", "reset_after"), KERAS_FORMS, ids=KERAS_IDS)
def test_keras_round_trip_from_keras_is_exact(cell, reset_after, bias):
    weights = keras_weights(cell, reset_after, bias)
    state = convert.from_keras(cell, weights, reset_after=reset_after)
    assert_same_arrays(convert.to_keras(cell, state, reset_after=reset_after), weights)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("cell", "reset_after"), KERAS_FORMS, ids=KERAS_IDS)
def test_keras_round_trip_from_torch_names_is_exact(cell, reset_after, bias):
    state = fastrnn_layer(cell, reset_after, bias).state_dict()
    back = convert.from_keras(
        cell, convert.to_keras(cell, state, reset_after=reset_after), reset_after=reset_after
    )
    assert list(back) == list(state)
    for name in ("weight_ih_l0", "weight_hh_l0"):
        assert np.array_equal(back[name], state[name])
    if not bias:
        return
    if cell == "gru" and reset_after:  # Keras keeps both biases
        assert np.array_equal(back["bias_ih_l0"], state["bias_ih_l0"])
        assert np.array_equal(back["bias_hh_l0"], state["bias_hh_l0"])
    else:  # one Keras bias: the sum comes back, in bias_ih
        assert np.array_equal(back["bias_ih_l0"], state["bias_ih_l0"] + state["bias_hh_l0"])
        assert not back["bias_hh_l0"].any()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_haste_round_trips_are_exact(cell):
    weights = haste_weights(cell)
    again = convert.to_haste(cell, convert.from_haste(cell, weights))
    assert list(again) == list(weights)
    assert_same_arrays(list(again.values()), list(weights.values()))
    # the arrays in Haste's documented order work as well as the dict
    assert_same_arrays(
        list(convert.from_haste(cell, list(weights.values())).values()),
        list(convert.from_haste(cell, weights).values()),
    )

    state = fastrnn_layer(cell).state_dict()
    back = convert.from_haste(cell, convert.to_haste(cell, state))
    for name in ("weight_ih_l0", "weight_hh_l0"):
        assert np.array_equal(back[name], state[name])
    if cell == "gru":
        assert np.array_equal(back["bias_ih_l0"], state["bias_ih_l0"])
        assert np.array_equal(back["bias_hh_l0"], state["bias_hh_l0"])
    else:
        assert np.array_equal(back["bias_ih_l0"], state["bias_ih_l0"] + state["bias_hh_l0"])
        assert not back["bias_hh_l0"].any()


# ----------------------------------------------------------------------------- same model


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("cell", "reset_after"), KERAS_FORMS, ids=KERAS_IDS)
def test_from_keras_runs_the_keras_model(cell, reset_after, bias):
    weights = keras_weights(cell, reset_after, bias)
    x, state = inputs(cell)
    layer = fastrnn_layer(cell, reset_after, bias)
    layer.load_state_dict(convert.from_keras(cell, weights, reset_after=reset_after))
    assert_same_run(fastrnn_run(layer, x, state), keras_run(cell, weights, x, state, reset_after))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(("cell", "reset_after"), KERAS_FORMS, ids=KERAS_IDS)
def test_to_keras_gives_the_same_model(cell, reset_after, bias):
    layer = fastrnn_layer(cell, reset_after, bias, seed=5)  # both biases nonzero
    x, state = inputs(cell, seed=6)
    weights = convert.to_keras(cell, layer, reset_after=reset_after)
    assert_same_run(fastrnn_run(layer, x, state), keras_run(cell, weights, x, state, reset_after))


def test_keras_reset_before_gru_runs_in_fastrnn_reset_after_false():
    """Keras GRU(reset_after=False) (Cho et al.), which torch.nn cannot run, runs as
    fastrnn.GRU(reset_after=False); torch's form on the same weights is another model."""
    weights = keras_weights("gru", reset_after=False)
    x, h0 = inputs("gru")
    state = convert.from_keras("gru", weights, reset_after=False)
    want = keras_run("gru", weights, x, h0, reset_after=False)

    cho = fastrnn.GRU(I, H, dtype=np.float64, reset_after=False)
    cho.load_state_dict(state)
    assert_same_run(fastrnn_run(cho, x, h0), want)

    torch_form = fastrnn.GRU(I, H, dtype=np.float64)
    torch_form.load_state_dict(state)
    assert np.abs(fastrnn_run(torch_form, x, h0)[0] - want[0]).max() > 1e-3


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_from_haste_runs_the_haste_model(cell):
    weights = haste_weights(cell)
    x, state = inputs(cell)
    layer = fastrnn_layer(cell)
    layer.load_state_dict(convert.from_haste(cell, weights))
    assert_same_run(fastrnn_run(layer, x, state), haste_run(cell, weights, x, state))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_to_haste_gives_the_same_model(cell, bias):
    layer = fastrnn_layer(cell, bias=bias, seed=7)
    x, state = inputs(cell, seed=8)
    weights = convert.to_haste(cell, layer)
    assert_same_run(fastrnn_run(layer, x, state), haste_run(cell, weights, x, state))


# ----------------------------------------------------------------------------- details


def test_suffix_selects_one_layer_and_direction():
    lstm = fastrnn.LSTM(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    state = lstm.state_dict()
    keras = convert.to_keras("lstm", state, suffix="_l1_reverse")
    assert keras[0].shape == (2 * H, 4 * H)  # layer 1 reads both directions of layer 0
    back = convert.from_keras("lstm", keras, suffix="_l1_reverse")
    assert sorted(back) == sorted(k for k in state if k.endswith("_l1_reverse"))
    assert np.array_equal(back["weight_hh_l1_reverse"], state["weight_hh_l1_reverse"])
    cell = convert.from_haste("lstm", haste_weights("lstm"), suffix="")
    fastrnn.LSTMCell(I, H, dtype=np.float64).load_state_dict(cell)


def test_dtype_is_kept_and_results_are_new_arrays():
    weights = keras_weights("gru", dtype=np.float32)
    state = convert.from_keras("gru", weights)
    assert {a.dtype for a in state.values()} == {np.dtype(np.float32)}
    assert all(a.flags.c_contiguous for a in state.values())
    state["weight_ih_l0"][:] = 0
    assert weights[0].any()
    fastrnn.GRU(I, H).load_state_dict(state)
    back = convert.to_keras("gru", state)
    assert {a.dtype for a in back} == {np.dtype(np.float32)}
    assert all(a.flags.c_contiguous for a in back)


# ----------------------------------------------------------------------------- bad input


def _keras(cell="lstm", reset_after=True, **replace):
    w = keras_weights(cell, reset_after)
    for i, name in enumerate(("kernel", "recurrent_kernel", "bias")):
        if name in replace:
            w[i] = replace[name]
    return w


GH4 = 4 * H
BAD = {
    "unknown cell": (
        lambda: convert.from_keras("conv", _keras()),
        ValueError,
        r"cell must be one of \['gru', 'lstm', 'rnn'\].*'conv'",
    ),
    "haste rnn": (
        lambda: convert.to_haste("rnn", fastrnn_layer("rnn")),
        ValueError,
        r"cell must be one of \['gru', 'lstm'\] \(Haste",
    ),
    "kernel 1-d": (
        lambda: convert.from_keras("lstm", _keras(kernel=np.zeros(GH4))),
        ValueError,
        r"kernel must have shape \(input_size, 4 \* hidden_size\).*got \(16,\)",
    ),
    "kernel columns": (
        lambda: convert.from_keras("lstm", _keras(kernel=np.zeros((I, 15)))),
        ValueError,
        r"kernel must have shape .*got \(5, 15\)",
    ),
    "recurrent shape": (
        lambda: convert.from_keras("lstm", _keras(recurrent_kernel=np.zeros((H + 1, GH4)))),
        ValueError,
        r"recurrent_kernel must have shape \(4, 16\), got \(5, 16\)",
    ),
    "bias shape": (
        lambda: convert.from_keras("lstm", _keras(bias=np.zeros(GH4 + 1))),
        ValueError,
        r"bias must have shape \(16,\), got \(17,\)",
    ),
    "gru bias of reset_after=False": (
        lambda: convert.from_keras("gru", _keras("gru", bias=np.zeros(3 * H))),
        ValueError,
        r"bias must have shape \(2, 12\), got \(12,\).*pass reset_after=False",
    ),
    "gru bias of reset_after=True": (
        lambda: convert.from_keras("gru", _keras("gru", True), reset_after=False),
        ValueError,
        r"bias must have shape \(12,\), got \(2, 12\).*pass reset_after=True",
    ),
    "reset_after=False for torch": (
        lambda: convert.from_keras("gru", _keras("gru", False), reset_after=False, for_torch=True),
        ValueError,
        r"no torch.nn form.*fastrnn.GRU\(\.\.\., reset_after=False\)",
    ),
    "reset_after for lstm": (
        lambda: convert.to_keras("lstm", fastrnn_layer("lstm"), reset_after=False),
        ValueError,
        r"reset_after=False is a GRU option",
    ),
    "too many weights": (
        lambda: convert.from_keras("lstm", _keras() + [np.zeros(GH4)]),
        ValueError,
        r"weights must be 2 or 3 arrays \(kernel, recurrent_kernel, bias\), got 4",
    ),
    "unknown weight name": (
        lambda: convert.from_haste("gru", {**haste_weights("gru"), "gamma": np.zeros(3)}),
        ValueError,
        r"missing \[\], unknown \['gamma'\]",
    ),
    "haste gru without recurrent_bias": (
        lambda: convert.from_haste("gru", list(haste_weights("gru").values())[:3]),
        ValueError,
        r"weights must be 4 arrays",
    ),
    "integer weights": (
        lambda: convert.from_keras("rnn", [np.zeros((I, H), int), np.zeros((H, H))]),
        TypeError,
        r"kernel must be a float array, got dtype int",
    ),
    "missing suffix": (
        lambda: convert.to_keras("lstm", fastrnn_layer("lstm"), suffix="_l1"),
        ValueError,
        r"state has no \['weight_ih_l1', 'weight_hh_l1'\] \(suffix='_l1'\)",
    ),
    "one bias only": (
        lambda: convert.to_haste(
            "lstm",
            {k: v for k, v in fastrnn_layer("lstm").state_dict().items() if k != "bias_hh_l0"},
        ),
        ValueError,
        r"both 'bias_ih_l0' and 'bias_hh_l0' or neither",
    ),
    "weight_hh shape": (
        lambda: convert.to_keras(
            "gru", {"weight_ih_l0": np.zeros((12, I)), "weight_hh_l0": np.zeros((12, 5))}
        ),
        ValueError,
        r"weight_hh_l0 must have shape \(3 \* 5, 5\), got \(12, 5\)",
    ),
    "weight_ih shape": (
        lambda: convert.to_keras(
            "gru", {"weight_ih_l0": np.zeros((9, I)), "weight_hh_l0": np.zeros((12, H))}
        ),
        ValueError,
        r"weight_ih_l0 must have shape \(12, 5\), got \(9, 5\)",
    ),
    "bias_hh shape": (
        lambda: convert.to_keras(
            "rnn",
            {
                "weight_ih_l0": np.zeros((H, I)),
                "weight_hh_l0": np.zeros((H, H)),
                "bias_ih_l0": np.zeros(H),
                "bias_hh_l0": np.zeros(H + 1),
            },
        ),
        ValueError,
        r"bias_hh_l0 must have shape \(4,\), got \(5,\)",
    ),
    "projection": (
        lambda: convert.to_keras("lstm", fastrnn.LSTM(I, H, proj_size=2)),
        ValueError,
        r"'weight_hr_l0' is an LSTM projection",
    ),
    "keras reset_after mismatch with the layer": (
        lambda: convert.to_keras("gru", fastrnn_layer("gru", reset_after=False)),
        ValueError,
        r"the GRU given has reset_after=False, but reset_after=True was asked for",
    ),
    "haste from a reset_after=False gru": (
        lambda: convert.to_haste("gru", fastrnn_layer("gru", reset_after=False)),
        ValueError,
        r"the GRU given has reset_after=False",
    ),
    "layer of another cell": (
        lambda: convert.to_keras("gru", fastrnn_layer("lstm")),
        ValueError,
        r"cell is 'gru' but the layer given is a lstm",
    ),
    "state not a dict": (
        lambda: convert.to_keras("rnn", [np.zeros((H, I))]),
        ValueError,
        r"state must be a dict of torch.nn-named arrays or a fastrnn layer, got list",
    ),
    "reset_after not a bool": (
        lambda: convert.from_keras("gru", _keras("gru"), reset_after="yes"),
        ValueError,
        r"reset_after must be True or False, got 'yes'",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_naming_the_problem(case):
    call, error, match = BAD[case]
    with pytest.raises(error, match=match):
        call()
