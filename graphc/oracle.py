"""The reference oracle: IR -> SymPy, exact derivatives, high-precision values.

SymPy is used for checking only; compiling never waits on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .ir import Graph
from .ops import REGISTRY

DIGITS = 40
MAXN = 3000  # the most digits evalf may use to resolve cancellation


def to_sympy(graph: Graph, outputs: Sequence[str] | None = None) -> tuple[dict, dict]:
    """Returns ({output name: SymPy expr}, {input name: Symbol}); fused ops
    become their defining expressions. Iterative over the graph body."""
    import sympy as sp

    syms = {n.attr: sp.Symbol(n.attr, real=True) for n in graph.inputs}
    env: dict[int, object] = {id(n): syms[n.attr] for n in graph.inputs}
    for n in graph.body:
        if n.op == "const":
            v = n.value
            env[id(n)] = sp.Integer(int(v)) if v == int(v) and abs(v) < 2**53 else sp.Float(repr(v), DIGITS)
        else:
            env[id(n)] = REGISTRY[n.op].sympy(*(env[id(a)] for a in n.args))
    names = outputs if outputs is not None else graph.output_names
    return {name: env[id(graph.output(name))] for name in names}, syms


def exact(
    forward: Graph,
    point: Mapping[str, float],
    wrt: Sequence[str] | None = None,
    order: int = 1,
    digits: int = DIGITS,
) -> dict[str, float]:
    """Value and exact derivatives of the forward graph's first output at `point`,
    by sympy.diff and evaluation at `digits` significant digits.

    Keys follow graphc's output names: 'f', 'df/dx', 'd2f/dxdy'."""
    import sympy as sp

    from .passes.autodiff import grad_name

    exprs, syms = to_sympy(forward, [forward.output_names[0]])
    f = exprs[forward.output_names[0]]
    wrt = list(wrt) if wrt is not None else list(forward.input_names)
    subs = {syms[k]: sp.Float(repr(float(v)), digits) for k, v in point.items() if k in syms}
    out: dict[str, float] = {"f": _ev(f, subs, digits)}
    for x in wrt:
        d = sp.diff(f, syms[x])
        out[grad_name("f", x)] = _ev(d, subs, digits)
        if order == 2:
            for y in wrt:
                out[grad_name(grad_name("f", x), y)] = _ev(sp.diff(d, syms[y]), subs, digits)
    return out


def _ev(expr, subs, digits: int) -> float:
    import sympy as sp

    # maxn lets evalf raise its working precision through cancellations such as
    # exp(x)/(1+exp(x)) - exp(2x)/(1+exp(x))**2 at x = 700 (about 900 digits)
    val = expr.evalf(digits, subs=subs, maxn=MAXN)
    if val.has(sp.zoo) or val is sp.nan:
        return float("nan")
    try:
        return float(val)
    except TypeError:  # complex result (e.g. log of a negative): not a real number
        c = complex(val)
        return c.real if c.imag == 0 else float("nan")
