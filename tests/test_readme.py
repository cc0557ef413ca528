"""The README's commands are what CI runs and what a new user types."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```bash\n(.*?)\s+#", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    test_command = readme_commands()[1]
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_main_job_is_the_charlm_and_check_runs():
    first = readme_commands()[0]
    assert first.startswith("pip install . && fastrnn train-charlm")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastrnn",
            "check",
            "-T",
            "3",
            "-B",
            "2",
            "-H",
            "8",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    print(out)
    for cell in ("lstm", "gru", "rnn"):
        line = next(l for l in out.splitlines() if l.startswith(cell))
        assert float(line.split()[1]) < 1e-4  # max relative error against the reference


def test_readme_python_examples_run():
    """Every python block of the README runs, in order, in one namespace."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 3
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
