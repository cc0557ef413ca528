"""The C++ kernels (fastrnn.ops) against the NumPy reference: forward outputs, final states
and every gradient, float64 tightly and float32 to ~1e-5, over awkward shapes."""

import numpy as np
import pytest

from fastrnn import ops, reference

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

# (T, B, I, H): B=1, H not a multiple of any vector width, T=1, long T, wide panels; B=1
# with W_hh over 64 KiB (read as it is, by GEMVs over unit blocks, not packed).
SHAPES = [
    (1, 1, 1, 1),
    (3, 2, 5, 7),
    (1, 5, 3, 17),
    (7, 1, 9, 33),
    (4, 13, 6, 16),
    (2, 9, 64, 65),
    (50, 3, 4, 5),
    (5, 64, 24, 100),
    (6, 1, 10, 140),
]


def check_against_reference(v, p, dtype, training=True):
    atol, rtol = TOL[dtype]
    want, saved_ref = forward(reference, v, p, training=training)
    got, saved = forward(ops, v, p, training=training)
    for name, g, w in zip(["y", "h_n", "c_n"], got, want):
        assert g.dtype == dtype
        assert_close(name, g, w, atol, rtol)
    if not training:
        assert saved is None
        return
    grads_want = backward(reference, v, saved_ref, p)
    grads_got = backward(ops, v, saved, p)
    for name in grads_want:
        assert_close("d" + name, grads_got[name], grads_want[name], atol, rtol)


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"T{t}B{b}I{i}H{h}" for t, b, i, h in SHAPES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_matches_reference(v, shape, dtype, cpu_isa):
    p = make_problem(v, *shape, dtype=dtype, seed=sum(shape))
    check_against_reference(v, p, dtype)


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_inference_and_bias_options(v, bias):
    p = make_problem(v, 6, 4, 5, 19, bias=bias, seed=3)
    check_against_reference(v, p, np.float64, training=False)
    check_against_reference(v, p, np.float64, training=True)


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_long_sequence_float32(v):
    """Long T; inference projects the input in chunks (here 256 steps), so T=300 crosses one."""
    p = make_problem(v, 300, 2, 8, 24, dtype=np.float32, seed=5, lengths=[300, 131])
    check_against_reference(v, p, np.float32)
    check_against_reference(v, p, np.float32, training=False)


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("T,B", [(0, 3), (4, 0), (0, 0)])
def test_empty_time_or_batch(v, T, B):
    """T=0: the final state is the initial one, gradients zero. B=0: empty outputs."""
    p = make_problem(v, T, B, 3, 4, seed=2)
    check_against_reference(v, p, np.float64)


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_non_contiguous_inputs(v):
    p = make_problem(v, 5, 3, 4, 6, seed=4)
    want, _ = forward(ops, v, p, training=False)
    # Same values, other memory layouts: Fortran order and strided views.
    p.x = np.asfortranarray(p.x)
    p.w_hh = np.asfortranarray(p.w_hh)
    big = np.zeros((p.w_ih.shape[0], 2 * p.w_ih.shape[1]))
    big[:, ::2] = p.w_ih
    p.w_ih = big[:, ::2]
    got, _ = forward(ops, v, p, training=False)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_nan_propagates(v):
    p = make_problem(v, 3, 2, 4, 5, seed=6)
    p.x[1, 0, 0] = np.nan
    (y, *_), _ = forward(ops, v, p, training=False)
    assert np.all(np.isfinite(y[0])) and np.all(np.isfinite(y[:, 1]))
    assert np.all(np.isnan(y[1:, 0])) or v.options.get("nonlinearity") == "relu"
    assert np.any(np.isnan(y[1, 0]))


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_deterministic(v):
    p = make_problem(v, 20, 16, 32, 48, dtype=np.float32, seed=7)
    a, sa = forward(ops, v, p)
    b, sb = forward(ops, v, p)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    ga, gb = backward(ops, v, sa, p), backward(ops, v, sb, p)
    for k in ga:
        if ga[k] is not None:
            np.testing.assert_array_equal(ga[k], gb[k])


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_counts(v, threads):
    """Every thread count gives the reference's answer (3 oversubscribes a 2-core machine on
    purpose: correctness must not depend on the split)."""
    import fastrnn

    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(threads)
    try:
        assert fastrnn.get_num_threads() == threads
        p = make_problem(v, 9, 21, 40, 70, dtype=np.float64, seed=threads)
        check_against_reference(v, p, np.float64)
    finally:
        fastrnn.set_num_threads(before)


# (T, B, I, H, lengths, proj): lengths unsorted with 0 and T; projections of LSTMs; batch 1
# with unpacked weights (over 64 KiB) and steps past the sequence's end.
OPTION_CASES = [
    (5, 4, 3, 7, [2, 0, 5, 1], 0),
    (6, 7, 4, 19, "random", 0),
    (9, 33, 10, 40, "random", 0),
    (4, 3, 5, 17, None, 5),
    (7, 6, 8, 33, "random", 16),
    (3, 4, 2, 9, [0, 0, 0, 0], 3),
    (3, 4, 2, 9, [3, 3, 3, 3], 0),
    (6, 1, 9, 140, [4], 0),
    (5, 1, 7, 136, [3], 40),
]


@pytest.mark.parametrize("v,T,B,I,H,lengths,proj", with_variants(OPTION_CASES, 5))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_lengths_and_projection_match_reference(v, T, B, I, H, lengths, proj, dtype, cpu_isa):
    p = make_problem(v, T, B, I, H, dtype=dtype, seed=T * B, proj=proj, lengths=lengths)
    check_against_reference(v, p, dtype)
    check_against_reference(v, p, dtype, training=False)


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_padding_values_never_matter(v):
    """Whatever lies past a sequence's end in x and dy (NaN included) changes nothing."""
    p = make_problem(v, 6, 5, 4, 9, seed=9, lengths=[6, 2, 0, 4, 1])
    outs, saved = forward(ops, v, p)
    grads = backward(ops, v, saved, p)
    for t in range(6):
        for b, L in enumerate(p.lengths):
            if t >= L:
                p.x[t, b] = np.nan
                p.dy[t, b] = np.nan
    outs2, saved2 = forward(ops, v, p)
    grads2 = backward(ops, v, saved2, p)
    for a, b in zip(outs, outs2):
        np.testing.assert_array_equal(a, b)
    for k in grads:
        if grads[k] is not None:
            mask = np.isfinite(grads2[k]) | (k == "x")
            np.testing.assert_array_equal(np.where(mask, grads[k], 0), np.where(mask, grads2[k], 0))
            assert np.all(np.isfinite(grads2[k])), k


def test_set_numpy_blas_threads_finds_numpys_openblas():
    import sys

    import fastrnn

    found = fastrnn.set_numpy_blas_threads(1)
    if (
        sys.platform.startswith("linux")
        and "openblas" in np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]
    ):
        assert found
    a = np.random.default_rng(0).standard_normal((64, 64))
    np.testing.assert_allclose(a @ np.eye(64), a)  # NumPy still computes
    fastrnn.set_numpy_blas_threads(2)


def test_thread_count_from_the_environment():
    import os
    import subprocess
    import sys

    code = "import fastrnn; print(fastrnn.get_num_threads())"
    env = dict(os.environ, FASTRNN_NUM_THREADS="3")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "3"
