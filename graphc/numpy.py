"""NumPy's names for graphc's ops: each works on traced values (recording IR)
and on NumPy arrays (evaluated at once), so model code runs both ways.

    import graphc.numpy as gnp
    def loss(w, X, y): return gnp.mean((X @ w - y) ** 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ShapeError, UnsupportedError
from .ir import fmt_shape
from .numpy_args import NoValue, refuse
from .trace import NUMPY_FUNCTIONS, Tracer, apply

# NumPy's parameters: checked by numpy_args.refuse (shared with numpy_shape and numpy_math)
_NoValue: Any = NoValue
_refuse = refuse


def _ufunc_options(fn: str, args: tuple, out: Any, where: Any, casting: Any, order: Any, dtype: Any, subok: Any,
                   signature: Any) -> None:
    _refuse(fn, args, out=(out, None), where=(where, True), dtype=(dtype, None), casting=(casting, "same_kind"),
            order=(order, "K"), subok=(subok, True), signature=(signature, None))


def _unary(op: str | Any, doc: str):
    """A NumPy ufunc of one argument: numpy's signature (x, /, out=None, *, where=True, ...);
    `op` is graphc's op name or a function recording it."""
    record = op if callable(op) else (lambda x: apply(op, x))

    def f(x: Any, /, out: Any = None, *, where: Any = True, casting: Any = "same_kind", order: Any = "K",
          dtype: Any = None, subok: Any = True, signature: Any = None) -> Any:
        if out is not None or where is not True or dtype is not None or casting != "same_kind" or order != "K" \
                or subok is not True or signature is not None:
            _ufunc_options(f.__name__, (x,), out, where, casting, order, dtype, subok, signature)
        return record(x)

    f.__name__ = f.__qualname__ = op if isinstance(op, str) else "f"  # NumPy's name, set below
    f.__doc__ = doc
    f._numpy_ufunc = 1  # type: ignore[attr-defined]
    return f


def _binary(op: str, doc: str):
    """A NumPy ufunc of two arguments: numpy's signature (x1, x2, /, out=None, *, where=True, ...)."""

    def f(x1: Any, x2: Any, /, out: Any = None, *, where: Any = True, casting: Any = "same_kind",
          order: Any = "K", dtype: Any = None, subok: Any = True, signature: Any = None) -> Any:
        if out is not None or where is not True or dtype is not None or casting != "same_kind" or order != "K" \
                or subok is not True or signature is not None:
            _ufunc_options(f.__name__, (x1, x2), out, where, casting, order, dtype, subok, signature)
        return apply(op, x1, x2)

    f.__name__ = f.__qualname__ = op
    f.__doc__ = doc
    f._numpy_ufunc = 2  # type: ignore[attr-defined]
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
fabs = _unary("abs", "|x| (numpy.fabs: absolute for reals)")
# complex conjugates of real values (graphc computes real functions): the values themselves
conj = _unary(lambda x: x if isinstance(x, Tracer) else np.conj(x), "x for real x (numpy.conj)")
conjugate = _unary(lambda x: x if isinstance(x, Tracer) else np.conjugate(x), "x for real x (numpy.conjugate)")
log1p, expm1 = _unary("log1p", "log(1 + x)"), _unary("expm1", "exp(x) - 1")
log2, log10, exp2 = _unary("log2", "log2"), _unary("log10", "log10"), _unary("exp2", "2 ** x")
floor, ceil, sign = _unary("floor", "floor"), _unary("ceil", "ceil"), _unary("sign", "sign")
negative = _unary("neg", "-x")
add, subtract, multiply = _binary("add", "a + b"), _binary("sub", "a - b"), _binary("mul", "a * b")
divide = _binary("div", "a / b")
true_divide = divide  # NumPy's alias
power = _binary("pow", "a ** b")
maximum = _binary("max", "elementwise max; ties split the gradient")
minimum = _binary("min", "elementwise min; ties split the gradient")
logaddexp, hypot = _binary("logaddexp", "log(exp(a) + exp(b))"), _binary("hypot", "sqrt(a*a + b*b)")
arctan2 = _binary("atan2", "atan2(a, b)")
matmul = _binary("matmul", "a @ b")
greater, less = _binary("gt", "a > b"), _binary("lt", "a < b")
greater_equal, less_equal = _binary("ge", "a >= b"), _binary("le", "a <= b")
equal, not_equal = _binary("eq", "a == b"), _binary("ne", "a != b")


def _shape_of(x: Any) -> tuple:
    return tuple(x.shape) if isinstance(x, Tracer) else np.shape(x)


def dot(a: Any, b: Any, out: Any = None) -> Any:
    """numpy.dot: a scalar side multiplies; otherwise a sum over the last axis of a and
    the second-to-last of b (the only axis of a vector), outer over the other axes:
    dot(a, b)[i..., j..., n] = sum_k a[i..., k] * b[j..., k, n], unlike matmul's batches.
    Lowered to reshape/transpose/matmul, so gradients are matmul's."""
    if out is not None:
        _refuse("dot", (a, b), out=(out, None))
    sa, sb = _shape_of(a), _shape_of(b)
    if not sa or not sb:
        return apply("mul", a, b)
    k1, k2 = sa[-1], sb[-2] if len(sb) >= 2 else sb[-1]
    if k1 != k2:
        raise ShapeError(f"dot: shapes {fmt_shape(sa)} and {fmt_shape(sb)} are not aligned: the last axis of the "
                         f"left side ({k1}) must equal the {'second-to-last' if len(sb) >= 2 else 'only'} axis "
                         f"of the right side ({k2})")
    if len(sa) == 1 or len(sb) <= 2:  # here numpy.dot is numpy.matmul (no batch axes meet)
        return apply("matmul", a, b)
    # a (*A, k), b (*B, k, n): a as (prod A, k) @ b as (k, prod B * n), then the outer shape
    # (b's outer sizes are merged, so they must be known; a symbolic size of a stays an axis)
    lead_a, lead_b, n = sa[:-1], sb[:-2], sb[-1]
    if not all(_known(d) for d in lead_b + (n,)):
        raise ShapeError(f"dot: {fmt_shape(sa)} with {fmt_shape(sb)} merges the right side's axes "
                         f"{fmt_shape(lead_b + (n,))}, so their sizes must be known while tracing")
    nb = len(sb)
    bt = apply("transpose", b, axes=(nb - 2,) + tuple(range(nb - 2)) + (nb - 1,))  # (k, *B, n)
    b2 = apply("reshape", bt, shape=(k2, int(np.prod(lead_b + (n,), dtype=np.int64))))
    a2 = a
    if len(sa) > 2 and all(_known(d) for d in lead_a):  # one 2-D product (a GEMM) rather than a batch of them
        a2 = apply("reshape", a, shape=(int(np.prod(lead_a, dtype=np.int64)), k1))
    return apply("reshape", apply("matmul", a2, b2), shape=lead_a + lead_b + (n,))


def _known(d: Any) -> bool:
    return isinstance(d, (int, np.integer))


square = _unary(lambda x: apply("mul", x, x), "x * x")


def where(condition: Any, x: Any = None, y: Any = None, /) -> Any:
    """x where condition, else y; the branch not taken gets an exact 0 gradient."""
    if x is None or y is None:
        raise UnsupportedError("graphc.numpy.where takes three arguments, where(condition, x, y): the one-argument "
                               "form (the indices of nonzero entries) is not supported")
    return apply("where", condition, x, y)


def clip(a: Any, a_min: Any = _NoValue, a_max: Any = _NoValue, out: Any = None, *, min: Any = _NoValue,  # noqa: A002
         max: Any = _NoValue, **kwargs: Any) -> Any:  # noqa: A002
    """numpy.clip: minimum(maximum(a, a_min), a_max); a bound of None leaves that side open;
    NumPy 2's min=/max= name the bounds when a_min and a_max are not given. The
    gradient passes to a on [a_min, a_max], bounds included. kwargs: a ufunc's (where=, ...)."""
    if a_min is _NoValue and a_max is _NoValue:
        a_min = None if min is _NoValue else min
        a_max = None if max is _NoValue else max
    elif a_min is _NoValue or a_max is _NoValue:
        raise TypeError(f"clip() missing 1 required positional argument: {'a_min' if a_min is _NoValue else 'a_max'!r}")
    elif min is not _NoValue or max is not _NoValue:
        raise ValueError("clip(): min= or max= given together with a_min and a_max")
    if out is not None or kwargs:
        unknown = [k for k in kwargs if k not in ("where", "casting", "order", "dtype", "subok", "signature")]
        if unknown:
            raise TypeError(f"clip() got an unexpected keyword argument {unknown[0]!r}")
        _ufunc_options("clip", (a, a_min, a_max), out, kwargs.get("where", True), kwargs.get("casting", "same_kind"),
                       kwargs.get("order", "K"), kwargs.get("dtype"), kwargs.get("subok", True),
                       kwargs.get("signature"))
    if a_min is None and a_max is None:
        return a if isinstance(a, Tracer) else apply("mul", a, 1.0)
    return apply("clip", a, -np.inf if a_min is None else a_min, np.inf if a_max is None else a_max)


def _flag(keepdims: Any) -> bool:
    return False if keepdims is _NoValue else bool(keepdims)


def sum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: Any = False,  # noqa: A001
        initial: Any = _NoValue, where: Any = _NoValue) -> Any:
    """numpy.sum; initial=0 is honoured (it changes nothing)."""
    if type(initial) in (int, float) and initial == 0:
        initial = _NoValue
    if dtype is not None or out is not None or initial is not _NoValue or where is not _NoValue:
        _refuse("sum", (a,), dtype=(dtype, None), out=(out, None), initial=(initial, _NoValue),
                where=(where, _NoValue))
    return apply("sum", a, axis=axis, keepdims=_flag(keepdims))


def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: Any = False, *,
         where: Any = _NoValue) -> Any:
    if dtype is not None or out is not None or where is not _NoValue:
        _refuse("mean", (a,), dtype=(dtype, None), out=(out, None), where=(where, _NoValue))
    return apply("mean", a, axis=axis, keepdims=_flag(keepdims))


def max(a: Any, axis: Any = None, out: Any = None, keepdims: Any = False, initial: Any = _NoValue,  # noqa: A001
        where: Any = _NoValue) -> Any:
    """Largest entry over axes (ties split the gradient); maximum(x1, x2) is elementwise."""
    if out is not None or initial is not _NoValue or where is not _NoValue:
        _refuse("max", (a,), out=(out, None), initial=(initial, _NoValue), where=(where, _NoValue))
    return apply("amax", a, axis=axis, keepdims=_flag(keepdims))


def min(a: Any, axis: Any = None, out: Any = None, keepdims: Any = False, initial: Any = _NoValue,  # noqa: A001
        where: Any = _NoValue) -> Any:
    """Smallest entry over axes (ties split the gradient); minimum(x1, x2) is elementwise."""
    if out is not None or initial is not _NoValue or where is not _NoValue:
        _refuse("min", (a,), out=(out, None), initial=(initial, _NoValue), where=(where, _NoValue))
    return apply("amin", a, axis=axis, keepdims=_flag(keepdims))


amax, amin = max, min


def transpose(a: Any, axes: Any = None) -> Any:
    return apply("transpose", a, axes=None if axes is None else tuple(axes))


def reshape(a: Any, /, shape: Any = None, order: Any = "C", *, newshape: Any = None, copy: Any = None) -> Any:
    """numpy.reshape in C order; newshape= is NumPy's older name for shape."""
    from .trace import fill_reshape

    if newshape is not None:
        if shape is not None:
            raise TypeError("reshape(): shape= and newshape= given together")
        shape = newshape
    if shape is None:
        raise TypeError("reshape() missing 1 required argument: 'shape'")
    if order != "C" or not (copy is None or copy is True):
        _refuse("reshape", (a,), order=(order, "C"), copy=(copy, None))
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return apply("reshape", a, shape=fill_reshape(tuple(getattr(a, "shape", ())), shape))


def broadcast_to(array: Any, shape: Any, subok: Any = False) -> Any:
    if subok is not False:
        _refuse("broadcast_to", (array,), subok=(subok, False))
    return apply("broadcast_to", array, shape=tuple(shape))


__all__ = [
    "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "arctan", "arcsin", "arccos", "arcsinh",
    "arccosh", "arctanh", "abs", "absolute", "log1p", "expm1", "log2", "log10", "exp2", "floor", "ceil", "sign",
    "negative", "add", "subtract", "multiply", "divide", "true_divide", "power", "fabs", "conj", "conjugate", "maximum", "minimum", "logaddexp", "hypot",
    "arctan2", "matmul", "dot", "greater", "less", "greater_equal", "less_equal", "equal", "not_equal", "square",
    "where", "clip", "sum", "mean", "max", "min", "amax", "amin", "transpose", "reshape", "broadcast_to",
]

# the rest of NumPy's array language, one module per family (issue 26)
from . import numpy_math as _math  # noqa: E402
from . import numpy_shape as _shape  # noqa: E402

for _mod in (_shape, _math):
    for _name in _mod.__all__:
        globals()[_name] = getattr(_mod, _name)
    __all__ += _mod.__all__

for _name in __all__:  # the ufuncs carry NumPy's names (abs: absolute's alias keeps "abs")
    _f = globals()[_name]
    if getattr(_f, "_numpy_ufunc", 0) and not getattr(_f, "_named", False):
        _f.__name__ = _f.__qualname__ = _name
        _f._named = True
NUMPY_FUNCTIONS.update((name, globals()[name]) for name in __all__)


def __getattr__(name: str) -> Any:
    """graphc.numpy.<a name it lacks>: an error (an AttributeError and a GraphcError) naming the
    closest supported functions."""
    if name.startswith("__"):
        raise AttributeError(name)
    if name in _math.EXTRA:  # graphc.numpy.linalg, graphc.numpy.coverage (not NumPy functions)
        return _math.EXTRA[name]
    raise _math.missing_attribute(name)
