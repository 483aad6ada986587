"""Frontends: formula text and SymPy expressions -> forward Graph."""

from __future__ import annotations

import sys

from ..describe import describe
from ..errors import GraphcError
from ..ir import Graph
from .sympy_import import from_sympy
from .text import parse_formula

__all__ = ["parse", "parse_formula", "from_sympy"]


def parse(source: object, dtype: str = "f64", inputs: tuple[str, ...] | None = None,
          shapes: dict | None = None, dtypes: dict | None = None) -> Graph:
    """Text, a SymPy expression or an existing Graph -> forward Graph. `shapes`
    (and `dtypes`) make formula text a tensor program."""
    if isinstance(source, Graph):
        if shapes or dtypes:  # shapes={} only marks the Graph a tensor program
            raise GraphcError("shapes=/dtypes= are for formula text: a Graph's inputs carry their own types")
        return source
    if isinstance(source, str):
        return parse_formula(source, dtype=dtype, inputs=inputs, shapes=shapes, dtypes=dtypes)
    sympy = sys.modules.get("sympy")
    if sympy is not None and isinstance(source, sympy.Basic):
        if shapes or dtypes:  # shapes={} only marks the Graph a tensor program
            raise GraphcError("shapes=/dtypes= are for formula text; a SymPy expression is pointwise "
                              "(MatrixSymbol input is not supported yet)")
        return from_sympy(source, dtype=dtype, inputs=inputs)
    raise GraphcError(f"cannot compile {describe(source)}: pass formula text, a SymPy expression or a Graph")
