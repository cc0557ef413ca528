"""fastrnn.torch's classes driven by PyTorch's own module checks: every ``module_db`` entry
of torch.nn's LSTM, GRU, RNN and cells, with its ``module_inputs_func`` cases, constructed
as the drop-in and compared with torch.nn's module on the same state_dict (outputs and the
gradients of inputs and parameters), plus gradcheck in float64. Skipped without PyTorch or
without ``expecttest`` (which torch.testing._internal imports)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")
ft = pytest.importorskip("fastrnn.torch")

from torch.testing._internal.common_modules import module_db  # noqa: E402

NAMES = ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")
ENTRIES = [m for m in module_db if m.module_cls in {getattr(torch.nn, n) for n in NAMES}]


def cases():
    for info in ENTRIES:
        inputs = info.module_inputs_func(
            info, device="cpu", dtype=torch.float64, requires_grad=True, training=True
        )
        for i, mi in enumerate(inputs):
            yield pytest.param(info, mi, id=f"{info.module_cls.__name__}-{i}")


def tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in tensors(o)]
    return []


def test_every_class_has_entries():
    assert {m.module_cls.__name__ for m in ENTRIES} == set(NAMES)


@pytest.mark.parametrize("info,mi", list(cases()))
def test_module_db_case(info, mi):
    cls = info.module_cls
    c = mi.constructor_input
    ref = cls(*c.args, **c.kwargs).to(torch.float64)
    ours = getattr(ft, cls.__name__)(*c.args, **c.kwargs).to(torch.float64)
    ours.load_state_dict(ref.state_dict())
    args, kwargs = mi.forward_input.args, mi.forward_input.kwargs
    leaves = [t for t in tensors(args) + tensors(list(kwargs.values())) if t.requires_grad]
    results = []
    for m in (ref, ours):
        out = tensors(m(*args, **kwargs))
        loss = sum(o.sum() * (k + 1) for k, o in enumerate(out))
        grads = torch.autograd.grad(loss, leaves + list(m.parameters()), allow_unused=True)
        results.append((out, grads))
    assert type(results[1][0][0].grad_fn).__name__ == "_StackFunctionBackward"
    for a, b in zip(*results):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert (x is None) == (y is None)
            if x is not None:
                torch.testing.assert_close(x, y, atol=1e-10, rtol=1e-10)

    names = [n for n, _ in ours.named_parameters()]
    n_leaves = len(leaves)

    def f(*inputs):
        swap = dict(zip(names, inputs[n_leaves:]))
        it = iter(inputs[:n_leaves])

        def rebuild(obj):
            if isinstance(obj, torch.Tensor):
                return next(it) if obj.requires_grad else obj
            if isinstance(obj, (tuple, list)):
                return type(obj)(rebuild(o) for o in obj)
            return obj

        a, kw = rebuild(list(args)), {k: rebuild(v) for k, v in kwargs.items()}
        return tuple(tensors(torch.func.functional_call(ours, swap, tuple(a), kw)))

    params = [p.detach().clone().requires_grad_() for p in ours.parameters()]
    inputs = [t.detach().clone().requires_grad_() for t in leaves] + params
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)
