"""No leaks: 10^4 forward + backward calls (layers, ops, and calls that raise) leave the
resident memory flat and the reference counts of the arrays passed in unchanged.

The calls run in a process of their own (tests/leak_check.py, which describes the cases),
so that nothing else this test session allocates moves VmRSS. Measured here: ~0.4 MiB of
growth from call 1000 to call 10000, against the bound of 10 MiB. For a sense of scale, a
leak of one buffer of >= 6 KiB per call of any one case (each case gets 1800 calls after
the warm-up) exceeds the bound; keeping each LSTM saved state alive grows VmRSS by ~420 MiB;
and any Python reference kept per call shows in the reference counts exactly.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CALLS, WARMUP = 10_000, 1_000
BOUND_KIB = 10 * 1024


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.exists("/proc/self/status"),
    reason="reads VmRSS from /proc/self/status (Linux)",
)
def test_repeated_calls_do_not_leak():
    p = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "leak_check.py"),
            "--calls",
            str(CALLS),
            "--warmup",
            str(WARMUP),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(HERE),
    )
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    print(json.dumps(r, indent=1))
    assert r["refcount_growth"] == {}, (
        f"arrays passed in gained references over {CALLS - WARMUP} calls: {r['refcount_growth']}"
    )
    assert r["growth_kib"] < BOUND_KIB, (
        f"VmRSS grew by {r['growth_kib']} KiB from call {WARMUP} to call {CALLS} "
        f"(bound {BOUND_KIB} KiB): {r['rss_kib']}"
    )
