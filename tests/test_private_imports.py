"""No module of graphc imports another module's leading-underscore name (issue 24):
what one module shares with another is public in it, so a reader sees the interface
and a rename inside a module cannot break a neighbour silently."""

import ast
from pathlib import Path

import graphc

PACKAGE = Path(graphc.__file__).parent


def private_imports(path: Path) -> list[tuple[int, str]]:
    """(line, name) of each `from <graphc module> import _name` in the file (dunders allowed)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("graphc")):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_imports_a_private_name_of_another():
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
           for path in sorted(PACKAGE.rglob("*.py")) for line, name in private_imports(path)]
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_private_import(tmp_path):
    """Negative case: the scanner flags `from .x import _y` and `from graphc.x import _y`, not
    public names or dunders."""
    f = tmp_path / "m.py"
    f.write_text("from .loader import _secret\nfrom graphc.trace import _hidden, public\nfrom .v import __version__\n"
                 "from numpy import _private_of_numpy\n")
    assert private_imports(f) == [(1, "_secret"), (2, "_hidden")]
