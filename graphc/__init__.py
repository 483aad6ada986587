"""graphc: formulas compiled to fast functions that return their value and every gradient."""

from __future__ import annotations

from . import ops  # noqa: F401  (registers the built-in ops before anything builds a graph)
from .api import CompiledFunction, compile, hessian
from .checker import CheckReport, check
from .errors import (
    ArgumentError,
    ArityError,
    BackendUnavailableError,
    GraphcError,
    IRError,
    LimitError,
    ParseError,
    UnknownFunctionError,
    UnsupportedError,
)
from .frontend import parse
from .ir import Graph, Node, parse_graph, print_graph, to_dot, to_json, verify
from .passes.autodiff import autodiff, gradients, hessian_graph

__version__ = "0.1.0"

__all__ = [
    "compile", "hessian", "check", "CheckReport", "CompiledFunction", "parse", "Graph", "Node", "parse_graph", "print_graph",
    "to_json", "to_dot", "verify", "autodiff", "gradients", "hessian_graph",
    "GraphcError", "ParseError", "UnknownFunctionError", "ArityError", "LimitError", "IRError",
    "ArgumentError", "UnsupportedError", "BackendUnavailableError", "__version__",
]
