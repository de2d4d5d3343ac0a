"""The shape of the house: no import circle, dependency directions, module sizes.

The import graph is read from the source with :mod:`ast` (imports inside functions and under
``TYPE_CHECKING`` included), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "movierec"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The movierec module a dotted name refers to (a module or a name inside one)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if target := _resolve(alias.name, modules):
                    yield target
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}", modules) or _resolve(base, modules)
                if target:
                    yield target


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """movierec module -> the movierec modules it imports (a package's __init__ excluded)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = {d for d in _imports(name, path, modules) if d != name}
        # importing a.b.c runs a/__init__ and a/b/__init__: only count real edges
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: components with more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle() -> None:
    cycles = strongly_connected(import_graph())
    assert cycles == [], f"import cycles: {cycles}"


def test_the_checker_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


#: Layers, lowest first (the README's table): a layer never imports one after it.
ORDER = [
    ["", "settings", "errors", "types", "hashing", "spare"],
    ["data"],
    ["models"],
    ["ranking"],
    ["strategies"],
    ["evaluation"],
    ["lifecycle"],
    ["streams"],
    ["experiments"],
    ["service"],
    ["cli"],
]
RANK = {name: i for i, group in enumerate(ORDER) for name in group}
# (layer, layer it must never import)
FORBIDDEN = [
    (low, high)
    for low in RANK
    for high in RANK
    if RANK[high] > RANK[low] and low != "" and high != ""
] + [("ui", other) for other in RANK if other not in ("", "ui")]


@pytest.mark.parametrize(("layer", "forbidden"), FORBIDDEN)
def test_dependency_direction(layer: str, forbidden: str) -> None:
    bad = sorted(
        f"{m} -> {d}"
        for m, deps in import_graph().items()
        if _layer(m) == layer
        for d in deps
        if _layer(d) == forbidden
    )
    assert bad == []


def test_no_module_over_the_size_limit() -> None:
    big = {
        _module_name(p): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}
