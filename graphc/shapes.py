"""Binding a tensor program's arguments: shapes checked against the declared
types, symbolic dimensions bound once per call and agreeing across inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .backends.buffers import is_device
from .errors import ArgumentError
from .ir import DTYPE_NUMPY, Node, fmt_shape


def as_argument(node: Node, value: Any, float_dtype: np.dtype, device: bool = False) -> np.ndarray:
    """One argument as an array: floats in the function's dtype, labels as int64.
    With `device`, a GPU array (`__cuda_array_interface__`) stays where it is:
    it must already have the right dtype, since converting it would mean a copy."""
    want = float_dtype if node.type.is_float else np.dtype(DTYPE_NUMPY[node.dtype])
    if type(value) is np.ndarray and value.dtype == want:
        return value  # the common call: nothing to convert
    name = node.attr
    if device and is_device(value):
        got = np.dtype(value.__cuda_array_interface__["typestr"] if hasattr(value, "__cuda_array_interface__")
                       else value.dtype)
        if got != want:
            raise ArgumentError(f"argument {name!r} is a GPU array of dtype {got}; this function "
                                f"takes {want} there (graphc does not convert arrays on the GPU)")
        return value
    try:
        a = np.asarray(value)
    except Exception as exc:  # ragged nested lists
        refuse_traced({name: value})
        raise ArgumentError(f"argument {name!r} is not a numeric array: {exc}") from None
    if node.type.is_float:
        if a.dtype.kind not in "biuf":
            raise ArgumentError(f"argument {name!r} is not real-valued numeric data (got dtype {a.dtype})")
        with np.errstate(over="ignore"):
            return a.astype(float_dtype, copy=False)
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and a.size and np.all(np.floor(a) == a):
            raise ArgumentError(f"argument {name!r} holds labels ({node.type}): pass integers, e.g. "
                                f"numpy.asarray({name}, dtype=int), not {a.dtype}")
        if a.dtype.kind != "f" or a.size:
            raise ArgumentError(f"argument {name!r} must be integer labels ({node.type}), got dtype {a.dtype}")
    return a.astype(DTYPE_NUMPY[node.dtype], copy=False)


def refuse_traced(values: Mapping[str, Any]) -> None:
    """A compiled formula's arguments that are traced values (its call inside a function
    that graphc.value_and_grad/grad/jit is tracing): an ArgumentError saying what to do."""
    from .trace import Tracer

    for name, value in values.items():
        if isinstance(value, Tracer):
            raise ArgumentError(f"argument {name!r} is a traced value (a graphc Tracer): a function from "
                                "graphc.compile runs on arrays and cannot be called inside a function that "
                                "graphc.value_and_grad/grad/jit is tracing; write its formula with graphc.numpy "
                                "functions there, or call it outside on arrays")


def bind(inputs: Sequence[Node], values: Mapping[str, Any], float_dtype: np.dtype,
         device: bool = False) -> tuple[list[np.ndarray], dict[str, int]]:
    """Arrays in input order and the sizes of the symbolic dimensions; an
    ArgumentError names the argument, its shape and the declared one."""
    arrays: list[np.ndarray] = []
    dims: dict[str, int] = {}
    where: dict[str, str] = {}
    for node in inputs:
        a = as_argument(node, values[node.attr], float_dtype, device)
        declared = node.shape
        if a.ndim != len(declared):
            raise ArgumentError(f"argument {node.attr!r} has shape {fmt_shape(a.shape)} but is declared "
                                f"{fmt_shape(declared)}")
        for d, s in zip(declared, a.shape):
            if isinstance(d, int):
                if d != s:
                    raise ArgumentError(f"argument {node.attr!r} has shape {fmt_shape(a.shape)} but is declared "
                                        f"{fmt_shape(declared)}")
            elif d in dims and dims[d] != s:
                raise ArgumentError(f"dimension {d} is {dims[d]} in {where[d]} but {s} in {node.attr!r} "
                                    f"(shape {fmt_shape(a.shape)})")
            else:
                dims[d] = int(s)
                where.setdefault(d, repr(node.attr))
        arrays.append(a)
    return arrays, dims


def bound(shape: tuple, dims: Mapping[str, int]) -> tuple[int, ...]:
    """A declared shape with its symbolic dimensions replaced by their sizes."""
    return tuple(d if isinstance(d, int) else dims[d] for d in shape)
