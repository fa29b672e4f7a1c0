"""The layout of `bench/`: every module imports, and its import graph (read with `ast`, imports
inside functions included) has no cycle."""
import ast
import importlib
import pkgutil

import pytest

from conftest import ROOT

import bench


def bench_modules():
    """Every module of the `bench` package, by dotted name (`__main__` runs the CLI: left out)."""
    names = ["bench"] + [m.name for m in pkgutil.walk_packages(bench.__path__, "bench.")]
    return [n for n in names if not n.endswith("__main__")]


def module_path(name: str):
    path = ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports_of(name: str, known) -> set:
    """The `bench` modules that module `name` imports anywhere in its text: `from bench.x import
    y` counts as importing `bench.x.y` where that is a module, else `bench.x`."""
    tree = ast.parse(module_path(name).read_text(encoding="utf-8"))
    package = name if module_path(name).name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:      # relative: resolved against the importing package
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict:
    known = set(bench_modules())
    return {name: imports_of(name, known) for name in sorted(known)}


def find_cycle(graph: dict):
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


@pytest.mark.parametrize("name", bench_modules())
def test_every_bench_module_imports(name):
    importlib.import_module(name)


def test_bench_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "bench.parity.runner" in graph["bench.cli.parity"]      # a lazy import, in cmd_parity
    assert "bench.cli.main" in graph["bench.cli"]


def test_argument_types_live_in_argtypes_only():
    """Only `bench/cli/argtypes.py` defines argparse types (functions raising ArgumentTypeError)."""
    where = [name for name in bench_modules() if name != "bench.cli.argtypes"
             and "ArgumentTypeError" in module_path(name).read_text(encoding="utf-8")]
    assert where == []
