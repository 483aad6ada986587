"""No import cycle inside graphc/: every `import` and `from ... import` in every
module, at top level or inside a function, is an edge; the graph must have
a topological order. (The package `__init__` re-exports the API, so a
submodule importing the bare `graphc` package would close a cycle too.)"""

import ast
import graphlib
from pathlib import Path

import graphc

ROOT = Path(graphc.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                # `from pkg import mod` imports the submodule pkg.mod where one exists
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    edges[name].add(t)
    return edges


def test_the_walker_sees_imports():
    g = import_graph()
    assert "graphc.registry" in g["graphc.ir"]
    assert "graphc.ir" in g["graphc.ops"] and "graphc.registry" in g["graphc.ops"]
    assert "graphc.backends.targets" in g["graphc.api"]
    assert "graphc.api" in g["graphc.verify.pointwise"]  # a function-level import counts


def test_no_import_cycle():
    g = import_graph()
    # graphc/__init__ imports every public module by design; a module importing it back is a cycle
    sorter = graphlib.TopologicalSorter(g)
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
    assert set(order) == set(g)
