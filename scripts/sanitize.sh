#!/usr/bin/env bash
# The kernel tests under AddressSanitizer and UndefinedBehaviorSanitizer.
#
# Builds fastrnn with -Ccmake.define.FASTRNN_SANITIZE=ON (every C++ target of CMakeLists.txt,
# whatever modules it defines, compiled and linked with -fsanitize=address,undefined) into its
# own build directory and venv, CPU only (FASTRNN_CUDA=OFF; the CUDA backend's host code is
# still tested, on the emulated device), then runs the kernel tests with the sanitizer
# runtimes preloaded into the uninstrumented Python. Any ASan or UBSan report fails the run.
#
# Usage: scripts/sanitize.sh [PYTEST_ARGS...]   (default: the kernel test files that exist)
# FASTRNN_SANITIZE_DIR: where the build and venv go (default: build/sanitize in the tree).
# PYTHON: the interpreter (default: python3); its site-packages must hold, or pip must be
# able to fetch, numpy, pytest and the build requirements.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="${FASTRNN_SANITIZE_DIR:-$ROOT/build/sanitize}"
CXX_FOR_RUNTIME="${CXX:-c++}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
T_START=$SECONDS

# The sanitizer runtimes of the compiler that builds the extension.
LIBASAN="$("$CXX_FOR_RUNTIME" -print-file-name=libasan.so)"
LIBUBSAN="$("$CXX_FOR_RUNTIME" -print-file-name=libubsan.so)"
for lib in "$LIBASAN" "$LIBUBSAN"; do
  if [ ! -e "$lib" ]; then
    echo "sanitize: $CXX_FOR_RUNTIME has no $(basename "$lib") (install the compiler's sanitizer runtimes)" >&2
    exit 1
  fi
done

# A venv of its own, on top of the environment's packages (numpy, pytest, the build tools),
# so this build never replaces the fastrnn installed there.
if [ ! -x "$WORK/venv/bin/python" ]; then
  "$PYTHON" -m venv --system-site-packages "$WORK/venv"
fi
VPY="$WORK/venv/bin/python"
BUILD_REQS="$("$PYTHON" - "$ROOT/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
requires = re.search(r"^requires\s*=\s*\[(.*?)\]", text, re.M | re.S).group(1)
print(" ".join(re.findall(r'"([^"]+)"', requires)))
EOF
)"
# shellcheck disable=SC2086  # requirement strings without spaces
"$VPY" -m pip install -q $BUILD_REQS numpy pytest hypothesis

echo "sanitize: building with FASTRNN_SANITIZE=ON in $WORK/build"
T_BUILD=$SECONDS
FASTRNN_CUDA=OFF "$VPY" -m pip install -q --no-build-isolation --no-deps --force-reinstall \
  -Cbuild-dir="$WORK/build" -Ccmake.build-type=Debug \
  -Ccmake.define.FASTRNN_SANITIZE=ON -Ccmake.define.FASTRNN_CUDA=OFF "$ROOT"
echo "sanitize: build took $((SECONDS - T_BUILD)) s"

# Every extension module the build installed must carry the sanitizers.
PKG="$("$VPY" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("fastrnn").origin))')"
for so in "$PKG"/*.so; do
  dyn="$(readelf -d "$so")"
  for runtime in libasan libubsan; do
    if ! grep -q "NEEDED.*$runtime" <<<"$dyn"; then
      echo "sanitize: $(basename "$so") is not linked with $runtime" >&2
      exit 1
    fi
  done
  echo "sanitize: $(basename "$so"): ASan + UBSan"
done

if [ "$#" -eq 0 ]; then
  set --
  for t in test_kernels test_bad_input test_reference test_layers test_cells test_cuda \
    test_thread_pool test_kernel_bindings test_packed test_fuzz test_extras_kernels test_bf16 \
    test_reference_extras test_layers_regularization; do
    if [ -f "$ROOT/tests/$t.py" ]; then set -- "$@" "tests/$t.py"; fi
  done
fi

# CPython frees much of what it allocates only at exit, or never: leak reports are off.
# Some tests ask for more memory than there is, to check the MemoryError: with
# allocator_may_return_null the allocation fails as it would without ASan. Every ASan and
# UBSan finding stops the run, with a stack trace. pytest --capture=sys leaves file
# descriptor 2 alone, so a report written just before the process dies is not swallowed.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:print_summary=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export FASTRNN_CUDA=OFF  # tests/test_cuda.py: no CUDA module was meant to be built
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:print_summary=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
LOG="$WORK/pytest.log"
echo "sanitize: running $* under ASan + UBSan (log: $LOG)"
T_TEST=$SECONDS
cd "$ROOT"
set +e
LD_PRELOAD="$LIBASAN $LIBUBSAN${LD_PRELOAD:+ $LD_PRELOAD}" \
  "$VPY" -m pytest -q --capture=sys -p no:cacheprovider "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
echo "sanitize: tests took $((SECONDS - T_TEST)) s; total $((SECONDS - T_START)) s"
if grep -qE 'ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer' "$LOG"; then
  echo "sanitize: FAILED: sanitizer findings above" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize: FAILED: pytest exited with status $status" >&2
  exit "$status"
fi
echo "sanitize: passed, no ASan or UBSan finding"
