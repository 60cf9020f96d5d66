"""The package's layers, read from the import statements (ast, no imports executed).

Bottom to top (docs/internals.md): ``specs``, ``paths``, ``seed`` and ``live`` import nothing from
optnb; ``theory`` <- ``models``; ``data`` beside them; ``train`` (the one loop) uses models and
data; ``nas`` uses models, theory and the loop; ``widgets`` are the notebooks' explorers over
theory; ``teach`` (the exercises and their grading) sits beside ``experiments`` (and ``info``),
above all of those; ``cli`` and the notebooks on top.
Fails on an import against that order, on any import cycle between modules, and on an import of
an optnb module inside a function that does not say why it is deferred.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "optnb"
BASE = ("specs", "paths", "seed", "live", "atomic", "devices")
#: layer -> the layers its modules may import (besides their own)
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "theory": {"base"},
    "models": {"base", "theory"},
    "data": {"base"},
    "train": {"base", "theory", "models", "data"},
    "nas": {"base", "theory", "models", "data", "train"},
    "widgets": {"base", "theory", "models", "data", "train"},
    "teach": {"base", "theory", "models", "data", "train", "nas", "widgets"},
    "experiments": {"base", "theory", "models", "data", "train", "nas", "widgets"},
    "cli": {"base", "theory", "models", "data", "train", "nas", "widgets", "experiments", "teach"},
    "top": {"cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "top"
    head = parts[1]
    if head in BASE:
        return "base"
    if head == "info":
        return "experiments"
    return head


def resolve(node: ast.ImportFrom | ast.Import, module: str) -> Iterator[str]:
    """The optnb modules an import statement loads (``from pkg import sub`` -> ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name.split(".")[0] == "optnb")
        return
    assert not node.level, f"{module}: relative import; optnb uses absolute imports only"
    base = node.module or ""
    if base.split(".")[0] != "optnb":
        return
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        yield candidate if candidate in MODULES else base


def imports(module: str) -> Iterator[tuple[str, ast.stmt, int | None]]:
    """``(imported module, statement, first line of the enclosing function or None)`` for every
    optnb import of ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    inner.function_line = node.lineno  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in resolve(node, module):
                yield target, node, getattr(node, "function_line", None)


GRAPH = {m: sorted({t for t, _, _ in imports(m) if t != m}) for m in MODULES}


def test_every_module_is_in_a_known_layer():
    unknown = sorted(m for m in MODULES if layer(m) not in ALLOWED)
    assert not unknown, f"modules outside every layer (add them to ALLOWED): {unknown}"


def test_imports_follow_the_layers():
    bad = violations(GRAPH)
    assert not bad, f"imports against the layer order ({sorted(ALLOWED.items())}): {bad}"


def test_base_modules_import_nothing_from_optnb():
    for module in MODULES:
        if layer(module) == "base":
            assert not GRAPH[module], f"{module} imports {GRAPH[module]}"


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle of ``graph`` (a back edge of a depth-first search) as a list of nodes, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_import_cycles():
    """Deferred imports included: a cycle is a design problem even when it works at run time."""
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def violations(graph: dict[str, list[str]]) -> list[str]:
    """Every import against the layer order in ``graph``."""
    return [f"{m} -> {t}" for m, targets in graph.items() for t in targets
            if layer(t) != layer(m) and layer(t) not in ALLOWED[layer(m)]]


def test_deferred_imports_say_why():
    """An optnb import inside a function is allowed only with a comment in that function, before
    the import, saying why it is deferred (e.g. to keep ``optnb --help`` from loading torch)."""
    unexplained = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for _, node, function_line in imports(module):
            if function_line is None:
                continue
            before = " ".join(lines[function_line - 1: node.lineno]).lower()
            if "# deferred" not in before:
                unexplained.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not unexplained, f"function-level optnb imports without a 'deferred' comment: {unexplained}"


def test_the_checker_sees_a_cycle_and_a_wrong_direction():
    """The rules above can fail: a planted cycle and a planted upward import are both found."""
    node = ast.parse("from optnb.experiments import resolve\n").body[0]
    upward = list(resolve(node, "optnb.theory.rates"))
    assert upward == ["optnb.experiments"]
    planted = {**GRAPH, "optnb.theory.rates": [*GRAPH["optnb.theory.rates"], *upward]}
    assert violations(planted) == ["optnb.theory.rates -> optnb.experiments"]
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None
    assert find_cycle({**GRAPH, "optnb.specs": ["optnb.cli"]}) is not None
