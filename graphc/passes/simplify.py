"""Algebraic simplification: constant folding, identities, small integer powers.

Every default rule gives the same result for every input, inf and NaN
included (up to the sign of a zero and the rounding of pow). Rules that do
not -- x*0 -> 0, x-x -> 0, x/x -> 1, 0/x -> 0 (wrong for inf/NaN x) -- sit in
UNSAFE and run only with `unsafe=True`.
"""

from __future__ import annotations

import numpy as np

from ..ir import DTYPE_NUMPY, Graph, Node, const
from ..registry import REGISTRY
from .rewrite import FnRule, Rule, Table, rewrite


def _fold_constants(node: Node) -> Node | None:
    # op(c1, c2, ...) -> c   (evaluated by the NumPy reference in the node's dtype)
    if not node.args or not all(a.op == "const" for a in node.args) or not REGISTRY[node.op].pointwise:
        return None
    dt = np.dtype(DTYPE_NUMPY[node.dtype])
    with np.errstate(all="ignore"):
        value = REGISTRY[node.op].numpy(*(dt.type(a.value) for a in node.args))
    return const(float(np.asarray(value, dtype=dt)), node.dtype)


SAFE = [
    FnRule("constant folding", _fold_constants),
    Rule("x + 0", "x"),                  # x + 0 -> x
    Rule("x - 0", "x"),                  # x - 0 -> x
    Rule("0 - x", "-x"),                 # 0 - x -> -x
    Rule("x * 1", "x"),                  # x * 1 -> x
    Rule("x * -1", "-x"),                # x * -1 -> -x
    Rule("x / 1", "x"),                  # x / 1 -> x
    Rule("x ** 1", "x"),                 # x ** 1 -> x
    Rule("x ** 0", "1"),                 # x ** 0 -> 1  (IEEE pow: 1 even for NaN)
    Rule("-(-x)", "x"),                  # --x -> x
    Rule("x - (-y)", "x + y"),           # x - (-y) -> x + y
    Rule("x + (-y)", "x - y"),           # x + (-y) -> x - y
    Rule("(-x) * (-y)", "x * y"),        # (-x)*(-y) -> x*y
    Rule("(-x) / (-y)", "x / y"),        # (-x)/(-y) -> x/y
]

# Powers are lowered to multiplications only once no autodiff follows: the
# derivative rule of pow(x, c) is cheaper than that of a multiplication chain.
POWERS = [
    Rule("x ** 2", "x * x"),             # x**2 -> x*x
    Rule("x ** 3", "x * x * x"),         # x**3 -> (x*x)*x
    Rule("x ** 4", "(x * x) * (x * x)"),  # x**4 -> (x*x)*(x*x)
    Rule("x ** -1", "1 / x"),            # x**-1 -> 1/x
    Rule("x ** -2", "1 / (x * x)"),      # x**-2 -> 1/(x*x)
]

UNSAFE = [
    Rule("x * 0", "0"),                  # x * 0 -> 0   (wrong for x = inf, nan)
    Rule("x - x", "0"),                  # x - x -> 0   (wrong for x = inf, nan)
    Rule("x / x", "1"),                  # x / x -> 1   (wrong for x = 0, inf, nan)
    Rule("0 / x", "0"),                  # 0 / x -> 0   (wrong for x = 0, nan)
]

_TABLES = {
    (unsafe, powers): Table(SAFE + (UNSAFE if unsafe else []) + (POWERS if powers else []))
    for unsafe in (False, True)
    for powers in (False, True)
}


def simplify(graph: Graph, ctx=None) -> Graph:
    unsafe = bool(getattr(ctx, "unsafe", False))
    powers = not getattr(ctx, "autodiff_follows", False)
    fired = getattr(ctx, "fired", None)
    return rewrite(graph, _TABLES[unsafe, powers], fired)
