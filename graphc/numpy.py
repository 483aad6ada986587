"""NumPy's names for graphc's ops: each works on traced values (recording IR)
and on NumPy arrays (evaluated at once), so model code runs both ways.

    import graphc.numpy as gnp
    def loss(w, X, y): return gnp.mean((X @ w - y) ** 2)
"""

from __future__ import annotations

from typing import Any

from .trace import NUMPY_FUNCTIONS, apply


def _unary(op: str, doc: str):
    def f(x: Any) -> Any:
        return apply(op, x)

    f.__name__, f.__doc__ = op, doc
    return f


def _binary(op: str, doc: str):
    def f(a: Any, b: Any) -> Any:
        return apply(op, a, b)

    f.__doc__ = doc
    return f


exp = _unary("exp", "e ** x")
log = _unary("log", "natural logarithm")
sqrt = _unary("sqrt", "square root")
sin, cos, tan = _unary("sin", "sine"), _unary("cos", "cosine"), _unary("tan", "tangent")
tanh, sinh, cosh = _unary("tanh", "hyperbolic tangent"), _unary("sinh", "sinh"), _unary("cosh", "cosh")
arctan, arcsin, arccos = _unary("atan", "arc tangent"), _unary("asin", "arc sine"), _unary("acos", "arc cosine")
arcsinh, arccosh, arctanh = _unary("asinh", "asinh"), _unary("acosh", "acosh"), _unary("atanh", "atanh")
abs = _unary("abs", "|x|; abs'(0) = 0")  # noqa: A001  (NumPy's name)
absolute = abs
log1p, expm1 = _unary("log1p", "log(1 + x)"), _unary("expm1", "exp(x) - 1")
log2, log10, exp2 = _unary("log2", "log2"), _unary("log10", "log10"), _unary("exp2", "2 ** x")
floor, ceil, sign = _unary("floor", "floor"), _unary("ceil", "ceil"), _unary("sign", "sign")
negative = _unary("neg", "-x")
add, subtract, multiply = _binary("add", "a + b"), _binary("sub", "a - b"), _binary("mul", "a * b")
divide = _binary("div", "a / b")
power = _binary("pow", "a ** b")
maximum = _binary("max", "elementwise max; ties split the gradient")
minimum = _binary("min", "elementwise min; ties split the gradient")
logaddexp, hypot = _binary("logaddexp", "log(exp(a) + exp(b))"), _binary("hypot", "sqrt(a*a + b*b)")
arctan2 = _binary("atan2", "atan2(a, b)")
matmul = _binary("matmul", "a @ b")
dot = matmul
greater, less = _binary("gt", "a > b"), _binary("lt", "a < b")
greater_equal, less_equal = _binary("ge", "a >= b"), _binary("le", "a <= b")
equal, not_equal = _binary("eq", "a == b"), _binary("ne", "a != b")


def square(x: Any) -> Any:
    return apply("mul", x, x)


def where(mask: Any, a: Any, b: Any) -> Any:
    """a where mask, else b; the branch not taken gets an exact 0 gradient."""
    return apply("where", mask, a, b)


def clip(x: Any, lo: Any, hi: Any) -> Any:
    return apply("clip", x, lo, hi)


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return apply("sum", x, axis=axis, keepdims=keepdims)


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return apply("mean", x, axis=axis, keepdims=keepdims)


def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Largest entry over axes (ties split the gradient); maximum(a, b) is elementwise."""
    return apply("amax", x, axis=axis, keepdims=keepdims)


def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    return apply("amin", x, axis=axis, keepdims=keepdims)


amax, amin = max, min


def transpose(x: Any, axes: Any = None) -> Any:
    return apply("transpose", x, axes=None if axes is None else tuple(axes))


def reshape(x: Any, shape: Any) -> Any:
    from .trace import _fill_reshape

    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return apply("reshape", x, shape=_fill_reshape(tuple(getattr(x, "shape", ())), shape))


def broadcast_to(x: Any, shape: Any) -> Any:
    return apply("broadcast_to", x, shape=tuple(shape))


__all__ = [
    "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "arctan", "arcsin", "arccos", "arcsinh",
    "arccosh", "arctanh", "abs", "absolute", "log1p", "expm1", "log2", "log10", "exp2", "floor", "ceil", "sign",
    "negative", "add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "logaddexp", "hypot",
    "arctan2", "matmul", "dot", "greater", "less", "greater_equal", "less_equal", "equal", "not_equal", "square",
    "where", "clip", "sum", "mean", "max", "min", "amax", "amin", "transpose", "reshape", "broadcast_to",
]

NUMPY_FUNCTIONS.update((name, globals()[name]) for name in __all__)
