"""Fusion of compound ops into single nodes with stable forward and backward forms.

A fusion must keep every output bit for bit, kinks included: `max(x, 0)` is
not turned into `relu(x)`, since max splits a tie's gradient (1/2 at x = 0)
where relu'(0) = 0.

Two tables, each applied to a fixed point: the first recognises the big
patterns (sigmoid, tanh, softplus, logaddexp, gelu), the second the small ones
(log1p, expm1), so `exp(2*x) - 1` inside a tanh is not taken by expm1 first.
"""

from __future__ import annotations

from ..ir import Graph
from .rewrite import Rule, Table, rewrite

COMPOUND = [
    Rule("1 / (1 + exp(-x))", "sigmoid(x)"),                  # 1/(1+exp(-x)) -> sigmoid(x)
    Rule("(1 + exp(-x)) ** -1", "sigmoid(x)"),                # (1+exp(-x))**-1 -> sigmoid(x)
    Rule("exp(x) / (1 + exp(x))", "sigmoid(x)"),              # exp(x)/(1+exp(x)) -> sigmoid(x)
    Rule("1 / (1 + exp(x))", "sigmoid(-x)"),                  # 1/(1+exp(x)) -> sigmoid(-x)
    Rule("(1 + exp(x)) ** -1", "sigmoid(-x)"),                # (1+exp(x))**-1 -> sigmoid(-x)
    Rule("log(1 + exp(x))", "softplus(x)"),                   # log(1+exp(x)) -> softplus(x)
    Rule("log(sigmoid(x))", "-softplus(-x)"),                 # log(sigmoid(x)) -> -softplus(-x)
    Rule("log(1 - sigmoid(x))", "-softplus(x)"),              # log(1-sigmoid(x)) -> -softplus(x)
    Rule("(exp(x) - exp(-x)) / (exp(x) + exp(-x))", "tanh(x)"),  # (e^x-e^-x)/(e^x+e^-x) -> tanh(x)
    Rule("(exp(2*x) - 1) / (exp(2*x) + 1)", "tanh(x)"),       # (e^2x-1)/(e^2x+1) -> tanh(x)
    Rule("(1 - exp(-2*x)) / (1 + exp(-2*x))", "tanh(x)"),     # (1-e^-2x)/(1+e^-2x) -> tanh(x)
    Rule("2 * sigmoid(2*x) - 1", "tanh(x)"),                  # 2*sigmoid(2x)-1 -> tanh(x)
    Rule("log(exp(a) + exp(b))", "logaddexp(a, b)"),          # log(e^a+e^b) -> logaddexp(a, b)
]

# x/sqrt(2) as constant folding leaves it: a division by, or a product with, a literal
_HALF_SQRT2 = ("x / 1.4142135623730951", "x * 0.7071067811865476")
COMPOUND += [
    Rule(form.format(arg=arg), "gelu(x)")
    for arg in _HALF_SQRT2
    for form in (
        "0.5 * x * (1 + erf({arg}))",                         # 0.5*x*(1+erf(x/sqrt2)) -> gelu(x)
        "0.5 * (x * (1 + erf({arg})))",                       # 0.5*(x*(1+erf(x/sqrt2))) -> gelu(x)
        "x * (1 + erf({arg})) / 2",                           # x*(1+erf(x/sqrt2))/2 -> gelu(x)
    )
]

SIMPLE = [
    Rule("log(1 + x)", "log1p(x)"),                           # log(1+x) -> log1p(x)
    Rule("exp(x) - 1", "expm1(x)"),                           # exp(x)-1 -> expm1(x)
]

COMPOUND_TABLE = Table(COMPOUND)
SIMPLE_TABLE = Table(SIMPLE)
RULES = COMPOUND + SIMPLE


def fuse(graph: Graph, ctx=None) -> Graph:
    fired = getattr(ctx, "fired", None)
    graph = rewrite(graph, COMPOUND_TABLE, fired)
    return rewrite(graph, SIMPLE_TABLE, fired)
