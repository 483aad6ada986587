"""Tensor ops that index, join and move entries (issue 26): static slicing, gathers and
scatter-adds, concatenation, padding and the axis movers. Each is a registry entry with
every tensor facet; semantics follow NumPy (and JAX for functional updates).

A few primitives carry everything `graphc.numpy` and `Tracer.__getitem__` / `Tracer.at`
build (their gradients are each other, so there are few rules to get right):

- `slice(x, start=, step=, shape=)`: out[i, j, ...] = x[start0 + i*step0, start1 + j*step1, ...]
  with `shape` the result's shape -- NumPy's basic slicing with every axis kept (negative
  steps too). Its adjoint is `unslice`.
- `unslice(g, start=, step=, shape=)`: g placed into zeros of `shape` at those positions
  (a `pad` with zeros and strides). Its adjoint is `slice`.
- `concatenate(a, b, axis=)`: numpy.concatenate of two values; the adjoint is two slices.
- `gather(x, idx, clip=)`: out[i...] = x[idx[i..., 0], ..., idx[i..., k-1]] (the first k axes
  of x addressed by the last axis of the int64 `idx`; TensorFlow's gather_nd, JAX's gather).
  Negative indices count from the end (as NumPy's); an index still out of range is clamped
  into range (clip=True, JAX's default for reading) or reads 0 (clip=False, JAX's
  mode="fill"). Nothing is read out of bounds. Adjoint: a scatter-add.
- `scatter(x, v, idx, update=, clip=)`: x with the entries idx addresses combined with v
  (update "add" -- duplicates accumulate, as numpy.add.at --, "set" -- the last of
  duplicates wins, as NumPy's fancy assignment --, "mul", "max", "min"; JAX's
  x.at[idx].add/set/multiply/max/min). Out-of-range updates are dropped (clip=False, JAX's
  rule for updates) or clamped into range (clip=True). Nothing is written out of bounds.
- `index_array(anchor, values=, shape=)`: a constant int64 array (NumPy int indices of a
  traced program); its argument only anchors it in the graph (the IR's constants are scalars).
- `index_mask(idx, shape=, which=, clip=, dtype=)`: 1.0 where an index is in range
  ("valid") or is the update that lands among duplicates ("last"); scatter's gradients.
- `triangle(x, k=, upper=)`: numpy.tril / numpy.triu over the last two axes; self-adjoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import IRError, ShapeError
from .ir import Dim, Node, Type, canonical_shape, const, fmt_shape, make
from .registry import OpSpec, register_op

UPDATES = ("add", "set", "mul", "max", "min")


# ------------------------------------------------------------------ helpers


def called(x: Node, otherwise: str) -> str:
    """The argument's name in messages: an input's own name, else a description."""
    return str(x.attr) if x.op == "input" else otherwise


def _only(op: str, attrs: dict[str, Any], allowed: Sequence[str], needed: Sequence[str] = ()) -> None:
    bad = [k for k in attrs if k not in allowed]
    if bad:
        raise IRError(f"{op}: unknown attribute {bad[0]}= (accepted: {', '.join(f'{k}=' for k in allowed)})")
    missing = [k for k in needed if k not in attrs]
    if missing:
        raise IRError(f"{op}: needs {missing[0]}=")


def _ints(op: str, name: str, v: Any, n: int) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or len(v) != n or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in v):
        raise IRError(f"{op}: {name}= must be a tuple of {n} ints, got {v!r}")
    return tuple(int(i) for i in v)


def _flag(op: str, name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)) and v not in (0, 1):
        raise IRError(f"{op}: {name} must be True or False, got {v!r}")
    return bool(v)


def _float(op: str, *args: Node) -> None:
    for a in args:
        if not a.type.is_float:
            raise IRError(f"{op}: argument is {a.type}; {op} takes floats")


def _indices(op: str, idx: Node) -> None:
    if idx.dtype != "i64":
        raise IRError(f"{op}: indices must be integers (int64), got {idx.type}")


def _sp():
    import sympy

    return sympy


def _obj(v: Any) -> np.ndarray:
    return v if isinstance(v, np.ndarray) else np.asarray(v, dtype=object)


def _zeros_like(shape: Sequence[int], like: np.ndarray) -> np.ndarray:
    if like.dtype == object:
        out = np.empty(tuple(shape), dtype=object)
        out.fill(_sp().Integer(0))
        return out
    return np.zeros(tuple(shape), dtype=like.dtype)


def zeros(shape: Sequence[Dim], dtype: str) -> Node:
    """A zero value of a shape, as IR (a broadcast scalar)."""
    z = const(0.0, dtype)
    return make("broadcast_to", z, shape=tuple(shape)) if shape else z


def _strided(op: str, full: Sequence[Dim], part: Sequence[Dim], start: tuple[int, ...], step: tuple[int, ...],
             what: str) -> None:
    """The positions start + i*step, i < part[axis], lie inside full[axis] on every axis."""
    for ax, (d, n, s, st) in enumerate(zip(full, part, start, step)):
        if st == 0:
            raise IRError(f"{op}: step 0 on axis {ax}")
        if isinstance(d, str) or isinstance(n, str):
            if not (s == 0 and st == 1 and n == d):
                raise ShapeError(f"{op}: axis {ax} of {what} has the symbolic size {d}: only all of it (start 0, "
                                 f"step 1) can be taken while its size is unknown")
            continue
        if n < 0:
            raise ShapeError(f"{op}: negative size {n} on axis {ax}")
        if n and not (0 <= s < d and 0 <= s + (n - 1) * st < d):
            raise ShapeError(f"{op}: positions {s}, {s + st}, ..., {s + (n - 1) * st} on axis {ax} are out of "
                             f"range for {what} of shape {fmt_shape(full)}")


def _np_slices(shape: Sequence[int], start: Sequence[int], step: Sequence[int]) -> tuple:
    out = []
    for n, s, st in zip(shape, start, step):
        if n == 0:
            out.append(slice(0, 0))
            continue
        stop = s + (n - 1) * st + (1 if st > 0 else -1)
        out.append(slice(s, None if stop < 0 else stop, st))
    return tuple(out)


# ------------------------------------------------------------------ slice / unslice


def _slice_attrs(op: str, attrs: dict, x: Node) -> tuple:
    """slice's and unslice's attributes checked against their argument x: (start, step, shape)."""
    _only(op, attrs, ("start", "step", "shape"), ("start", "step", "shape"))
    nd = x.type.ndim
    start, step = _ints(op, "start", attrs["start"], nd), _ints(op, "step", attrs["step"], nd)
    shape = canonical_shape(attrs["shape"])
    if len(shape) != nd:
        raise ShapeError(f"{op}: shape={fmt_shape(shape)} has not the {nd} axes of {fmt_shape(x.shape)}")
    return start, step, shape


def _infer_slice(op, args, attrs):
    (x,) = args
    start, step, shape = _slice_attrs(op, attrs, x)
    _strided(op, x.shape, shape, start, step, called(x, "the sliced value"))
    return {"start": start, "step": step, "shape": shape}, Type(x.dtype, shape)


def _np_slice(x, start, step, shape):
    # a view, as NumPy's basic indexing: the memory plan keeps a pooled buffer alive while a
    # slice of it is (schedule.memory.VIEW_OPS)
    return np.asarray(x)[_np_slices(shape, start, step)]


def _g_slice(n, g):
    a = n.attrs
    return (make("unslice", g, start=a["start"], step=a["step"], shape=n.args[0].shape),)


def _infer_unslice(op, args, attrs):
    (g,) = args
    start, step, shape = _slice_attrs(op, attrs, g)
    _strided(op, shape, g.shape, start, step, "the result")
    return {"start": start, "step": step, "shape": shape}, Type(g.dtype, shape)


def _np_unslice(g, start, step, shape):
    g = np.asarray(g)
    out = _zeros_like(shape, g)
    out[_np_slices(g.shape, start, step)] = g
    return out


def _g_unslice(n, g):
    a = n.attrs
    return (make("slice", g, start=a["start"], step=a["step"], shape=n.args[0].shape),)


# ------------------------------------------------------------------ concatenate


def _infer_concatenate(op, args, attrs):
    a, b = args
    _only(op, attrs, ("axis",), ("axis",))
    if a.dtype != b.dtype:
        raise IRError(f"concatenate: mixed types {a.dtype} and {b.dtype}")
    nd = a.type.ndim
    if nd == 0 or b.type.ndim != nd:
        raise ShapeError(f"concatenate: {called(a, 'the first array')} of shape {fmt_shape(a.shape)} and "
                         f"{called(b, 'the second array')} of shape {fmt_shape(b.shape)} must have the same number "
                         "of dimensions, at least one")
    ax = attrs["axis"]
    if isinstance(ax, bool) or not isinstance(ax, (int, np.integer)) or not -nd <= ax < nd:
        raise ShapeError(f"concatenate: axis {ax!r} is out of range for arrays of {nd} dimension(s)")
    ax = int(ax) % nd
    for i, (p, q) in enumerate(zip(a.shape, b.shape)):
        if i != ax and p != q:
            raise ShapeError(f"concatenate: {called(a, 'the first array')} of shape {fmt_shape(a.shape)} and "
                             f"{called(b, 'the second array')} of shape {fmt_shape(b.shape)} differ on axis {i} "
                             f"({p} against {q}); only the joined axis {ax} may differ")
    p, q = a.shape[ax], b.shape[ax]
    if isinstance(p, str) or isinstance(q, str):
        raise ShapeError(f"concatenate: the joined axis {ax} has a symbolic size ({p} and {q}): its total is not "
                         "known while tracing")
    shape = a.shape[:ax] + (p + q,) + a.shape[ax + 1:]
    return {"axis": ax}, Type(a.dtype, shape)


def _np_concatenate(a, b, axis):
    return np.concatenate((np.asarray(a), np.asarray(b)), axis=axis)


def _part(g: Node, like: Node, axis: int, offset: int) -> Node:
    nd = g.type.ndim
    start = tuple(offset if i == axis else 0 for i in range(nd))
    return make("slice", g, start=start, step=(1,) * nd, shape=like.shape)


def _g_concatenate(n, g):
    a, b = n.args
    ax = n.attrs["axis"]
    return _part(g, a, ax, 0), _part(g, b, ax, a.shape[ax])


# ------------------------------------------------------------------ gather / scatter


def normalize_indices(idx: np.ndarray, sizes: Sequence[int], clip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices with negatives counted from the end, then clamped into range (clip) or
    replaced by 0 where out of range; and the mask of those that were in range."""
    idx = np.asarray(idx, dtype=np.int64)
    sz = np.asarray(sizes, dtype=np.int64)
    idx = np.where(idx < 0, idx + sz, idx)
    inside = np.all((idx >= 0) & (idx < sz), axis=-1)
    if clip:
        return np.clip(idx, 0, np.maximum(sz - 1, 0)), np.ones(idx.shape[:-1], dtype=bool)
    return np.where(inside[..., None], idx, 0), inside


def _infer_gather(op, args, attrs):
    x, idx = args
    _only(op, attrs, ("clip",))
    _indices(op, idx)
    if idx.type.ndim == 0 or not isinstance(idx.shape[-1], int):
        raise ShapeError(f"gather: indices of shape {fmt_shape(idx.shape)} need a last axis of known size (one "
                         "column per indexed axis)")
    k = idx.shape[-1]
    if not 1 <= k <= x.type.ndim:
        raise ShapeError(f"gather: indices address {k} axes of {called(x, 'a value')} of shape {fmt_shape(x.shape)}")
    clip = _flag(op, "clip", attrs.get("clip", True))
    return {"clip": clip}, Type(x.dtype, tuple(idx.shape[:-1]) + tuple(x.shape[k:]))


def _gather(x, idx, clip):
    x, idx = np.asarray(x), np.asarray(idx)
    k = idx.shape[-1]
    shape = idx.shape[:-1] + x.shape[k:]
    if any(d == 0 for d in x.shape[:k]) or 0 in idx.shape[:-1]:
        return _zeros_like(shape, x)
    j, inside = normalize_indices(idx, x.shape[:k], clip)
    out = x[tuple(j[..., c] for c in range(k))]
    if not clip:
        keep = inside.reshape(inside.shape + (1,) * (x.ndim - k))
        out = np.where(keep, out, _zeros_like((), x))
    return out


def _np_gather(x, idx, clip):
    return _gather(x, idx, clip)


def _g_gather(n, g):
    x, idx = n.args
    return make("scatter", zeros(x.shape, x.dtype), g, idx, update="add", clip=n.attrs["clip"]), None


def _infer_scatter(op, args, attrs):
    x, v, idx = args
    _only(op, attrs, ("update", "clip"), ("update",))
    _float(op, x, v)
    _indices(op, idx)
    if x.dtype != v.dtype:
        raise IRError(f"scatter: mixed types {x.dtype} and {v.dtype}")
    update = attrs["update"]
    if update not in UPDATES:
        raise IRError(f"scatter: update={update!r}; use one of {', '.join(UPDATES)}")
    if idx.type.ndim == 0 or not isinstance(idx.shape[-1], int) or not 1 <= idx.shape[-1] <= x.type.ndim:
        raise ShapeError(f"scatter: indices of shape {fmt_shape(idx.shape)} do not address the axes of "
                         f"{called(x, 'the updated value')} of shape {fmt_shape(x.shape)}")
    k = idx.shape[-1]
    want = tuple(idx.shape[:-1]) + tuple(x.shape[k:])
    if tuple(v.shape) != want:
        raise ShapeError(f"scatter: updates of shape {fmt_shape(v.shape)} do not fit indices of shape "
                         f"{fmt_shape(idx.shape)} into {fmt_shape(x.shape)} (expected updates of shape "
                         f"{fmt_shape(want)})")
    return {"update": update, "clip": _flag(op, "clip", attrs.get("clip", False))}, x.type


def _scatter(x, v, idx, update, clip, symbolic=False):
    x, v, idx = np.asarray(x), np.asarray(v), np.asarray(idx)
    out = x.copy()
    k = idx.shape[-1]
    if any(d == 0 for d in x.shape[:k]) or 0 in idx.shape[:-1]:
        return out
    j, inside = normalize_indices(idx, x.shape[:k], clip)
    j, vv = j[inside], v[inside]
    where = tuple(j[:, c] for c in range(k))
    if symbolic:  # object arrays: one update at a time, in order (the last of duplicates wins a "set")
        sp = _sp()
        combine = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b, "set": lambda a, b: b,
                   "max": np.vectorize(sp.Max, otypes=[object]), "min": np.vectorize(sp.Min, otypes=[object])}[update]
        for m in range(len(j)):
            pos = tuple(j[m])
            out[pos] = combine(out[pos], vv[m])
        return out
    if update == "set":
        out[where] = vv  # NumPy's fancy assignment: the last of duplicates wins
    else:
        {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[update].at(out, where, vv)
    return out


def _np_scatter(x, v, idx, update, clip):
    return _scatter(x, v, idx, update, clip)


def _sym_scatter(x, v, idx, update, clip):
    return _scatter(_obj(x), _obj(v), idx, update, clip, symbolic=True)


def _where(m: Node, a: Node, b: Node) -> Node:
    return make("where", m, a, b)


def _g_scatter(n, g):
    x, v, idx = n.args
    a = n.attrs
    update, clip = a["update"], a["clip"]
    k = idx.shape[-1]
    dt = x.dtype
    one, zero = const(1.0, dt), const(0.0, dt)
    picked = make("gather", g, idx, clip=clip)  # g at each update's target (0 for a dropped one)
    if update == "add":
        return g, picked, None
    if update == "set":
        # x's entries that were overwritten get nothing; of duplicates only the update that lands
        dx = make("scatter", g, zeros(v.shape, dt), idx, update="set", clip=clip)
        last = make("index_mask", idx, shape=tuple(x.shape[:k]), which="last", clip=clip, dtype=dt)
        return dx, make("mul", picked, _expand(last, v)), None
    if update == "mul":
        # out = x * prod(v at each target): dx = g * prod; dv_j = g * x * prod of the others at v_j's
        # target, = g * out / v_j where v_j != 0, and g * x there (exact for unique indices, as JAX's,
        # which refuses duplicates)
        prod = make("scatter", make("broadcast_to", one, shape=x.shape), v, idx, update="mul", clip=clip)
        dx = make("mul", g, prod)
        nz = make("ne", v, zero)
        safe = _where(nz, v, one)
        via_out = make("div", make("gather", make("mul", g, n), idx, clip=clip), safe)
        via_x = make("gather", make("mul", g, x), idx, clip=clip)
        return dx, _where(nz, via_out, via_x), None
    # max / min: the adjoint goes to the entries equal to the result; ties split it evenly
    hit_x = _where(make("eq", x, n), one, zero)
    at = make("gather", n, idx, clip=clip)
    valid = make("index_mask", idx, shape=tuple(x.shape[:k]), which="valid", clip=clip, dtype=dt)
    hit_v = make("mul", _where(make("eq", v, at), one, zero), _expand(valid, v))
    count = make("add", hit_x, make("scatter", zeros(x.shape, dt), hit_v, idx, update="add", clip=clip))
    share = make("div", g, count)
    return make("mul", share, hit_x), make("mul", make("gather", share, idx, clip=clip), hit_v), None


def _expand(mask: Node, like: Node) -> Node:
    """A mask over the updates' index shape, broadcast over the rest of their shape."""
    if mask.shape == like.shape:
        return mask
    extra = like.type.ndim - mask.type.ndim
    m = make("reshape", mask, shape=tuple(mask.shape) + (1,) * extra)
    return make("broadcast_to", m, shape=like.shape)


def _infer_index_mask(op, args, attrs):
    (idx,) = args
    _only(op, attrs, ("shape", "which", "clip", "dtype"), ("shape", "which"))
    _indices(op, idx)
    shape = canonical_shape(attrs["shape"])
    if idx.type.ndim == 0 or idx.shape[-1] != len(shape):
        raise ShapeError(f"index_mask: indices of shape {fmt_shape(idx.shape)} do not address {fmt_shape(shape)}")
    which = attrs["which"]
    if which not in ("valid", "last"):
        raise IRError(f"index_mask: which={which!r}; use 'valid' or 'last'")
    dt = attrs.get("dtype", "f64")
    if dt not in ("f64", "f32"):
        raise IRError(f"index_mask: dtype {dt!r} is not f64 or f32")
    return ({"shape": shape, "which": which, "clip": _flag(op, "clip", attrs.get("clip", False)), "dtype": dt},
            Type(dt, tuple(idx.shape[:-1])))


def _index_mask(idx, shape, which, clip, dtype):
    idx = np.asarray(idx, dtype=np.int64)
    lead = idx.shape[:-1]
    out = np.zeros(lead, dtype=bool)
    if any(d == 0 for d in shape):
        return out
    j, inside = normalize_indices(idx, shape, clip)
    if which == "valid":
        return inside
    flat = np.ravel_multi_index(tuple(j.reshape(-1, len(shape)).T), tuple(shape)) if j.size else np.zeros(0, int)
    ok = inside.ravel()
    order = np.nonzero(ok)[0]
    if order.size:
        _, first = np.unique(flat[order][::-1], return_index=True)
        out.reshape(-1)[order[::-1][first]] = True
    return out


def _np_index_mask(idx, shape, which, clip, dtype):
    return _index_mask(idx, shape, which, clip, dtype).astype("float64" if dtype == "f64" else "float32")


def _sym_index_mask(idx, shape, which, clip, dtype):
    return _index_mask(idx, shape, which, clip, dtype).astype(int).astype(object)


def _g_none(n, g):
    return (None,) * len(n.args)


def _infer_index_array(op, args, attrs):
    _only(op, attrs, ("values", "shape"), ("values", "shape"))
    shape = canonical_shape(attrs["shape"])
    if any(isinstance(d, str) for d in shape):
        raise ShapeError("index_array: a constant has a known shape")
    values = attrs["values"]
    n = int(np.prod(shape, dtype=np.int64))
    values = _ints(op, "values", values, n)
    return {"values": values, "shape": shape}, Type("i64", shape)


def _np_index_array(anchor, values, shape):
    return np.asarray(values, dtype=np.int64).reshape(shape)


def _infer_triangle(op, args, attrs):
    (x,) = args
    _only(op, attrs, ("k", "upper"))
    if x.type.ndim < 2:
        raise ShapeError(f"triangle: needs at least two dimensions; {called(x, 'the argument')} has shape "
                         f"{fmt_shape(x.shape)}")
    k = attrs.get("k", 0)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise IRError(f"triangle: k must be an int, got {k!r}")
    return {"k": int(k), "upper": _flag(op, "upper", attrs.get("upper", False))}, x.type


def _np_triangle(x, k, upper):
    x = np.asarray(x)
    n, m = x.shape[-2:]
    keep = np.tri(n, m, k - 1, dtype=bool) if upper else np.tri(n, m, k, dtype=bool)
    if upper:
        keep = ~keep
    return np.where(keep, x, _zeros_like((), x))


def _g_triangle(n, g):
    return (make("triangle", g, **n.attrs),)


# ------------------------------------------------------------------ registry


def _sym(fn):
    return lambda *a, **k: _obj(fn(*(_obj(x) if not (isinstance(x, np.ndarray) and x.dtype.kind in "iu") else x
                                     for x in a), **k))


_O = OpSpec
for _spec in [
    _O("slice", 1, _np_slice, _g_slice, None, "", "x at start + i*step on every axis, shape= entries "
       "(NumPy's basic slicing, every axis kept)", infer=_infer_slice, symbolic=_sym(_np_slice),
       keywords=("start", "step", "shape"), internal=True),
    _O("unslice", 1, _np_unslice, _g_unslice, None, "", "g placed into zeros of shape= at start + i*step "
       "(slice's adjoint)", infer=_infer_unslice, symbolic=_sym(_np_unslice), keywords=("start", "step", "shape"),
       internal=True),
    _O("concatenate", 2, _np_concatenate, _g_concatenate, None, "", "numpy.concatenate((a, b), axis)",
       infer=_infer_concatenate, symbolic=_sym(_np_concatenate), keywords=("axis",), internal=True),
    _O("gather", 2, _np_gather, _g_gather, None, "", "x[idx[..., 0], ..., idx[..., k-1]]; out-of-range indices "
       "clamped (clip=True) or read as 0", infer=_infer_gather, symbolic=_sym(_np_gather), keywords=("clip",),
       internal=True),
    _O("scatter", 3, _np_scatter, _g_scatter, None, "", "x with v combined into x[idx] (update='add', 'set', "
       "'mul', 'max' or 'min'; JAX's x.at[idx]); out-of-range updates dropped", infer=_infer_scatter,
       symbolic=_sym_scatter, keywords=("update", "clip"), internal=True),
    _O("index_mask", 1, _np_index_mask, _g_none, None, "", "1 where an index is in range (which='valid') or is "
       "the update that lands (which='last')", infer=_infer_index_mask, symbolic=_sym_index_mask,
       keywords=("shape", "which", "clip", "dtype"), internal=True),
    _O("index_array", 1, _np_index_array, _g_none, None, "", "a constant int64 array (values=, shape=)",
       infer=_infer_index_array, symbolic=_np_index_array, keywords=("values", "shape"), internal=True),
    _O("triangle", 1, _np_triangle, _g_triangle, None, "", "numpy.tril (upper=False) or numpy.triu of the last "
       "two axes, diagonal offset k", infer=_infer_triangle, symbolic=_sym(_np_triangle), keywords=("k", "upper"),
       internal=True),
]:
    register_op(_spec)
