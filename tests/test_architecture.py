"""ARCHITECTURE.md's layers, checked on the source: a package imports only its own layer and the
layers below, and no two packages import each other, not even through a third.

Every import counts, at module level or inside a function: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "torchdet"

# Lowest first. A unit is a subpackage or a top-level module of torchdet ("torchdet" is the root
# __init__); it may import the units of its own layer and of the layers below.
LAYERS: List[Tuple[str, Set[str]]] = [
    ("base", {"torchdet", "errors", "atomic", "runtime", "distributed", "progress", "checkpoint"}),
    ("ops", {"ops"}),
    ("weights", {"weights"}),
    ("backbones", {"backbones"}),
    ("models", {"models"}),
    ("data", {"data", "visualization"}),
    ("inference", {"inference"}),
    ("evaluation", {"evaluation"}),
    ("training", {"training"}),
    ("export", {"export", "bench"}),
    ("demo", {"demo"}),
    ("cli", {"cli", "engine"}),
]

# Known violations being removed, each with its reason; an entry that no longer occurs must go.
PENDING: Dict[Tuple[str, str], str] = {
}

RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
SPLIT_UNITS = {u for u in RANK if "." in u}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "torchdet"
    two = ".".join(parts[1:3])
    return two if two in SPLIT_UNITS else parts[1]


def _is_module(module: str) -> bool:
    rel = Path(*module.split("."))
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _imports(path: Path) -> Iterator[Tuple[str, int]]:
    """(imported torchdet module, line) for every import in the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from torchdet import distributed` imports a module
                yield (f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base), node.lineno


@functools.lru_cache(maxsize=None)
def _edges() -> Dict[Tuple[str, str], List[str]]:
    """(importing unit, imported unit) -> ["file:line", ...] across src/torchdet."""
    edges: Dict[Tuple[str, str], List[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _unit(_module_name(path))
        for target, line in _imports(path):
            if target != "torchdet" and not target.startswith("torchdet."):
                continue
            unit = _unit(target)
            if unit != source:
                edges.setdefault((source, unit), []).append(f"{path.relative_to(SRC)}:{line}")
    return edges


def test_every_package_has_a_layer():
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    missing = sorted(units - set(RANK))
    assert not missing, (f"{missing} have no layer: add them to LAYERS here and to the layer table "
                         "in ARCHITECTURE.md")


def test_no_package_imports_a_layer_above_its_own():
    bad = [f"{a} ({LAYERS[RANK[a]][0]}) imports {b} ({LAYERS[RANK[b]][0]}) at {', '.join(where[:3])}"
           for (a, b), where in sorted(_edges().items())
           if a in RANK and b in RANK and RANK[b] > RANK[a] and (a, b) not in PENDING]
    assert not bad, "imports against ARCHITECTURE.md's layers:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages():
    graph: Dict[str, Set[str]] = {}
    for (a, b) in _edges():
        if (a, b) not in PENDING:
            graph.setdefault(a, set()).add(b)
    cycles = []
    for start in sorted(graph):
        path = _path_back(graph, start)
        if path and min(path) == start:  # report each cycle once
            cycles.append(" -> ".join(path + [start]))
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def _path_back(graph: Dict[str, Set[str]], start: str) -> List[str]:
    """A path start -> ... whose last unit imports start, or [] (depth-first search)."""
    stack, seen = [[start]], {start}
    while stack:
        path = stack.pop()
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == start:
                return path
            if nxt not in seen:
                seen.add(nxt)
                stack.append(path + [nxt])
    return []


def test_pending_exceptions_still_occur():
    stale = [f"{a} -> {b}" for (a, b) in PENDING if (a, b) not in _edges()]
    assert not stale, f"{stale} no longer occur: remove them from PENDING"
