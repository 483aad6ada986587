"""Frontends: formula text and SymPy expressions -> forward Graph."""

from __future__ import annotations

import sys

from ..errors import GraphcError
from ..ir import Graph
from .sympy_import import from_sympy
from .text import parse_formula

__all__ = ["parse", "parse_formula", "from_sympy"]


def parse(source: object, dtype: str = "f64", inputs: tuple[str, ...] | None = None) -> Graph:
    """Text, a SymPy expression or an existing Graph -> forward Graph."""
    if isinstance(source, Graph):
        return source
    if isinstance(source, str):
        return parse_formula(source, dtype=dtype, inputs=inputs)
    sympy = sys.modules.get("sympy")
    if sympy is not None and isinstance(source, sympy.Basic):
        return from_sympy(source, dtype=dtype, inputs=inputs)
    raise GraphcError(
        f"cannot compile a {type(source).__name__}: pass formula text, a SymPy expression or a Graph"
    )
