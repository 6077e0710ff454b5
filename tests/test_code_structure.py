"""Imports flow one way (issue 16): no import cycle inside paddle_dcn (imports inside functions
count too), and the layers below the engine (ops, layers, models, data) import nothing from
it. Read from the source with ast, so nothing is imported."""
import ast
import os

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PACKAGE = "paddle_dcn"


def _modules() -> dict:
    found = {}
    for directory, _, files in os.walk(os.path.join(REPO, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                found[module[: -len(".__init__")] if module.endswith(".__init__") else module] = path
    return found


def _imports(module: str, path: str, modules: dict) -> set:
    """paddle_dcn modules that ``module`` imports anywhere in its file."""
    base = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
    names = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names += [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
    out = set()
    for name in names:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in modules and name != module:
            out.add(name)
    return out


@pytest.fixture(scope="module")
def graph() -> dict:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def find_cycle(graph: dict):
    """One import cycle of ``graph`` (``module -> set of modules``) as a list, or None."""
    state = {}

    def visit(module, stack):
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, stack + [dep])
                if found:
                    return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"deploy": {"det_deploy"}, "det_deploy": {"deploy"}}) == ["deploy", "det_deploy", "deploy"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("below", ["ops", "layers", "models", "data"])
def test_lower_parts_do_not_import_the_engine(graph, below):
    offenders = {m: sorted(d for d in deps if d.startswith(f"{PACKAGE}.engine"))
                 for m, deps in graph.items() if m.startswith(f"{PACKAGE}.{below}")}
    assert not {m: d for m, d in offenders.items() if d}
