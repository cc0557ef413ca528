"""The drop-in in bfloat16: bf16 modules (``module.to(torch.bfloat16)``) and
``torch.autocast("cpu", dtype=torch.bfloat16)`` run fastrnn's bf16 kernels (bf16 operands,
float32 sums) -- against the NumPy layers in the same precision (the plumbing: casts, dtypes,
gradients), against torch.nn in float32 (the stated error bound), and the dtypes torch.nn
gives; what still falls back."""

import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastrnn.torch")

from test_torch_dropin import FAST, flat, pair  # noqa: E402

import fastrnn  # noqa: E402

BF16 = torch.bfloat16
LAYERS = [
    ("LSTM", {}),
    ("LSTM", {"proj_size": 3}),
    ("GRU", {}),
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu"}),
]
LAYER_IDS = ["lstm", "lstm-proj", "gru", "rnn-tanh", "rnn-relu"]
CLASSES = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"]


def _ran_fast(t: torch.Tensor) -> bool:
    """Whether t's graph reaches the drop-in's Function within a few casts."""
    fn = t.grad_fn
    for _ in range(3):
        if fn is None:
            return False
        if type(fn).__name__ == FAST:
            return True
        fn = fn.next_functions[0][0]
    return False


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _bound(kw) -> float:
    """The bound docs/design.md states (tests/test_bf16.py), for the outputs' bf16 rounding
    (2^-9) too."""
    return 2.0**-4 if kw.get("nonlinearity") == "relu" else 2.0**-7


@pytest.mark.parametrize("cls,kw", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_bf16_module_runs_the_bf16_kernels(cls, kw, bidirectional):
    """Outputs, final states and every gradient equal the NumPy layers' in precision="bf16"
    on the same (float32) values, rounded to bf16: the casts in and out are all that is
    added."""
    torch.manual_seed(0)
    opts = dict(num_layers=2, bidirectional=bidirectional, batch_first=True, **kw)
    ours = getattr(ft, cls)(5, 8, **opts).to(BF16)
    theirs = getattr(fastrnn, cls)(5, 8, precision="bf16", **opts)
    theirs.load_state_dict({k: v.float().numpy() for k, v in ours.state_dict().items()})
    x = torch.randn(3, 6, 5).to(BF16).requires_grad_()
    out = flat(ours(x))
    assert all(o.dtype == BF16 for o in out) and _ran_fast(out[0])
    y_np, finals_np = theirs(x.detach().float().numpy())
    want = [y_np, *(finals_np if isinstance(finals_np, tuple) else [finals_np])]
    for o, w in zip(out, want):
        assert torch.equal(o, torch.from_numpy(w).to(BF16))
    dy = torch.randn(out[0].shape).to(BF16)
    out[0].backward(dy)
    theirs.zero_grad()
    dx_np, _ = theirs.backward(dy.float().numpy())
    assert x.grad.dtype == BF16 and torch.equal(x.grad, torch.from_numpy(dx_np).to(BF16))
    for name, p in ours.named_parameters():
        assert p.grad.dtype == BF16
        assert torch.equal(p.grad, torch.from_numpy(theirs.grads[name]).to(BF16)), name


@pytest.mark.parametrize("cls,kw", LAYERS, ids=LAYER_IDS)
def test_a_bf16_module_is_within_the_stated_bound_of_float32(cls, kw):
    """Against torch.nn in float32 on the same bf16-representable weights and input, at
    torch.nn's initialization: outputs and the input's gradient."""
    torch.manual_seed(1)
    ref = getattr(torch.nn, cls)(32, 64, **kw)
    ours = getattr(ft, cls)(32, 64, **kw).to(BF16)
    ours.load_state_dict(ref.state_dict())
    ref.load_state_dict({k: v.float() for k, v in ours.state_dict().items()})
    x = torch.randn(30, 4, 32).to(BF16)
    x_ref, x_ours = x.float().requires_grad_(), x.clone().requires_grad_()
    y_ref, y = ref(x_ref)[0], ours(x_ours)[0]
    dy = torch.randn(y.shape)
    y_ref.backward(dy), y.backward(dy.to(BF16))
    assert _rel(y.float(), y_ref) < _bound(kw)
    assert _rel(x_ours.grad.float(), x_ref.grad) < _bound(kw)
    assert _rel(y.float(), y_ref) > 1e-4  # not float32 in disguise


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("x_dtype", [torch.float32, BF16], ids=["x-fp32", "x-bf16"])
def test_autocast_runs_bf16_products_with_torch_nn_dtypes(cls, x_dtype):
    """Under CPU autocast to bfloat16: the kernels run (bf16 products) for every class, the
    outputs have the dtype torch.nn gives under the same autocast, the float32 weights get
    float32 gradients, and everything is within the stated bound of float32."""
    cell = cls.endswith("Cell")
    ref, ours = pair(cls, torch.float32, input_size=16, hidden_size=32)
    shape = (6, 16) if cell else (20, 6, 16)
    x = torch.randn(shape).to(x_dtype)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    with torch.autocast("cpu", dtype=BF16):
        want = flat(ref(xs[0]))
        got = flat(ours(xs[1]))
    assert [g.dtype for g in got] == [w.dtype for w in want]
    assert _ran_fast(got[0])
    full = flat(ref(x.float()))  # float32 throughout: the truth the bound is against
    for g, f in zip(got, full):
        assert _rel(g.float(), f) < 2.0**-7
    assert _rel(got[0].float(), full[0]) > 1e-5  # bf16 products ran
    sum(g.float().sum() for g in got).backward()
    grads = torch.autograd.grad(sum(f.sum() for f in full), list(ref.parameters()))
    for (name, p), g in zip(ours.named_parameters(), grads):
        assert p.grad.dtype == torch.float32 and _rel(p.grad, g) < 2.0**-6, name
    assert xs[1].grad.dtype == x_dtype


def test_autocast_leaves_float64_alone():
    ref, ours = pair("GRU", torch.float64, input_size=3, hidden_size=4)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    with torch.autocast("cpu", dtype=BF16):
        y, y_ref = ours(x)[0], ref(x)[0]
    assert y.dtype == torch.float64 and type(y.grad_fn).__name__ == FAST
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-12)


def test_a_bf16_cell_step_without_grad():
    """Inference steps of a bf16 cell (no streaming CellStep: that is float32 only) equal the
    NumPy cell's in precision="bf16"."""
    ours = ft.LSTMCell(6, 10).to(BF16)
    theirs = fastrnn.LSTMCell(6, 10, precision="bf16")
    theirs.load_state_dict({k: v.float().numpy() for k, v in ours.state_dict().items()})
    x = torch.randn(3, 6).to(BF16)
    with torch.no_grad():
        h, c = ours(x)
    h_np, c_np = theirs(x.float().numpy())
    assert h.dtype == c.dtype == BF16
    assert torch.equal(h, torch.from_numpy(h_np).to(BF16))
    assert torch.equal(c, torch.from_numpy(c_np).to(BF16))


def test_bf16_dropout_masks_are_torch_rng_draws():
    """A bf16 LSTM with dropout: the same seed gives the same output, another seed another."""
    m = ft.LSTM(4, 8, num_layers=3, dropout=0.4).to(BF16).train()
    x = torch.randn(5, 3, 4).to(BF16)
    outs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        y = m(x)[0]
        assert _ran_fast(y)
        outs.append(y)
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("cls", ["LSTM", "GRUCell"])
def test_what_still_falls_back(cls):
    """Autocast to float16 and a bf16 module given float32 (torch.nn's error) run
    torch.nn's own forward; the same module given bf16 runs the kernels."""
    cell = cls.endswith("Cell")
    x = torch.randn((2, 3) if cell else (5, 2, 3))
    ref, ours = pair(cls, torch.float32, input_size=3, hidden_size=4)
    with torch.autocast("cpu", dtype=torch.float16):
        assert ft.fast_path_reason() == "autocast to torch.float16"
    ref16, ours16 = ref.to(BF16), ours.to(BF16)

    def raised(f):
        try:
            f()
        except Exception as e:  # noqa: BLE001 -- the error itself is compared
            return type(e), str(e)
        return None

    expected = raised(lambda: ref16(x))
    assert expected is not None and raised(lambda: ours16(x)) == expected
    assert _ran_fast(flat(ours16(x.to(BF16)))[0])


def test_inference_keeps_float32_copies_of_bf16_weights_until_they_change():
    """Without gradients a bf16 module's float32 weight copies are made once and remade after
    an in-place change (an optimizer step, load_state_dict)."""
    m = ft.LSTMCell(4, 6).to(BF16)
    x = torch.randn(2, 4).to(BF16)
    with torch.no_grad():
        first = m(x)[0]
        assert torch.equal(m(x)[0], first)
        m.weight_ih.mul_(-1)  # in place: the same tensor, its version moved
        changed = m(x)[0]
    ref = ft.LSTMCell(4, 6).to(BF16)
    ref.load_state_dict(m.state_dict())
    assert not torch.equal(changed, first) and torch.equal(changed, ref(x)[0])
