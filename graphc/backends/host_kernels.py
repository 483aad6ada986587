"""Compiled forms of host steps whose NumPy forms are slow loops (issue 26's array rows).

- scatter-add (a gather's gradient, `x.at[idx].add(v)`): `numpy.add.at` runs a ufunc per
  element, about 8x a plain loop over rows of the update;
- cumsum along an axis: NumPy's accumulate strides along each line, a plain loop over
  contiguous lines is about 3x faster;
- gather (x[idx]): NumPy's fancy indexing is fast, but its result is a new array each
  call, whose pages fault in one by one (2-4 ms for 8 MB on this VM): here it is taken
  into a buffer the memory plan keeps.

Each has exactly its NumPy form's arguments and results, bit for bit (the same
additions in the same order). The compiled CPU targets' plans run them in place of
the NumPy forms (`FAST`, read by `schedule.plan.lower`, each writing into the
buffer the plan gives it); the numpy target keeps the
NumPy forms as the reference, and tests/test_host_kernels.py checks one against the
other. Numba compiles each on first use and caches it on disk.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import REGISTRY


@functools.cache
def _kernels() -> Any:
    """The compiled loops, made on first use (importing Numba costs a few tenths of a second)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def add_rows(out, rows, v):  # pragma: no cover (compiled)
        m = out.shape[1]
        for i in range(rows.shape[0]):
            r = rows[i]
            for j in range(m):
                out[r, j] += v[i, j]

    @njit(cache=True, nogil=True)
    def cumsum_lines(x, out, reverse):  # pragma: no cover (compiled)
        # x, out: (before, n, after); each line along the middle axis summed in its order
        b, n, a = x.shape
        for i in range(b):
            for s in range(n):
                j = n - 1 - s if reverse else s
                if s == 0:
                    for k in range(a):
                        out[i, j, k] = x[i, j, k]
                else:
                    p = j + 1 if reverse else j - 1
                    for k in range(a):
                        out[i, j, k] = out[i, p, k] + x[i, j, k]

    return types.SimpleNamespace(add_rows=add_rows, cumsum_lines=cumsum_lines)


def _rows(idx: np.ndarray, sizes: tuple, clip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each index row of idx (last axis: one column per indexed axis) as one flat row number
    of the indexed axes (normalised as the NumPy forms do), and the mask of those in range."""
    from ..shape_ops import normalize_indices

    k = idx.shape[-1]
    j, inside = normalize_indices(idx, sizes, clip)
    j = j.reshape(-1, k)
    rows = np.ravel_multi_index(tuple(j[:, c] for c in range(k)), sizes) if k > 1 else j[:, 0]
    return np.ascontiguousarray(rows, dtype=np.int64), inside.reshape(-1)


def gather(x: Any, idx: Any, clip: bool, out: np.ndarray | None = None) -> np.ndarray:
    """The `gather` op as one numpy.take of rows, into `out` (a pooled buffer the plan
    reuses every call, where a fresh array would fault its pages in each time)."""
    x, idx = np.asarray(x), np.asarray(idx)
    k = idx.shape[-1]
    shape = idx.shape[:-1] + x.shape[k:]
    if out is None or x.dtype.kind != "f" or 0 in x.shape[:k] or 0 in idx.shape[:-1] or out.shape != shape:
        return REGISTRY["gather"].numpy(x, idx, clip=clip)
    rows, inside = _rows(idx, x.shape[:k], clip)
    flat = out.reshape((rows.shape[0],) + x.shape[k:])
    np.take(x.reshape((-1,) + x.shape[k:]), rows, axis=0, out=flat, mode="clip")
    if not inside.all():
        flat[~inside] = 0
    return out


def scatter(x: Any, v: Any, idx: Any, update: str, clip: bool, out: np.ndarray | None = None) -> np.ndarray:
    """The `scatter` op: update="add" as a compiled loop over the update's rows (in the
    order numpy.add.at applies them), into `out` where given; the other updates are the
    NumPy form."""
    x, v, idx = np.asarray(x), np.asarray(v), np.asarray(idx)
    if update != "add" or x.dtype.kind != "f" or v.dtype != x.dtype:
        return REGISTRY["scatter"].numpy(x, v, idx, update=update, clip=clip)
    k = idx.shape[-1]
    if out is None or out.shape != x.shape or not out.flags.c_contiguous:
        out = np.empty(x.shape, dtype=x.dtype)
    np.copyto(out, x)
    if out.size == 0 or 0 in idx.shape[:-1]:
        return out
    rows, keep = _rows(idx, x.shape[:k], clip)
    width = int(np.prod(x.shape[k:], dtype=np.int64))
    vals = np.ascontiguousarray(v).reshape(-1, width)
    if not keep.all():
        rows, vals = rows[keep], vals[keep]
    _kernels().add_rows(out.reshape(-1, width), rows, vals)
    return out


def cumsum(x: Any, axis: int, reverse: bool, out: np.ndarray | None = None) -> np.ndarray:
    """The `cumsum` op as a compiled loop over lines (numpy.cumsum's order of additions),
    into `out` where given."""
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.size == 0:
        return REGISTRY["cumsum"].numpy(x, axis=axis, reverse=reverse)
    shape = x.shape
    if out is None or out.shape != shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        out = np.empty(shape, dtype=x.dtype)
    before = int(np.prod(shape[:axis], dtype=np.int64))
    after = int(np.prod(shape[axis + 1:], dtype=np.int64))
    src = np.ascontiguousarray(x).reshape(before, shape[axis], after)
    _kernels().cumsum_lines(src, out.reshape(before, shape[axis], after), bool(reverse))
    return out


# op -> its compiled form, taking an `out=` buffer of the result's shape and dtype (the
# plan gives it a pooled one) and returning it
FAST: dict[str, Callable[..., Any]] = {"scatter": scatter, "cumsum": cumsum, "gather": gather}
