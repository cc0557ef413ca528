"""Runs an installed fastrnn as a user would, through its `fastrnn` command: `fastrnn check`
at a small size (every cell's forward and backward against the NumPy reference; fails unless
each max relative error is below 1e-4) and `fastrnn info`.

Run it from outside the source tree, so that the installed package is what is imported.
cibuildwheel's test-command and scripts/check_wheel.sh call it.
"""

import os
import shutil
import subprocess
import sys
import sysconfig

CHECK = ["check", "-T", "6", "-B", "3", "-H", "24", "--repeats", "1"]
CELLS = ("lstm", "gru", "rnn")
TOLERANCE = 1e-4


def fastrnn_command() -> list:
    """The `fastrnn` console script installed beside this Python."""
    exe = shutil.which("fastrnn", path=sysconfig.get_path("scripts"))
    if exe is None:
        sys.exit(f"smoke_test: no `fastrnn` command in {sysconfig.get_path('scripts')}")
    return [exe]


def run(args: list) -> str:
    print("$ fastrnn " + " ".join(args), flush=True)
    p = subprocess.run(fastrnn_command() + args, capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        sys.exit(f"smoke_test: `fastrnn {' '.join(args)}` exited with status {p.returncode}")
    return p.stdout


def main() -> int:
    source_tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if (
        os.path.abspath(os.getcwd()).startswith(source_tree + os.sep)
        or os.path.abspath(os.getcwd()) == source_tree
    ):
        sys.exit("smoke_test: run this from outside the source tree")
    out = run(CHECK)
    for cell in CELLS:
        line = next((ln for ln in out.splitlines() if ln.split()[:1] == [cell]), None)
        if line is None:
            sys.exit(f"smoke_test: `fastrnn check` printed no line for {cell}")
        err = float(line.split()[1])
        if not err < TOLERANCE:
            sys.exit(f"smoke_test: {cell}: max relative error {err:g} >= {TOLERANCE:g}")
    info = run(["info"])
    if "backend cpu: available" not in info:
        sys.exit("smoke_test: `fastrnn info` does not report the CPU backend available")
    print("smoke_test: fastrnn check and fastrnn info passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
