"""Fusion of compound ops into single nodes with stable forward and backward forms.

A fusion must keep every output bit for bit, kinks included: `max(x, 0)` is
not turned into `relu(x)`, since max splits a tie's gradient (1/2 at x = 0)
where relu'(0) = 0.

Two tables, each applied to a fixed point: the first recognises the big
patterns (sigmoid, tanh, softplus, logaddexp, gelu), the second the small ones
(log1p, expm1), so `exp(2*x) - 1` inside a tanh is not taken by expm1 first.
"""

from __future__ import annotations

from ..ir import Graph, Node, make
from .rewrite import FnRule, Rule, Table, rewrite

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

# Tensor forms: written with reductions and axes, so they are functions of the node
# rather than pattern text (patterns are parsed as pointwise formulas).


def _sum_of_exp(d: Node) -> tuple[Node, dict] | None:
    """d = sum(exp(s), axis=..., keepdims=...) -> (s, attrs)."""
    if d.op == "sum" and d.args[0].op == "exp":
        return d.args[0].args[0], d.attrs
    return None


def _softmax(n: Node) -> Node | None:
    """exp(s) / sum(exp(s), axis=k, keepdims=True) -> softmax(s, axis=k): one axis,
    dimensions kept (without keepdims the division broadcasts along the wrong axis)."""
    num, den = n.args
    hit = _sum_of_exp(den)
    if num.op != "exp" or hit is None or hit[0] is not num.args[0]:
        return None
    s, a = hit
    if len(a["axis"]) != 1 or not (a["keepdims"] or s.type.ndim == 1):
        return None
    return make("softmax", s, axis=a["axis"][0])


def _logsumexp(n: Node) -> Node | None:
    """log(sum(exp(s), axis, keepdims)) -> logsumexp(s, axis, keepdims)."""
    hit = _sum_of_exp(n.args[0])
    if hit is None:
        return None
    s, a = hit
    return make("logsumexp", s, axis=a["axis"], keepdims=a["keepdims"])


def _log_softmax(n: Node) -> Node | None:
    """s - logsumexp(s, axis=k, keepdims=True) -> log_softmax(s, axis=k)."""
    s, lse = n.args
    if lse.op != "logsumexp" or lse.args[0] is not s:
        return None
    a = lse.attrs
    if len(a["axis"]) != 1 or not (a["keepdims"] or s.type.ndim == 1):
        return None
    return make("log_softmax", s, axis=a["axis"][0])


def _log_of_softmax(n: Node) -> Node | None:
    """log(softmax(s, k)) -> log_softmax(s, k)."""
    x = n.args[0]
    return make("log_softmax", x.args[0], axis=x.attrs["axis"]) if x.op == "softmax" else None


def _sorted_window(n: Node) -> Node | None:
    """sort(x, axis=k) sliced to a run of ranks lo..hi-1 on k (every other axis whole)
    -> take_along(x, argsort(x, k, window=(lo, hi)), k): one argpartition and a sort of
    the window instead of sorting every line (the top-k of `sort(x)[:, -k:]`), and the
    gradient scatters through the window's indices (put_along) instead of unsorting."""
    x = n.args[0]
    if x.op != "sort":
        return None
    src, ax = x.args[0], x.attrs["axis"]
    start, step, shape = n.attrs["start"], n.attrs["step"], n.attrs["shape"]
    full = x.shape
    if not all(isinstance(d, int) for d in full) or step[ax] != 1:
        return None
    if any(start[i] != 0 or step[i] != 1 or shape[i] != full[i] for i in range(len(full)) if i != ax):
        return None
    lo, hi = start[ax], start[ax] + shape[ax]
    if hi <= lo or (lo, hi) == (0, full[ax]):
        return None
    return make("take_along", src, make("argsort", src, axis=ax, window=(lo, hi)), axis=ax)


def _rows_matmul(n: Node) -> Node | None:
    """a (..., m, k) @ b (k, n) with a's sizes known -> one (P, k) @ (k, n) product, P the
    rows of every batch entry together, reshaped back: the plan runs one GEMM (NumPy's
    matmul would loop over the batch, one small product each), and autodiff then makes
    b's gradient one GEMM too, never a batch of products summed."""
    a, b = n.args
    if a.type.ndim <= 2 or b.type.ndim != 2 or not all(isinstance(d, int) for d in a.shape):
        return None
    rows = 1
    for d in a.shape[:-1]:
        rows *= d
    flat = make("matmul", make("reshape", a, shape=(rows, a.shape[-1])), b)
    return make("reshape", flat, shape=n.shape)


TENSOR = [
    FnRule("exp(s)/sum(exp(s), axis=k, keepdims=True) -> softmax(s, k)", _softmax, "div"),
    FnRule("log(sum(exp(s), axis)) -> logsumexp(s, axis)", _logsumexp, "log"),
    FnRule("s - logsumexp(s, k, keepdims=True) -> log_softmax(s, k)", _log_softmax, "sub"),
    FnRule("log(softmax(s, k)) -> log_softmax(s, k)", _log_of_softmax, "log"),
    FnRule("sort(x, k)[window on k] -> take_along(x, argsort(x, k, window))", _sorted_window, "slice"),
    FnRule("a (..., m, k) @ b (k, n) -> reshape(reshape(a, (P, k)) @ b)", _rows_matmul, "matmul"),
]

SIMPLE = [
    Rule("log(1 + x)", "log1p(x)"),                           # log(1+x) -> log1p(x)
    Rule("exp(x) - 1", "expm1(x)"),                           # exp(x)-1 -> expm1(x)
]

COMPOUND_TABLE = Table(COMPOUND + TENSOR)
SIMPLE_TABLE = Table(SIMPLE)
RULES = COMPOUND + SIMPLE  # pattern rules; the TENSOR function rules are tested in test_tensor.py


def fuse(graph: Graph, ctx=None) -> Graph:
    fired = getattr(ctx, "fired", None)
    graph = rewrite(graph, COMPOUND_TABLE, fired)
    return rewrite(graph, SIMPLE_TABLE, fired)
