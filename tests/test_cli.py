"""The fastrnn command end to end, at tiny sizes: info, train-charlm (progress, samples,
checkpoint, exact resume), sample, bench --quick with and without the optional peers, and
bad input: one clear line and exit status 2, never a traceback."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn import charlm
from fastrnn.train import Adam

TINY = ["--hidden", "16", "--layers", "1", "--embed", "8", "--batch", "2", "--seq-len", "8"]
TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def tiny_bench(cells: str, peers: str) -> list:
    """`fastrnn bench` at its smallest: the quick grid of some cells, 1 thread, 1 repeat."""
    return ["bench", "--quick", "--cells", cells, "--threads", "1", "--repeats", "1",
            "--peers", peers]  # fmt: skip


def run(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "fastrnn", *args], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def test_info():
    out = run("info").stdout
    for word in (
        "fastrnn",
        "backend cpu: available",
        "backend cuda: ",
        "CPU kernels",
        "threads",
        "BLAS: OpenBLAS",
        "BLAS core: ",
    ):
        assert word in out
    if sys.platform.startswith("linux"):
        assert "CPU features:" in out


@pytest.mark.parametrize("isa", ["avx512", "avx512bf16"])
def test_info_says_how_bf16_products_run(isa):
    """FASTRNN_CPU_ISA caps the kernels; info says which bf16 path that leaves."""
    if isa not in fastrnn.available_cpu_isas():
        pytest.skip(f"this CPU has no {isa}")
    env = dict(os.environ, FASTRNN_CPU_ISA=isa)
    p = subprocess.run([sys.executable, "-m", "fastrnn", "info"], capture_output=True,
                       text=True, env=env, check=True)  # fmt: skip
    line = next(x for x in p.stdout.splitlines() if x.startswith("bf16 products"))
    assert ("vdpbf16ps" in line) == (isa == "avx512bf16") and ("portable" in line) != (
        isa == "avx512bf16"
    )


def test_train_charlm_shows_progress_and_samples_and_saves(corpus, tmp_path):
    ckpt = str(tmp_path / "m.npz")
    p = run(
        "train-charlm",
        "--text",
        corpus,
        "--steps",
        "6",
        "--sample-every",
        "3",
        "--sample-length",
        "20",
        "--checkpoint",
        ckpt,
        *TINY,
    )
    assert "unigram entropy" in p.stderr and "6/6 step 6 loss" in p.stderr
    assert "chars/s" in p.stderr
    assert p.stdout.count("--- sample at step") == 2
    assert "done: step 6" in p.stdout and " held out (unigram baseline" in p.stdout
    model, opt, step, state = charlm.load_checkpoint(ckpt)
    assert step == 6 and opt.t == 6 and state[0].shape == (1, 2, 16)


def test_train_charlm_on_the_numpy_backend(corpus):
    p = run(
        "train-charlm",
        "--text",
        corpus,
        "--steps",
        "2",
        "--sample-every",
        "0",
        "--backend",
        "numpy",
        *TINY,
    )
    assert "backend numpy" in p.stderr and "done: step 2" in p.stdout


def test_train_charlm_with_regularization_keeps_it_in_the_checkpoint(corpus, tmp_path):
    ckpt = str(tmp_path / "r.npz")
    reg = ["--zoneout", "0.1", "--recurrent-dropout", "0.2", "--weight-drop", "0.3"]
    common = ["--text", corpus, "--sample-every", "0", *TINY]
    p = run("train-charlm", "--steps", "2", *reg, "--checkpoint", ckpt, *common)
    assert "zoneout 0.1, recurrent dropout 0.2, weight drop 0.3" in p.stderr
    model = charlm.load_checkpoint(ckpt)[0]
    assert (model.config.zoneout, model.config.recurrent_dropout, model.config.weight_drop) == (
        0.1, 0.2, 0.3)  # fmt: skip
    assert model.lstm.regularization.weight_drop == 0.3


def test_train_charlm_in_bf16_keeps_its_precision_in_the_checkpoint(corpus, tmp_path):
    ckpt = str(tmp_path / "bf16.npz")
    common = ["--text", corpus, "--sample-every", "0", *TINY]
    p = run("train-charlm", "--steps", "2", "--precision", "bf16", "--checkpoint", ckpt, *common)
    assert "bf16 products" in p.stderr and "done: step 2" in p.stdout
    p = run("train-charlm", "--steps", "1", "--resume", ckpt, *common)
    assert "bf16 products" in p.stderr and "done: step 3" in p.stdout


def test_resume_continues_exactly(corpus, tmp_path):
    """8 steps straight equal 4 steps, save, resume, 4 more: the same parameters."""
    a, b, c = (str(tmp_path / f"{n}.npz") for n in "abc")
    common = ["--text", corpus, "--sample-every", "0", "--threads", "1", *TINY]
    run("train-charlm", "--steps", "8", "--checkpoint", a, *common)
    run("train-charlm", "--steps", "4", "--checkpoint", b, *common)
    p = run("train-charlm", "--steps", "4", "--resume", b, "--checkpoint", c, *common)
    assert "resumed" in p.stderr
    ma, mc = charlm.load_checkpoint(a)[0], charlm.load_checkpoint(c)[0]
    for k, v in ma.params().items():
        np.testing.assert_array_equal(v, mc.params()[k], err_msg=k)


def test_loss_falls_on_a_repetitive_text():
    model = charlm.CharLM(
        "".join(sorted(set(TEXT))),
        charlm.CharLMConfig(
            hidden_size=32, num_layers=1, embed_size=8, batch_size=4, seq_len=16, lr=1e-2
        ),
    )
    opt = Adam(model.params(), 1e-2)
    losses = []
    charlm.train(model, opt, TEXT, 60, on_step=lambda s, bpc, cps: losses.append(bpc))
    assert np.mean(losses[-10:]) < 0.6 * charlm.unigram_entropy_bits(TEXT)


def test_sampler_at_low_temperature_is_greedy():
    model = charlm.CharLM("abcd", charlm.CharLMConfig(hidden_size=8, num_layers=1, embed_size=4))
    out = charlm.sample(model, 12, temperature=1e-6, prime="ab", seed=1)
    # The greedy chain, step by step.
    text = "ab"
    for _ in range(12):
        logits, _, _ = model.logits(model.encode(text)[:, None])
        text += model.vocab[int(np.argmax(logits[-1, 0]))]
    assert out == text
    assert charlm.sample(model, 12, temperature=1e-6, prime="ab", seed=2) == text  # no randomness


def test_sample_command(corpus, tmp_path):
    ckpt = str(tmp_path / "m.npz")
    run(
        "train-charlm",
        "--text",
        corpus,
        "--steps",
        "2",
        "--sample-every",
        "0",
        "--checkpoint",
        ckpt,
        *TINY,
    )
    out = run("sample", ckpt, "--length", "15", "--prime", "the ", "--seed", "0").stdout
    assert out.startswith("the ") and len(out.rstrip("\n")) == 19


@pytest.mark.parametrize(
    "make,args,message",
    [
        (None, ["train-charlm", "--text", "/no/such/file.txt"], "no such file"),
        ("binary", ["train-charlm", "--text", "{path}"], "is not UTF-8 text"),
        (None, ["train-charlm", "--temperature", "0"], "--temperature must be > 0"),
        (None, ["train-charlm", "--held-out", "0.5"], "--held-out must be in [0, 0.5)"),
        (None, ["train-charlm", "--zoneout", "1"], "--zoneout must be in [0, 1)"),
        (None, ["train-charlm", "--weight-drop", "-0.1"], "--weight-drop must be in [0, 1)"),
        (None, ["sample", "/no/such.npz"], "no such checkpoint"),
        ("garbage", ["sample", "{path}"], "not a readable .npz checkpoint"),
        ("mismatched", ["sample", "{path}"], "param/head_b has shape (27,), the model needs (28,)"),
        ("other_npz", ["sample", "{path}"], "damaged or mismatched checkpoint"),
        ("ckpt", ["sample", "{path}", "--temperature", "-1"], "--temperature must be > 0"),
        ("ckpt", ["sample", "{path}", "--prime", "XYZ"], "never seen"),
        (None, ["bench", "--cells", "elman"], "--cells: choose from"),
        (None, ["bench", "--peers", "tensorflow"], "unknown peer"),
        pytest.param(
            None,
            ["bench", "--peers", "fastrnn,cuda"],
            "cuda is not usable here",
            marks=pytest.mark.skipif(fastrnn.cuda.status().usable, reason="CUDA usable"),
        ),
        pytest.param(
            None,
            ["check", "--backend", "cuda"],
            "backend 'cuda' is not usable here",
            marks=pytest.mark.skipif(fastrnn.cuda.status().usable, reason="CUDA usable"),
        ),
        (None, ["bench", "--threads", "two"], "--threads: comma-separated integers"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, corpus, make, args, message):
    path = tmp_path / "f"
    if make == "binary":
        path.write_bytes(b"caf\xe9 \xff\xfe")
    elif make == "garbage":
        path.write_bytes(b"PK\x03\x04 this is not a zip")
    elif make == "other_npz":
        with open(path, "wb") as f:
            np.savez(f, x=np.zeros(3))
    elif make in ("mismatched", "ckpt"):
        run(
            "train-charlm",
            "--text",
            corpus,
            "--steps",
            "1",
            "--sample-every",
            "0",
            "--checkpoint",
            str(path) + ".npz",
            *TINY,
        )
        path = tmp_path / "f.npz"
        if make == "mismatched":
            with np.load(path) as z:
                files = dict(z)
            files["param/head_b"] = files["param/head_b"][:-1]
            with open(path, "wb") as f:
                np.savez(f, **files)
    p = run(*[a.replace("{path}", str(path)) for a in args], check=False)
    print(p.stderr)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("peers", ["auto", "fastrnn,numpy"])
def test_bench_quick_json(tmp_path, peers):
    out = str(tmp_path / "b.json")
    p = run(
        *tiny_bench("rnn", peers),
        "--json",
        out,
    )
    assert "BLAS" in p.stdout and "limit" in p.stdout and "rnn stream" in p.stdout
    doc = json.load(open(out))
    for key in (
        "version",
        "fastrnn",
        "machine",
        "cpu_isa",
        "blas",
        "blas_core",
        "warnings",
        "peers",
        "quick",
        "repeats",
        "threads",
        "cases",
        "memory",
    ):
        assert key in doc
    assert doc["blas_core"]["name"] in doc["blas"] and "BLAS core" in p.stdout.splitlines()[0]
    case = doc["cases"][0]
    for key in (
        "cell",
        "mode",
        "T",
        "B",
        "H",
        "threads",
        "times_ms",
        "flops",
        "blas_ms",
        "blas_fraction",
        "limit_ms",
        "limit_fraction",
        "ratios",
        "label",
    ):
        assert key in case
    assert "numpy" in case["ratios"]
    assert ("torch" in case["ratios"]) == ("torch" in doc["peers"])
    assert all(t > 0 for t in case["times_ms"]["fastrnn"])
    assert all(0 < c["limit_ms"] and 0 < c["blas_ms"] for c in doc["cases"])


def test_bench_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "b.png"
    run(
        *tiny_bench("rnn", "fastrnn,numpy"),
        "--plot",
        str(out),
    )
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_jax_peer_when_installed():
    pytest.importorskip("jax")
    p = run(*tiny_bench("gru", "fastrnn,jax"))
    assert "jax x" in p.stdout


def test_bench_dropin_peer_when_fastrnn_torch_imports():
    pytest.importorskip("fastrnn.torch")
    p = run(*tiny_bench("rnn", "fastrnn,dropin"))
    assert "dropin x" in p.stdout
    rows = [line for line in p.stdout.splitlines() if line.startswith("rnn ")]
    assert rows and all(line.split()[-1] != "-" for line in rows)  # every case, stream too


def test_check_fails_on_a_wrong_kernel(monkeypatch, capsys):
    """`fastrnn check` exits 1, naming the cell, when a kernel disagrees with the reference."""
    from fastrnn import check, ops

    assert check.run_check(3, 2, 8, 1) == 0
    real = ops.gru_forward

    def off_by_a_little(*args, **kwargs):
        y, h, saved = real(*args, **kwargs)
        return y * 1.001, h, saved

    monkeypatch.setattr(ops, "gru_forward", off_by_a_little)
    assert check.run_check(3, 2, 8, 1) == 1
    assert "FAILED: gru: max relative error above 0.0001" in capsys.readouterr().out
