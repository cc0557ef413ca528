"""fastrnn.torch's drop-in classes against torch.nn's with the same weights: outputs, final
states and every gradient (x, hx, parameters) over the options; dropout draw for draw;
gradcheck; fallbacks; errors; double backward; switching; serialization."""

import itertools
import logging
import pickle
import subprocess
import sys
import threading

import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastrnn.torch")

from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence  # noqa: E402

TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
FAST = "_StackFunctionBackward"


def pair(cls: str, dtype=torch.float64, **kw):
    """torch.nn's module and the drop-in with the same weights."""
    ref = getattr(torch.nn, cls)(**kw, dtype=dtype)
    ours = getattr(ft, cls)(**kw, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def flat(out):
    """The tensors of a forward's result, in order (a PackedSequence gives its data)."""
    if isinstance(out, PackedSequence):
        return [out.data]
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in flat(o)]


def run(module, make_inputs, seed=0):
    """Forward + backward of a random linear function of every output; returns the outputs
    and the gradients of the inputs (those requiring grad) and the parameters."""
    leaves, args = make_inputs()
    outs = flat(module(*args))
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, leaves + params)
    return outs, grads


def assert_same(a, b, tol):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        torch.testing.assert_close(x, y, atol=tol, rtol=tol)


def inputs_for(kind, T, B, I, batch_first, dtype, hx_shapes, seed=1):
    """A make_inputs function: x (and hx) as leaves; kind "tensor", "unbatched",
    "packed_sorted" or "packed_unsorted"."""

    def make():
        g = torch.Generator().manual_seed(seed)
        if kind == "unbatched":
            x = torch.randn(T, I, generator=g, dtype=dtype)
        elif batch_first:
            x = torch.randn(B, T, I, generator=g, dtype=dtype)
        else:
            x = torch.randn(T, B, I, generator=g, dtype=dtype)
        x.requires_grad_()
        hx = [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in hx_shapes]
        arg = x
        if kind.startswith("packed"):
            lengths = [T, max(1, T - 2), 1, T - 1][:B]
            if kind == "packed_sorted":
                lengths = sorted(lengths, reverse=True)
            arg = pack_padded_sequence(
                x, lengths, batch_first=batch_first, enforce_sorted=kind == "packed_sorted"
            )
        state = None if not hx else (hx[0] if len(hx) == 1 else tuple(hx))
        return [x] + hx, (arg, state)

    return make


CELL_KINDS = [("LSTM", {}), ("GRU", {}), ("RNN", {"nonlinearity": "tanh"})]
CELL_KINDS += [("RNN", {"nonlinearity": "relu"})]
KINDS = ["tensor", "unbatched", "packed_sorted", "packed_unsorted"]


def layer_cases():
    for (cls, opts), L, bidir, kind, with_hx in itertools.product(
        CELL_KINDS, (1, 2, 3), (False, True), KINDS, (False, True)
    ):
        for i, proj in enumerate((0, 2) if cls == "LSTM" else (0,)):
            # batch_first, bias and dtype vary over the cases rather than multiplying them.
            n = L + 2 * bidir + 3 * KINDS.index(kind) + 5 * with_hx + 7 * i
            yield pytest.param(
                cls, opts, L, bidir, kind, with_hx, proj, n % 2 == 0, n % 3 != 0,
                (torch.float64, torch.float32)[n % 4 == 1],
                id=f"{cls}{opts.get('nonlinearity', '')}-L{L}-D{1 + bidir}-{kind}"
                f"-hx{int(with_hx)}-p{proj}",
            )  # fmt: skip


@pytest.mark.parametrize(
    "cls,opts,L,bidir,kind,with_hx,proj,batch_first,bias,dtype", list(layer_cases())
)
def test_layer_matches_torch(cls, opts, L, bidir, kind, with_hx, proj, batch_first, bias, dtype):
    T, B, I, H = 5, 3, 4, 3
    kw = dict(opts, input_size=I, hidden_size=H, num_layers=L, bidirectional=bidir)
    kw.update(batch_first=batch_first, bias=bias)
    if proj:
        kw["proj_size"] = proj
    ref, ours = pair(cls, dtype, **kw)
    D, P = 1 + bidir, proj or H
    hx_shapes = []
    if with_hx:
        lead = (L * D,) if kind == "unbatched" else (L * D, B)
        hx_shapes = [lead + (P,)] + ([lead + (H,)] if cls == "LSTM" else [])
    make = inputs_for(kind, T, B, I, batch_first, dtype, hx_shapes)
    outs_ref, grads_ref = run(ref, make)
    outs, grads = run(ours, make)
    assert type(outs[0].grad_fn).__name__ == FAST
    assert_same(outs, outs_ref, TOL[dtype])
    assert_same(grads, grads_ref, TOL[dtype])


@pytest.mark.parametrize("cls,opts", CELL_KINDS)
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cell_matches_torch(cls, opts, batched, with_hx, dtype):
    I, H, B = 4, 3, 2
    ref, ours = pair(cls + "Cell", dtype, input_size=I, hidden_size=H, **opts)

    def make():
        g = torch.Generator().manual_seed(3)
        lead = (B,) if batched else ()
        x = torch.randn(lead + (I,), generator=g, dtype=dtype).requires_grad_()
        n = 2 if cls == "LSTM" else 1
        hx = [torch.randn(lead + (H,), generator=g, dtype=dtype) for _ in range(n * with_hx)]
        hx = [h.requires_grad_() for h in hx]
        state = None if not hx else (hx[0] if n == 1 else tuple(hx))
        return [x] + hx, (x, state)

    outs_ref, grads_ref = run(ref, make)
    outs, grads = run(ours, make)
    assert type(outs[0].grad_fn).__name__ == FAST
    assert_same(outs, outs_ref, TOL[dtype])
    assert_same(grads, grads_ref, TOL[dtype])


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("kind", ["tensor", "packed_unsorted", "unbatched"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch_first", [False, True])
def test_dropout_matches_torch_draw_for_draw(cls, kind, dtype, batch_first):
    T, B, I, H = 6, 3, 4, 5
    kw = dict(input_size=I, hidden_size=H, num_layers=3, dropout=0.4, bidirectional=True)
    ref, ours = pair(cls, dtype, batch_first=batch_first, **kw)
    make = inputs_for(kind, T, B, I, batch_first, dtype, [])
    torch.manual_seed(7)
    outs_ref, grads_ref = run(ref, make)
    after_ref = torch.rand(1)
    torch.manual_seed(7)
    outs, grads = run(ours, make)
    assert torch.equal(torch.rand(1), after_ref)  # the same draws from the RNG
    assert type(outs[0].grad_fn).__name__ == FAST
    assert_same(outs, outs_ref, TOL[dtype])
    assert_same(grads, grads_ref, TOL[dtype])
    # The dropout acts (eval differs), and eval matches too.
    ref.eval(), ours.eval()
    assert not torch.allclose(flat(ref(make()[1][0]))[0], outs_ref[0])
    assert_same(flat(ours(make()[1][0])), flat(ref(make()[1][0])), TOL[dtype])


def test_gradcheck_layer_packed_bidirectional_projection():
    m = ft.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, dtype=torch.float64)
    names = [n for n, _ in m.named_parameters()]
    lengths = [2, 4, 1]

    def f(x, h0, c0, *ws):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, (h, c) = torch.func.functional_call(m, dict(zip(names, ws)), (packed, (h0, c0)))
        assert type(out.data.grad_fn).__name__ == FAST
        return out.data, h, c

    g = torch.Generator().manual_seed(0)
    args = [torch.randn(4, 3, 3, generator=g, dtype=torch.float64)]
    args += [torch.randn(4, 3, 2, generator=g, dtype=torch.float64)]
    args += [torch.randn(4, 3, 4, generator=g, dtype=torch.float64)]
    args += [p.detach().clone() for p in m.parameters()]
    assert torch.autograd.gradcheck(f, [a.requires_grad_() for a in args])


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
def test_gradcheck_cell(cls):
    m = getattr(ft, cls)(3, 4, dtype=torch.float64)
    names = [n for n, _ in m.named_parameters()]
    n_states = 2 if cls == "LSTMCell" else 1

    def f(x, *rest):
        hx = rest[:n_states]
        state = hx[0] if n_states == 1 else tuple(hx)
        return torch.func.functional_call(m, dict(zip(names, rest[n_states:])), (x, state))

    g = torch.Generator().manual_seed(0)
    args = [torch.randn(2, 3, generator=g, dtype=torch.float64)]
    args += [torch.randn(2, 4, generator=g, dtype=torch.float64) for _ in range(n_states)]
    args += [p.detach().clone() for p in m.parameters()]
    assert torch.autograd.gradcheck(f, [a.requires_grad_() for a in args])


def test_gradcheck_gru_reset_before():
    m = ft.GRU(3, 4, dtype=torch.float64, reset_after=False, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]

    def f(x, *ws):
        return torch.func.functional_call(m, dict(zip(names, ws)), (x,))[0]

    args = [torch.randn(3, 2, 3, dtype=torch.float64)]
    args += [p.detach().clone() for p in m.parameters()]
    assert torch.autograd.gradcheck(f, [a.requires_grad_() for a in args])


def test_needs_input_grad_and_frozen_parameters(monkeypatch):
    from fastrnn.torch import function

    need_dx_seen = []

    def spy(tape, dy, dfinals, need_dx=True):
        need_dx_seen.append(need_dx)
        return backward(tape, dy, dfinals, need_dx)

    backward = function.stack_backward
    monkeypatch.setattr(function, "stack_backward", spy)
    ref, ours = pair("LSTM", input_size=3, hidden_size=4, num_layers=2)
    for m in (ref, ours):
        m.weight_ih_l0.requires_grad_(False)
    x = torch.randn(5, 2, 3, dtype=torch.float64)  # no grad
    for m in (ref, ours):
        m(x)[0].sum().backward()
    assert ours.weight_ih_l0.grad is None and x.grad is None and need_dx_seen == [False]
    for (n, a), b in zip(ours.named_parameters(), ref.parameters()):
        assert (a.grad is None) == (b.grad is None), n
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=1e-10)
            assert a.grad.is_contiguous() and a.grad.shape == a.shape


def test_parameter_hooks_run():
    m = ft.GRU(3, 4)
    seen = []
    m.weight_hh_l0.register_hook(lambda g: seen.append(g.shape) or g * 0)
    m(torch.randn(5, 2, 3))[0].sum().backward()
    assert seen == [m.weight_hh_l0.shape] and not m.weight_hh_l0.grad.any()


def test_parametrized_weights_and_deepcopy():
    import copy

    from torch.nn.utils.parametrizations import weight_norm

    results = []
    for cls in (torch.nn.LSTM, ft.LSTM):
        torch.manual_seed(0)
        m = weight_norm(cls(3, 4, num_layers=2, dtype=torch.float64), "weight_hh_l0")
        y = m(torch.randn(5, 2, 3, dtype=torch.float64))[0]
        results.append([y] + list(torch.autograd.grad(y.pow(2).sum(), list(m.parameters()))))
    assert type(results[1][0].grad_fn).__name__ == FAST
    assert_same(results[1], results[0], 1e-10)
    gru = copy.deepcopy(ft.GRU(3, 4, reset_after=False))
    assert type(gru) is ft.GRU and gru.reset_after is False


def test_inference_keeps_nothing_and_matches():
    ref, ours = pair("GRU", input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            y, h = ours(x)
            assert y.grad_fn is None and not y.requires_grad
            torch.testing.assert_close(y, ref(x)[0], atol=1e-10, rtol=1e-10)


def test_retain_graph_backward_twice():
    ref, ours = pair("LSTM", input_size=3, hidden_size=4, num_layers=2, dropout=0.3)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for m in (ref, ours):
        torch.manual_seed(1)
        loss = m(x)[0].pow(2).sum()
        first = torch.autograd.grad(loss, [x] + list(m.parameters()), retain_graph=True)
        second = torch.autograd.grad(loss, [x] + list(m.parameters()))
        assert_same(first, second, 1e-12)
        results.append(first)
    assert_same(results[0], results[1], 1e-10)


def test_in_place_change_before_backward_is_detected():
    m = ft.LSTM(3, 4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    y = m(x)[0]
    with torch.no_grad():
        m.weight_hh_l0.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("penalty", [False, True])
def test_double_backward_raises(penalty):
    m = ft.GRU(3, 4, num_layers=2, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    loss = m(x)[0].pow(2).sum()
    if penalty:
        loss = loss + sum(p.pow(2).sum() for p in m.parameters())
    grads = torch.autograd.grad(loss, list(m.parameters()) + [x], create_graph=True)
    gnorm = sum(g.pow(2).sum() for g in grads)
    with pytest.raises(RuntimeError, match="double backward.*disabled"):
        gnorm.backward()


def test_double_backward_works_inside_disabled():
    m = ft.RNN(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    with ft.disabled():
        (g,) = torch.autograd.grad(m(x)[0].pow(2).sum(), [x], create_graph=True)
        g.sum().backward()
    assert x.grad is not None


# -- errors: exactly torch.nn's
BAD = {
    "input size": lambda: (torch.randn(5, 2, 7), None),
    "4-D input": lambda: (torch.randn(5, 2, 3, 1), None),
    "hx batch": lambda: (torch.randn(5, 2, 3), torch.randn(1, 3, 4)),
    "hx layers": lambda: (torch.randn(5, 2, 3), torch.randn(2, 2, 4)),
    "hx dtype": lambda: (torch.randn(5, 2, 3), torch.randn(1, 2, 4, dtype=torch.float64)),
    "x dtype": lambda: (torch.randn(5, 2, 3, dtype=torch.float64), None),
    "unbatched 3-D hx": lambda: (torch.randn(5, 3), torch.randn(1, 2, 4)),
    "integer input": lambda: (torch.ones(5, 2, 3, dtype=torch.int64), None),
}


def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- any exception: compared below
        return type(e), str(e)
    return None


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_as_torch(cls, case):
    ref, ours = pair(cls, torch.float32, input_size=3, hidden_size=4)
    x, h = BAD[case]()
    if cls == "LSTM" and h is not None:
        h = (h, torch.zeros(h.shape, dtype=h.dtype))
    expected = _raised(lambda: ref(x, h))
    assert expected is not None
    assert _raised(lambda: ours(x, h)) == expected


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
@pytest.mark.parametrize(
    "x_shape,h_shape", [((2, 7), None), ((2, 3, 1), None), ((2, 3), (3, 4)), ((3,), (2, 4))]
)
def test_cell_bad_input_raises_as_torch(cls, x_shape, h_shape):
    ref, ours = pair(cls, torch.float32, input_size=3, hidden_size=4)
    x = torch.randn(x_shape)
    h = None if h_shape is None else torch.randn(h_shape)
    if cls == "LSTMCell" and h is not None:
        h = (h, h)
    expected = _raised(lambda: ref(x, h))
    assert expected is not None
    assert _raised(lambda: ours(x, h)) == expected


@pytest.mark.parametrize("rows,batch_sizes", [(4, [2, 1]), (3, [1, 2]), (3, [2, 1, 0])])
def test_malformed_packed_sequence_as_torch(rows, batch_sizes):
    ref, ours = pair("GRU", torch.float32, input_size=3, hidden_size=4)
    packed = PackedSequence(torch.randn(rows, 3), torch.tensor(batch_sizes))
    expected = _raised(lambda: flat(ref(packed)))
    if expected is None:
        assert_same(flat(ours(packed)), flat(ref(packed)), 1e-6)
    else:
        assert _raised(lambda: ours(packed)) == expected


# -- fallbacks
@pytest.mark.parametrize("dtype", [torch.float16])  # bfloat16: tests/test_torch_bf16.py
def test_low_precision_falls_back_to_torch(dtype):
    ref, ours = pair("LSTM", torch.float32, input_size=3, hidden_size=4, num_layers=2)
    ref, ours = ref.to(dtype), ours.to(dtype)
    x = torch.randn(5, 2, 3).to(dtype).requires_grad_()
    expected = _raised(lambda: ref(x))
    if expected is not None:  # torch has no such kernel here: the same error
        assert _raised(lambda: ours(x)) == expected
        return
    y = ours(x)[0]
    assert type(y.grad_fn).__name__ != FAST
    torch.testing.assert_close(y, ref(x)[0], atol=0, rtol=0)


def test_disabled_falls_back_in_this_thread_only():
    m = ft.LSTM(3, 4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    seen = []
    with ft.disabled():
        assert ft.fast_path_reason() == "fastrnn.torch.disabled()"
        assert type(m(x)[0].grad_fn).__name__ != FAST
        t = threading.Thread(target=lambda: seen.append(type(m(x)[0].grad_fn).__name__))
        t.start(), t.join()
    assert seen == [FAST]
    assert type(m(x)[0].grad_fn).__name__ == FAST


def test_float16_autocast_and_tracing_fall_back():
    ref, ours = pair("GRU", torch.float32, input_size=3, hidden_size=4)
    x = torch.randn(5, 2, 3)
    with torch.autocast("cpu", dtype=torch.float16):  # bfloat16: tests/test_torch_bf16.py
        torch.testing.assert_close(ours(x)[0], ref(x)[0])
    traced = torch.jit.trace(ours, (x,), check_trace=False)
    torch.testing.assert_close(traced(x)[0], ref(x)[0])


def test_reset_after_false_matches_the_numpy_layers():
    import fastrnn

    ours = ft.GRU(3, 4, num_layers=2, bidirectional=True, reset_after=False, dtype=torch.float64)
    theirs = fastrnn.GRU(3, 4, 2, bidirectional=True, reset_after=False, dtype="float64")
    theirs.load_state_dict({k: v.detach().numpy() for k, v in ours.state_dict().items()})
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    y, h = ours(x)
    y_np, h_np = theirs(x.numpy())
    torch.testing.assert_close(y, torch.from_numpy(y_np), atol=1e-12, rtol=1e-12)
    cell = ft.GRUCell(3, 4, reset_after=False, dtype=torch.float64)
    np_cell = fastrnn.GRUCell(3, 4, reset_after=False, dtype="float64")
    np_cell.load_state_dict({k: v.detach().numpy() for k, v in cell.state_dict().items()})
    h1 = cell(x[0])
    torch.testing.assert_close(h1, torch.from_numpy(np_cell(x[0].numpy())), atol=1e-12, rtol=0)
    default = ft.GRUCell(3, 4, dtype=torch.float64)
    default.load_state_dict(cell.state_dict())
    assert not torch.allclose(default(x[0]), h1)  # the option reaches the kernels


def test_reset_after_false_has_no_fallback():
    m = ft.GRU(3, 4, reset_after=False)
    assert "reset_after=False" in repr(m)
    with ft.disabled(), pytest.raises(RuntimeError, match="reset_after=False"):
        m(torch.randn(5, 2, 3))


def test_torch_compile_matches_eager(monkeypatch):
    from fastrnn.torch import modules

    calls, fast_run = [], modules.run
    monkeypatch.setattr(modules, "run", lambda *a: calls.append(1) or fast_run(*a))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = ft.LSTM(3, 4, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0]).tanh()

    model = Model()
    x = torch.randn(2, 5, 3)
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    assert model.rnn.weight_hh_l0.grad is not None
    assert len(calls) == 3  # the compiled calls ran fastrnn's kernels eagerly


def test_torch_export_and_meta_tensors_fall_back():
    ref, ours = pair("GRU", torch.float32, input_size=3, hidden_size=4)
    x = torch.randn(5, 2, 3)
    exported = torch.export.export(ours, (x,))
    assert_same(flat(exported.module()(x)), flat(ref(x)), 1e-6)
    on_meta = ft.LSTM(3, 4, device="meta")
    y, (h, c) = on_meta(torch.randn(5, 2, 3, device="meta"))
    assert y.is_meta and y.shape == (5, 2, 4) and c.shape == (1, 2, 4)


# -- construction, serialization, functional_call
def test_subclass_construction_and_state():
    for name in ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"):
        cls, base = getattr(ft, name), getattr(torch.nn, name)
        kw = {"proj_size": 2} if name == "LSTM" else {}
        m = cls(3, 4, bias=False, device="meta", dtype=torch.float64, **kw)
        ref = base(3, 4, bias=False, device="meta", dtype=torch.float64, **kw)
        assert isinstance(m, base) and repr(m) == repr(ref)
        assert {k: v.shape for k, v in m.state_dict().items()} == {
            k: v.shape for k, v in ref.state_dict().items()
        }
        assert all(p.is_meta for p in m.parameters())
        m = m.to_empty(device="cpu")
        x = torch.randn(5, 3, dtype=torch.float64)
        out = flat(m(x if "Cell" in name else x[:, None]))
        assert type(out[0].grad_fn).__name__ == FAST


def test_functional_call_uses_the_given_parameters():
    ref, ours = pair("LSTM", input_size=3, hidden_size=4)
    params = {k: torch.randn_like(v) for k, v in ours.named_parameters()}
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    a = torch.func.functional_call(ours, params, (x,))
    b = torch.func.functional_call(ref, params, (x,))
    assert_same(flat(a), flat(b), 1e-10)


def test_save_and_load(tmp_path):
    model = torch.nn.ModuleList(
        [ft.LSTM(3, 4, num_layers=2), ft.GRU(3, 4, reset_after=False), ft.RNNCell(3, 4)]
    )
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with torch.serialization.safe_globals([torch.nn.ModuleList]):
        loaded = torch.load(path)  # weights_only=True, torch's default
    assert (
        type(torch.load(tmp_path / "one.pt")) is ft.LSTM
        if not torch.save(model[0], tmp_path / "one.pt")
        else False
    )
    assert [type(m) for m in loaded] == [type(m) for m in model]
    assert loaded[1].reset_after is False and loaded[0].reset_after is True
    x = torch.randn(5, 2, 3)
    for a, b in zip(model[:2], loaded[:2]):
        assert_same(flat(a(x)), flat(b(x)), 0)
    copy = pickle.loads(pickle.dumps(model[0]))
    assert_same(flat(copy(x)), flat(model[0](x)), 0)


# -- switching
def test_replace_rnns_keeps_parameters_and_optimizer(caplog):
    class Sub(torch.nn.LSTM):
        pass

    model = torch.nn.Sequential()
    model.add_module("lstm", torch.nn.LSTM(3, 4))
    model.add_module("cell", torch.nn.GRUCell(4, 4))
    model.add_module("mine", Sub(3, 4))
    params = list(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with caplog.at_level(logging.INFO, logger="fastrnn.torch"):
        assert ft.replace_rnns(model) is model
    assert "lstm, cell" in caplog.text and "mine" not in caplog.text
    assert type(model.lstm) is ft.LSTM and type(model.cell) is ft.GRUCell
    assert type(model.mine) is Sub
    assert all(a is b for a, b in zip(params, model.parameters()))
    before = model.lstm.weight_hh_l0.detach().clone()
    y = model.lstm(torch.randn(5, 2, 3, requires_grad=True))[0]
    assert type(y.grad_fn).__name__ == FAST
    y.sum().backward()
    opt.step()
    assert not torch.equal(before, model.lstm.weight_hh_l0)


def test_patch_and_install():
    originals = (torch.nn.LSTM, torch.nn.modules.rnn.GRU, torch.nn.modules.RNNCell)
    with ft.patch():
        assert type(torch.nn.LSTM(3, 4)) is ft.LSTM
        assert type(torch.nn.modules.rnn.GRU(3, 4)) is ft.GRU
        assert type(torch.nn.modules.RNNCell(3, 4)) is ft.RNNCell
        with ft.patch():
            pass
        assert torch.nn.LSTM is ft.LSTM
    assert (torch.nn.LSTM, torch.nn.modules.rnn.GRU, torch.nn.modules.RNNCell) == originals
    ft.install()
    try:
        with ft.patch():
            pass
        assert torch.nn.GRUCell is ft.GRUCell
    finally:
        ft.uninstall()
    assert torch.nn.GRUCell is not ft.GRUCell


# -- packaging
def _python(code):
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def test_import_fastrnn_does_not_import_torch():
    rc, out = _python("import sys, fastrnn, fastrnn.layers; print('torch' in sys.modules)")
    assert rc == 0 and out.strip() == "False", out


def test_import_without_torch_names_the_extra():
    rc, out = _python("import sys; sys.modules['torch'] = None; import fastrnn.torch")
    assert rc != 0 and "ImportError" in out and 'pip install "fastrnn[torch]"' in out, out


@pytest.mark.parametrize("cls,shape", [("LSTMCell", (2, 3)), ("GRU", (5, 2, 3))])
@pytest.mark.parametrize("grad", [False, True])
def test_weights_changed_in_place_moved_or_swapped(cls, shape, grad):
    """Layers and cells keep their checked weights' NumPy views across calls: an in-place
    update shows through them; .double() (new memory, the same Parameter objects) and
    functional_call (other tensors) replace them."""
    torch.manual_seed(0)
    ours, theirs = getattr(ft, cls)(3, 4), getattr(torch.nn, cls)(3, 4)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(shape)
    with torch.set_grad_enabled(grad):
        ours(x)
        with torch.no_grad():
            for m in (ours, theirs):
                m.weight_hh_l0.mul_(2.0) if cls == "GRU" else m.weight_hh.mul_(2.0)
        torch.testing.assert_close(flat(ours(x)), flat(theirs(x)))
        ours.double(), theirs.double()
        out = flat(ours(x.double()))
        assert out[0].dtype == torch.float64
        torch.testing.assert_close(out, flat(theirs(x.double())))
        other = {k: v * 0.5 for k, v in theirs.state_dict().items()}
        swapped = torch.func.functional_call(ours, other, (x.double(),))
        theirs.load_state_dict(other)
        torch.testing.assert_close(flat(swapped), flat(theirs(x.double())))


def test_cell_steps_follow_non_contiguous_weights_and_changed_options():
    """Under no_grad a cell steps on a CellStep kept across calls; it must not hold a stale
    copy of a non-contiguous weight, nor outlive a change of the cell's options."""
    torch.manual_seed(0)
    ours, theirs = ft.RNNCell(3, 4), torch.nn.RNNCell(3, 4)
    ours.load_state_dict(theirs.state_dict())
    for m in (ours, theirs):  # a transposed (non-contiguous) Parameter, as weight tying makes
        m.weight_hh = torch.nn.Parameter(m.weight_hh.detach().t().contiguous().t())
    assert not ours.weight_hh.is_contiguous()
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, h), theirs(x, h))
        for m in (ours, theirs):
            m.weight_hh.mul_(2.0)
        torch.testing.assert_close(ours(x, h), theirs(x, h))
    ours, theirs = ft.RNNCell(3, 4), torch.nn.RNNCell(3, 4)  # contiguous: the kept step
    ours.load_state_dict(theirs.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours(x, h), theirs(x, h))
        for m in (ours, theirs):
            m.nonlinearity = "relu"
        torch.testing.assert_close(ours(x, h), theirs(x, h))
