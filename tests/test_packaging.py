"""What pyproject.toml, CMakeLists.txt and CI promise about packaging: one version, one BLAS
floor, py.typed in the package, CPU-only wheels that leave the BLAS to scipy-openblas32, and
both styles of scipy-openblas32's CMake config accepted. (scripts/check_wheel.sh builds and
runs the wheel itself; CI runs it.)"""

import importlib.metadata
import importlib.resources
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import fastrnn

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text()

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")


def config() -> dict:
    return tomllib.loads(PYPROJECT)


def test_version_is_written_once():
    project = config()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("fastrnn") == fastrnn.__version__


def test_one_blas_floor_for_build_and_run():
    def floors(reqs):
        return [r for r in reqs if r.replace(" ", "").startswith("scipy-openblas32")]

    build = floors(config()["build-system"]["requires"])
    run = floors(config()["project"]["dependencies"])
    assert build == run and len(build) == 1 and re.fullmatch(r"scipy-openblas32>=[\d.]+", build[0])


def test_py_typed_is_in_the_package():
    assert (importlib.resources.files("fastrnn") / "py.typed").is_file()


def test_wheels_are_cpu_only_and_checked_by_running_fastrnn():
    cibw = config()["tool"]["cibuildwheel"]
    for table in (cibw, *(cibw[p] for p in ("linux", "macos", "windows"))):
        if "environment" in table:
            assert table["environment"]["FASTRNN_CUDA"] == "OFF"
    assert "smoke_test.py" in cibw["test-command"]
    assert set(cibw["linux"]["archs"]) == {"x86_64", "aarch64"}
    assert set(cibw["macos"]["archs"]) == {"x86_64", "arm64"}
    assert cibw["windows"]["archs"] == ["AMD64"]
    for platform in ("linux", "macos", "windows"):
        assert "scipy_openblas" in cibw[platform]["repair-wheel-command"]
    smoke = (ROOT / "scripts" / "smoke_test.py").read_text()
    assert '"check", "-T"' in smoke and '["info"]' in smoke


def test_ci_runs_the_readme_command_first_then_the_wheel_and_sanitizer_checks():
    lines = [
        ln
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    commands = [ln for ln in lines if not ln.startswith(("set ", "cd "))]
    readme_test = re.findall(r"```bash\n(.*?)\s+#", (ROOT / "README.md").read_text())[1]
    assert commands[0] == readme_test
    assert commands.index("bash scripts/check_wheel.sh") > 0
    assert commands.index("bash scripts/sanitize.sh") > 0


# ---- CMakeLists.txt against scipy-openblas32's two styles of CMake config


OLD_CONFIG = """SET(OpenBLAS_VERSION "0.3.26")
SET(OpenBLAS_INCLUDE_DIRS /usr/local/include)
SET(OpenBLAS_LIBRARIES /usr/local/lib/libscipy_openblas.so)
"""

NEW_CONFIG = """SET(OpenBLAS_VERSION "0.3.31.188.0")
file(REAL_PATH "../../.." _root BASE_DIRECTORY ${CMAKE_CURRENT_LIST_DIR})
SET(OpenBLAS_INCLUDE_DIRS ${_root}/include)
SET(OpenBLAS_LIBRARIES ${_root}/lib/libscipy_openblas.so)
if(NOT TARGET OpenBLAS::OpenBLAS)
  add_library(OpenBLAS::OpenBLAS SHARED IMPORTED)
  target_include_directories(OpenBLAS::OpenBLAS INTERFACE ${OpenBLAS_INCLUDE_DIRS})
  set_property(TARGET OpenBLAS::OpenBLAS PROPERTY IMPORTED_LOCATION ${OpenBLAS_LIBRARIES})
endif()
"""


def fake_scipy_openblas32(root: pathlib.Path, cmake_config: str) -> pathlib.Path:
    """A scipy_openblas32 package with the given CMake config (files only: CMake's configure
    step reads no library)."""
    pkg = root / "scipy_openblas32"
    (pkg / "lib" / "cmake" / "openblas").mkdir(parents=True)
    (pkg / "include").mkdir()
    (pkg / "__init__.py").write_text(
        "import os\n_HERE = os.path.dirname(os.path.abspath(__file__))\n"
        "def get_lib_dir():\n    return os.path.join(_HERE, 'lib')\n"
        "def get_include_dir():\n    return os.path.join(_HERE, 'include')\n"
    )
    (pkg / "lib" / "cmake" / "openblas" / "OpenBLASConfig.cmake").write_text(cmake_config)
    (pkg / "lib" / "libscipy_openblas.so").write_bytes(b"")
    (pkg / "include" / "cblas.h").write_text("")
    return pkg


@pytest.mark.parametrize("style,cmake_config", [("old", OLD_CONFIG), ("new", NEW_CONFIG)])
def test_cmake_accepts_both_openblas_config_styles(tmp_path, style, cmake_config):
    cmake = shutil.which("cmake")
    pybind11 = pytest.importorskip("pybind11")
    if cmake is None:
        pytest.skip("cmake is not installed")
    pkg = fake_scipy_openblas32(tmp_path / "site", cmake_config)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), FASTRNN_CUDA="OFF")
    args = [
        cmake,
        "-S",
        str(ROOT),
        "-B",
        str(tmp_path / "build"),
        "-DFASTRNN_CUDA=OFF",
        f"-DPython_EXECUTABLE={sys.executable}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
    ]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    lib = pkg / "lib" / "libscipy_openblas.so"
    include = pkg / "include"
    assert "fastrnn: BLAS = scipy-openblas32 " in p.stdout, p.stdout
    assert f": {lib}, headers in {include}\n" in p.stdout, p.stdout
