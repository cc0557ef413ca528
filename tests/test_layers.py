"""fastrnn.LSTM / GRU / RNN against torch.nn (weights copied through state_dict): outputs,
final states, dx, dh0/dc0 and every parameter gradient, over the options that matter; the
numpy backend against the cpu backend; finite differences on a stacked bidirectional case
with lengths; accumulation, modes, initialization, memory."""

import itertools
import sys

import numpy as np
import pytest

import fastrnn

from cells import TOL, assert_close


def spec_of(kind: str):
    """The cell table's entry for a test kind such as "rnn_tanh"."""
    return fastrnn.cell_spec.spec(kind.split("_")[0])


torch = pytest.importorskip("torch")

LAYERS = {
    "lstm": (fastrnn.LSTM, torch.nn.LSTM, {}),
    "gru": (fastrnn.GRU, torch.nn.GRU, {}),
    "rnn_tanh": (fastrnn.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (fastrnn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
}
T, B, I, H = 6, 4, 5, 7
LENGTHS = [6, 2, 5, 1]  # torch's packed sequences take lengths >= 1


def make_pair(kind, dtype, seed=0, **kw):
    ours_cls, torch_cls, extra = LAYERS[kind]
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(seed)
    theirs = torch_cls(I, H, dtype=tdt, **extra, **kw)
    ours = ours_cls(I, H, dtype=dtype, **extra, **kw)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def run_torch(theirs, kind, x, state, lengths, dy, dstate, batch_first, dropout_masks=None):
    """Forward + backward through torch; returns outputs, input/state grads and param grads."""
    xt = torch.from_numpy(x).requires_grad_()
    st = [torch.from_numpy(s).requires_grad_() for s in state]
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
        )
    hx = tuple(st) if spec_of(kind).has_cell_state else st[0]
    y, hn = theirs(inp, hx)
    if lengths is not None:
        y = torch.nn.utils.rnn.pad_packed_sequence(
            y, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0]
        )[0]
    hn = list(hn) if spec_of(kind).has_cell_state else [hn]
    loss = (y * torch.from_numpy(dy)).sum()
    for s, d in zip(hn, dstate):
        loss = loss + (s * torch.from_numpy(d)).sum()
    loss.backward()
    return (
        [y.detach().numpy()] + [s.detach().numpy() for s in hn],
        [xt.grad.numpy()] + [s.grad.numpy() for s in st],
        {k: p.grad.numpy() for k, p in theirs.named_parameters()},
    )


def run_ours(ours, kind, x, state, lengths, dy, dstate):
    if spec_of(kind).has_cell_state:
        y, (h, c) = ours(x, tuple(state), lengths=lengths)
        dx, (dh0, dc0) = ours.backward(dy, tuple(dstate))
        return [y, h, c], [dx, dh0, dc0], ours.grads
    y, h = ours(x, state[0], lengths=lengths)
    dx, dh0 = ours.backward(dy, dstate[0])
    return [y, h], [dx, dh0], ours.grads


def random_problem(ours, kind, batch_first, rng, dtype):
    D = 2 if ours.bidirectional else 1
    LD, P = ours.num_layers * D, ours.proj_size or H
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    state = [rng.standard_normal((LD, B, P)).astype(dtype)]
    if spec_of(kind).has_cell_state:
        state.append(rng.standard_normal((LD, B, H)).astype(dtype))
    dy = rng.standard_normal(x.shape[:2] + (D * P,)).astype(dtype)
    dstate = [rng.standard_normal(s.shape).astype(dtype) for s in state]
    return x, state, dy, dstate


def compare(kind, dtype, lengths=None, batch_first=False, **kw):
    ours, theirs = make_pair(kind, dtype, batch_first=batch_first, **kw)
    rng = np.random.default_rng(1)
    x, state, dy, dstate = random_problem(ours, kind, batch_first, rng, dtype)
    want = run_torch(theirs, kind, x, state, lengths, dy, dstate, batch_first)
    got = run_ours(ours, kind, x, state, lengths, dy, dstate)
    atol, rtol = TOL[dtype]
    for name, g, w in zip(["y", "h_n", "c_n"], got[0], want[0]):
        assert_close(name, g, w, atol, rtol)
    for name, g, w in zip(["dx", "dh0", "dc0"], got[1], want[1]):
        assert_close(name, g, w, atol, rtol)
    assert set(got[2]) == set(want[2])
    for name in want[2]:
        assert_close("d" + name, got[2][name], want[2][name], atol, rtol)


GRID = list(
    itertools.product([1, 2, 3], [False, True], [False, True], [True, False], [None, LENGTHS])
)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize(
    "num_layers,bidirectional,batch_first,bias,lengths",
    GRID,
    ids=[
        f"L{n}-{'bi' if b else 'uni'}-{'bf' if f else 'tm'}-"
        f"{'bias' if bs else 'nobias'}-{'len' if ln else 'full'}"
        for n, b, f, bs, ln in GRID
    ],
)
def test_layer_matches_torch(kind, num_layers, bidirectional, batch_first, bias, lengths):
    torch.set_num_threads(1)
    compare(
        kind,
        np.float64,
        lengths=lengths,
        batch_first=batch_first,
        num_layers=num_layers,
        bidirectional=bidirectional,
        bias=bias,
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "num_layers,bidirectional,lengths", [(1, False, None), (2, True, LENGTHS), (3, False, LENGTHS)]
)
def test_projected_lstm_matches_torch(dtype, num_layers, bidirectional, lengths):
    torch.set_num_threads(1)
    compare(
        "lstm",
        dtype,
        lengths=lengths,
        num_layers=num_layers,
        bidirectional=bidirectional,
        proj_size=3,
    )


@pytest.mark.parametrize("kind", list(LAYERS))
def test_float32_layers_match_torch(kind):
    torch.set_num_threads(1)
    compare(kind, np.float32, lengths=LENGTHS, num_layers=2, bidirectional=True)


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_matches_torch_with_the_same_masks(kind, bidirectional):
    """torch draws its own dropout masks, so the torch side is rebuilt layer by layer from
    one-layer modules with fastrnn's masks applied between them."""
    torch.set_num_threads(1)
    L, p = 3, 0.4
    ours, theirs = make_pair(
        kind, np.float64, num_layers=L, bidirectional=bidirectional, dropout=p, seed=3
    )
    ours._dropout_rng = np.random.default_rng(7)
    rng = np.random.default_rng(2)
    x, state, dy, dstate = random_problem(ours, kind, False, rng, np.float64)
    got = run_ours(ours, kind, x, state, LENGTHS, dy, dstate)
    masks = [ours.last_dropout_masks[l] for l in range(L - 1)]
    assert all(((m == 0) | np.isclose(m, 1 / (1 - p))).all() for m in masks)
    assert 0.2 < np.mean([(m == 0).mean() for m in masks]) < 0.6

    D = 2 if bidirectional else 1
    sd = theirs.state_dict()
    _, torch_cls, extra = LAYERS[kind]
    inp = torch.from_numpy(x).requires_grad_()
    x_leaf = inp
    st = [torch.from_numpy(s).requires_grad_() for s in state]
    lens = torch.tensor(LENGTHS)
    finals, loss = [[] for _ in st], 0
    for l in range(L):
        single = torch_cls(
            I if l == 0 else D * H, H, bidirectional=bidirectional, dtype=torch.float64, **extra
        )
        single.load_state_dict(
            {k.replace(f"_l{l}", "_l0"): v for k, v in sd.items() if f"_l{l}" in k}
        )
        packed = torch.nn.utils.rnn.pack_padded_sequence(inp, lens, enforce_sorted=False)
        hx = [s[l * D : (l + 1) * D] for s in st]
        y, hn = single(packed, tuple(hx) if spec_of(kind).has_cell_state else hx[0])
        y = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)[0]
        for f, s in zip(finals, list(hn) if spec_of(kind).has_cell_state else [hn]):
            f.append(s)
        inp = y * torch.from_numpy(masks[l]) if l < L - 1 else y
    loss = (inp * torch.from_numpy(dy)).sum()
    for f, d in zip(finals, dstate):
        loss = loss + (torch.cat(f) * torch.from_numpy(d)).sum()
    loss.backward()
    atol, rtol = TOL[np.float64]
    assert_close("y", got[0][0], inp.detach().numpy(), atol, rtol)
    for name, g, f in zip(["h_n", "c_n"], got[0][1:], finals):
        assert_close(name, g, torch.cat(f).detach().numpy(), atol, rtol)
    assert_close("dx", got[1][0], x_leaf.grad.numpy(), atol, rtol)
    for name, g, s in zip(["dh0", "dc0"], got[1][1:], st):
        assert_close(name, g, s.grad.numpy(), atol, rtol)


OURS_ONLY = {**LAYERS, "gru_reset_before": (fastrnn.GRU, None, {"reset_after": False})}


def check_backends_agree(kind, dropout, other):
    cls, _, extra = OURS_ONLY[kind]
    a = cls(
        I,
        H,
        num_layers=2,
        bidirectional=True,
        dtype=np.float64,
        seed=5,
        backend="cpu",
        dropout=dropout,
        **extra,
    )
    b = cls(
        I,
        H,
        num_layers=2,
        bidirectional=True,
        dtype=np.float64,
        seed=5,
        backend=other,
        dropout=dropout,
        **extra,
    )
    kind = kind.split("_")[0]
    rng = np.random.default_rng(3)
    x, state, dy, dstate = random_problem(a, kind, False, rng, np.float64)
    ra = run_ours(a, kind, x, state, LENGTHS, dy, dstate)
    rb = run_ours(b, kind, x, state, LENGTHS, dy, dstate)
    for ga, gb in zip(ra[0] + ra[1], rb[0] + rb[1]):
        assert_close("out", ga, gb, *TOL[np.float64])
    for k in ra[2]:
        assert_close(k, ra[2][k], rb[2][k], *TOL[np.float64])


@pytest.mark.parametrize("kind", list(OURS_ONLY))
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_numpy_backend_matches_cpu_backend(kind, dropout):
    check_backends_agree(kind, dropout, "numpy")


@pytest.mark.parametrize("kind", list(OURS_ONLY))
def test_cuda_backend_matches_cpu_backend(kind, cuda_device):
    """Stacked, bidirectional, variable lengths, dropout: the layers on backend="cuda"."""
    check_backends_agree(kind, 0.3, "cuda")


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before", "rnn_tanh"])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_stacked_bidirectional_with_lengths_finite_differences(kind, backend):
    cls, _, extra = OURS_ONLY[kind]
    kw = {"proj_size": 2} if spec_of(kind).projection else {}
    net = cls(
        3,
        4,
        num_layers=2,
        bidirectional=True,
        dtype=np.float64,
        seed=1,
        backend=backend,
        **extra,
        **kw,
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 3))
    lengths = [5, 0, 3]
    y0 = net(x, lengths=lengths)[0]
    wy = rng.standard_normal(y0.shape)

    def loss():
        with fastrnn.no_grad():
            return float(np.sum(net(x, lengths=lengths)[0] * wy))

    net.zero_grad()
    net(x, lengths=lengths)
    dx = net.backward(wy)[0]
    eps = 1e-6
    checks = [("x", x, dx)] + [
        (k, net.parameters()[k], net.grads[k])
        for k in ["weight_hh_l0_reverse", "weight_ih_l1", "bias_hh_l1"]
        + (["weight_hr_l0"] if spec_of(kind).projection else [])
    ]
    for name, arr, grad in checks:
        for idx in map(tuple, rng.integers(0, arr.shape, size=(6, arr.ndim))):
            old = arr[idx]
            arr[idx] = old + eps
            up = loss()
            arr[idx] = old - eps
            down = loss()
            arr[idx] = old
            assert_close(f"{name}{list(idx)}", grad[idx], (up - down) / (2 * eps), 1e-7, 1e-6)


def test_gradients_accumulate_until_zero_grad():
    net = fastrnn.GRU(I, H, num_layers=2, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, I))
    net(x)
    net.backward(np.ones((T, B, H)))
    once = {k: g.copy() for k, g in net.grads.items()}
    net(x)
    net.backward(np.ones((T, B, H)))
    for k in once:
        np.testing.assert_allclose(net.grads[k], 2 * once[k], rtol=1e-12)
    net.zero_grad()
    assert all(not g.any() for g in net.grads.values())


def test_initialization_is_torch_like_and_reproducible():
    a = fastrnn.LSTM(10, 20, num_layers=2, seed=4)
    b = fastrnn.LSTM(10, 20, num_layers=2, seed=4)
    c = fastrnn.LSTM(10, 20, num_layers=2, seed=5)
    names = list(torch.nn.LSTM(10, 20, num_layers=2).state_dict())
    assert list(a.state_dict()) == names
    for k in names:
        np.testing.assert_array_equal(a.state_dict()[k], b.state_dict()[k])
        assert np.abs(a.state_dict()[k]).max() <= 1 / np.sqrt(20)
        assert a.state_dict()[k].dtype == np.float32
    assert any((a.state_dict()[k] != c.state_dict()[k]).any() for k in names)


def test_unbatched_input_like_torch():
    ours, theirs = make_pair("lstm", np.float64, num_layers=2)
    x = np.random.default_rng(0).standard_normal((T, I))
    y, (h, c) = ours(x)
    yt, (ht, ct) = theirs(torch.from_numpy(x))
    assert y.shape == tuple(yt.shape) and h.shape == tuple(ht.shape)
    assert_close("y", y, yt.detach().numpy(), *TOL[np.float64])
    dx, (dh0, dc0) = ours.backward(np.ones_like(y))
    assert dx.shape == x.shape and dh0.shape == h.shape


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_inference_keeps_nothing_and_its_memory_does_not_grow_with_T():
    """T=3000, B=32, H=128: y is 49 MB; training also keeps the gates (197 MB) and the cell
    states (49 MB). Inference may use only y and O(B*H) beyond it. Peak RSS, in a fresh
    process each."""
    from fastrnn.bench import forward_peak_kib

    grew = {
        mode: forward_peak_kib(3000, 32, 16, 128, mode == "train") for mode in ("eval", "train")
    }
    print(f"peak RSS growth (KiB): {grew}")
    assert grew["eval"] < 49_000 + 20_000
    assert grew["train"] > 49_000 + 197_000


def test_dropout_is_reproducible_with_a_seed_and_off_in_eval():
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    a = fastrnn.LSTM(I, H, num_layers=3, dropout=0.5, seed=11)
    b = fastrnn.LSTM(I, H, num_layers=3, dropout=0.5, seed=11)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    np.testing.assert_array_equal(a(x)[0], b(x)[0])  # the same sequence of masks
    assert set(a.last_dropout_masks) == {0, 1}
    with fastrnn.no_grad():
        y1, y2 = a(x)[0], a(x)[0]
    np.testing.assert_array_equal(y1, y2)  # inference: no dropout
    a.eval()
    np.testing.assert_array_equal(a(x)[0], y1)
