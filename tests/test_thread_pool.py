"""fastrnn's thread pool (csrc/cpu/thread_pool.cpp) when a part of a job throws: the first
exception reaches the caller as a Python error once every part has ended, the process lives
on and the pool keeps working. The parts throw through fastrnn._testing.parallel_for_throwing,
a job on the pool that _C's kernels use. A pool that let the exception escape a worker thread
would end the process (std::terminate), so each case first runs in a subprocess."""

import functools
import subprocess
import sys

import pytest

import fastrnn
from fastrnn import _testing

CASES = """
import numpy as np
import fastrnn
from fastrnn import _testing

def check(threads):
    fastrnn.set_num_threads(threads)
    try:
        n = threads  # one item per part
        for throw_at in (0, n - 1, -1):  # the caller's part, the last worker's, every part
            try:
                _testing.parallel_for_throwing(n, throw_at)
            except OverflowError as e:
                # Rethrown once every part has ended (the others take 20 ms).
                assert str(e).endswith("items unfinished when it arrived: 0"), str(e)
            else:
                raise AssertionError(f"part holding item {throw_at}: no error")
        assert _testing.parallel_for_throwing(n, -2) == n  # nothing throws
        # The kernels still run on the pool.
        rng = np.random.default_rng(threads)
        x, w_ih, w_hh = (rng.standard_normal(s) for s in [(5, 64, 8), (32, 8), (32, 8)])
        got = fastrnn.ops.lstm_forward(x, None, None, w_ih, w_hh, None, None)[0]
        want = fastrnn.reference.lstm_forward(x, None, None, w_ih, w_hh, None, None)[0]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    finally:
        fastrnn.set_num_threads(0)
"""


@functools.lru_cache(maxsize=None)
def survives_in_subprocess(threads: int) -> subprocess.CompletedProcess:
    code = CASES + f"\ncheck({threads})\nprint('survived')\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("threads", [2, 3])
def test_exception_in_a_part_reaches_the_caller(threads):
    p = survives_in_subprocess(threads)
    assert p.returncode == 0 and p.stdout.strip() == "survived", (
        f"exit status {p.returncode}\n{p.stdout}\n{p.stderr[-3000:]}"
    )


def test_in_this_process():
    """The same in the test process, once the subprocess has shown it cannot end it."""
    if survives_in_subprocess(2).returncode != 0:
        pytest.fail("the pool ends the process: see test_exception_in_a_part_reaches_the_caller")
    scope = {}
    exec(CASES, scope)
    scope["check"](2)
    assert fastrnn.get_num_threads() >= 1


def test_one_thread_runs_the_part_itself():
    fastrnn.set_num_threads(1)
    try:
        with pytest.raises(OverflowError, match="part \\[0, 3\\) threw"):
            _testing.parallel_for_throwing(3, 1)
        assert _testing.parallel_for_throwing(3, -2) == 3
    finally:
        fastrnn.set_num_threads(0)
