"""graphc: formulas compiled to fast functions that return their value and every gradient."""

from __future__ import annotations

# ops and tensor_ops register the built-in ops before anything builds a graph; graphc.numpy and
# graphc.nn are the namespaces for traced functions (and eager arrays)
from . import dask, math_ops, nn, numpy, ops, optim, random, shape_ops, tensor_ops  # noqa: F401
from .api import CompiledFunction, compile, hessian, targets
from .custom import checkpoint, custom_vjp
from .errors import (
    ArgumentError,
    ArityError,
    BackendUnavailableError,
    CacheWarning,
    GraphcError,
    IRError,
    LimitError,
    ParseError,
    ShapeError,
    UnknownFunctionError,
    UnsupportedError,
)
from .forward import jacfwd, jacrev, jvp, linearize
from .frontend import parse
from .ir import Graph, Node, from_json, parse_graph, print_graph, to_dot, to_json, verify
from .loops import fori_loop, scan
from .passes.autodiff import autodiff, gradients, hessian_graph
from .program import Program
from .registry import Domain, OpSpec, register_op, unregister_op
from .trace import TracingError, grad, hvp, jit, value_and_grad
from .train import train_step
from .verify.pointwise import CheckReport, check
from .version import __version__


def emit(source: object, target: str | None = None, kind: str = "source", **opts: object) -> str:
    """The generated kernel of a formula (or Program) for a target, as text:
    kind "source", "llvm" (cpu, parallel) or "ptx" (cuda; cc="9.0"). Needs no GPU."""
    from .backends.targets import emit as _emit

    program = source if isinstance(source, Program) else Program(source)
    return _emit(program.graph, target, kind, **opts)


__all__ = [
    "compile", "hessian", "check", "emit", "targets", "Program", "register_op", "unregister_op", "OpSpec",
    "Domain", "CheckReport", "CompiledFunction", "parse", "Graph", "Node", "parse_graph", "print_graph",
    "to_json", "from_json", "to_dot", "verify", "autodiff", "gradients", "hessian_graph",
    "GraphcError", "ParseError", "UnknownFunctionError", "ArityError", "LimitError", "IRError",
    "ArgumentError", "UnsupportedError", "BackendUnavailableError", "ShapeError", "TracingError", "__version__",
    "CacheWarning",
    "value_and_grad", "grad", "jit", "hvp", "numpy", "nn", "scan", "fori_loop", "random", "optim",
    "jvp", "linearize", "jacfwd", "jacrev", "train_step", "custom_vjp", "checkpoint",
]
