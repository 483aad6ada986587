"""NumPy's parameters for graphc.numpy's functions: every function takes NumPy's
names in NumPy's order. Those graphc cannot honour (out=, where=, initial=, a
dtype= other than the computation's, ...) are refused here with an
UnsupportedError naming the parameter unless left at their defaults -- never
silently ignored. Shared by numpy, numpy_shape and numpy_math."""

from __future__ import annotations

from typing import Any

import numpy as np

from .describe import describe
from .errors import UnsupportedError
from .ir import DTYPE_NUMPY
from .trace import Tracer

NoValue: Any = np._NoValue  # NumPy's "not given" default (keepdims=, initial=, where=)

_WHY = {
    "out": "graphc's values are immutable: use the returned value",
    "where": "compute everywhere, then choose entries with graphc.numpy.where(condition, result, other)",
    "initial": "combine it with the result instead, e.g. graphc.numpy.maximum(graphc.numpy.max(a), initial)",
}


def float_dtype(args: tuple) -> np.dtype:
    """The float dtype a call computes in: the traced program's, or that of its float arrays."""
    for a in args:
        if isinstance(a, Tracer):
            return np.dtype(DTYPE_NUMPY[a.trace.dtype])
    floats = [d for d in (np.asarray(a).dtype for a in args if a is not None) if d.kind == "f"]
    return np.result_type(*floats) if floats else np.dtype(np.float64)


def refuse(fn: str, args: tuple = (), **given: tuple[Any, Any]) -> None:
    """Raise UnsupportedError for the first parameter graphc cannot honour: each of
    `given` is (value, default). Honoured besides the defaults: out=None (or NumPy's
    (None,)), where=True and a dtype= naming the float dtype the call computes in."""
    for name, (value, default) in given.items():
        if value is default or (type(value) is type(default) and value == default):
            continue
        if name == "out" and type(value) is tuple and all(v is None for v in value):
            continue
        if name == "where" and (value is True or value is np.True_):
            continue
        if name == "dtype":
            want = float_dtype(args)
            try:
                if np.dtype(value) == want:
                    continue
            except TypeError:
                pass
            try:
                shown = np.dtype(value).name
            except TypeError:
                shown = repr(value)
            raise UnsupportedError(f"graphc.numpy.{fn}: dtype={shown} is not supported: graphc computes in the "
                                   f"arguments' float dtype ({want}); convert the arguments instead")
        if name in _WHY:
            raise UnsupportedError(f"graphc.numpy.{fn}: {name}= is not supported ({_WHY[name]})")
        shown = repr(value) if len(repr(value)) <= 40 else describe(value)
        why = (f"graphc honours only {name}={default!r}" if default is not NoValue
               else f"graphc honours only leaving {name}= out")
        raise UnsupportedError(f"graphc.numpy.{fn}: {name}={shown} is not supported ({why})")
