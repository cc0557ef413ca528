"""The benchmark suite's bf16 rows: `fastrnn bench --precision fp32,bf16` adds them, beside
the fp32 rows; they run the peers that have a bf16 form (fastrnn, torch, dropin) in bf16,
and their bounds are bf16 ones (the kernels' bf16 GEMM, the bf16 peak, 2-byte weights). The
roofline tests replace the measurements with fakes: they check what is measured, never a
timing."""

import importlib
import importlib.util
import json
import subprocess
import sys
import types

import numpy as np
import pytest

import fastrnn
from fastrnn import ops
from fastrnn.bench import Case, fastrnn_case, grid, torch_case, weights
from fastrnn.bench.peers import BF16_PEERS, PEERS, case_peers, fastrnn_stream
from fastrnn.bench.report import JSON_VERSION
from fastrnn.cell_spec import CELLS, spec

rl = importlib.import_module("fastrnn.bench.roofline")  # the package's `roofline` is its function
T, B, H = 4, 3, 8
MODES = ["forward", "train", "stream"]


def inputs(cell):
    rng = np.random.default_rng(0)
    w = weights(cell, H, rng)
    return rng.standard_normal((T, B, H)).astype(np.float32), w


def test_the_grid_puts_a_bf16_row_beside_each_fp32_row():
    plain = grid(True, ["lstm"], [1])
    both = grid(True, ["lstm"], [1], ("fp32", "bf16"))
    assert {c.precision for c in plain} == {"fp32"}
    assert [c.label for c in both[::2]] == [c.label for c in plain]  # fp32 labels unchanged
    assert [c.label for c in both[1::2]] == [c.label + " bf16" for c in plain]
    assert {c.precision for c in both[1::2]} == {"bf16"}


@pytest.mark.parametrize("precision,want", [("fp32", list(PEERS)), ("bf16", list(BF16_PEERS))])
def test_the_peers_of_a_row(precision, want):
    assert case_peers(list(PEERS), precision) == want
    assert case_peers(["fastrnn", "numpy", "jax", "cuda"], precision)[0] == "fastrnn"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("mode", ["forward", "train"])
def test_the_fastrnn_peer_asks_for_the_rows_precision(precision, mode):
    cell = "gru"
    s = spec(cell)
    asked = []

    def forward(**kw):
        asked.append(kw["precision"])
        return getattr(ops, s.forward_name)(**kw)

    mod = types.SimpleNamespace(
        **{s.forward_name: forward, s.backward_name: getattr(ops, s.backward_name)}
    )
    fastrnn_case(mod, cell, mode, *inputs(cell), precision)()
    assert asked == [precision]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fastrnn_streaming_peer_makes_a_cell_of_the_rows_precision(monkeypatch, precision):
    made = []

    class Spy(fastrnn.LSTMCell):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append(self.precision)

    monkeypatch.setattr(fastrnn, "LSTMCell", Spy)
    fastrnn_stream("lstm", H, inputs("lstm")[1], 2, precision)()
    assert made == [precision]


def peer_inputs(cell, mode):
    """x (None for a streaming case, which makes its own) and w of a torch peer's case."""
    x, w = inputs(cell)
    return (None if mode == "stream" else x), w


def final_h(out):
    """y of a layer's (y, state), or h of a Cell's state (h or (h, c))."""
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("mode", MODES)
def test_the_torch_bf16_peer_runs_in_bf16(cell, mode):
    torch = pytest.importorskip("torch")
    out = final_h(torch_case(cell, mode, *peer_inputs(cell, mode), 2, precision="bf16")())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("mode", MODES)
def test_the_dropin_bf16_peer_runs(cell, mode):
    """fastrnn.torch's modules in bf16 (fastrnn's bf16 kernels where the drop-in has them,
    torch's otherwise): the peer runs and gives a finite output."""
    pytest.importorskip("fastrnn.torch")
    from fastrnn.bench import dropin_case

    out = final_h(dropin_case(cell, mode, *peer_inputs(cell, mode), 2, precision="bf16")())
    assert bool(out.float().isfinite().all())


# ----------------------------------------------------------------------------- bounds


@pytest.fixture
def fake_measurements(monkeypatch):
    """gemm_ms, prepacked_ms and read_bandwidth replaced by fakes that record what they were
    asked (a bf16 GEMM "takes" half the time of an sgemm, on pre-packed weights a quarter);
    the peak's cache emptied before and after."""
    gemms, reads = [], []

    def gemm_ms(M, N, K, repeats, *, bf16=False):
        gemms.append((M, N, K, bf16))
        return 0.5 if bf16 else 1.0

    def prepacked_ms(M, N, K, repeats):
        gemms.append((M, N, K, "prepacked"))
        return 0.25

    def read_bandwidth(nbytes, repeats):
        reads.append(nbytes)
        return 1e9

    monkeypatch.setattr(rl, "gemm_ms", gemm_ms)
    monkeypatch.setattr(rl, "prepacked_ms", prepacked_ms)
    monkeypatch.setattr(rl, "read_bandwidth", read_bandwidth)
    rl._peak_flops.cache_clear()
    yield gemms, reads
    rl._peak_flops.cache_clear()


def test_the_bf16_peak_is_its_own_measurement(fake_measurements):
    gemms, _ = fake_measurements
    fp32, bf16 = rl.peak_flops(3), rl.peak_flops(3, bf16=True)
    n = rl.PEAK_N
    assert gemms == [(n, n, n, False), (n, n, n, True), (n, n, n, "prepacked")]
    assert bf16 == 4 * fp32  # the fakes' rates: the bf16 peak is the faster bf16 product
    rl.peak_flops(3, bf16=True)
    assert len(gemms) == 3  # once per thread count, precision and process


@pytest.mark.parametrize("mode", MODES)
def test_a_bf16_rows_bounds_are_bf16_ones(fake_measurements, mode):
    """Every GEMM of a bf16 row's bounds (its BLAS column and the peak) is a bf16 GEMM, every
    GEMM of an fp32 row an sgemm; a bf16 row re-reads half the bytes."""
    gemms, reads = fake_measurements
    rows = {}
    for precision in ("fp32", "bf16"):
        del gemms[:], reads[:]
        case = Case("lstm", mode, 10, 1 if mode == "stream" else 4, 64, 1, precision)
        rl.roofline(case, 3)
        rows[precision] = case, [g[-1] for g in gemms], list(reads)
    (fp32, fp32_gemms, fp32_reads), (bf16, bf16_gemms, bf16_reads) = rows["fp32"], rows["bf16"]
    assert set(fp32_gemms) == {False} and set(bf16_gemms) == {True, "prepacked"}
    assert len(fp32_gemms) + 1 == len(bf16_gemms)  # the bf16 peak: one more measurement
    assert bf16_reads == [r // 2 for r in fp32_reads]
    assert bf16.flops == fp32.flops and bf16.limit_ms < fp32.limit_ms


# ----------------------------------------------------------------------------- the command


def bench(*args):
    return subprocess.run(
        [sys.executable, "-m", "fastrnn", "bench", "--quick", "--cells", "rnn", "--threads", "1",
         "--repeats", "1", *args],
        capture_output=True, text=True,
    )  # fmt: skip


def test_bench_with_bf16_rows_writes_their_precision(tmp_path):
    torch = importlib.util.find_spec("torch") is not None
    out = tmp_path / "b.json"
    peers = "fastrnn,numpy" + (",torch" if torch else "")
    p = bench("--peers", peers, "--precision", "bf16,fp32", "--json", str(out))
    assert p.returncode == 0, p.stderr
    assert "bf16 rows" in p.stdout
    doc = json.loads(out.read_text())
    assert doc["version"] == JSON_VERSION and doc["precisions"] == ["fp32", "bf16"]
    cases = doc["cases"]
    assert [c["precision"] for c in cases] == ["fp32", "bf16"] * (len(cases) // 2)
    for c in cases:
        bf16 = c["precision"] == "bf16"
        assert c["label"].endswith(" bf16") == bf16
        assert ("numpy" in c["ratios"]) == (not bf16 and c["mode"] != "stream")
        assert ("torch" in c["ratios"]) == torch
        assert c["limit_ms"] > 0 and c["blas_ms"] > 0
    # The table: a bf16 row (its label's last word) shows "-" for the NumPy reference.
    table = p.stdout.splitlines()
    rows = [line.split() for line in table if line.startswith(("rnn forward", "rnn train"))]
    assert len(rows) == sum(c["mode"] != "stream" for c in cases)
    for row in rows:
        assert (row[-2 if torch else -1] == "-") == (row[6] == "bf16")


@pytest.mark.parametrize("value", ["bf8", "", "fp32,fp16"])
def test_a_bad_precision_is_one_line_and_exit_2(value):
    p = bench("--peers", "fastrnn", "--precision", value)
    assert p.returncode == 2
    assert "--precision: comma-separated from fp32,bf16" in p.stderr
    assert "Traceback" not in p.stderr


def test_match_keeps_the_cases_whose_label_matches(tmp_path):
    out = tmp_path / "m.json"
    p = bench("--peers", "fastrnn", "--precision", "fp32,bf16", "--match", "train.*B=16.*bf16$",
              "--json", str(out))  # fmt: skip
    assert p.returncode == 0, p.stderr
    labels = [c["label"] for c in json.loads(out.read_text())["cases"]]
    assert labels == ["rnn train T=50 B=16 H=256 thr=1 bf16"]


@pytest.mark.parametrize(
    "value,message", [("(", "not a regular expression"), ("nothing", "no case")]
)
def test_a_bad_match_is_one_line_and_exit_2(value, message):
    p = bench("--peers", "fastrnn", "--match", value)
    assert p.returncode == 2 and f"--match: {message}" in p.stderr
    assert "Traceback" not in p.stderr


def test_layer_norm_rows_follow_their_plain_rows(tmp_path):
    """--layer-norm: after each LSTM/GRU forward and train row, its layer-normalized,
    zoned-out row, on fastrnn (and torch and dropin where installed)."""
    torch = importlib.util.find_spec("torch") is not None
    out = tmp_path / "ln.json"
    peers = "fastrnn" + (",torch,dropin" if torch else "")
    p = subprocess.run(
        [sys.executable, "-m", "fastrnn", "bench", "--quick", "--cells", "gru", "--threads", "1",
         "--repeats", "1", "--layer-norm", "--peers", peers, "--match", "(forward|train).*B=1 ",
         "--json", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    cases = json.loads(out.read_text())["cases"]
    assert [(c["mode"], c["layer_norm"]) for c in cases] == [
        ("forward", False), ("forward", True), ("train", False), ("train", True)
    ]  # fmt: skip
    for c in cases:
        assert c["label"].endswith("ln+zoneout") == c["layer_norm"]
        assert set(c["ratios"]) == ({"torch", "dropin"} if torch else set())
