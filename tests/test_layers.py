"""The package's layers: no import cycle between subpackages, and a ``model`` that stands alone.

The graph is read from the source (``ast``), counting imports at module level and inside
functions alike (a deferred import still ties the layers), and every module is imported
once so that a module the graph misses, or one that fails to import, shows here.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import v2ghub

PACKAGE = "v2ghub"
SOURCE = Path(v2ghub.__file__).parent
MODEL_MAY_IMPORT = {"model", "units", "defaults", "errors"}
"""What ``model`` may import of ours: itself and the plain modules below every layer."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> Iterator[str]:
    """The ``v2ghub`` modules ``path`` imports, anywhere in its code."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + int(is_package)
                prefix = ".".join(base[:keep])
                name = f"{prefix}.{node.module}" if node.module else prefix
            else:
                name = node.module or ""
            yield name
            yield from (f"{name}.{alias.name}" for alias in node.names)


def _layer(module: str) -> str | None:
    """The subpackage (or top-level module) a ``v2ghub`` module belongs to."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def _layers() -> set[str]:
    return {_layer(_module_name(path)) or "" for path in SOURCE.rglob("*.py")} - {""}


def layer_graph() -> dict[str, set[str]]:
    """Per layer, the other layers it imports."""
    layers = _layers()
    graph: dict[str, set[str]] = {layer: set() for layer in layers}
    for path in SOURCE.rglob("*.py"):
        source = _layer(_module_name(path))
        if source is None:
            continue
        for name in _imported(path):
            target = _layer(name)
            if target is not None and target != source and target in layers:
                graph[source].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_every_module_imports() -> None:
    names = [m.name for m in pkgutil.walk_packages([str(SOURCE)], prefix=f"{PACKAGE}.")]
    assert len(names) > 50
    for name in names:
        importlib.import_module(name)


def test_no_import_cycle_between_layers() -> None:
    cycle = _cycle(layer_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_model_imports_only_the_plain_modules() -> None:
    assert layer_graph()["model"] <= MODEL_MAY_IMPORT


def test_a_cycle_is_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
