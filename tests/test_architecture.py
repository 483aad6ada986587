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
    """Module file names in backticks: `graphc/x.py`, `x.py`, `passes/x.py` (not `tests/x.py`)."""
    return {m.rsplit("/", 1)[-1] for m in re.findall(r"`([\w/]+\.py)`", section) if not m.startswith("tests/")}


def test_code_map_names_every_module_and_no_missing_one():
    modules = {p.name for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    mentioned = named(code_map())
    assert not modules - mentioned, f"modules the code map does not name: {sorted(modules - mentioned)}"
    assert not mentioned - modules, f"the code map names modules that do not exist: {sorted(mentioned - modules)}"


def test_the_check_reads_backticked_module_names():
    """Negative case: prose names without backticks or a .py suffix do not count."""
    assert named("`graphc/registry.py` and `plan.py`, `passes/cse.py`; not ir.py, `ir` or `tests/conftest.py`") == {
        "registry.py", "plan.py", "cse.py"}
