"""The package's import graph: no circle of modules, and no module importing one from a layer above it.

Layers, lowest first: helpers (records, errors, hashing...) -> the concerns (constitution, judge, storage, train)
-> pipelines, themselves in rooms (configs -> labelling -> humans -> mixing / training / reporting) -> the
command line and the `prefgen` facade. Lazy imports inside functions count: they are arrows all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "prefgen"

# Lowest first; a module belongs to the last prefix that matches it, and may import its own layer or lower.
LAYERS = [
    ("helpers", ("prefgen.records", "prefgen.errors", "prefgen.hashing", "prefgen.redact", "prefgen.intervals",
                 "prefgen.plots", "prefgen.terminal", "prefgen.signals")),
    ("concerns", ("prefgen.constitution", "prefgen.formats", "prefgen.judge", "prefgen.storage", "prefgen.train")),
    ("pipelines: configs", ("prefgen.pipelines", "prefgen.pipelines.configs")),
    ("pipelines: labelling", ("prefgen.pipelines.labelling",)),
    ("pipelines: humans", ("prefgen.pipelines.humans",)),
    ("pipelines: mixing, training, reporting", ("prefgen.pipelines.mixing", "prefgen.pipelines.training",
                                                "prefgen.pipelines.reporting")),
    ("command line and facade", ("prefgen", "prefgen.__main__", "prefgen.api", "prefgen.cli", "prefgen.cli_examples",
                                 "prefgen.cli_options",
                                 "prefgen.cli_output")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The prefgen modules `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("prefgen"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                found.add(target if target in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
    return found & known


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found)) - {name} for name, path in found.items()}


def layer_of(module: str) -> int:
    best, length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (module.startswith(prefix + ".") and prefix != "prefgen")
            if matches and len(prefix) > length:
                best, length = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_back_through_others():
    assert cycles(graph()) == []


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in sorted(graph().items()) for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert upward == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_the_cycle_finder_finds_circles_and_only_circles(edges, expected):
    assert cycles(edges) == expected
