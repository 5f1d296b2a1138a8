"""The package's import graph has no cycles: every module can be read from the bottom up."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import payhook

PACKAGE = Path(payhook.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The payhook modules `path` imports, at any level (inside TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    # A package's __init__ is not an edge: importing payhook.a.b loads payhook.a first, but
    # payhook.a does not depend on payhook.a.b.
    return {
        name: {other for other in imported(path, modules) if other != name}
        for name, path in paths.items()
    }


def test_the_graph_sees_known_imports() -> None:
    graph = import_graph()
    assert "payhook.transactions.records" in graph["payhook.processing.steps"]
    assert "payhook.runtime" in graph["payhook.operators.auth"]


def test_no_module_imports_itself_through_others() -> None:
    try:
        tuple(TopologicalSorter(import_graph()).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
