"""The OpenBLAS core (fastrnn.openblas, fastrnn.blas_core()): named by `fastrnn info`, `check`
and `bench` (header and JSON), with a warning and its fix where OPENBLAS_CORETYPE forces a core
or the core is older than the CPU supports.

The commands run in subprocesses whose environment sets or removes OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE (OpenBLAS reads them when it loads); this process's environment is never
changed."""

import json
import os
import platform
import subprocess
import sys

import pytest

import fastrnn
from fastrnn.openblas import ENV_VARS, core_from_config, core_level, cpu_level, diagnose

X86 = platform.machine().lower() in ("x86_64", "amd64")
AVX512 = X86 and "avx512" in fastrnn.available_cpu_isas()
needs_avx512 = pytest.mark.skipif(
    not AVX512,
    reason="this CPU lacks AVX-512 (F/BW/VL/DQ): a Haswell (AVX2) core is not "
    "older than what it supports",
)
needs_x86 = pytest.mark.skipif(not X86, reason="OpenBLAS's x86-64 cores only")

BENCH = [
    "bench",
    "--quick",
    "--cells",
    "rnn",
    "--threads",
    "1",
    "--repeats",
    "1",
    "--peers",
    "fastrnn,numpy",
]


def clean_env(**extra):
    """This process's environment without the two variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(extra)
    return env


def run(args, env):
    p = subprocess.run(
        [sys.executable, "-m", "fastrnn", *args], capture_output=True, text=True, env=env
    )
    assert p.returncode == 0, p.stderr
    return p


# ----------------------------------------------------------------------------- the verdicts


AVX512_FLAGS = frozenset("sse2 avx avx2 fma avx512f avx512bw avx512vl avx512dq".split())


def test_cpu_levels_from_flags():
    assert cpu_level(AVX512_FLAGS) == "avx512"
    assert cpu_level(AVX512_FLAGS - {"avx512dq"}) == "avx2"
    assert cpu_level(frozenset("sse2 avx avx2 fma".split())) == "avx2"
    assert cpu_level(frozenset("sse2 avx".split())) == "avx"
    assert cpu_level(frozenset("fp asimd sve".split())) is None  # Arm
    assert cpu_level(frozenset()) is None


def test_core_levels_and_the_config_string():
    assert [
        core_level(n)
        for n in (
            "SkylakeX",
            "Cooperlake",
            "Haswell",
            "Zen",
            "Sandybridge",
            "Nehalem",
            "neoversen1",
            None,
        )
    ] == ["avx512", "avx512", "avx2", "avx2", "avx", "sse", None, None]
    assert (
        core_from_config("OpenBLAS 0.3.34.481.3 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64")
        == "SkylakeX"
    )
    assert core_from_config("OpenBLAS 0.3.21 NO_AFFINITY HASWELL") == "HASWELL"


def test_a_forced_older_core_warns_with_the_variables_and_the_fix():
    v = diagnose(
        "Haswell",
        "avx512",
        {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "2M"},
        command="fastrnn bench --quick",
    )
    assert v.older and v.forced_by == "OPENBLAS_CORETYPE=Haswell" and v.expected == "SkylakeX"
    for text in (
        "Haswell kernels (AVX2)",
        "OPENBLAS_CORETYPE=Haswell",
        "OPENBLAS_L2_SIZE=2M",
        "AVX-512",
        "SkylakeX-class",
        "1.5x slower",
        "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastrnn bench --quick",
    ):
        assert text in v.warning, text
    assert v.fix == "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastrnn bench --quick"
    assert "forced by OPENBLAS_CORETYPE=Haswell" in v.summary()


def test_an_older_core_picked_by_openblas_itself_warns_with_an_upgrade():
    v = diagnose(
        "Sandybridge",
        "avx2",
        {},
        "OpenBLAS 0.3.10 DYNAMIC_ARCH Sandybridge",
        command="fastrnn info",
    )
    assert v.older and v.forced_by is None
    assert "Sandybridge kernels (AVX)" in v.warning and "0.3.10" in v.warning
    assert "pip install -U scipy-openblas32" in v.warning
    assert v.fix == "env OPENBLAS_CORETYPE=Haswell fastrnn info"


def test_a_forced_core_warns_even_when_not_older():
    v = diagnose("SkylakeX", "avx512", {"OPENBLAS_CORETYPE": "skylakex"})
    assert not v.older and "not older" in v.warning and "-u OPENBLAS_CORETYPE" in v.fix
    assert "took it as" not in v.warning  # the same core, in another case
    v = diagnose("Haswell", "avx512", {"OPENBLAS_CORETYPE": "Zen"})
    assert v.older and "OpenBLAS took it as Haswell" in v.warning
    v = diagnose("neoversen1", None, {"OPENBLAS_CORETYPE": "neoversen1"})  # Arm: no levels
    assert not v.older and "forced by OPENBLAS_CORETYPE=neoversen1" in v.warning


def test_the_best_core_unforced_is_quiet():
    for name, cpu in [
        ("SkylakeX", "avx512"),
        ("Cooperlake", "avx512"),
        ("Zen", "avx2"),
        ("neoversen1", None),
        (None, "avx512"),
    ]:
        v = diagnose(name, cpu, {"OPENBLAS_CORETYPE": "", "OPENBLAS_L2_SIZE": "1M"})
        assert v.warning is None and v.fix is None and not v.older, (name, cpu)
        assert v.environment == {"OPENBLAS_L2_SIZE": "1M"}


def test_the_public_function():
    core = fastrnn.blas_core()
    assert core.name and core.name in fastrnn.blas_info()
    assert fastrnn.blas_core().name == core.name  # still a function after the first call


# ----------------------------------------------------------------------------- the commands


@needs_avx512
def test_info_warns_under_a_forced_haswell_core():
    out = run(["info"], clean_env(OPENBLAS_CORETYPE="Haswell", OPENBLAS_L2_SIZE="1048576")).stdout
    print(out)
    assert "BLAS core: Haswell (AVX2 kernels; forced by OPENBLAS_CORETYPE=Haswell" in out
    warning = next(line for line in out.splitlines() if line.startswith("warning: "))
    for text in (
        "Haswell kernels (AVX2)",
        "OPENBLAS_CORETYPE=Haswell",
        "OPENBLAS_L2_SIZE=1048576",
        "AVX-512",
        "SkylakeX-class",
        "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastrnn info",
    ):
        assert text in warning, text


@needs_avx512
def test_check_warns_under_a_forced_haswell_core():
    out = run(
        ["check", "-T", "3", "-B", "2", "-H", "8", "--repeats", "1"],
        clean_env(OPENBLAS_CORETYPE="Haswell"),
    ).stdout
    print(out)
    assert "BLAS core: Haswell" in out.splitlines()[0]
    assert (
        "warning: OpenBLAS runs its Haswell kernels (AVX2), forced by "
        "OPENBLAS_CORETYPE=Haswell" in out
    )
    assert "env -u OPENBLAS_CORETYPE fastrnn check -T 3 -B 2 -H 8 --repeats 1" in out
    assert "OPENBLAS_L2_SIZE" not in out


@needs_avx512
def test_bench_warns_in_its_header_and_json_under_a_forced_haswell_core(tmp_path):
    path = str(tmp_path / "b.json")
    p = run([*BENCH, "--json", path], clean_env(OPENBLAS_CORETYPE="Haswell"))
    head = p.stdout.splitlines()
    print("\n".join(head[:3]))
    assert "; BLAS core Haswell;" in head[0]
    assert head[1].startswith(
        "warning: OpenBLAS runs its Haswell kernels (AVX2), forced by OPENBLAS_CORETYPE=Haswell"
    )
    assert "warning: OpenBLAS runs its Haswell" in p.stderr  # stdout is not a terminal
    doc = json.load(open(path))
    core = doc["blas_core"]
    assert core["name"] == "Haswell" and core["isa_level"] == "avx2" and core["older"]
    assert core["cpu_level"] == "avx512" and core["expected"] == "SkylakeX"
    assert core["forced_by"] == "OPENBLAS_CORETYPE=Haswell"
    assert core["environment"] == {"OPENBLAS_CORETYPE": "Haswell"}
    assert "env -u OPENBLAS_CORETYPE fastrnn bench" in core["fix"]
    assert doc["warnings"] == [core["warning"]] and "SkylakeX-class" in core["warning"]


@needs_x86
def test_without_the_variables_the_core_is_named_and_nothing_warns(tmp_path):
    env = clean_env()
    out = run(["info"], env).stdout
    line = next(line for line in out.splitlines() if line.startswith("BLAS core: "))
    print(line)
    assert "chosen by OpenBLAS" in line and "warning" not in out
    name = line.split()[2]
    assert core_level(name) is not None  # an x86-64 core this module knows
    out = run(["check", "-T", "3", "-B", "2", "-H", "8", "--repeats", "1"], env).stdout
    assert f"BLAS core: {name}" in out and "warning" not in out
    path = str(tmp_path / "b.json")
    p = run([*BENCH, "--json", path], env)
    assert f"; BLAS core {name};" in p.stdout and "warning" not in p.stdout + p.stderr
    doc = json.load(open(path))
    assert doc["blas_core"]["name"] == name and doc["blas_core"]["warning"] is None
    assert doc["blas_core"]["forced_by"] is None and not doc["blas_core"]["older"]
    assert doc["warnings"] == []


@needs_avx512
def test_train_charlm_warns_under_a_forced_haswell_core(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    p = run(
        [
            "train-charlm",
            "--text",
            str(text),
            "--steps",
            "1",
            "--sample-every",
            "0",
            "--hidden",
            "8",
            "--layers",
            "1",
            "--embed",
            "4",
            "--batch",
            "2",
            "--seq-len",
            "4",
        ],
        clean_env(OPENBLAS_CORETYPE="Haswell"),
    )
    assert "warning: OpenBLAS runs its Haswell kernels (AVX2)" in p.stderr
    assert "env -u OPENBLAS_CORETYPE fastrnn train-charlm --text" in p.stderr
