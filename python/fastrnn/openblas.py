"""Which OpenBLAS core (kernel family) fastrnn's GEMMs run on, and whether that is slower than
this CPU allows.

fastrnn's BLAS, scipy-openblas32, is a DYNAMIC_ARCH build: when it loads, it picks the kernels
of one CPU family ("core": Haswell, SkylakeX, ...) for the CPU it finds, unless
``OPENBLAS_CORETYPE`` in the environment forces one (``OPENBLAS_L2_SIZE`` sets the cache size
its blocking assumes). A forced core older than the CPU runs older kernels: LSTM training at
T=100, B=64, H=512 ran 1.5x slower on Haswell's (AVX2) than on SkylakeX's on an AVX-512 CPU.
:func:`blas_core` says which core runs, whether the environment forced it, what this CPU
supports, and, where something is off, a warning with the fix; ``fastrnn info``, ``check``,
``bench`` and ``train-charlm`` print it (``fastrnn.blas_core()`` is the public entry).

The core's name comes from OpenBLAS itself (``scipy_openblas_get_corename``), else from the
core field of its configuration string (``fastrnn.blas_info()``). The CPU's instruction sets
come from /proc/cpuinfo (Linux), else from the CPU kernels' own detection. The judgement
"older than this CPU supports" is made on x86-64 (SSE < AVX < AVX2 < AVX-512); elsewhere only
a forced core is reported. OpenBLAS reads the variables when it loads (``import fastrnn``):
they are read here from the environment at the time of the call, which is the same unless the
program changed them since.
"""

from __future__ import annotations

import os
import platform
import shlex
from dataclasses import asdict, dataclass, field
from typing import Dict, FrozenSet, Mapping, Optional

__all__ = [
    "BlasCore",
    "blas_core",
    "diagnose",
    "ENV_VARS",
    "cpu_flag_set",
    "cpu_level",
    "core_level",
]

CORETYPE, L2_SIZE = "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"
ENV_VARS = (CORETYPE, L2_SIZE)

# x86-64 instruction-set levels of OpenBLAS's kernels, oldest first, and their names.
LEVELS = ("sse", "avx", "avx2", "avx512")
LEVEL_NAMES = {"sse": "SSE", "avx": "AVX", "avx2": "AVX2", "avx512": "AVX-512"}
# The core OpenBLAS has for each level (the one to force where it picked an older one).
LEVEL_CORE = {"sse": "Nehalem", "avx": "Sandybridge", "avx2": "Haswell", "avx512": "SkylakeX"}

# OpenBLAS's x86-64 core names (lower case) -> the level of their single-precision kernels.
_CORE_LEVELS = {
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids"), "avx512"),
    **dict.fromkeys(("haswell", "zen", "excavator"), "avx2"),
    **dict.fromkeys(("sandybridge", "bulldozer", "piledriver", "steamroller"), "avx"),
    **dict.fromkeys(
        (
            "katmai",
            "coppermine",
            "northwood",
            "prescott",
            "banias",
            "core2",
            "penryn",
            "dunnington",
            "nehalem",
            "atom",
            "athlon",
            "opteron",
            "opteron_sse3",
            "barcelona",
            "bobcat",
            "nano",
        ),
        "sse",
    ),
}

# Where a forced core made the difference this module exists for.
MEASURED = (
    "e.g. LSTM training at T=100, B=64, H=512 was measured 1.5x slower on Haswell's "
    "kernels than on SkylakeX's, on an AVX-512 CPU"
)


@dataclass(frozen=True)
class BlasCore:
    """The OpenBLAS core in use and what to make of it.

    - ``name``: the core OpenBLAS runs ("SkylakeX"), None if it cannot be told;
    - ``isa_level``: the instruction sets of its kernels ("sse", "avx", "avx2", "avx512"),
      None for a core this module does not know (non-x86 ones);
    - ``cpu_level``: the best level this CPU supports, None where unknown (non-x86);
    - ``expected``: the core OpenBLAS has for ``cpu_level`` ("SkylakeX" for AVX-512: a
      SkylakeX-class core; Cooperlake and SapphireRapids are of that class too);
    - ``forced_by``: "OPENBLAS_CORETYPE=<value>" where the environment forces the core;
    - ``environment``: those of OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE that are set;
    - ``older``: whether the core's kernels are older than what the CPU supports;
    - ``warning``: what is wrong and why it matters, None if nothing is; ``fix``: what to do.
    """

    name: Optional[str]
    isa_level: Optional[str]
    cpu_level: Optional[str]
    expected: Optional[str]
    forced_by: Optional[str]
    environment: Dict[str, str] = field(default_factory=dict)
    older: bool = False
    warning: Optional[str] = None
    fix: Optional[str] = None
    config: str = ""

    def summary(self) -> str:
        """One line: the core, its kernels, who chose it, and what this CPU supports."""
        parts = [
            f"{LEVEL_NAMES[self.isa_level]} kernels" if self.isa_level else None,
            f"forced by {self.forced_by}" if self.forced_by else "chosen by OpenBLAS",
        ]
        if L2_SIZE in self.environment:
            parts.append(f"{L2_SIZE}={self.environment[L2_SIZE]}")
        if self.cpu_level:
            cpu = f"this CPU: {LEVEL_NAMES[self.cpu_level]}"
            if self.older:
                cpu += f", a {self.expected}-class core expected"
            parts.append(cpu)
        return f"{self.name or 'unknown'} ({'; '.join(p for p in parts if p)})"

    def as_dict(self) -> dict:
        return asdict(self)


def cpu_flag_set() -> FrozenSet[str]:
    """This CPU's feature flags from /proc/cpuinfo ("flags" on x86, "Features" on Arm); empty
    where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next(line for line in f if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        return frozenset()
    return frozenset(line.split(":", 1)[1].split())


def cpu_level(flags: FrozenSet[str]) -> Optional[str]:
    """The best x86-64 level in `flags` (AVX-512 as fastrnn's own kernels require it: F, BW,
    VL and DQ); None for flags of another architecture, or none."""
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    if "avx" in flags:
        return "avx"
    if "sse2" in flags:
        return "sse"
    return None


def core_level(name: Optional[str]) -> Optional[str]:
    """The level of an OpenBLAS x86-64 core's kernels; None for a core not known here."""
    return _CORE_LEVELS.get(name.lower()) if name else None


def _this_cpu_level() -> Optional[str]:
    level = cpu_level(cpu_flag_set())
    if level is None and platform.machine().lower() in ("x86_64", "amd64"):
        import fastrnn  # no /proc/cpuinfo: what the CPU kernels' detection found

        isas = fastrnn.available_cpu_isas()
        level = "avx512" if "avx512" in isas else "avx2" if "avx2" in isas else None
    return level


def _core_from_library() -> Optional[str]:
    """OpenBLAS's own name for its core, from the library fastrnn loaded (scipy-openblas32)."""
    import ctypes

    try:
        import scipy_openblas32

        lib_dir = scipy_openblas32.get_lib_dir()
        names = sorted(
            n
            for n in os.listdir(lib_dir)
            if n.startswith("libscipy_openblas") and (".so" in n or n.endswith((".dylib", ".dll")))
        )
        if not names:
            return None
        lib = ctypes.CDLL(os.path.join(lib_dir, names[0]))  # the copy already loaded
    except (ImportError, OSError):
        return None
    for symbol in ("scipy_openblas_get_corename", "openblas_get_corename"):
        fn = getattr(lib, symbol, None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            name = fn()
            return name.decode() if name else None
    return None


def core_from_config(config: str) -> Optional[str]:
    """The core field of OpenBLAS's configuration string ("OpenBLAS 0.3.34 DYNAMIC_ARCH
    NO_AFFINITY SkylakeX MAX_THREADS=64"): the word before MAX_THREADS=, else the last one
    without "=" after the version."""
    words = config.split()
    for i, w in enumerate(words):
        if w.startswith("MAX_THREADS=") and i > 2:
            return words[i - 1]
    rest = [w for w in words[2:] if "=" not in w]
    return rest[-1] if rest else None


def diagnose(
    name: Optional[str],
    cpu: Optional[str],
    environ: Mapping[str, str],
    config: str = "",
    command: str = "<your command>",
) -> BlasCore:
    """The verdict on core `name` on a CPU of level `cpu` with the environment `environ`;
    `command` is the command line the fix shows."""
    env = {k: environ[k] for k in ENV_VARS if environ.get(k)}
    forced = env.get(CORETYPE)
    level = core_level(name)
    older = bool(level and cpu and LEVELS.index(level) < LEVELS.index(cpu))
    expected = LEVEL_CORE.get(cpu) if cpu else None
    runs = f"OpenBLAS runs its {name} kernels" + (f" ({LEVEL_NAMES[level]})" if level else "")
    slower = (
        (
            f"this CPU has {LEVEL_NAMES[cpu]}, for which OpenBLAS has {expected}-class "
            f"kernels: fastrnn's GEMMs run on older, slower ones ({MEASURED})"
        )
        if older
        else ""
    )
    warning = fix = None
    if forced:
        said = f"{CORETYPE}={forced}" + (
            f" (and {L2_SIZE}={env[L2_SIZE]})" if L2_SIZE in env else ""
        )
        took = (
            ""
            if name and name.lower() == forced.lower()
            else f" (OpenBLAS took it as {name})"
            if name
            else ""
        )
        unset = [k for k in ENV_VARS if k in env]
        fix = "env " + " ".join(f"-u {k}" for k in unset) + f" {command}"
        if older:
            warning = f"{runs}, forced by {said} in the environment{took}, though {slower}."
        elif level and cpu:
            warning = (
                f"{runs}, forced by {said} in the environment{took}; not older than this "
                f"CPU supports, but on another machine the same setting may force a core "
                f"older than its CPU and slow fastrnn down."
            )
        else:
            warning = (
                f"the BLAS core is forced by {said} in the environment{took} instead of "
                f"the one OpenBLAS picks for this CPU, which may be faster."
            )
        warning += f" Fix: unset {' and '.join(unset)} for this command: {fix}"
    elif older:
        words = config.split()
        version = f" ({words[1]})" if len(words) > 1 and words[0] == "OpenBLAS" else ""
        fix = f"env {CORETYPE}={expected} {command}"
        warning = (
            f"{runs}, though {slower}. This OpenBLAS{version} picked that core itself: "
            f"it may not know this CPU, or a virtual machine may hide the CPU's "
            f"identity from it. Fix: upgrade it (pip install -U scipy-openblas32), "
            f"or force the core for this command: {fix}"
        )
    return BlasCore(
        name=name,
        isa_level=level,
        cpu_level=cpu,
        expected=expected,
        forced_by=f"{CORETYPE}={forced}" if forced else None,
        environment=env,
        older=older,
        warning=warning,
        fix=fix,
        config=config,
    )


def blas_core(command: Optional[str] = None) -> BlasCore:
    """The OpenBLAS core fastrnn's GEMMs run on, and a warning (with the fix) where the
    environment forces it (OPENBLAS_CORETYPE) or it is older than this CPU supports.
    `command`: the command line the fix should show (default: "<your command>")."""
    from fastrnn import _C

    config = _C.blas_info()
    name = _core_from_library() or core_from_config(config)
    return diagnose(name, _this_cpu_level(), os.environ, config, command or "<your command>")


def command_line(argv) -> str:
    """`fastrnn` and its arguments, quoted for a shell: the command a fix shows."""
    return " ".join(["fastrnn", *(shlex.quote(a) for a in argv)])
