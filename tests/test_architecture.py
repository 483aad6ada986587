"""ARCHITECTURE.md's code map names every module of the package, and names no
module that is gone (issue 24): a newcomer reading it finds each file."""

import re
from pathlib import Path

import graphc

PACKAGE = Path(graphc.__file__).parent
DOC = PACKAGE.parent / "ARCHITECTURE.md"


def code_map() -> str:
    text = DOC.read_text()
    return text[text.index("## Code map"):text.index("## Invariants")]


def named(section: str) -> set[str]:
    """Module paths in backticks, relative to the package: `graphc/x.py` and
    `backends/llvm/x.py` both count (not `tests/x.py`); a bare
    `x.py` names a top-level module."""
    found = set()
    for m in re.findall(r"`([\w/]+\.py)`", section):
        if m.startswith("tests/"):
            continue
        found.add(m.removeprefix("graphc/"))
    return found


def test_code_map_names_every_module_and_no_missing_one():
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    mentioned = named(code_map())
    assert not modules - mentioned, f"modules the code map does not name: {sorted(modules - mentioned)}"
    assert not mentioned - modules, f"the code map names modules that do not exist: {sorted(mentioned - modules)}"


def test_the_check_reads_backticked_module_names():
    """Negative case: prose names without backticks or a .py suffix do not count."""
    assert named("`graphc/registry.py` and `schedule/plan.py`, `passes/cse.py`; not ir.py, `ir` or "
                 "`tests/conftest.py`") == {"registry.py", "schedule/plan.py", "passes/cse.py"}
