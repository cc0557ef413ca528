"""The package's modules import one another without cycles: an import graph built from the
source (every import statement, at module level or inside a function, resolved to the
package's own modules) is acyclic. Imports of the top-level package ``fastrnn`` itself (its
``__init__``, which every module may read attributes of) are left out; a subpackage's
``__init__`` is a node like any module. Also, in fresh interpreters: importing the benchmark
suite does not import the command line, and importing the command line does not import the
suite (it loads it only to run or describe ``fastrnn bench``)."""

import ast
import pathlib
import subprocess
import sys

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "python" / "fastrnn"
ROOT = "fastrnn"


def module_names():
    """Dotted name -> (path, is_package) for every .py file of the package."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = (ROOT,) + path.relative_to(PKG).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def imports_of(name, path, is_pkg, modules):
    """The package modules that `name` imports, anywhere in its source."""
    here = name if is_pkg else name.rpartition(".")[0]
    found = set()

    def add(target):
        # the deepest known module on the dotted path (a name imported from a module is that
        # module); the top-level package is not an edge
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != ROOT and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base != ROOT and not base.startswith(ROOT + "."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base)
    return found


def import_graph():
    modules = module_names()
    return {
        name: imports_of(name, path, is_pkg, modules) for name, (path, is_pkg) in modules.items()
    }


def find_cycle(graph):
    """A cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m) :] + [m]
            if m not in state:
                cycle = visit(m)
                if cycle:
                    return cycle
        stack.pop()
        state[n] = "done"
        return None

    for n in sorted(graph):
        if n not in state:
            cycle = visit(n)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_the_imports_that_matter():
    g = import_graph()
    assert "fastrnn.bench" in g["fastrnn.cli"]  # a lazy import, inside a function
    assert "fastrnn.bench.suite" in g["fastrnn.bench"]
    assert "fastrnn.errors" in g["fastrnn.bench.suite"] and "fastrnn.errors" in g["fastrnn.cli"]
    assert "fastrnn.cell_spec" in g["fastrnn.bench.peers"]


def test_the_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "module,absent", [("fastrnn.bench", "fastrnn.cli"), ("fastrnn.cli", "fastrnn.bench")]
)
def test_bench_and_cli_load_apart(module, absent):
    code = f"import sys, {module}; print({absent!r} in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"
