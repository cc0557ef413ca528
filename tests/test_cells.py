"""fastrnn.LSTMCell / GRUCell / RNNCell against torch.nn's cells: a streaming loop of steps,
and the backward of the last step; on both backends."""

import numpy as np
import pytest

import fastrnn

from cells import TOL, assert_close


def spec_of(kind: str):
    """The cell table's entry for a test kind such as "rnn_tanh"."""
    return fastrnn.cell_spec.spec(kind.split("_")[0])


torch = pytest.importorskip("torch")

CELLS = {
    "lstm": (fastrnn.LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (fastrnn.GRUCell, torch.nn.GRUCell, {}),
    "rnn_tanh": (fastrnn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (fastrnn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
}


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "B,bias", [(3, True), (1, False), (None, True)], ids=["B3", "B1-nobias", "unbatched"]
)
def test_cell_matches_torch(kind, backend, dtype, B, bias):
    torch.set_num_threads(1)
    ours_cls, torch_cls, extra = CELLS[kind]
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    theirs = torch_cls(5, 7, bias=bias, dtype=tdt, **extra)
    ours = ours_cls(5, 7, bias=bias, dtype=dtype, backend=backend, **extra)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(0)
    shape = (5,) if B is None else (B, 5)
    xs = [rng.standard_normal(shape).astype(dtype) for _ in range(4)]
    lstm = spec_of(kind).has_cell_state
    state, tstate = None, None
    for x in xs[:-1]:  # stream: each step starts from the last one's state
        state = ours(x, state)
        with torch.no_grad():
            tstate = theirs(torch.from_numpy(x), tstate)
    xt = torch.from_numpy(xs[-1]).requires_grad_()
    hx = (
        tuple(s.clone().requires_grad_() for s in tstate)
        if lstm
        else tstate.clone().requires_grad_()
    )
    out_t = theirs(xt, hx)
    out = ours(xs[-1], state)
    atol, rtol = TOL[dtype]
    outs_t = out_t if lstm else (out_t,)
    outs = out if lstm else (out,)
    for o, ot in zip(outs, outs_t):
        assert_close("state", o, ot.detach().numpy(), atol, rtol)
    dh = rng.standard_normal(outs[0].shape).astype(dtype)
    dc = rng.standard_normal(outs[0].shape).astype(dtype)
    loss = (outs_t[0] * torch.from_numpy(dh)).sum()
    if lstm:
        loss = loss + (outs_t[1] * torch.from_numpy(dc)).sum()
    loss.backward()
    if lstm:
        dx, (dh_prev, dc_prev) = ours.backward(dh, dc)
        assert_close("dc_prev", dc_prev, hx[1].grad.numpy(), atol, rtol)
        assert_close("dh_prev", dh_prev, hx[0].grad.numpy(), atol, rtol)
    else:
        dx, dh_prev = ours.backward(dh)
    assert_close("dx", dx, xt.grad.numpy(), atol, rtol)
    if not lstm:
        assert_close("dh_prev", dh_prev, hx.grad.numpy(), atol, rtol)
    for k, p in theirs.named_parameters():
        assert_close("d" + k, ours.grads[k], p.grad.numpy(), atol, rtol)


def test_cell_backward_rules():
    cell = fastrnn.GRUCell(3, 4)
    with pytest.raises(RuntimeError, match="before any step"):
        cell.backward(np.zeros((1, 4), np.float32))
    x = np.zeros((2, 3), np.float32)
    cell.eval()
    cell(x)
    with pytest.raises(RuntimeError, match="inference mode"):
        cell.backward(np.zeros((2, 4), np.float32))
    cell.train()
    cell(x)
    with pytest.raises(ValueError, match=r"dh has shape \(1, 4\), expected \(2, 4\)"):
        cell.backward(np.zeros((1, 4), np.float32))
    cell.backward(np.zeros((2, 4), np.float32))
    with pytest.raises(RuntimeError, match="already called"):
        cell.backward(np.zeros((2, 4), np.float32))
    with fastrnn.no_grad():
        cell(x)
    with pytest.raises(RuntimeError, match="inference mode"):
        cell.backward(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize(
    "bad,exc,msg",
    [
        (np.zeros((2, 4), np.float32), ValueError, r"x must have shape \(B, 3\) or \(3,\)"),
        (np.zeros((2, 3), np.float64), TypeError, "x has dtype float64, expected float32"),
    ],
)
def test_cell_bad_input(bad, exc, msg):
    cell = fastrnn.LSTMCell(3, 4)
    with pytest.raises(exc, match=msg):
        cell(bad)
    with pytest.raises(ValueError, match=r"h has shape \(1, 4\), expected \(2, 4\)"):
        cell(
            np.zeros((2, 3), np.float32),
            (np.zeros((1, 4), np.float32), np.zeros((2, 4), np.float32)),
        )
    with pytest.raises(TypeError, match="state must be a tuple"):
        cell(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))
