"""The CUDA backend (fastrnn.cuda, csrc/cuda).

Without a GPU, everything but the CUDA API calls themselves is checked on the CPU: the
backend's host code runs over an emulated device (the `cuda_device` fixture's "emulated"
case), the cuBLAS argument mapping against NumPy, launch shapes and their coverage, and the
errors that say CUDA is not usable. Every test taking `cuda_device` also runs on a real GPU
where one is usable, and is skipped there with the reason otherwise.
"""

import itertools
import os
import re
import shutil

import numpy as np
import pytest
import test_bf16

import fastrnn
from fastrnn import _testing, cuda, ops, reference
from fastrnn.layers import _OpsOn

from cells import (
    TOL,
    VARIANT_IDS,
    VARIANTS,
    assert_close,
    backward,
    forward,
    make_problem,
    with_variants,
)

EMU = _testing.cuda_emulation
STATUS = cuda.status()


def emulate():
    """The CUDA backend on the emulated device, within the context."""
    return cuda._use_device_module(EMU)


def on_cuda():
    """fastrnn.ops with every forward on backend="cuda" (what cells.forward calls)."""
    return _OpsOn("cuda")


# ----------------------------------------------------------------------------- build, status


@pytest.mark.skipif(
    shutil.which("nvcc") is None or os.environ.get("FASTRNN_CUDA") == "OFF",
    reason="no nvcc on PATH: the build had no CUDA compiler to use",
)
def test_cuda_module_is_built_where_nvcc_is():
    """CI has nvcc: this fails if a change stops the CUDA module from compiling."""
    assert cuda._cuda is not None
    assert STATUS.compiled


def test_status_says_what_is_missing():
    s = str(STATUS)
    if STATUS.usable:
        assert s.startswith("available")
    elif STATUS.compiled:
        assert s.startswith(("compiled, no device: ", "compiled, no cuBLAS: "))
    else:
        assert s.startswith("not compiled: ")
    assert fastrnn.backends()["cuda"] == STATUS


@pytest.mark.skipif(STATUS.usable, reason="CUDA is usable here")
@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_cuda_not_usable_is_a_clear_error(v):
    p = make_problem(v, 2, 2, 3, 4)
    expect = "backend 'cuda' is not usable here: " + re.escape(str(STATUS))
    with pytest.raises(RuntimeError, match=expect):
        forward(on_cuda(), v, p)
    with pytest.raises(RuntimeError, match=expect):
        fastrnn.LSTM(3, 4, backend="cuda")
    with pytest.raises(RuntimeError, match=expect):
        fastrnn.GRUCell(3, 4, backend="cuda")
    with pytest.raises(RuntimeError, match=expect):
        cuda.DeviceArray((2, 3), np.float32)


def test_status_strings():
    assert str(cuda.BackendStatus(True, True)) == "available"
    assert (
        str(cuda.BackendStatus(True, False, "no CUDA driver (x)"))
        == "compiled, no device: no CUDA driver (x)"
    )
    assert (
        str(cuda.BackendStatus(True, False, "not found", missing="cuBLAS"))
        == "compiled, no cuBLAS: not found"
    )
    assert str(cuda.BackendStatus(False, False, "no nvcc")) == "not compiled: no nvcc"


def test_unknown_backend_name():
    v = VARIANTS[0]
    p = make_problem(v, 2, 2, 3, 4)
    with pytest.raises(ValueError, match="backend must be 'auto', 'cpu' or 'cuda', got 'gpu'"):
        ops.lstm_forward(p.x, None, None, p.w_ih, p.w_hh, None, None, backend="gpu")


# ----------------------------------------------------------------------------- cuBLAS mapping

GEMMS = [  # (trans_a, trans_b, M, N, K, padding of each leading dimension)
    (ta, tb, M, N, K, pad)
    for ta in (False, True)
    for tb in (False, True)
    for M, N, K in [(1, 1, 1), (3, 5, 2), (7, 1, 9), (1, 13, 4), (17, 6, 33)]
    for pad in (0, 3)
]


def gemm_buffers(ta, tb, M, N, K, pad, rng):
    """Flat row-major buffers for A, B, C with leading dimensions padded by `pad`."""
    shapes = {"A": (K, M) if ta else (M, K), "B": (N, K) if tb else (K, N), "C": (M, N)}
    lds = {k: s[1] + pad for k, s in shapes.items()}
    bufs = {k: rng.standard_normal(s[0] * lds[k]) for k, s in shapes.items()}
    return shapes, lds, bufs


def row_major(buf, shape, ld):
    return np.lib.stride_tricks.as_strided(buf, shape, (ld * 8, 8))


def column_major(buf, shape, ld):
    """X (rows, cols) with X(i, j) at buf[i + j * ld], as cuBLAS reads it."""
    return np.lib.stride_tricks.as_strided(buf, shape, (8, ld * 8))


@pytest.mark.parametrize("ta,tb,M,N,K,pad", GEMMS)
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_column_major_mapping_matches_numpy(ta, tb, M, N, K, pad, beta):
    """The cuBLAS call to_column_major makes of a row-major GEMM, carried out in NumPy by the
    column-major definition, gives NumPy's row-major product."""
    rng = np.random.default_rng(M * 100 + N * 10 + K)
    shapes, lds, bufs = gemm_buffers(ta, tb, M, N, K, pad, rng)
    op = lambda X, t: X.T if t else X  # noqa: E731
    want = (
        0.7
        * op(row_major(bufs["A"], shapes["A"], lds["A"]), ta)
        @ op(row_major(bufs["B"], shapes["B"], lds["B"]), tb)
    )
    want = want + beta * row_major(bufs["C"], shapes["C"], lds["C"])

    g = EMU.column_major_args(ta, tb, M, N, K, lds["A"], lds["B"], lds["C"])
    m, n, k = g["m"], g["n"], g["k"]
    first, second = bufs[g["A"]], bufs[g["B"]]
    opa = column_major(first, (k, m) if g["trans_a"] else (m, k), g["lda"])
    opb = column_major(second, (n, k) if g["trans_b"] else (k, n), g["ldb"])
    c = column_major(bufs["C"], (m, n), g["ldc"])
    c[...] = 0.7 * op(opa, g["trans_a"]) @ op(opb, g["trans_b"]) + beta * c
    assert_close("C", row_major(bufs["C"], (M, N), lds["C"]), want, 1e-12, 1e-12)


@pytest.mark.parametrize("ta,tb,M,N,K,pad", GEMMS)
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_backend_gemm_matches_numpy(ta, tb, M, N, K, pad, beta):
    """CudaBackend::gemm through the mapping and the emulated column-major GEMM; beta = 0
    ignores C's old contents (NaN here), as cuBLAS does."""
    rng = np.random.default_rng(M + N + K)
    shapes, lds, bufs = gemm_buffers(ta, tb, M, N, K, pad, rng)
    if beta == 0:
        bufs["C"][:] = np.nan
    op = lambda X, t: X.T if t else X  # noqa: E731
    c_view = row_major(bufs["C"], (M, N), lds["C"])
    want = op(row_major(bufs["A"], shapes["A"], lds["A"]), ta) @ op(
        row_major(bufs["B"], shapes["B"], lds["B"]), tb
    )
    if beta:
        want = want + beta * c_view
    padding = [bufs["C"][i * lds["C"] + N : (i + 1) * lds["C"]].copy() for i in range(M)]
    EMU.gemm(
        ta, tb, M, N, K, 1.0, bufs["A"], lds["A"], bufs["B"], lds["B"], beta, bufs["C"], lds["C"]
    )
    assert_close("C", c_view, want, 1e-12, 1e-12)
    for i in range(M):  # the padding between rows is never written
        np.testing.assert_array_equal(bufs["C"][i * lds["C"] + N : (i + 1) * lds["C"]], padding[i])


def test_gemm_sizes_must_fit_cublas_int():
    with pytest.raises(ValueError, match="too few"):
        EMU.gemm(False, False, 4, 4, 4, 1.0, np.zeros(3), 4, np.zeros(16), 4, 0.0, np.zeros(16), 4)


# ----------------------------------------------------------------------------- launch shapes

LAUNCH_SHAPES = [(1, 1), (1, 255), (1, 256), (1, 257), (3, 85), (7, 1000), (1000, 3), (2, 4097)]


@pytest.mark.parametrize("M,N", LAUNCH_SHAPES)
def test_pointwise_launch_visits_every_element_once(M, N):
    grid, block = EMU.launch_dims(M * N)
    assert block == 256 and grid == -(-M * N // 256)
    visits = EMU.pointwise_visits(M, N)
    assert visits.shape == (M, N) and visits.min() == 1 and visits.max() == 1


def test_huge_launch_is_capped_and_loops():
    """Beyond 65535 blocks the grid stays at the cap and each thread loops (grid-stride)."""
    n = 65535 * 256 + 3
    assert EMU.launch_dims(n) == (65535, 256)
    visits = EMU.pointwise_visits(1, n)
    assert visits.min() == 1 and visits.max() == 1


@pytest.mark.parametrize("M,N", [(0, 5), (1, 1), (5, 300), (64, 257)])
def test_column_sums(M, N):
    a = np.random.default_rng(N).standard_normal((M, N))
    np.testing.assert_allclose(EMU.column_sums(a), a.sum(axis=0), rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------- the cells

SHAPES = [(1, 1, 1, 1), (3, 2, 5, 7), (4, 5, 3, 17), (6, 3, 4, 9)]
CASES = [
    (*s, proj, lengths)
    for s in SHAPES
    for proj in (0, 3)
    for lengths in (None, "random")
    if not proj or s[3] > 3
]


@pytest.mark.parametrize("v,T,B,I,H,proj,lengths", with_variants(CASES, 4))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_cells_match_reference_and_cpu(v, T, B, I, H, proj, lengths, dtype, cuda_device):
    """Forward outputs, final states and every gradient on backend="cuda", against the NumPy
    reference and the CPU backend."""
    p = make_problem(v, T, B, I, H, dtype=dtype, seed=T + B + H, proj=proj, lengths=lengths)
    atol, rtol = TOL[dtype]
    want, saved_ref = forward(reference, v, p)
    on_cpu, saved_cpu = forward(ops, v, p)
    got, saved = forward(on_cuda(), v, p)
    for name, g, w, c in zip(["y", "h_n", "c_n"], got, want, on_cpu):
        assert isinstance(g, np.ndarray) and g.dtype == dtype
        assert_close(name, g, w, atol, rtol)
        assert_close(name + " vs cpu", g, c, atol, rtol)
    grads_want = backward(reference, v, saved_ref, p)
    grads_cpu = backward(ops, v, saved_cpu, p)
    grads = backward(ops, v, saved, p)
    for name in grads_want:
        assert_close("d" + name, grads[name], grads_want[name], atol, rtol)
        assert_close("d" + name + " vs cpu", grads[name], grads_cpu[name], atol, rtol)


# (T, B, I, H, proj, lengths): products of every shape the loops make (steps, the input
# projection, weight gradients), a projection, unsorted lengths.
BF16_CASES = [(3, 2, 5, 7, 0, None), (5, 4, 6, 17, 3, "random")]


@pytest.mark.parametrize("v,T,B,I,H,proj,lengths", with_variants(BF16_CASES, 2))
def test_bf16_products_match_the_reference_and_cpu(v, T, B, I, H, proj, lengths, cuda_device):
    """precision="bf16" on backend="cuda" (operands converted to bf16 on the device, cuBLAS
    bf16 x bf16 with float32 sums): outputs and every gradient against the NumPy reference
    and the CPU backend in bf16, as tests/test_bf16.py checks the CPU (the sums' order is the
    only difference); and off float32's by bf16's rounding."""
    p = make_problem(v, T, B, I, H, dtype=np.float32, seed=T + H, proj=proj, lengths=lengths)
    run, rel = test_bf16._run, test_bf16._rel
    got = run(on_cuda(), v, p, "bf16")
    for other in (reference, ops):
        want = run(other, v, p, "bf16")
        for name in want:
            assert got[name].dtype == np.float32
            assert rel(got[name], want[name]) < 1e-3, name
    assert rel(got["out0"], run(on_cuda(), v, p, "fp32")["out0"]) > 1e-5


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("shape", [(0, 2, 3, 4), (3, 0, 3, 4)], ids=["T0", "B0"])
def test_empty_problems(v, shape, cuda_device):
    """T = 0: final states are the initial ones; B = 0: empty outputs; zero gradients."""
    p = make_problem(v, *shape)
    want, saved_ref = forward(reference, v, p)
    got, saved = forward(on_cuda(), v, p)
    for name, g, w in zip(["y", "h_n", "c_n"], got, want):
        assert_close(name, g, w, *TOL[np.float64])
    grads_want = backward(reference, v, saved_ref, p)
    grads = backward(ops, v, saved, p)
    for name in grads_want:
        assert_close("d" + name, grads[name], grads_want[name], *TOL[np.float64])


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_inference_without_bias(v, cuda_device):
    p = make_problem(v, 7, 3, 4, 6, bias=False, lengths=[7, 0, 4])
    want, _ = forward(reference, v, p, training=False)
    got, saved = forward(on_cuda(), v, p, training=False)
    assert saved is None
    for name, g, w in zip(["y", "h_n", "c_n"], got, want):
        assert_close(name, g, w, *TOL[np.float64])


# ----------------------------------------------------------------------------- device arrays


class CudaArrayInterface:
    """Only __cuda_array_interface__, as a third-party GPU array shows itself (here over host
    memory, which the emulated device reads)."""

    def __init__(self, host: np.ndarray, strides=None, readonly=False):
        self.host = host
        self.__cuda_array_interface__ = {
            "shape": host.shape,
            "typestr": host.dtype.str,
            "version": 3,
            "stream": None,
            "data": (host.ctypes.data, readonly),
            "strides": strides,
        }


def to_device(a: np.ndarray):
    d = EMU.DeviceArray(a.shape, a.dtype)
    d.copy_from(a)
    return d


@pytest.mark.parametrize("wrap", ["DeviceArray", "interface"])
def test_device_arrays_in_place_and_out(wrap):
    """GPU-resident input runs on backend "auto" without copies; outputs come back as device
    arrays (a DeviceArray for producers other than torch and CuPy)."""
    v = VARIANTS[0]
    p = make_problem(v, 5, 3, 4, 6, lengths=[5, 2, 0])
    wrapper = to_device if wrap == "DeviceArray" else CudaArrayInterface
    with emulate():
        y, h, c, saved = ops.lstm_forward(
            wrapper(p.x),
            wrapper(p.h0),
            wrapper(p.c0),
            wrapper(p.w_ih),
            wrapper(p.w_hh),
            wrapper(p.b_ih),
            wrapper(p.b_hh),
            lengths=p.lengths,
        )
        assert all(isinstance(a, EMU.DeviceArray) for a in (y, h, c))
        grads = ops.lstm_backward(saved, wrapper(p.dy), wrapper(p.dh_n), wrapper(p.dc_n))
        assert all(isinstance(g, EMU.DeviceArray) for g in grads[:7])
    want, saved_ref = forward(reference, v, p)
    for name, g, w in zip(["y", "h_n", "c_n"], (y, h, c), want):
        assert_close(name, g.numpy(), w, *TOL[np.float64])
    want_grads = backward(reference, v, saved_ref, p)
    for name, g in zip(["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"], grads):
        assert_close("d" + name, g.numpy(), want_grads[name], *TOL[np.float64])


def test_training_output_is_not_the_saved_buffer():
    """Writing to the returned y must not change what backward reads."""
    v = VARIANTS[3]
    p = make_problem(v, 4, 2, 3, 5)
    with emulate():
        y, _, saved = ops.rnn_forward(
            to_device(p.x), None, to_device(p.w_ih), to_device(p.w_hh), None, None
        )
        y.fill_zero()
        got = ops.rnn_backward(saved, to_device(p.dy), None)
    _, _, saved_ref = reference.rnn_forward(p.x, None, p.w_ih, p.w_hh, None, None)
    want = reference.rnn_backward(saved_ref, p.dy, None)
    assert_close("dx", got[0].numpy(), want[0], *TOL[np.float64])


def bad_device_inputs():
    v = VARIANTS[0]
    p = make_problem(v, 3, 2, 4, 5)
    x_t = np.asfortranarray(p.x)
    return p, [
        (
            "x",
            CudaArrayInterface(x_t, strides=x_t.strides),
            ValueError,
            "argument 'x' is a non-contiguous device array",
        ),
        ("x", CudaArrayInterface(p.x.astype(np.float16)), TypeError, "dtype float16"),
        (
            "h0",
            CudaArrayInterface(p.h0[:1].copy()),
            ValueError,
            r"argument 'h0' has shape \(1, 5\), expected \(B, H\)",
        ),
        (
            "w_hh",
            CudaArrayInterface(p.w_hh.astype(np.float32)),
            TypeError,
            "argument 'w_hh' has dtype float32 but x has dtype float64",
        ),
    ]


@pytest.mark.parametrize("case", range(4))
def test_bad_device_input(case):
    p, cases = bad_device_inputs()
    name, value, error, message = cases[case]
    args = dict(x=to_device(p.x), h0=None, c0=None, w_ih=p.w_ih, w_hh=p.w_hh, b_ih=None, b_hh=None)
    args[name] = value
    with emulate(), pytest.raises(error, match=message):
        ops.lstm_forward(**args)


def test_device_lengths_and_host_backend_are_errors():
    p = make_problem(VARIANTS[0], 3, 2, 4, 5)
    with emulate():
        with pytest.raises(TypeError, match="lengths must be on the host"):
            ops.lstm_forward(
                to_device(p.x),
                None,
                None,
                p.w_ih,
                p.w_hh,
                None,
                None,
                lengths=CudaArrayInterface(np.array([3, 1])),
            )
        with pytest.raises(ValueError, match="x is a GPU array but backend='cpu'"):
            ops.lstm_forward(to_device(p.x), None, None, p.w_ih, p.w_hh, None, None, backend="cpu")
        with pytest.raises(TypeError, match="layers and cells take host"):
            fastrnn.LSTM(4, 5, dtype=np.float64)(to_device(p.x))


def test_kernel_binding_checks_device_arguments():
    """The module's own checks, for callers that skip fastrnn.ops."""
    p = make_problem(VARIANTS[3], 3, 2, 4, 5)
    T, B, I = p.x.shape
    H = 5
    y, h_n, gates = [to_device(np.zeros(s)) for s in [(T, B, H), (B, H), (T, B, H)]]

    def call(**changes):
        args = dict(
            x=to_device(p.x),
            h0=to_device(p.h0),
            w_ih=to_device(p.w_ih),
            w_hh=to_device(p.w_hh),
            b_ih=None,
            b_hh=None,
            batch_sizes=None,
            y=y,
            h_n=h_n,
            gates=gates,
            nonlinearity="tanh",
            H=H,
            bf16=False,
        )
        args.update(changes)
        EMU.rnn_forward(**args)

    with pytest.raises(ValueError, match=r"argument 'h0' has shape \(2, 4\), expected \(2, 5\)"):
        call(h0=to_device(np.zeros((2, 4))))
    with pytest.raises(TypeError, match="must be a device array"):
        call(h0=p.h0)
    with pytest.raises(ValueError, match="'y' is read-only"):
        call(y=CudaArrayInterface(np.zeros((T, B, H)), readonly=True))
    with pytest.raises(ValueError, match="batch_sizes must be non-increasing"):
        call(batch_sizes=np.array([1, 2, 2]))


def test_dlpack_export_and_import():
    """DeviceArray's DLPack capsule (on the emulated device: CPU memory, so NumPy can consume
    it) and DLPack import keep their memory alive as long as a consumer holds it."""
    a = to_device(np.arange(6.0).reshape(2, 3))
    assert a.__dlpack_device__() == (1, 0)
    b = np.from_dlpack(a)
    del a
    np.testing.assert_array_equal(b, np.arange(6.0).reshape(2, 3))
    src = np.arange(4, dtype=np.float32)
    view = EMU.DeviceArray.from_dlpack(src.__dlpack__())
    del src
    np.testing.assert_array_equal(view.numpy(), np.arange(4, dtype=np.float32))
    capsule = np.zeros(3).__dlpack__()
    EMU.DeviceArray.from_dlpack(capsule)
    with pytest.raises(ValueError, match="unconsumed 'dltensor'"):
        EMU.DeviceArray.from_dlpack(capsule)
    with pytest.raises(TypeError, match="float32, float64 or int64"):
        EMU.DeviceArray.from_dlpack(np.zeros(3, np.int16).__dlpack__())
    with pytest.raises(ValueError, match="C-contiguous"):
        EMU.DeviceArray.from_dlpack(np.zeros((3, 4))[:, ::2].__dlpack__())


# ----------------------------------------------------------------------------- GPU only


@pytest.mark.skipif(not STATUS.usable, reason=f"no usable GPU here (CUDA backend: {STATUS})")
def test_torch_cuda_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this torch has no CUDA")
    v = VARIANTS[1]
    p = make_problem(v, 5, 3, 4, 6)
    t = {
        k: torch.from_numpy(getattr(p, k)).cuda()
        for k in ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "dy", "dh_n")
    }
    y, h, saved = ops.gru_forward(t["x"], t["h0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"])
    assert isinstance(y, torch.Tensor) and y.is_cuda
    grads = ops.gru_backward(saved, t["dy"], t["dh_n"])
    want, saved_ref = forward(reference, v, p)
    assert_close("y", y.cpu().numpy(), want[0], *TOL[np.float64])
    want_grads = backward(reference, v, saved_ref, p)
    for name, g in zip(["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], grads):
        assert_close("d" + name, g.cpu().numpy(), want_grads[name], *TOL[np.float64])


@pytest.mark.skipif(not STATUS.usable, reason=f"no usable GPU here (CUDA backend: {STATUS})")
def test_cupy_arrays_in_and_out():
    cupy = pytest.importorskip("cupy")
    v = VARIANTS[3]
    p = make_problem(v, 5, 3, 4, 6)
    y, h, _ = ops.rnn_forward(
        cupy.asarray(p.x),
        None,
        cupy.asarray(p.w_ih),
        cupy.asarray(p.w_hh),
        None,
        None,
        training=False,
    )
    assert isinstance(y, cupy.ndarray)
    want, _ = forward(reference, v, p, training=False)
    assert_close("y", cupy.asnumpy(y), want[0], *TOL[np.float64])


# ----------------------------------------------------------------------------- benchmarks


@pytest.mark.parametrize("mode", ["forward", "train"])
def test_bench_cuda_peer_runs(mode, cuda_device):
    """The suite's GPU peer: device-resident inputs, synchronized runs."""
    from fastrnn import bench

    assert "cuda" in bench.available_peers("fastrnn,cuda", 1)
    rng = np.random.default_rng(0)
    w = bench.weights("gru", 6, rng)
    run = bench.cuda_case("gru", mode, rng.standard_normal((4, 3, 6)).astype(np.float32), w)
    run()
    run()


def test_check_command_on_the_device(capsys, cuda_device):
    """`fastrnn check --backend cuda`: every cell against the reference, device-resident."""
    from fastrnn.check import run_check

    run_check(3, 2, 8, 1, backend="cuda")
    out = capsys.readouterr().out
    print(out)
    for cell in ("lstm", "gru", "rnn"):
        line = next(l for l in out.splitlines() if l.startswith(cell))
        assert float(line.split()[1]) < 1e-4  # max relative error against the reference


# ----------------------------------------------------------------------------- the drop-in
# fastrnn.torch's CUDA route (fastrnn.torch.function.route_of): tensors on a GPU go to the
# CUDA backend through DLPack, the stack's own array operations run in torch on the device.
# Each test runs on the emulated device, where CPU tensors stand in for CUDA tensors (the
# route's code, the DLPack views and the backend's host code run on the CPU), and on a real
# GPU where torch has CUDA and fastrnn's backend is usable. The reference is torch.nn with
# the same weights: on the CPU for the emulated device, on the GPU (cuDNN) for the real one.

try:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    import fastrnn.torch as ft
    from fastrnn.torch import function as torch_function

    TORCH_TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
    _TORCH_GPU = torch.cuda.is_available() and STATUS.usable
except ImportError:
    torch = None
    _TORCH_GPU = False
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
FAST = "_StackFunctionBackward"


@pytest.fixture(
    params=[
        "emulated",
        pytest.param(
            "gpu",
            marks=pytest.mark.skipif(
                not _TORCH_GPU,
                reason=f"no GPU for torch and fastrnn here (fastrnn's CUDA backend: {STATUS})",
            ),
        ),
    ]
)
def where(request, monkeypatch):
    """The device the tensors live on, with the drop-in's calls into the device kernels
    counted in ``where.calls``."""
    if torch is None:
        pytest.skip("torch is not installed")
    calls = []
    to_device = torch_function._DLPackOps._in

    def counted(self, value):
        calls.append(type(value).__name__)
        return to_device(self, value)

    monkeypatch.setattr(torch_function._DLPackOps, "_in", counted)
    if request.param == "emulated":
        with torch_function._cpu_tensors_as_cuda(fastrnn._testing.cuda_emulation):
            yield _Where(torch.device("cpu"), calls)
    else:
        yield _Where(torch.device("cuda"), calls)


class _Where:
    """Where a drop-in test runs: the tensors' device, and the tensors handed to the device
    kernels so far."""

    def __init__(self, device, calls):
        self.device, self.calls = device, calls


def _pair(cls, device, dtype, **kw):
    """torch.nn's module and the drop-in, same weights. On the emulated device, torch.nn's
    runs outside the emulation context: it is the CPU reference either way."""
    ref = getattr(torch.nn, cls)(**kw, dtype=dtype, device=device)
    ours = getattr(ft, cls)(**kw, dtype=dtype, device=device)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _flat(out):
    if hasattr(out, "batch_sizes"):
        return [out.data]
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


def _run(module, leaves, args):
    outs = _flat(module(*args))
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(o.shape, generator=g, dtype=o.dtype).to(o.device) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    return outs, torch.autograd.grad(loss, leaves + list(module.parameters()))


def _close(a, b, tol):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype and x.device == y.device
        torch.testing.assert_close(x, y, atol=tol, rtol=tol)


CASES = [
    pytest.param(cls, L, bidir, kind, batch_first, id=f"{cls}-L{L}-D{1 + bidir}-{kind}-bf{bf}")
    for (cls, L, bidir, kind), bf in zip(
        itertools.product(
            ("LSTM", "GRU", "RNN"), (1, 2), (False, True), ("tensor", "packed", "unbatched")
        ),
        itertools.cycle((False, True, True)),
    )
    for batch_first in (bf,)
]


@pytest.mark.parametrize("cls,L,bidir,kind,batch_first", CASES)
def test_layer_on_the_device_matches_torch(where, cls, L, bidir, kind, batch_first):
    T, B, I, H = 4, 3, 3, 4
    dtype = torch.float64
    proj = 2 if cls == "LSTM" and bidir else 0
    kw = dict(input_size=I, hidden_size=H, num_layers=L, bidirectional=bidir)
    kw.update(batch_first=batch_first, **({"proj_size": proj} if proj else {}))
    ref, ours = _pair(cls, where.device, dtype, **kw)
    D, P = 1 + bidir, proj or H

    def make():
        g = torch.Generator().manual_seed(1)
        shape = (T, I) if kind == "unbatched" else ((B, T, I) if batch_first else (T, B, I))
        x = torch.randn(shape, generator=g, dtype=dtype).to(where.device).requires_grad_()
        lead = (L * D,) if kind == "unbatched" else (L * D, B)
        hx = [torch.randn(lead + (P,), generator=g, dtype=dtype)]
        if cls == "LSTM":
            hx.append(torch.randn(lead + (H,), generator=g, dtype=dtype))
        hx = [h.to(where.device).requires_grad_() for h in hx]
        arg = x
        if kind == "packed":
            arg = pack_padded_sequence(x, [2, 4, 1], batch_first=batch_first, enforce_sorted=False)
        return [x] + hx, (arg, hx[0] if len(hx) == 1 else tuple(hx))

    outs_ref, grads_ref = _run(ref, *make())
    outs, grads = _run(ours, *make())
    assert type(outs[0].grad_fn).__name__ == FAST
    assert where.calls, "the drop-in did not take the CUDA route"
    _close(outs, outs_ref, TORCH_TOL[dtype])
    _close(grads, grads_ref, TORCH_TOL[dtype])
    assert all(g.is_contiguous() for g in grads)


@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
@pytest.mark.parametrize("grad", [True, False])
def test_cell_on_the_device_matches_torch(where, cls, grad):
    ref, ours = _pair(cls, where.device, torch.float32, input_size=3, hidden_size=5)
    x = torch.randn(2, 3).to(where.device).requires_grad_(grad)
    if grad:
        outs_ref, grads_ref = _run(ref, [x], (x,))
        outs, grads = _run(ours, [x], (x,))
        _close(grads, grads_ref, TORCH_TOL[torch.float32])
    else:
        with torch.no_grad():
            outs_ref, outs = _flat(ref(x)), _flat(ours(x))
    assert where.calls
    _close(outs, outs_ref, TORCH_TOL[torch.float32])


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN", "LSTMCell"])
def test_bf16_module_on_the_device(where, cls):
    """A bf16 module on bf16 tensors takes the CUDA route with bf16 products: bf16 outputs and
    gradients, within the stated bound (tests/test_bf16.py) of torch.nn in float32 on the
    same values, and not float32's."""
    ref, ours = _pair(cls, where.device, torch.float32, input_size=8, hidden_size=16)
    ours = ours.to(torch.bfloat16)
    ref.load_state_dict({k: v.float() for k, v in ours.state_dict().items()})
    shape = (5, 8) if cls.endswith("Cell") else (12, 5, 8)
    x = torch.randn(shape).to(where.device).to(torch.bfloat16)
    x16, x32 = x.clone().requires_grad_(), x.float().requires_grad_()
    outs, grads = _run(ours, [x16], (x16,))
    outs_ref, grads_ref = _run(ref, [x32], (x32,))
    outs, outs_ref = [o.detach() for o in outs], [o.detach() for o in outs_ref]
    assert where.calls and all(o.dtype == torch.bfloat16 for o in outs + list(grads))
    rel = [float((a.float() - b).norm() / b.norm().clamp_min(1e-30)) for a, b in
           zip(outs + list(grads), outs_ref + list(grads_ref))]  # fmt: skip
    assert max(rel) < 2.0**-7 and rel[0] > 1e-4  # (W_hh's gradient without hx: 0 and 0)


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "LayerNormLSTM", "LayerNormGRU"])
def test_regularized_layer_on_the_device(where, cls):
    """zoneout, recurrent dropout and weight drop on the CUDA route: the plain torch
    equations of tests/test_torch_regularization.py with the module's masks."""
    from test_torch_regularization import B, H, I, T, _flat, _plain

    torch.manual_seed(0)
    m = getattr(ft, cls)(I, H, num_layers=2, zoneout=0.3, recurrent_dropout=0.3,
                         weight_drop=0.3, dtype=torch.float64, device=where.device)  # fmt: skip
    x = torch.randn(T, B, I, dtype=torch.float64).to(where.device)
    hx = [torch.randn(2, B, H, dtype=torch.float64).to(where.device) for _ in range(2)]
    arg = tuple(hx) if cls.endswith("LSTM") else hx[0]
    got = _flat(m(x, arg))
    assert where.calls
    _close(got, _flat(_plain(m, x, arg)), 1e-10)


def test_dropout_on_the_device_draws_from_torchs_rng(where):
    """The masks are drawn with F.dropout on the tensors' device: the same seed gives the
    same result twice, and a different one changes it (torch.nn's CUDA dropout is cuDNN's,
    so the draws are compared with the drop-in itself, and with torch.nn on the CPU)."""
    ref, ours = _pair("GRU", where.device, torch.float64, input_size=3, hidden_size=4,
                      num_layers=3, dropout=0.5)  # fmt: skip
    x = torch.randn(5, 2, 3, dtype=torch.float64).to(where.device)
    results = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        results.append(ours(x)[0])
    assert torch.equal(results[0], results[1]) and not torch.allclose(results[0], results[2])
    if where.device.type == "cpu":
        torch.manual_seed(3)
        torch.testing.assert_close(results[0], ref(x)[0], atol=1e-10, rtol=1e-10)


def test_non_contiguous_input_on_the_device(where):
    ref, ours = _pair("LSTM", where.device, torch.float64, input_size=3, hidden_size=4)
    x = torch.randn(3, 5, 2, dtype=torch.float64).to(where.device).transpose(0, 2)
    assert not x.is_contiguous()
    _close(_flat(ours(x)), _flat(ref(x)), 1e-10)


@needs_torch
def test_fallback_where_the_backend_is_not_usable(monkeypatch):
    """A CUDA tensor with fastrnn's CUDA backend not usable falls back to torch.nn (checked
    on the route itself: this torch may have no CUDA to make such a tensor)."""
    monkeypatch.setattr(fastrnn.cuda, "usable_module", lambda: None)
    assert torch_function.route_of(torch.device("cuda")) is None
    assert torch_function.route_of(torch.device("meta")) is None
    assert torch_function.route_of(torch.device("cpu")) is torch_function.HOST


def test_route_results_share_memory_with_the_kernels_outputs(where):
    """Outputs come back as tensors over the kernels' own buffers (DLPack, no copy): the
    kernels' DeviceArrays and the returned tensor share one pointer."""
    seen = []
    out = torch_function._DLPackOps._out

    def spy(value):
        result = out(value)
        if result is not None and hasattr(value, "__cuda_array_interface__"):
            seen.append(value.__cuda_array_interface__["data"][0] == result.data_ptr())
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch_function._DLPackOps, "_out", staticmethod(spy))
        m = ft.RNN(3, 4, device=where.device)
        with torch.no_grad():
            m(torch.randn(5, 2, 3).to(where.device))
    assert seen and all(seen)
