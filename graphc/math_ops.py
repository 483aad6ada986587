"""Tensor ops for statistics, scans, sorting and contractions (issue 26): prod, cumsum/cumprod,
diff, argmax/argmin/argsort/sort, diagonals (einsum's repeated letters, trace), cross products and
the index constants (iota) and conversions used to turn integers into numbers. Each is a registry
entry with every tensor facet; semantics follow NumPy (gradients as JAX's).

var/std, einsum, tensordot, outer, kron, linalg.norm and the rest of `graphc.numpy_math` are
compositions of these and of `tensor_ops` (einsum lowers to transposes, reductions and matmul).

Gradients:
- prod: exact where entries are zero (one zero: the product of the others; two or more: 0),
  built from `where`, so it is differentiable again (Hessians).
- cumsum: a cumsum of the adjoint the other way; cumprod: the reverse cumsum of g*y divided by
  x, with the first zero of each line handled exactly (as prod).
- sort: the adjoint flows back through the sorting permutation (`unsort`, a scatter); argmax,
  argmin and argsort are integers and carry none.
- diff: its transpose `diff_t` (and back); diagonal: its transpose `diag_embed` (and back).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import IRError, ShapeError
from .ir import Node, Type, const, fmt_shape, make
from .registry import OpSpec, register_op
from .tensor_ops import expand_to, norm_axes, reduced_shape

# ------------------------------------------------------------------ helpers


def _sp():
    import sympy

    return sympy


def _obj(v: Any) -> np.ndarray:
    return v if isinstance(v, np.ndarray) else np.asarray(v, dtype=object)


def _only(op: str, attrs: dict[str, Any], allowed: Sequence[str]) -> None:
    bad = [k for k in attrs if k not in allowed]
    if bad:
        ok = ", ".join(f"{k}=" for k in allowed) or "none"
        raise IRError(f"{op}: unknown keyword argument {bad[0]}= (accepted: {ok})")


def _float_arg(op: str, x: Node) -> None:
    if not x.type.is_float:
        what = "a mask (a comparison)" if x.dtype == "bool" else f"an integer value ({x.type})"
        raise IRError(f"{op}: argument is {what}; {op} takes floats (convert with .astype(float))")


def _flag(op: str, name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)) and v not in (0, 1):
        raise IRError(f"{op}: {name} must be True or False, got {v!r}")
    return bool(v)


def _axis1(op: str, x: Node, axis: Any, name: str = "axis") -> int:
    """One axis (an int, negative from the end) of x, checked."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise IRError(f"{op}: {name} must be one int, got {axis!r}")
    nd = x.type.ndim
    if not -nd <= axis < nd:
        raise ShapeError(f"{op}: {name}={axis} is out of range for a value of shape {fmt_shape(x.shape)} "
                         f"({nd} dimension{'s' if nd != 1 else ''})")
    return int(axis) % nd


def _known(op: str, x: Node, axis: int) -> int:
    d = x.shape[axis]
    if not isinstance(d, int):
        raise ShapeError(f"{op}: the size of axis {axis} ({d}) must be known while tracing")
    return d


def _c(v: float, like: Node) -> Node:
    return const(v, like.dtype)


def _mask_float(m: Node, like: Node) -> Node:
    return make("where", m, _c(1.0, like), _c(0.0, like))


def _sym_np(fn):
    return lambda *a, **k: _obj(fn(*(_obj(x) for x in a), **k))


def _flipped(fn, x, axis, reverse):
    if not reverse:
        return fn(x, axis=axis)
    return np.flip(fn(np.flip(x, axis), axis=axis), axis)


def _g_none(n, g):
    return (None,) * len(n.args)


# ------------------------------------------------------------------ prod


def _infer_prod(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("axis", "keepdims"))
    _float_arg(op, x)
    axes = norm_axes(op, x, attrs.get("axis"))
    keep = _flag(op, "keepdims", attrs.get("keepdims", False))
    return {"axis": axes, "keepdims": keep}, Type(x.dtype, reduced_shape(x.shape, axes, keep))


def _np_prod(x, axis, keepdims):
    return np.prod(x, axis=axis, keepdims=keepdims)


def _g_prod(n, g):
    # JAX's rule without its cumprods: where no entry of a line is 0, g * p / x; at a line's only
    # zero, g * (the product of the others); elsewhere on a line with a zero, 0 (p = 0 there)
    x = n.args[0]
    axes, keep = n.attrs["axis"], n.attrs["keepdims"]
    zero = make("eq", x, _c(0.0, x))
    safe = make("where", zero, _c(1.0, x), x)
    p = expand_to(n, x, axes, keep)
    nz = expand_to(make("sum", _mask_float(zero, x), axis=axes, keepdims=keep), x, axes, keep)
    others = expand_to(make("prod", safe, axis=axes, keepdims=keep), x, axes, keep)
    ge = expand_to(g, x, axes, keep)
    at_zero = make("where", make("eq", nz, _c(1.0, x)), make("mul", ge, others), _c(0.0, x))
    return (make("where", zero, at_zero, make("mul", ge, make("div", p, safe))),)


# ------------------------------------------------------------------ scans


def _infer_scan(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("axis", "reverse"))
    _float_arg(op, x)
    if x.type.ndim == 0:
        raise ShapeError(f"{op}: needs at least one dimension; the argument is a scalar")
    return {"axis": _axis1(op, x, attrs.get("axis", 0)),
            "reverse": _flag(op, "reverse", attrs.get("reverse", False))}, x.type


def _np_cumsum(x, axis, reverse):
    return _flipped(np.cumsum, np.asarray(x), axis, reverse)


def _np_cumprod(x, axis, reverse):
    return _flipped(np.cumprod, np.asarray(x), axis, reverse)


def _g_cumsum(n, g):
    a = n.attrs
    return (make("cumsum", g, axis=a["axis"], reverse=not a["reverse"]),)


def _g_cumprod(n, g):
    # d/dx_j = sum_{i >= j} g_i y_i / x_j before a line's first zero z; at z, sum_{i >= z} g_i y'_i
    # with y' the cumprod with x_z taken as 1; after z, 0 (every product there holds x_z = 0)
    x = n.args[0]
    ax, rev = n.attrs["axis"], n.attrs["reverse"]
    zero = make("eq", x, _c(0.0, x))
    seen = make("cumsum", _mask_float(zero, x), axis=ax, reverse=rev)
    first = make("eq", make("where", zero, seen, _c(0.0, x)), _c(1.0, x))  # zero and seen == 1
    safe = make("where", zero, _c(1.0, x), x)
    back = make("cumsum", make("mul", g, n), axis=ax, reverse=not rev)
    y1 = make("cumprod", make("where", first, _c(1.0, x), x), axis=ax, reverse=rev)
    at_first = make("cumsum", make("mul", g, y1), axis=ax, reverse=not rev)
    return (make("where", first, at_first, make("div", back, safe)),)


def _sym_scan(fn):
    def run(x, axis, reverse):
        return _obj(_flipped(fn, _obj(x), axis, reverse))

    return run


# ------------------------------------------------------------------ diff and its transpose


def _infer_diff(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("axis",))
    _float_arg(op, x)
    if x.type.ndim == 0:
        raise ShapeError(f"{op}: needs at least one dimension; the argument is a scalar")
    ax = _axis1(op, x, attrs.get("axis", -1))
    d = _known(op, x, ax)
    if op == "diff":
        if d == 0:
            raise ShapeError(f"diff: axis {ax} of {fmt_shape(x.shape)} is empty")
        shape = x.shape[:ax] + (d - 1,) + x.shape[ax + 1:]
    else:
        shape = x.shape[:ax] + (d + 1,) + x.shape[ax + 1:]
    return {"axis": ax}, Type(x.dtype, shape)


def _np_diff(x, axis):
    return np.diff(x, axis=axis)


def _np_diff_t(g, axis):
    """The transpose of diff: out[j] = g[j-1] - g[j] (g taken as 0 outside its range)."""
    g = np.asarray(g)
    pad = [(0, 0)] * g.ndim
    lo, hi = list(pad), list(pad)
    lo[axis], hi[axis] = (1, 0), (0, 1)
    return np.pad(g, lo) - np.pad(g, hi)


def _g_diff(n, g):
    return (make("diff_t", g, axis=n.attrs["axis"]),)


def _g_diff_t(n, g):
    return (make("diff", g, axis=n.attrs["axis"]),)


# ------------------------------------------------------------------ arg reductions and sorting


def _infer_argred(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("axis", "keepdims"))
    _float_arg(op, x)
    axis = attrs.get("axis")
    keep = _flag(op, "keepdims", attrs.get("keepdims", False))
    if axis is None:
        if any(d == 0 for d in x.shape):
            raise ShapeError(f"{op}: attempt to get {op} of an empty sequence (shape {fmt_shape(x.shape)})")
        return {"axis": None, "keepdims": keep}, Type("i64", (1,) * x.type.ndim if keep else ())
    if x.type.ndim == 0:
        raise ShapeError(f"{op}: axis={axis} is out of range for a scalar")
    ax = _axis1(op, x, axis)
    if x.shape[ax] == 0:
        raise ShapeError(f"{op}: attempt to get {op} of an empty sequence (axis {ax} of {fmt_shape(x.shape)})")
    return {"axis": ax, "keepdims": keep}, Type("i64", reduced_shape(x.shape, (ax,), keep))


def _np_argmax(x, axis, keepdims):
    return np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64)


def _np_argmin(x, axis, keepdims):
    return np.argmin(x, axis=axis, keepdims=keepdims).astype(np.int64)


def _sym_argpick(better):
    """argmax/argmin over SymPy expressions: a Piecewise choosing the first best index."""

    def pick(items):
        sp = _sp()
        pieces = []
        for i, v in enumerate(items):
            conds = [better(v, w) if j > i else better(v, w, strict=True) for j, w in enumerate(items) if j != i]
            pieces.append((sp.Integer(i), sp.And(*conds) if conds else sp.true))
        return sp.Piecewise(*pieces[:-1], (sp.Integer(len(items) - 1), True))

    def run(x, axis, keepdims):
        x = _obj(x)
        flat = x.reshape(-1) if axis is None else np.moveaxis(x, axis, -1)
        lead = () if axis is None else flat.shape[:-1]
        out = np.empty(lead, dtype=object)
        for idx in np.ndindex(*lead):
            out[idx] = pick(list(flat[idx]))
        if keepdims:
            out = out.reshape((1,) * x.ndim if axis is None else reduced_shape(x.shape, (axis,), True))
        return out

    return run


def _ge(a, b, strict=False):
    return a > b if strict else a >= b


def _le(a, b, strict=False):
    return a < b if strict else a <= b


def _infer_sort(op, args, attrs):
    _only(op, attrs, ("axis", "kth", "window") if op == "argsort" else ("axis",))
    for a in args:
        _float_arg(op, a)
    x = args[0]
    if x.type.ndim == 0:
        raise ShapeError(f"{op}: needs at least one dimension; the argument is a scalar")
    if len(args) == 2 and args[1].shape != x.shape:
        raise ShapeError(f"{op}: keys {fmt_shape(x.shape)} and values {fmt_shape(args[1].shape)} differ in shape")
    ax = _axis1(op, x, attrs.get("axis", -1))
    if attrs.get("kth") is not None:  # argsort(kth=...): numpy.argpartition's permutation
        return {"axis": ax, "kth": _kth(op, x, ax, attrs["kth"])}, Type("i64", x.shape)
    if attrs.get("window") is not None:  # argsort(window=(lo, hi)): entries lo..hi-1 of the sorting permutation
        lo, hi = _window(op, x, ax, attrs["window"])
        shape = tuple(hi - lo if i == ax else d for i, d in enumerate(x.shape))
        return {"axis": ax, "window": (lo, hi)}, Type("i64", shape)
    return {"axis": ax}, Type("i64", x.shape) if op == "argsort" else args[-1].type


def _kth(op, x, ax, kth):
    """argpartition's kth (an int or ints, negative from the end) as a tuple in range."""
    n = _known(op, x, ax)
    items = tuple(kth) if isinstance(kth, (tuple, list)) else (kth,)
    out = []
    for k in items:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise IRError(f"{op}: kth must be an int or a sequence of ints, got {kth!r}")
        if not -n <= k < n:
            raise ShapeError(f"{op}: kth(={int(k)}) out of bounds ({n}) on axis {ax} of {fmt_shape(x.shape)}")
        out.append(int(k) % n)
    return tuple(out)


def _window(op, x, ax, window):
    """argsort's window=(lo, hi): a non-empty run of ranks along the axis."""
    n = _known(op, x, ax)
    try:
        lo, hi = (int(w) for w in window)
    except (TypeError, ValueError):
        raise IRError(f"{op}: window must be a pair of ints (lo, hi), got {window!r}") from None
    if not 0 <= lo < hi <= n:
        raise ShapeError(f"{op}: window ({lo}, {hi}) is not a run of ranks in 0..{n} on axis {ax}")
    return lo, hi


def _order(key, axis):
    """The sorting permutation behind sort's gradient (sort_by, unsort): NumPy's default
    kind (its SIMD sorts, 4x the stable merge sort here). Ties may take either order: a
    sort's values are the same and so is the summed gradient of tied entries."""
    return np.argsort(key, axis=axis)


def _np_sort(x, axis):
    return np.sort(x, axis=axis)  # every kind sorts to the same values; the default is the fastest


def _np_argsort(x, axis, kth=None, window=None):
    """The stable sorting permutation (numpy.argsort(kind='stable')); with kth,
    numpy.argpartition's (applied by take_along_axis it gives numpy.partition's output
    exactly); with window=(lo, hi), the permutation's entries lo..hi-1 only, found by
    one argpartition and a sort of the window (the top-k of `sort(x)[..., -k:]`)."""
    if kth is not None:
        return np.argpartition(x, list(kth), axis=axis).astype(np.int64)
    if window is None:
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64)
    lo, hi = window
    n = np.shape(x)[axis]
    if (lo, hi) == (0, n):
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64)
    part = np.argpartition(x, sorted({lo, hi - 1}), axis=axis)
    part = np.take(part, np.arange(lo, hi), axis=axis)
    inner = np.argsort(np.take_along_axis(x, part, axis=axis), axis=axis, kind="stable")
    return np.take_along_axis(part, inner, axis=axis).astype(np.int64)


def _np_sort_by(key, v, axis):
    """v permuted as sorting key permutes it (take_along_axis by the stable argsort)."""
    return np.take_along_axis(np.asarray(v), _order(key, axis), axis=axis)


def _np_unsort(key, g, axis):
    """The transpose of sort_by: g scattered back to where each sorted entry came from."""
    g = np.asarray(g)
    out = np.empty_like(g)
    np.put_along_axis(out, _order(key, axis), g, axis=axis)
    return out


def _g_sort(n, g):
    x = n.args[0]
    return (make("unsort", x, g, axis=n.attrs["axis"]),)


def _g_sort_by(n, g):
    return None, make("unsort", n.args[0], g, axis=n.attrs["axis"])


def _g_unsort(n, g):
    return None, make("sort_by", n.args[0], g, axis=n.attrs["axis"])


MAX_SYMBOLIC_SORT = 4  # permutations enumerated by the SymPy forms of sort_by/unsort/argsort


def _sym_lines(x, axis, fn):
    x = _obj(x)
    moved = np.moveaxis(x, axis, -1)
    out = np.empty(moved.shape, dtype=object)
    for idx in np.ndindex(*moved.shape[:-1]):
        out[idx] = fn(list(moved[idx]), idx)
    return np.moveaxis(out, -1, axis)


def _sym_sort(x, axis):
    """A sorting network of Min/Max (exact away from ties; SymPy differentiates it)."""

    def line(items, _):
        sp = _sp()
        v = list(items)
        for i in range(len(v)):
            for j in range(len(v) - 1 - i):
                v[j], v[j + 1] = sp.Min(v[j], v[j + 1]), sp.Max(v[j], v[j + 1])
        return v

    return _sym_lines(x, axis, line)


def _perm_pieces(keys):
    """[(permutation, condition)] over every order of the keys (stable: ties by index)."""
    sp = _sp()
    n = len(keys)
    if n > MAX_SYMBOLIC_SORT:
        raise IRError(f"sorting: the SymPy form enumerates orders of at most {MAX_SYMBOLIC_SORT} entries, got {n}")
    out = []
    for perm in itertools.permutations(range(n)):
        conds = [keys[a] < keys[b] if a > b else keys[a] <= keys[b] for a, b in zip(perm, perm[1:])]
        out.append((perm, sp.And(*conds)))
    return out


def _piecewise(pieces, value_of):
    sp = _sp()
    return sp.Piecewise(*[(value_of(p), c) for p, c in pieces[:-1]], (value_of(pieces[-1][0]), True))


def _argpartition_of(perm, kth):
    """argpartition for keys in the sorted order `perm`: that of their ranks (introselect is
    comparison-based, so the same permutation away from ties)."""
    ranks = np.empty(len(perm), dtype=np.int64)
    ranks[list(perm)] = np.arange(len(perm))
    return [int(i) for i in np.argpartition(ranks, list(kth))]


def _sym_argsort(x, axis, kth=None, window=None):
    def line(items, _):
        pieces = _perm_pieces(items)
        of = (lambda p: p) if kth is None else (lambda p: _argpartition_of(p, kth))
        return [_piecewise(pieces, lambda p, k=k: _sp().Integer(of(p)[k])) for k in range(len(items))]

    out = _sym_lines(x, axis, line)
    return out if window is None else np.take(out, np.arange(*window), axis=axis)


def _sym_sort_by(key, v, axis):
    v = np.moveaxis(_obj(v), axis, -1)

    def line(items, idx):
        pieces = _perm_pieces(items)
        vals = list(v[idx])
        return [_piecewise(pieces, lambda p, k=k: vals[p[k]]) for k in range(len(items))]

    return _sym_lines(key, axis, line)


def _sym_unsort(key, g, axis):
    g = np.moveaxis(_obj(g), axis, -1)

    def line(items, idx):
        pieces = _perm_pieces(items)
        vals = list(g[idx])
        return [_piecewise(pieces, lambda p, k=k: vals[list(p).index(k)]) for k in range(len(items))]

    return _sym_lines(key, axis, line)


# ------------------------------------------------------------------ take_along / put_along


def _infer_take_along(op, args, attrs):
    x, idx = args
    _only(op, attrs, ("axis", "n") if op == "put_along" else ("axis",))
    _float_arg(op, x)
    if idx.dtype != "i64":
        raise IRError(f"{op}: indices must be integers (i64), got {idx.dtype}")
    if idx.type.ndim != x.type.ndim or x.type.ndim == 0:
        raise ShapeError(f"{op}: indices {fmt_shape(idx.shape)} and values {fmt_shape(x.shape)} need the same "
                         "number of dimensions (at least one)")
    ax = _axis1(op, x, attrs.get("axis", -1))
    if any(a != b for i, (a, b) in enumerate(zip(idx.shape, x.shape)) if i != ax):
        raise ShapeError(f"{op}: indices {fmt_shape(idx.shape)} and values {fmt_shape(x.shape)} differ off axis {ax}")
    if op == "take_along":
        return {"axis": ax}, Type(x.dtype, idx.shape)
    n = attrs.get("n")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < idx.shape[ax]:
        raise ShapeError(f"{op}: n={n!r} must be an int of at least {idx.shape[ax]} (the indices' length on axis {ax})")
    return {"axis": ax, "n": int(n)}, Type(x.dtype, tuple(int(n) if i == ax else d for i, d in enumerate(x.shape)))


def _np_take_along(x, idx, axis):
    return np.take_along_axis(np.asarray(x), np.asarray(idx), axis=axis)


def _np_put_along(g, idx, axis, n):
    g = np.asarray(g)
    out = np.zeros(tuple(n if i == axis else d for i, d in enumerate(g.shape)), dtype=g.dtype)
    np.put_along_axis(out, np.asarray(idx), g, axis=axis)
    return out


def _picked(e, pick):
    """pick(k) for an index e: an integer, or the Piecewise of integers argsort's SymPy form
    gives (a permutation chosen by the order of the keys), taken piece by piece."""
    sp = _sp()
    if isinstance(e, sp.Piecewise):
        return sp.Piecewise(*[(_picked(v, pick), c) for v, c in e.args])
    return pick(int(e))


def _sym_take_along(x, idx, axis):
    x, idx = np.moveaxis(_obj(x), axis, -1), np.moveaxis(_obj(idx), axis, -1)
    out = np.empty(idx.shape, dtype=object)
    for pos in np.ndindex(*idx.shape):
        line = x[pos[:-1]]
        out[pos] = _picked(idx[pos], lambda k, line=line: line[k])
    return np.moveaxis(out, -1, axis)


def _sym_put_along(g, idx, axis, n):
    sp = _sp()
    g, idx = np.moveaxis(_obj(g), axis, -1), np.moveaxis(_obj(idx), axis, -1)
    out = np.empty(g.shape[:-1] + (n,), dtype=object)
    for pos in np.ndindex(*out.shape):
        line, at = g[pos[:-1]], idx[pos[:-1]]
        out[pos] = sp.Add(*[line[k] * _picked(at[k], lambda j, p=pos[-1]: sp.Integer(int(j == p)))
                            for k in range(len(line))])
    return np.moveaxis(out, -1, axis)


def _g_take_along(n, g):
    x, idx = n.args
    ax = n.attrs["axis"]
    return make("put_along", g, idx, axis=ax, n=x.shape[ax]), None


def _g_put_along(n, g):
    return make("take_along", g, n.args[1], axis=n.attrs["axis"]), None


# ------------------------------------------------------------------ diagonals


def _infer_diagonal(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("axis1", "axis2"))
    _float_arg(op, x)
    if x.type.ndim < 2:
        raise ShapeError(f"{op}: needs at least two dimensions, got shape {fmt_shape(x.shape)}")
    a1 = _axis1(op, x, attrs.get("axis1", 0), "axis1")
    a2 = _axis1(op, x, attrs.get("axis2", 1), "axis2")
    if a1 == a2:
        raise ShapeError(f"{op}: axis1 and axis2 are the same axis ({a1})")
    if x.shape[a1] != x.shape[a2]:
        raise ShapeError(f"{op}: the diagonal of axes {a1} and {a2} of {fmt_shape(x.shape)} needs them equal "
                         f"({x.shape[a1]} against {x.shape[a2]})")
    rest = tuple(d for i, d in enumerate(x.shape) if i not in (a1, a2))
    return {"axis1": a1, "axis2": a2}, Type(x.dtype, rest + (x.shape[a1],))


def _np_diagonal(x, axis1, axis2):
    return np.diagonal(x, axis1=axis1, axis2=axis2).copy()


def _infer_diag_embed(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("axis1", "axis2"))
    _float_arg(op, x)
    if x.type.ndim < 1:
        raise ShapeError(f"{op}: needs at least one dimension")
    nd = x.type.ndim + 1
    a1, a2 = attrs.get("axis1", 0), attrs.get("axis2", 1)
    if not (isinstance(a1, int) and isinstance(a2, int) and 0 <= a1 < a2 < nd):
        raise IRError(f"{op}: axis1 < axis2 must be axes of the result ({nd} dimensions), got {a1}, {a2}")
    n = x.shape[-1]
    rest = list(x.shape[:-1])
    rest.insert(a1, n)
    rest.insert(a2, n)
    return {"axis1": a1, "axis2": a2}, Type(x.dtype, tuple(rest))


def _np_diag_embed(x, axis1, axis2):
    x = np.asarray(x)
    n = x.shape[-1]
    out = np.zeros(x.shape[:-1] + (n, n), dtype=x.dtype)
    idx = np.arange(n)
    out[..., idx, idx] = x
    return np.moveaxis(out, (-2, -1), (axis1, axis2))


def _g_diagonal(n, g):
    a = n.attrs
    a1, a2 = sorted((a["axis1"], a["axis2"]))
    return (make("diag_embed", g, axis1=a1, axis2=a2),)


def _g_diag_embed(n, g):
    a = n.attrs
    return (make("diagonal", g, axis1=a["axis1"], axis2=a["axis2"]),)


def _sym_diag_embed(x, axis1, axis2):
    x = _obj(x)
    n = x.shape[-1]
    out = np.full(x.shape[:-1] + (n, n), _sp().Integer(0), dtype=object)
    for i in range(n):
        out[..., i, i] = x[..., i]
    return np.moveaxis(out, (-2, -1), (axis1, axis2))


# ------------------------------------------------------------------ cross product


def _infer_cross(op, args, attrs):
    a, b = args
    _only(op, attrs, ())
    _float_arg(op, a)
    _float_arg(op, b)
    if a.dtype != b.dtype:
        raise IRError(f"cross: mixed types {a.dtype} and {b.dtype}")
    if a.type.ndim == 0 or b.type.ndim == 0 or a.shape[-1] != 3 or b.shape[-1] != 3:
        raise ShapeError(f"cross: both vectors need 3 components on their last axis, got shapes "
                         f"{fmt_shape(a.shape)} and {fmt_shape(b.shape)}")
    from .ir import broadcast_shapes

    return {}, Type(a.dtype, broadcast_shapes("cross", [a.shape[:-1], b.shape[:-1]]) + (3,))


def _np_cross(a, b):
    return np.cross(a, b)


def _g_cross(n, g):
    a, b = n.args
    return make("cross", b, g), make("cross", g, a)


def _sym_cross(a, b):
    a, b = _obj(a), _obj(b)
    a0, a1, a2 = (a[..., i] for i in range(3))
    b0, b1, b2 = (b[..., i] for i in range(3))
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


# ------------------------------------------------------------------ constants and conversions


def _infer_iota(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("n",))
    _float_arg(op, x)
    if x.type.ndim:
        raise ShapeError("iota: takes a scalar (its dtype is the result's)")
    n = attrs.get("n")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise IRError(f"iota: n must be a non-negative int, got {n!r}")
    return {"n": int(n)}, Type(x.dtype, (int(n),))


def _np_iota(x, n):
    """0, 1, ..., n-1 in x's dtype (x is only the dtype's carrier)."""
    return np.arange(n, dtype=np.result_type(x))


def _sym_iota(x, n):
    return np.array([_sp().Integer(i) for i in range(n)], dtype=object)


MAX_ARRAY_CONSTANT = 1 << 16  # entries of a NumPy array captured as a constant; larger ones are arguments


def _infer_array(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("data", "shape", "mask"))
    _float_arg(op, x)
    if x.type.ndim:
        raise ShapeError("array: takes a scalar (its dtype is the result's)")
    shape, data = attrs.get("shape"), attrs.get("data")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise IRError(f"array: shape must be a tuple of sizes, got {shape!r}")
    mask = _flag(op, "mask", attrs.get("mask", False))
    n = int(np.prod(shape, dtype=np.int64))
    if n > MAX_ARRAY_CONSTANT:
        raise ShapeError(f"array: {n} entries; constants hold at most {MAX_ARRAY_CONSTANT} (pass larger "
                         "arrays as arguments)")
    width = 1 if mask else 8
    if not isinstance(data, str) or len(data) != 2 * width * n or any(c not in "0123456789abcdef" for c in data):
        raise IRError(f"array: data must be the hex text of {n} {'bytes' if mask else 'float64 values'}")
    return {"data": data, "shape": shape, "mask": mask}, Type("bool" if mask else x.dtype, shape)


def _entries(data: str, mask: bool) -> np.ndarray:
    """An array constant's entries: its data is the hex text of little-endian float64 values
    (masks: of bytes), exact and printable in the IR's text."""
    return np.frombuffer(bytes.fromhex(data), dtype=np.uint8 if mask else "<f8")


def _np_array(x, data, shape, mask):
    """The captured array, a new one each call (a caller may write into a result)."""
    return _entries(data, mask).astype(bool if mask else np.result_type(x)).reshape(shape)


def _sym_array(x, data, shape, mask):
    sp = _sp()
    vals = [bool(v) if mask else sp.Integer(int(v)) if float(v).is_integer() else sp.Float(float(v), 30)
            for v in _entries(data, mask)]
    return np.array(vals + [None], dtype=object)[:-1].reshape(shape)


def captured_array(x: np.ndarray, dtype: str) -> Node:
    """A NumPy array used in a traced computation, as IR: a broadcast scalar where every
    entry is the same (np.zeros, np.ones, np.full), else an `array` constant (masks kept as
    masks, integers as floats of the trace's dtype)."""
    from .ir import make as _make

    mask = x.dtype == np.bool_
    if x.size and not mask and x.dtype.kind in "iuf":
        first = x.flat[0]
        if np.all(x == first):
            return _make("broadcast_to", const(float(first), dtype), shape=tuple(x.shape))
    if x.size > MAX_ARRAY_CONSTANT:
        raise ShapeError(f"a NumPy array of shape {x.shape} ({x.size} entries) captured by a traced function: "
                         f"constants hold at most {MAX_ARRAY_CONSTANT} entries; pass it as an argument")
    if x.dtype.kind not in "biuf":
        raise IRError(f"a NumPy array of dtype {x.dtype} captured by a traced function: graphc takes real numbers")
    data = (x.astype(np.uint8) if mask else x.astype("<f8")).tobytes().hex()
    return _make("array", const(0.0, dtype), data=data, shape=tuple(x.shape), mask=mask)


def _infer_to_float(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("dtype",))
    dt = attrs.get("dtype", "f64")
    if dt not in ("f64", "f32"):
        raise IRError(f"to_float: dtype {dt!r} is not f64 or f32")
    if x.dtype not in ("i64", "bool"):
        raise IRError(f"to_float: takes integers or masks, got {x.type}")
    return {"dtype": dt}, Type(dt, x.shape)


def _np_to_float(x, dtype):
    return np.asarray(x).astype("float64" if dtype == "f64" else "float32")


def _sym_to_float(x, dtype):
    sp = _sp()
    return np.vectorize(lambda v: sp.Piecewise((1, v), (0, True)) if isinstance(v, sp.Basic) and v.is_Boolean
                        else sp.Integer(int(v)), otypes=[object])(_obj(x))


# ------------------------------------------------------------------ registry


_O = OpSpec
_R = ("axis", "keepdims")
for _spec in [
    _O("prod", 1, _np_prod, _g_prod, None, "", "product over axes (numpy.prod; exact gradient at zeros, as JAX's)",
       infer=_infer_prod, symbolic=_sym_np(_np_prod), keywords=_R),
    _O("cumsum", 1, _np_cumsum, _g_cumsum, None, "", "running sum along axis (numpy.cumsum; reverse=True from the "
       "end)", infer=_infer_scan, symbolic=_sym_scan(np.cumsum), keywords=("axis", "reverse")),
    _O("cumprod", 1, _np_cumprod, _g_cumprod, None, "", "running product along axis (numpy.cumprod; exact "
       "gradient at zeros)", infer=_infer_scan, symbolic=_sym_scan(np.cumprod), keywords=("axis", "reverse")),
    _O("diff", 1, _np_diff, _g_diff, None, "", "x[1:] - x[:-1] along axis (numpy.diff with n=1)",
       infer=_infer_diff, symbolic=_sym_np(_np_diff), keywords=("axis",)),
    _O("diff_t", 1, _np_diff_t, _g_diff_t, None, "", "diff's transpose: g[j-1] - g[j] (diff's gradient)",
       infer=_infer_diff, symbolic=_sym_np(_np_diff_t), internal=True),
    _O("argmax", 1, _np_argmax, _g_none, None, "", "index of the largest entry (numpy.argmax; the first of ties)",
       infer=_infer_argred, symbolic=_sym_argpick(_ge), keywords=_R),
    _O("argmin", 1, _np_argmin, _g_none, None, "", "index of the smallest entry (numpy.argmin; the first of ties)",
       infer=_infer_argred, symbolic=_sym_argpick(_le), keywords=_R),
    _O("sort", 1, _np_sort, _g_sort, None, "", "entries sorted along axis (numpy.sort; the gradient follows the "
       "permutation)", infer=_infer_sort, symbolic=_sym_sort, keywords=("axis",)),
    _O("argsort", 1, _np_argsort, _g_none, None, "", "the stable sorting permutation (numpy.argsort, "
       "kind='stable'); with kth=, numpy.argpartition's; with window=(lo, hi), its entries lo..hi-1",
       infer=_infer_sort, symbolic=_sym_argsort, keywords=("axis",)),
    _O("sort_by", 2, _np_sort_by, _g_sort_by, None, "", "values ordered as sorting the keys orders them",
       infer=_infer_sort, symbolic=_sym_sort_by, internal=True),
    _O("unsort", 2, _np_unsort, _g_unsort, None, "", "sort_by's transpose: values scattered back (sort's gradient)",
       infer=_infer_sort, symbolic=_sym_unsort, internal=True),
    _O("take_along", 2, _np_take_along, _g_take_along, None, "", "x's entries at the indices along axis "
       "(numpy.take_along_axis; the indices of a run of a permutation: sort's top-k window)",
       infer=_infer_take_along, symbolic=_sym_take_along, internal=True),
    _O("put_along", 2, _np_put_along, _g_put_along, None, "", "take_along's transpose: g placed at the indices "
       "along an axis of length n, zeros elsewhere (numpy.put_along_axis; the indices distinct on each line)",
       infer=_infer_take_along, symbolic=_sym_put_along, internal=True),
    _O("diagonal", 1, _np_diagonal, _g_diagonal, None, "", "the diagonal of axes axis1, axis2, as a last axis "
       "(numpy.diagonal)", infer=_infer_diagonal, symbolic=_sym_np(_np_diagonal), keywords=("axis1", "axis2")),
    _O("diag_embed", 1, _np_diag_embed, _g_diag_embed, None, "", "diagonal's transpose: the last axis placed on "
       "the diagonal of new axes axis1, axis2, zeros elsewhere", infer=_infer_diag_embed,
       symbolic=_sym_diag_embed, internal=True),
    _O("cross", 2, _np_cross, _g_cross, None, "", "cross product of 3-vectors on the last axis (numpy.cross)",
       infer=_infer_cross, symbolic=_sym_cross),
    _O("iota", 1, _np_iota, _g_none, None, "", "0, 1, ..., n-1 in the dtype of a scalar: iota(0, n=5)",
       infer=_infer_iota, symbolic=_sym_iota, keywords=("n",), internal=True),
    _O("array", 1, _np_array, _g_none, None, "", "a NumPy array captured by a traced function (its entries as data; "
       "a scalar carries the dtype)", infer=_infer_array, symbolic=_sym_array, internal=True),
    _O("to_float", 1, _np_to_float, _g_none, None, "", "integers or a mask as numbers (x.astype(float); no "
       "gradient)", infer=_infer_to_float, symbolic=_sym_to_float, keywords=("dtype",), internal=True),
]:
    register_op(_spec)
