"""SymPy expression -> IR, iteratively (no recursion over the expression tree).

Inputs are the free symbols sorted by name (SymPy keeps no order of
appearance); pass `inputs=` to choose another order.
"""

from __future__ import annotations

import math
import re

from ..describe import describe
from ..errors import UnsupportedError
from ..ir import Graph, Node, const, input_node, make
from ..registry import REGISTRY, pointwise_functions, version

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*\Z")  # \Z: "$" would accept a trailing newline
_TABLE: dict[str, object] = {}


def sympy_functions() -> dict[object, str]:
    """SymPy function class -> graphc op, derived from each op's SymPy facet:
    an op whose SymPy form is one function applied to its own arguments
    (exp(a), atan2(a, b), Max(a, b)) imports from that function. Rebuilt when
    the registry changes."""
    if _TABLE.get("version") != version():
        import sympy as sp

        table: dict[object, str] = {}
        first = {name: k for k, name in enumerate(REGISTRY)}  # two ops with one SymPy form: the first registered
        for spec in sorted(pointwise_functions(), key=lambda s: first[s.name]):
            args = sp.symbols(f"a0:{spec.arity}", real=True)
            try:
                e = spec.sympy(*args)
            except Exception:  # a facet that needs more than symbols: no direct import
                continue
            if isinstance(e, sp.core.function.Application) and set(e.args) == set(args) and len(e.args) == len(args):
                table.setdefault(e.func, spec.name)
        _TABLE.update(version=version(), table=table)
    return _TABLE["table"]  # type: ignore[return-value]


def _fold(op: str, nodes: list[Node]) -> Node:
    acc = nodes[0]
    for n in nodes[1:]:
        acc = make(op, acc, n)
    return acc


def from_sympy(expr, dtype: str = "f64", inputs: tuple[str, ...] | None = None) -> Graph:
    import sympy as sp

    if isinstance(expr, (int, float)):
        expr = sp.Float(expr)
    if not isinstance(expr, sp.Basic) or not isinstance(expr, sp.Expr):
        raise UnsupportedError(f"expected a SymPy expression, got {describe(expr)}")
    if expr.has(sp.I):
        raise UnsupportedError("complex numbers (I) are not supported: graphc computes real functions")

    from sympy.matrices.expressions.matexpr import MatrixElement

    functions = sympy_functions()
    symbols: dict[str, Node] = {}
    done: dict[object, Node] = {}

    def leaf(e) -> Node | None:
        if isinstance(e, sp.MatrixSymbol):  # a matrix input: a tensor program
            name = str(e.name)
            if not _IDENT.match(name):
                raise UnsupportedError(f"SymPy matrix {name!r} cannot be a graphc variable: names are ASCII "
                                       "letters, digits and '_'")
            dims = tuple(int(d) if d.is_Integer else str(d) for d in e.shape)
            if name not in symbols:
                symbols[name] = input_node(name, dtype, dims)
            return symbols[name]
        if isinstance(e, sp.Symbol):
            name = str(e)
            if not _IDENT.match(name):
                raise UnsupportedError(
                    f"SymPy symbol {name!r} cannot be a graphc variable: names are ASCII letters, digits and '_'"
                )
            if name not in symbols:
                symbols[name] = input_node(name, dtype)
            return symbols[name]
        if e is sp.pi:
            return const(math.pi, dtype)
        if e is sp.E:
            return const(math.e, dtype)
        if e.is_Number:
            if e is sp.zoo or e is sp.nan:
                return const(math.nan, dtype)
            return const(float(e), dtype)
        return None

    def build(e, args: list[Node]) -> Node:
        func = e.func
        if func is sp.MatMul:  # scalar factors scale, matrix factors multiply
            scal = [n for n in args if not n.shape]
            mats = [n for n in args if n.shape]
            acc = _fold("matmul", mats)
            return make("mul", _fold("mul", scal), acc) if scal else acc
        if func is sp.MatAdd:
            return _fold("add", args)
        if func is sp.HadamardProduct:
            return _fold("mul", args)
        if func is sp.HadamardPower:
            return make("pow", *args)
        if func is sp.Transpose:
            return make("transpose", args[0])
        if func is sp.Trace and args[0].shape == (1, 1):
            return make("reshape", args[0], shape=())  # the one entry of a 1x1 result
        if isinstance(e, MatrixElement):
            raise UnsupportedError(f"matrix element {e}: graphc does not index SymPy matrices; write a 1x1 "
                                   "product without [0, 0] (r.T * r), which graphc reads as its one entry")
        if func is sp.Add:
            return _fold("add", args)
        if func is sp.Mul:
            # factors with a negative exponent go to the denominator
            num, den = [], []
            for sub, node in zip(e.args, args):
                if sub.is_Pow and sub.exp.is_Number and sub.exp < 0:
                    b = done[sub.base]
                    den.append(b if sub.exp == -1 else make("pow", b, const(float(-sub.exp), dtype)))
                elif sub == -1 and len(e.args) > 1:
                    num.append(None)  # type: ignore[arg-type]
                else:
                    num.append(node)
            negate = None in num
            num = [n for n in num if n is not None]
            top = _fold("mul", num) if num else const(1.0, dtype)
            res = make("div", top, _fold("mul", den)) if den else top
            return make("neg", res) if negate else res
        if func is sp.Pow:
            b, x = args
            if e.exp == sp.S.Half:
                return make("sqrt", b)
            if e.exp == -1:
                return make("div", const(1.0, dtype), b)
            return make("pow", b, x)
        op = functions.get(func)
        if op is not None:
            from ..registry import get

            arity = get(op).arity
            if len(args) == arity:
                return make(op, *args)
            if arity == 2 and len(args) > 2 and get(op).commutative:  # Max(a, b, c)
                return _fold(op, args)
        name = getattr(func, "__name__", str(func))
        known = ", ".join(sorted(getattr(f, "__name__", str(f)) for f in functions))
        raise UnsupportedError(
            f"SymPy function {name} (with {len(args)} argument(s)) is not supported by graphc "
            f"(supported: {known}, sqrt, +, -, *, /, **)"
        )

    # iterative post-order traversal
    stack: list[tuple[object, bool]] = [(expr, False)]
    while stack:
        e, expanded = stack.pop()
        if e in done:
            continue
        lf = leaf(e)
        if lf is not None:
            done[e] = lf
            continue
        if not e.args:
            raise UnsupportedError(f"SymPy object {e!r} ({type(e).__name__}) is not supported by graphc")
        if not expanded:
            stack.append((e, True))
            for a in e.args:
                if a not in done:
                    stack.append((a, False))
            continue
        if isinstance(e, sp.Pow) and e.base not in done:
            raise AssertionError("unreachable")
        done[e] = build(e, [done[a] for a in e.args])
    root = done[expr]
    if root.shape and all(d == 1 for d in root.shape):  # a 1x1 matrix expression: its one entry
        root = make("reshape", root, shape=())
    if inputs is None:
        names = sorted(symbols)
    else:
        names = list(inputs)
        missing = [n for n in symbols if n not in names]
        if missing:
            from ..errors import ArgumentError

            raise ArgumentError(f"inputs= does not list variable(s) {', '.join(missing)} of the expression")
    nodes = [symbols.get(n) or input_node(n, dtype) for n in names]
    return Graph(nodes, [("f", root)])
