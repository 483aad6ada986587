"""Tensor ops: reductions, matmul, shape ops, the softmax family, labels and masks.

Each is a registry entry like the elementwise ops in `ops.py`, with the tensor
facets (see `registry.OpSpec`): `infer` (the shape rule; a ShapeError names both
shapes), a NumPy form that takes the node's attributes, a vector-Jacobian rule
that builds IR -- no Jacobian is ever formed: matmul's two transposed products,
sum -> broadcast, max -> a tie-splitting mask, softmax's s * (g - sum(g * s)) --
and a SymPy form over object arrays of expressions, which the checker expands
element by element on small shapes.

Broadcasting's own rule (sum the adjoint over broadcast axes) is not here: the
autodiff engine applies it to every contribution whose shape is larger than its
argument's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import IRError, ShapeError
from .ir import Dim, Node, Type, broadcast_shapes, canonical_shape, const, fmt_shape, make
from .registry import OpSpec, register_op

# ------------------------------------------------------------------ helpers


def _type(dtype: str, shape: Sequence[Dim]) -> Type:
    return Type(dtype, tuple(shape))


def _need_float(op: str, *args: Node) -> None:
    for a in args:
        if not a.type.is_float:
            what = "a mask (a comparison)" if a.dtype == "bool" else f"an integer value ({a.type})"
            raise IRError(f"{op}: argument is {what}; {op} takes floats")


def _only(op: str, attrs: dict[str, Any], allowed: Sequence[str]) -> None:
    bad = [k for k in attrs if k not in allowed]
    if bad:
        ok = ", ".join(f"{k}=" for k in allowed) or "none"
        raise IRError(f"{op}: unknown keyword argument {bad[0]}= (accepted: {ok})")


def norm_axes(op: str, x: Node, axis: Any) -> tuple[int, ...]:
    """axis=None (all), an int or a tuple of ints, negative from the end -> sorted tuple."""
    nd = x.type.ndim
    if axis is None:
        return tuple(range(nd))
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    out: list[int] = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise IRError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -nd <= a < nd:
            raise ShapeError(f"{op}: axis {a} is out of range for a value of shape {fmt_shape(x.shape)}")
        a = int(a) % nd
        if a in out:
            raise ShapeError(f"{op}: axis {a} is given twice")
        out.append(a)
    return tuple(sorted(out))


def _one_axis(op: str, x: Node, axis: Any) -> int:
    if isinstance(axis, (tuple, list)) or axis is None:
        raise IRError(f"{op}: axis must be one int, got {axis!r}")
    if x.type.ndim == 0:
        raise ShapeError(f"{op}: needs at least one dimension; the argument is a scalar")
    return norm_axes(op, x, axis)[0]


def reduced_shape(shape: Sequence[Dim], axes: Sequence[int], keepdims: bool) -> tuple[Dim, ...]:
    return tuple((1 if i in axes else d) for i, d in enumerate(shape) if keepdims or i not in axes)


def _bool(op: str, name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)) and v not in (0, 1):
        raise IRError(f"{op}: {name} must be True or False, got {v!r}")
    return bool(v)


def expand_to(g: Node, x: Node, axes: Sequence[int], keepdims: bool) -> Node:
    """The adjoint of a reduction of x over axes, broadcast back to x's shape."""
    if not keepdims and axes and g.shape:
        g = make("reshape", g, shape=reduced_shape(x.shape, axes, True))
    return g if g.shape == x.shape else make("broadcast_to", g, shape=x.shape)


def sum_to(c: Node, shape: tuple[Dim, ...]) -> Node:
    """Sum a contribution over the axes along which it was broadcast (NumPy's rule
    run backwards): leading extra axes, and axes where `shape` has 1."""
    if c.shape == shape:
        return c
    extra = c.type.ndim - len(shape)
    if extra < 0:  # a smaller contribution (a scalar constant): broadcast up
        return make("broadcast_to", c, shape=shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, d in enumerate(shape) if d == 1 and c.shape[extra + i] != 1)
    r = make("sum", c, axis=axes, keepdims=False) if axes else c
    return r if r.shape == shape else make("reshape", r, shape=shape)


def has_symbolic_dims(attrs: dict[str, Any] | None) -> bool:
    """Whether resolve_attrs has anything to do for these attributes."""
    return attrs is not None and any(
        isinstance(v, str) or (isinstance(v, tuple) and any(isinstance(d, str) for d in v))
        for k, v in attrs.items() if k in ("shape", "n"))


def resolve_attrs(attrs: dict[str, Any], dims: dict[str, int]) -> dict[str, Any]:
    """Attributes with symbolic dimensions replaced by their bound sizes (for NumPy)."""
    out = dict(attrs)
    if "shape" in out:
        out["shape"] = tuple(d if isinstance(d, int) else int(dims[d]) for d in out["shape"])
    if isinstance(out.get("n"), str):
        out["n"] = int(dims[out["n"]])
    return out


def _obj(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=object) if not isinstance(v, np.ndarray) else v


def _sp():
    import sympy

    return sympy


def _stable_max(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    m = np.max(x, axis=axes, keepdims=True) if x.size else np.zeros((1,) * x.ndim, x.dtype)
    return np.where(np.isfinite(m), m, np.zeros_like(m))


# ------------------------------------------------------------------ reductions


def _infer_reduce(op: str, args: tuple[Node, ...], attrs: dict[str, Any]):
    (x,) = args
    _only(op, attrs, ("axis", "keepdims"))
    _need_float(op, x)
    axes = norm_axes(op, x, attrs.get("axis"))
    keep = _bool(op, "keepdims", attrs.get("keepdims", False))
    if op in ("amax", "amin") and any(x.shape[i] == 0 for i in axes):
        # NumPy: "zero-size array to reduction operation maximum which has no identity"
        what = "max" if op == "amax" else "min"
        over = "all axes" if attrs.get("axis") is None else f"axis={attrs.get('axis')!r}"
        raise ShapeError(f"{what}: {_called(x, 'the argument')} of shape {fmt_shape(x.shape)} is empty along "
                         f"the reduced axes ({over}); the {what} of no entries is undefined (it has no identity)")
    return {"axis": axes, "keepdims": keep}, _type(x.dtype, reduced_shape(x.shape, axes, keep))


def _np_sum(x, axis, keepdims):
    return np.sum(x, axis=axis, keepdims=keepdims)


def _np_mean(x, axis, keepdims):
    return np.mean(x, axis=axis, keepdims=keepdims)


def _np_amax(x, axis, keepdims):
    return np.max(x, axis=axis, keepdims=keepdims)


def _np_amin(x, axis, keepdims):
    return np.min(x, axis=axis, keepdims=keepdims)


def _np_logsumexp(x, axis, keepdims):
    m = _stable_max(x, axis)
    r = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis)


def _g_sum(n: Node, g: Node):
    a = n.attrs
    return (expand_to(g, n.args[0], a["axis"], a["keepdims"]),)


def _g_mean(n: Node, g: Node):
    x = n.args[0]
    a = n.attrs
    return (make("div", expand_to(g, x, a["axis"], a["keepdims"]), make("count", x, axis=a["axis"])),)


def _g_extremum(n: Node, g: Node):
    # the adjoint goes to the extremum; ties split it evenly (as max(a, b) splits 1/2, 1/2)
    x = n.args[0]
    a = n.attrs
    hit = make("where", make("eq", x, expand_to(n, x, a["axis"], a["keepdims"])), const(1.0, x.dtype),
               const(0.0, x.dtype))
    ties = make("sum", hit, axis=a["axis"], keepdims=True)
    share = make("div", hit, ties if ties.shape == x.shape else make("broadcast_to", ties, shape=x.shape))
    return (make("mul", expand_to(g, x, a["axis"], a["keepdims"]), share),)


def _g_logsumexp(n: Node, g: Node):
    # softmax(x): over one axis the softmax op (x - max(x) is exact, so the gradient is as
    # accurate as the value); over several, exp(x - lse)
    x = n.args[0]
    a = n.attrs
    if len(a["axis"]) == 1:
        p = make("softmax", x, axis=a["axis"][0])
    else:
        p = make("exp", make("sub", x, expand_to(n, x, a["axis"], a["keepdims"])))
    return (make("mul", expand_to(g, x, a["axis"], a["keepdims"]), p),)


def _sym_reduce(fn):
    def run(x, axis, keepdims):
        x = _obj(x)
        moved = np.moveaxis(x, axis, tuple(range(x.ndim - len(axis), x.ndim)))
        lead = moved.shape[:x.ndim - len(axis)]
        flat = moved.reshape(lead + (-1,))
        out = np.empty(lead, dtype=object)
        for idx in np.ndindex(*lead):
            out[idx] = fn(list(flat[idx]))
        if keepdims:
            out = out.reshape(reduced_shape(x.shape, axis, True))
        return out

    return run


def _sym_logsumexp(items):
    sp = _sp()
    return sp.log(sum(sp.exp(v) for v in items))


def _sym_max(items):
    return _sp().Max(*items)


def _sym_min(items):
    return _sp().Min(*items)


def _infer_count(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("axis",))
    return {"axis": norm_axes(op, x, attrs.get("axis"))}, Type(x.dtype)


def _np_count(x, axis):
    return np.asarray(float(np.prod([np.shape(x)[a] for a in axis])), dtype=np.result_type(x))


def _sym_count(x, axis):
    return _obj(_sp().Integer(int(np.prod([np.shape(x)[a] for a in axis]))))


# ------------------------------------------------------------------ softmax family


def _infer_axis(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("axis",))
    _need_float(op, x)
    return {"axis": _one_axis(op, x, attrs.get("axis", -1))}, x.type


def _np_softmax(x, axis):
    e = np.exp(x - _stable_max(x, (axis,)))
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_log_softmax(x, axis):
    return x - _np_logsumexp(x, (axis,), True)


def _g_softmax(n, g):
    ax = n.attrs["axis"]
    gs = make("sum", make("mul", g, n), axis=(ax,), keepdims=True)
    return (make("mul", n, make("sub", g, gs)),)


def _g_log_softmax(n, g):
    x = n.args[0]
    ax = n.attrs["axis"]
    return (make("sub", g, make("mul", make("softmax", x, axis=ax), make("sum", g, axis=(ax,), keepdims=True))),)


def _sym_softmax(x, axis):
    sp = _sp()
    e = np.vectorize(sp.exp, otypes=[object])(_obj(x))
    return e / np.sum(e, axis=axis, keepdims=True)


def _sym_log_softmax(x, axis):
    x = _obj(x)
    return x - _sym_reduce(_sym_logsumexp)(x, (axis,), True)


# ------------------------------------------------------------------ matmul


def _infer_matmul(op, args, attrs):
    a, b = args
    _only(op, attrs, ())
    _need_float(op, a, b)
    if a.dtype != b.dtype:
        raise IRError(f"{op}: mixed types {a.dtype} and {b.dtype}")
    if a.type.ndim == 0 or b.type.ndim == 0:
        which = "left" if a.type.ndim == 0 else "right"
        raise ShapeError(f"matmul: the {which} argument is a scalar; @ needs at least one dimension on each "
                         "side (use * to scale; declare shapes= to make a variable a vector or matrix)")
    sa, sb = a.shape, b.shape
    k1 = sa[-1]
    k2 = sb[-2] if len(sb) >= 2 else sb[-1]
    if k1 != k2:
        raise ShapeError(f"matmul: inner dimensions differ: {_called(a, 'the left side')} is {fmt_shape(sa)}, "
                         f"{_called(b, 'the right side')} is {fmt_shape(sb)} ({k1} against {k2})")
    batch = broadcast_shapes("matmul", [tuple(sa[:-2]), tuple(sb[:-2])])
    shape = batch + (tuple(sa[-2:-1]) if len(sa) >= 2 else ()) + (tuple(sb[-1:]) if len(sb) >= 2 else ())
    return {}, _type(a.dtype, shape)


def _called(x: Node, otherwise: str) -> str:
    return str(x.attr) if x.op == "input" else otherwise


def _swap(x: Node) -> Node:
    nd = x.type.ndim
    return make("transpose", x, axes=tuple(range(nd - 2)) + (nd - 1, nd - 2))


def _g_matmul(n, g):
    # dA = G B^T, dB = A^T G; a vector side becomes an outer product or a
    # matrix-vector product (the engine sums batch axes that were broadcast).
    # A vector against a batch: g has the batch's axes, so the vector's adjoint is
    # made per batch entry as a (1, m) @ (m, k) or (k, n) @ (n, 1) product -- a
    # 2-D g must never reach matmul as a matrix -- and the engine sums the batch.
    a, b = n.args
    if a.type.ndim == 1 and b.type.ndim == 1:
        return make("mul", g, b), make("mul", g, a)
    if b.type.ndim == 1:  # a (..., m, k) @ b (k,) -> g (..., m)
        da = make("mul", make("reshape", g, shape=g.shape + (1,)), b)
        if a.type.ndim == 2:
            return da, make("matmul", _swap(a), g)
        g_row = make("reshape", g, shape=g.shape[:-1] + (1,) + g.shape[-1:])  # (..., 1, m)
        db = make("matmul", g_row, a)  # (..., 1, k)
        return da, make("reshape", db, shape=db.shape[:-2] + db.shape[-1:])
    if a.type.ndim == 1:  # a (k,) @ b (..., k, n) -> g (..., n)
        g_row = make("reshape", g, shape=g.shape[:-1] + (1,) + g.shape[-1:])
        db = make("mul", make("reshape", a, shape=a.shape + (1,)), g_row)
        if b.type.ndim == 2:
            return make("matmul", b, g), db
        da = make("matmul", b, make("reshape", g, shape=g.shape + (1,)))  # (..., k, 1)
        return make("reshape", da, shape=da.shape[:-1]), db
    return make("matmul", g, _swap(b)), make("matmul", _swap(a), g)


def _np_matmul(a, b):
    return np.matmul(a, b)


# ------------------------------------------------------------------ shape ops


def _infer_transpose(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("axes",))
    nd = x.type.ndim
    axes = attrs.get("axes")
    perm = tuple(range(nd))[::-1] if axes is None else tuple(norm_axes(op, x, a)[0] for a in axes)
    if sorted(perm) != list(range(nd)):
        raise ShapeError(f"transpose: axes {axes!r} are not a permutation of the {nd} axes of {fmt_shape(x.shape)}")
    return {"axes": perm}, _type(x.dtype, tuple(x.shape[i] for i in perm))


def _g_transpose(n, g):
    perm = n.attrs["axes"]
    inv = tuple(int(i) for i in np.argsort(perm))
    return (make("transpose", g, axes=inv),)


def _np_transpose(x, axes):
    return np.transpose(x, axes)


def _size_parts(shape: Sequence[Dim]) -> tuple[int, list[str]]:
    ints = int(np.prod([d for d in shape if isinstance(d, int)], dtype=np.int64))
    return ints, sorted(d for d in shape if isinstance(d, str))


def _infer_reshape(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("shape",))
    if "shape" not in attrs:
        raise IRError("reshape: needs shape=(...)")
    shape = canonical_shape(attrs["shape"])
    if _size_parts(shape) != _size_parts(x.shape):
        raise ShapeError(f"reshape: cannot reshape {fmt_shape(x.shape)} to {fmt_shape(shape)} (sizes differ)")
    return {"shape": shape}, _type(x.dtype, shape)


def _g_reshape(n, g):
    return (make("reshape", g, shape=n.args[0].shape),)


def _np_reshape(x, shape):
    return np.reshape(x, shape)


def _infer_broadcast_to(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("shape",))
    if "shape" not in attrs:
        raise IRError("broadcast_to: needs shape=(...)")
    shape = canonical_shape(attrs["shape"])
    if len(shape) < x.type.ndim or broadcast_shapes(op, [x.shape, shape]) != shape:
        raise ShapeError(f"broadcast_to: cannot broadcast {fmt_shape(x.shape)} to {fmt_shape(shape)}")
    return {"shape": shape}, _type(x.dtype, shape)


def _g_broadcast_to(n, g):
    return (g,)  # the engine sums it back to the argument's shape


def _np_broadcast_to(x, shape):
    return np.broadcast_to(x, shape)


# ------------------------------------------------------------------ labels


def _labels(op: str, y: Node) -> None:
    if y.dtype != "i64":
        raise IRError(f"{op}: labels must be integers (declare dtypes={{'y': 'int64'}}); got {y.type}")


def _infer_pick(op, args, attrs):
    x, y = args
    _only(op, attrs, ())
    _need_float(op, x)
    _labels(op, y)
    if x.type.ndim == 0 or tuple(x.shape[:-1]) != tuple(y.shape):
        raise ShapeError(f"pick: labels of shape {fmt_shape(y.shape)} must index the last axis of "
                         f"{fmt_shape(x.shape)} (expected labels of shape {fmt_shape(x.shape[:-1])})")
    return {}, _type(x.dtype, x.shape[:-1])


def check_labels(y: np.ndarray, n: int) -> None:
    from .errors import ArgumentError

    if y.size and (int(np.min(y)) < 0 or int(np.max(y)) >= n):
        bad = y[(y < 0) | (y >= n)].flat[0]
        raise ArgumentError(f"label {int(bad)} is out of range for {n} classes (0..{n - 1})")


def _np_pick(x, y):
    y = np.asarray(y)
    check_labels(y, np.shape(x)[-1])
    return np.take_along_axis(np.asarray(x), y[..., None].astype(np.intp), axis=-1)[..., 0]


def _g_pick(n, g):
    x, y = n.args
    hot = make("one_hot", y, n=x.shape[-1], dtype=x.dtype)
    return make("mul", hot, make("reshape", g, shape=g.shape + (1,))), None


def _infer_one_hot(op, args, attrs):
    (y,) = args
    _only(op, attrs, ("n", "dtype"))
    _labels(op, y)
    if "n" not in attrs:
        raise IRError("one_hot: needs the number of classes, one_hot(y, n)")
    (n,) = canonical_shape((attrs["n"],))
    dt = attrs.get("dtype", "f64")
    if dt not in ("f64", "f32"):
        raise IRError(f"one_hot: dtype {dt!r} is not f64 or f32")
    return {"n": n, "dtype": dt}, _type(dt, tuple(y.shape) + (n,))


def _np_one_hot(y, n, dtype):
    y = np.asarray(y)
    check_labels(y, n)
    return (y[..., None] == np.arange(n)).astype("float64" if dtype == "f64" else "float32")


def _infer_cross_entropy(op, args, attrs):
    s, y = args
    _only(op, attrs, ("reduction",))
    _need_float(op, s)
    _labels(op, y)
    red = attrs.get("reduction", "mean")
    if red not in ("mean", "sum", "none"):
        raise IRError(f"cross_entropy: reduction={red!r}; use 'mean' (the default), 'sum' or 'none'")
    if s.type.ndim == 0 or tuple(s.shape[:-1]) != tuple(y.shape):
        raise ShapeError(f"cross_entropy: scores {fmt_shape(s.shape)} and labels {fmt_shape(y.shape)} do not fit "
                         f"(labels must have shape {fmt_shape(s.shape[:-1])}: one per row of scores)")
    return {"reduction": red}, _type(s.dtype, () if red != "none" else y.shape)


def _np_cross_entropy(s, y, reduction):
    losses = -_np_pick(_np_log_softmax(np.asarray(s), np.ndim(s) - 1), y)
    if reduction == "none":
        return losses
    return np.sum(losses) if reduction == "sum" else np.mean(losses)


def _g_cross_entropy(n, g):
    # d/ds = softmax(s) - one_hot(y), times the upstream gradient per row
    s, y = n.args
    ax = s.type.ndim - 1
    diff = make("sub", make("softmax", s, axis=ax), make("one_hot", y, n=s.shape[-1], dtype=s.dtype))
    red = n.attrs["reduction"]
    if red == "none":
        return make("mul", diff, make("reshape", g, shape=g.shape + (1,))), None
    if red == "mean":
        g = make("div", g, make("count", s, axis=tuple(range(ax))))  # the number of rows
    return make("mul", diff, g), None


def _sym_pick(x, y):
    return np.take_along_axis(_obj(x), np.asarray(y)[..., None].astype(np.intp), axis=-1)[..., 0]


def _sym_cross_entropy(s, y, reduction):
    losses = -_sym_pick(_sym_log_softmax(s, np.ndim(s) - 1), y)
    if reduction == "none":
        return losses
    total = np.sum(losses)
    return _obj(total if reduction == "sum" else total / losses.size)


def _sym_one_hot(y, n, dtype):
    return _obj(_np_one_hot(y, n, dtype).astype(int)).astype(object)


# ------------------------------------------------------------------ masks


def _infer_compare(op, args, attrs):
    _only(op, attrs, ())
    _need_float(op, *args)
    if args[0].dtype != args[1].dtype:
        raise IRError(f"{op}: mixed types {args[0].dtype} and {args[1].dtype}")
    return {}, _type("bool", broadcast_shapes(op, [a.shape for a in args]))


def _infer_where(op, args, attrs):
    m, a, b = args
    _only(op, attrs, ())
    if m.dtype != "bool":
        raise IRError(f"where: the first argument must be a comparison (a mask), like where(x > 0, a, b); got {m.type}")
    _need_float(op, a, b)
    if a.dtype != b.dtype:
        raise IRError(f"where: mixed types {a.dtype} and {b.dtype}")
    return {}, _type(a.dtype, broadcast_shapes(op, [x.shape for x in args]))


def _g_where(n, g):
    # select the adjoint, never multiply it by a mask: the branch not taken gets an
    # exact 0 (the engine keeps the selection around that branch's own rules, so a
    # NaN or inf local derivative there is never multiplied in)
    m = n.args[0]
    zero = const(0.0, g.dtype)
    return None, make("where", m, g, zero), make("where", m, zero, g)


def _g_none(n, g):
    return (None,) * len(n.args)


def _sym_compare(fn):
    return lambda a, b: np.vectorize(fn, otypes=[object])(_obj(a), _obj(b))


def _sym_where(m, a, b):
    sp = _sp()
    return np.vectorize(lambda c, x, y: sp.Piecewise((x, c), (y, True)), otypes=[object])(_obj(m), _obj(a), _obj(b))


# ------------------------------------------------------------------ registry


def _sym_np(fn):
    return lambda *a, **k: _obj(fn(*(_obj(x) for x in a), **k))


_O = OpSpec
_R = ("axis", "keepdims")
for _spec in [
    _O("sum", 1, _np_sum, _g_sum, None, "", "sum over axes (axis=None: all; keepdims=)", infer=_infer_reduce,
       symbolic=_sym_np(_np_sum), keywords=_R),
    _O("mean", 1, _np_mean, _g_mean, None, "", "mean over axes (axis=None: all; keepdims=)",
       infer=_infer_reduce, symbolic=_sym_reduce(lambda v: sum(v) / len(v)), keywords=_R),
    _O("amax", 1, _np_amax, _g_extremum, None, "", "largest entry over axes: max(x, axis=...); ties split the "
       "gradient evenly", infer=_infer_reduce, symbolic=_sym_reduce(_sym_max), keywords=_R, internal=True),
    _O("amin", 1, _np_amin, _g_extremum, None, "", "smallest entry over axes: min(x, axis=...); ties split the "
       "gradient evenly", infer=_infer_reduce, symbolic=_sym_reduce(_sym_min), keywords=_R, internal=True),
    _O("logsumexp", 1, _np_logsumexp, _g_logsumexp, None, "", "log(sum(exp(x))) over axes, never overflows",
       infer=_infer_reduce, symbolic=_sym_reduce(_sym_logsumexp), keywords=_R),
    _O("count", 1, _np_count, _g_none, None, "", "number of entries over axes (mean's divisor)",
       infer=_infer_count, symbolic=_sym_count, internal=True),
    _O("softmax", 1, _np_softmax, _g_softmax, None, "", "exp(x) / sum(exp(x)) along axis (default -1), stable",
       infer=_infer_axis, symbolic=_sym_softmax, keywords=("axis",)),
    _O("log_softmax", 1, _np_log_softmax, _g_log_softmax, None, "", "x - logsumexp(x) along axis (default -1)",
       infer=_infer_axis, symbolic=_sym_log_softmax, keywords=("axis",)),
    _O("matmul", 2, _np_matmul, _g_matmul, None, "", "matrix product a @ b (numpy.matmul: vectors, batches)",
       infer=_infer_matmul, symbolic=_sym_np(np.matmul), operator="@"),
    _O("transpose", 1, _np_transpose, _g_transpose, None, "", "permute axes (default: reverse them; x.T)",
       infer=_infer_transpose, symbolic=_sym_np(_np_transpose), keywords=("axes",)),
    _O("reshape", 1, _np_reshape, _g_reshape, None, "", "the same entries in a new shape: reshape(x, shape=(N, 3))",
       infer=_infer_reshape, symbolic=_sym_np(_np_reshape), keywords=("shape",)),
    _O("broadcast_to", 1, _np_broadcast_to, _g_broadcast_to, None, "", "repeat x along new or size-1 axes",
       infer=_infer_broadcast_to, symbolic=_sym_np(_np_broadcast_to), keywords=("shape",)),
    _O("pick", 2, _np_pick, _g_pick, None, "", "the entry of each row at its label: x[arange(N), y]",
       infer=_infer_pick, symbolic=_sym_pick),
    _O("one_hot", 1, _np_one_hot, _g_none, None, "", "rows of the identity at the labels: one_hot(y, n)",
       infer=_infer_one_hot, symbolic=_sym_one_hot, keywords=("n", "dtype")),
    _O("cross_entropy", 2, _np_cross_entropy, _g_cross_entropy, None, "",
       "-log_softmax(scores)[row, label], reduction='mean' (default), 'sum' or 'none'",
       infer=_infer_cross_entropy, symbolic=_sym_cross_entropy, keywords=("reduction",)),
    _O("where", 3, np.where, _g_where, None, "({1} if {0} else {2})",
       "a where mask is true, else b; no NaN leaks from the other branch", infer=_infer_where, symbolic=_sym_where),
]:
    register_op(_spec)

_CMP = {"lt": ("<", np.less, "Lt"), "le": ("<=", np.less_equal, "Le"), "gt": (">", np.greater, "Gt"),
        "ge": (">=", np.greater_equal, "Ge"), "eq": ("==", np.equal, "Eq"), "ne": ("!=", np.not_equal, "Ne")}
for _name, (_sym, _fn, _sp_name) in _CMP.items():
    register_op(_O(_name, 2, _fn, _g_none, None, f"({{0}} {_sym} {{1}})", f"a {_sym} b, a mask for where()",
                   infer=_infer_compare,
                   symbolic=_sym_compare(lambda a, b, _n=_sp_name: getattr(_sp(), _n)(a, b)), operator=_sym))

COMPARISONS = {sym: name for name, (sym, _, _) in _CMP.items()}
