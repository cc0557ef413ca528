"""The benchmark suite's peers compute what fastrnn computes: each peer's forward for every
cell kind against the NumPy reference, at tiny sizes (the suite times them, it never compares
their outputs)."""

import numpy as np
import pytest

from fastrnn import reference
from fastrnn.bench import fastrnn_case, weights
from fastrnn.bench.peers import JAX_STEPS, jax_run, torch_module
from fastrnn.cell_spec import CELLS, spec

T, B, H = 5, 3, 8


def inputs(cell):
    rng = np.random.default_rng(0)
    w = weights(cell, H, rng)
    return rng.standard_normal((T, B, H)).astype(np.float32), w


def reference_y(cell, x, w):
    s = spec(cell)
    return s.forward(reference, x, [None] * len(s.states), w, training=False)[0]


@pytest.mark.parametrize("cell", list(CELLS))
def test_weights_have_the_cell_tables_shapes(cell):
    _, w = inputs(cell)
    assert [a.shape for a in w] == list(spec(cell).param_shapes(H, H).values())


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("mode", ["forward", "train"])
def test_the_fastrnn_and_reference_cases_run(cell, mode):
    from fastrnn import ops

    x, w = inputs(cell)
    for mod in (ops, reference):
        fastrnn_case(mod, cell, mode, x, w)()


def test_jax_has_every_cell_kind():
    assert set(JAX_STEPS) == set(CELLS)


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_jax_peer_computes_the_reference(cell):
    jax = pytest.importorskip("jax")
    x, w = inputs(cell)
    y = jax.jit(jax_run(cell, H))(tuple(jax.numpy.asarray(a) for a in w), jax.numpy.asarray(x))
    np.testing.assert_allclose(np.asarray(y), reference_y(cell, x, w), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_torch_peer_computes_the_reference(cell):
    torch = pytest.importorskip("torch")
    x, w = inputs(cell)
    want = reference_y(cell, x, w)
    with torch.no_grad():
        y, _ = torch_module(cell, w)(torch.from_numpy(x))
        step = torch_module(cell, w, cell_form=True)
        state = step(torch.from_numpy(x[0]))
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-5)
    h = state[0] if isinstance(state, tuple) else state
    np.testing.assert_allclose(h.numpy(), want[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_streaming_cases_run(cell):
    from fastrnn.bench.peers import fastrnn_stream, torch_case

    _, w = inputs(cell)
    fastrnn_stream(cell, H, w, 2)()
    pytest.importorskip("torch")
    torch_case(cell, "stream", None, w, 2)()


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_dropin_peer_runs_and_computes_the_reference(cell):
    """The dropin peer (fastrnn.torch's modules from PyTorch) runs every mode, and its layer
    and Cell hold the case's weights."""
    pytest.importorskip("fastrnn.torch")
    import torch

    import fastrnn.torch
    from fastrnn.bench import dropin_case

    x, w = inputs(cell)
    for mode in ("forward", "train", "stream"):
        dropin_case(cell, mode, x if mode != "stream" else None, w, 2)()
    want = reference_y(cell, x, w)
    with torch.no_grad():
        y, _ = torch_module(cell, w, classes=fastrnn.torch)(torch.from_numpy(x))
        step = torch_module(cell, w, cell_form=True, classes=fastrnn.torch)
        state = step(torch.from_numpy(x[0]))
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-5)
    h = state[0] if isinstance(state, tuple) else state
    np.testing.assert_allclose(h.numpy(), want[0], rtol=1e-4, atol=1e-5)
