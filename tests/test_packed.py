"""The packed batch (fastrnn.PackedBatch) built once per layer call, and the typed saved
state (fastrnn.saved) shared by the kernels and the reference."""

import dataclasses

import numpy as np
import pytest

import fastrnn
from fastrnn import PackedBatch, ops, reference
from fastrnn.saved import LstmSaved

from cells import TOL, VARIANT_IDS, VARIANTS, assert_close, backward, forward, make_problem

LENGTHS = [3, 0, 5, 3, 1, 5]


def test_from_lengths_sorts_stably_and_counts_running_rows():
    pb = PackedBatch.from_lengths(LENGTHS, T=6)
    assert pb.T == 6 and pb.B == 6
    assert pb.sorted_indices.tolist() == [2, 5, 0, 3, 4, 1]  # stable: equal lengths keep order
    assert pb.batch_sizes.tolist() == [5, 4, 4, 2, 2, 0]
    assert pb.lengths.tolist() == LENGTHS
    assert pb.sorted_lengths.tolist() == [5, 5, 3, 3, 1, 0]
    assert pb.unsorted_indices[pb.sorted_indices].tolist() == list(range(6))
    x = np.arange(6)[None, :, None] * np.ones((2, 1, 3))
    assert np.array_equal(pb.unsort(pb.sort(x, 1), 1), x)


def test_matches_torch_packed_sequence_indices():
    torch = pytest.importorskip("torch")
    lengths = [l for l in LENGTHS if l > 0]  # torch takes lengths >= 1
    x = torch.zeros(5, len(lengths), 2)
    ps = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
    pb = PackedBatch(ps.batch_sizes.numpy(), ps.sorted_indices.numpy(), ps.unsorted_indices.numpy())
    assert pb.lengths.tolist() == lengths
    assert pb.batch_sizes.tolist() == PackedBatch.from_lengths(lengths, 5).batch_sizes.tolist()
    sorted_ps = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(sorted(lengths)[::-1]))
    assert sorted_ps.sorted_indices is None
    assert PackedBatch(sorted_ps.batch_sizes.numpy()).identity


def test_reverse_is_a_per_sequence_reversal_within_lengths():
    pb = PackedBatch.from_lengths(LENGTHS, T=6)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6, 2))
    a[~pb.padding_mask()] = 0
    got = pb.reverse(a)
    for k, L in enumerate(pb.sorted_lengths):
        assert np.array_equal(got[:L, k], a[:L, k][::-1])
        assert not got[L:, k].any()
    assert np.array_equal(pb.reverse(got), a)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        (([3, 4],), {}, ValueError, "batch_sizes must be non-increasing"),
        (([2, 1], [0, 0]), {}, ValueError, "permutation"),
        (([2, 1], [1, 0], [1, 1]), {}, ValueError, "inverse of sorted_indices"),
        (([2.0, 1.0],), {}, TypeError, "batch_sizes must be integers"),
        (([2, 1], [1, 0]), {"batch_size": 3}, ValueError, "batch_size=3"),
    ],
)
def test_bad_packed_batch(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PackedBatch(*args, **kwargs)


def test_ops_take_a_packed_batch_as_lengths():
    v = VARIANTS[0]
    p = make_problem(v, 6, 6, 3, 4, lengths=LENGTHS, proj=2)
    want, saved_want = forward(ops, v, p)
    p_packed = make_problem(v, 6, 6, 3, 4, lengths=LENGTHS, proj=2)
    p_packed.lengths = PackedBatch.from_lengths(LENGTHS, 6)
    got, saved = forward(ops, v, p_packed)
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
    grads, grads_want = backward(ops, v, saved, p_packed), backward(ops, v, saved_want, p)
    for k in grads_want:
        assert_close(k, grads[k], grads_want[k], 0, 0)
    with pytest.raises(ValueError, match=r"PackedBatch of \(T, B\) = \(5, 6\)"):
        ops.lstm_forward(
            p.x,
            None,
            None,
            p.w_ih,
            p.w_hh,
            None,
            None,
            w_hr=p.w_hr,
            lengths=PackedBatch.from_lengths(LENGTHS, 5),
        )


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_a_stacked_bidirectional_layer_sorts_once(monkeypatch, backend):
    """With lengths, the layer builds one PackedBatch and sorts x once; no (layer, direction)
    call of the kernels' Python side reorders rows again."""
    built, reordered = [], []
    real_from_lengths = PackedBatch.from_lengths.__func__
    monkeypatch.setattr(
        PackedBatch,
        "from_lengths",
        classmethod(lambda cls, *a, **k: built.append(1) or real_from_lengths(cls, *a, **k)),
    )
    real_take = ops._HostOps.take_rows
    monkeypatch.setattr(
        ops._HostOps, "take_rows", staticmethod(lambda *a: reordered.append(1) or real_take(*a))
    )
    net = fastrnn.LSTM(
        3,
        4,
        num_layers=3,
        bidirectional=True,
        proj_size=2,
        dtype=np.float64,
        seed=0,
        backend=backend,
    )
    x = np.random.default_rng(0).standard_normal((6, 6, 3))
    y, _ = net(x, lengths=LENGTHS)
    net.backward(np.ones_like(y))
    assert len(built) == 1
    assert reordered == []


@pytest.mark.parametrize(
    "v,proj",
    [
        pytest.param(v, proj, id=f"{v.id}-proj{proj}")
        for v in VARIANTS
        for proj in (0, 2)
        if v.spec.projection or not proj
    ],
)
def test_saved_state_is_one_typed_record_with_every_array_counted(v, proj):
    p = make_problem(v, 5, 3, 4, 6, proj=proj, lengths=[5, 2, 0])
    _, saved = forward(ops, v, p)
    _, saved_ref = forward(reference, v, p)
    assert type(saved) is type(saved_ref) and dataclasses.is_dataclass(saved)
    assert saved.backend == "cpu" and saved_ref.backend == "numpy"
    arrays = saved.arrays()
    assert set(arrays) == set(saved_ref.arrays())
    for name, a in arrays.items():
        assert a.shape == saved_ref.arrays()[name].shape, name
    # Every array the record holds is counted, the projection's m (T, B, H) included.
    assert saved.nbytes == sum(a.nbytes for a in arrays.values())
    assert saved.nbytes == saved_ref.nbytes
    if proj:
        assert isinstance(saved, LstmSaved) and saved.m.shape == (5, 3, 6)
        assert "m" in arrays and "w_hr" in arrays
    with pytest.raises(dataclasses.FrozenInstanceError):
        saved.gates = None


def test_reference_saved_is_refused_by_the_kernels():
    v = VARIANTS[0]
    p = make_problem(v, 2, 2, 3, 4)
    _, saved_ref = forward(reference, v, p)
    with pytest.raises(TypeError, match="comes from fastrnn.reference.lstm_forward"):
        backward(ops, v, saved_ref, p)


@pytest.mark.parametrize("v", VARIANTS, ids=VARIANT_IDS)
def test_reference_backward_from_its_typed_record_matches_the_kernels(v):
    p = make_problem(v, 7, 4, 3, 5, lengths=[7, 0, 3, 7])
    _, saved = forward(reference, v, p)
    grads = backward(reference, v, saved, p)
    _, saved_k = forward(ops, v, p)
    for k, g in backward(ops, v, saved_k, p).items():
        assert_close(k, g, grads[k], *TOL[np.float64])


def test_empty_lengths_for_an_empty_batch():
    """lengths=[] (float64 to NumPy) is the lengths of B = 0 sequences, for ops and layers."""
    x = np.zeros((3, 0, 2))
    w_ih, w_hh = np.ones((4, 2)), np.ones((4, 1))
    y, h, c, _ = ops.lstm_forward(x, None, None, w_ih, w_hh, None, None, lengths=[])
    assert y.shape == (3, 0, 1) and h.shape == c.shape == (0, 1)
    net = fastrnn.GRU(2, 3, bidirectional=True, dtype=np.float64)
    y, h = net(x, lengths=[])
    assert y.shape == (3, 0, 6) and h.shape == (2, 0, 3)
    dx, dh0 = net.backward(y)
    assert dx.shape == x.shape
