"""graphc.numpy's indexing, joining and axis-moving functions (NumPy's names and
signatures), re-exported by graphc.numpy; and the indexing of traced arrays
(`Tracer.__getitem__`, JAX's `x.at[idx]` updates).

Every function here works on traced values (recording IR from the primitives of
`shape_ops.py`: slice / unslice, concatenate, gather / scatter, triangle, and the
reshape, transpose and broadcast_to of `tensor_ops.py`) and, eagerly, on NumPy arrays
(where it returns NumPy's own result). Semantics are NumPy's (numpy.concatenate,
numpy.pad, ... and NumPy's indexing rules); functional updates are JAX's
(`jax.numpy.ndarray.at`).

Indices. Static indices -- Python ints (negative too), slices with any step, None,
`...`, NumPy integer arrays and NumPy boolean masks -- are checked while tracing: one out
of range raises `IndexRangeError` (a ShapeError that is also an IndexError) naming the
index, the axis and its size. Integer indices passed as data (traced int64 arguments)
follow JAX's rule: a negative index counts from the end once; reading (x[idx], take,
take_along_axis) clamps an index still out of range into range; an update (x.at[idx].add
and the rest) drops an out-of-range update. Nothing is ever read or written out of
bounds. A traced boolean mask as an index would give a shape that depends on the data:
use graphc.numpy.where(mask, x, 0) instead.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Sequence
from operator import index as operator_index
from typing import Any

import numpy as np

from .errors import ShapeError, UnsupportedError
from .ir import Dim, Node, broadcast_shapes, const, fmt_shape, make
from .math_ops import captured_array
from .numpy_args import refuse as _refuse
from .trace import INDEXING, Tracer, TracingError


class IndexRangeError(ShapeError, IndexError):
    """An index out of range for its axis, found while tracing (NumPy raises IndexError)."""


# ------------------------------------------------------------------ small helpers


def _traced(*xs: Any) -> Tracer | None:
    """The first tracer among the arguments (looking into lists and tuples), or None."""
    for x in xs:
        if isinstance(x, Tracer):
            return x
        if isinstance(x, (list, tuple)):
            t = _traced(*x)
            if t is not None:
                return t
    return None


def _node(x: Any, like: Tracer, what: str = "an argument") -> Node:
    """A value of the traced program: a tracer's node, a Python number as a constant, a
    NumPy array (or a list of numbers) captured by the traced function as an array
    constant (`math_ops.captured_array`, as JAX's captured constants)."""
    if isinstance(x, Tracer):
        return x.node
    if isinstance(x, (bool, np.bool_)):
        raise TracingError(f"{what} is a Python bool: use 1.0/0.0")
    if isinstance(x, (int, float, np.integer, np.floating)) or (isinstance(x, np.ndarray) and x.ndim == 0
                                                                   and x.dtype.kind in "iuf"):
        return const(float(x), like.trace.dtype)
    if isinstance(x, (np.ndarray, list, tuple)):
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise TracingError(f"{what} is an array of dtype {arr.dtype}: graphc computes with real numbers")
        return captured_array(arr, like.trace.dtype)
    raise TracingError(f"{what}: cannot use {type(x).__name__} in a traced computation")


def _wrap(node: Node, like: Tracer) -> Tracer:
    return Tracer(node, like.trace)


def _name(x: Any) -> str:
    n = x.node if isinstance(x, Tracer) else x
    return f"{n.attr}" if isinstance(n, Node) and n.op == "input" else "the array"


def _int_axis(fn: str, axis: Any, nd: int, what: str = "axis") -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{fn}: {what} must be an integer, got {axis!r}")
    if not -nd <= axis < nd:
        raise ShapeError(f"graphc.numpy.{fn}: {what} {int(axis)} is out of bounds for an array of dimension {nd}")
    return int(axis) % nd


def _axes(fn: str, axis: Any, nd: int, what: str = "axis") -> tuple[int, ...]:
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    out = tuple(_int_axis(fn, a, nd, what) for a in items)
    if len(set(out)) != len(out):
        raise ShapeError(f"graphc.numpy.{fn}: repeated axis in {what}={axis!r}")
    return out


def _int(d: Dim, fn: str, axis: int) -> int:
    if isinstance(d, str):
        raise TracingError(f"graphc.numpy.{fn}: the size of dimension {d} (axis {axis}) is not known while tracing "
                           "(one program serves every size)")
    return d


def _reshape(n: Node, shape: Sequence[Dim]) -> Node:
    shape = tuple(shape)
    return n if n.shape == shape else make("reshape", n, shape=shape)


def _transpose(n: Node, perm: Sequence[int]) -> Node:
    perm = tuple(perm)
    return n if perm == tuple(range(len(perm))) else make("transpose", n, axes=perm)


def _slice(n: Node, start: Sequence[int], step: Sequence[int], shape: Sequence[Dim]) -> Node:
    if tuple(shape) == tuple(n.shape) and all(s == 0 for s in start) and all(s == 1 for s in step):
        return n
    return make("slice", n, start=tuple(start), step=tuple(step), shape=tuple(shape))


def _axis_slice(n: Node, axis: int, start: int, step: int, count: int) -> Node:
    nd = n.type.ndim
    st = tuple(start if i == axis else 0 for i in range(nd))
    sp = tuple(step if i == axis else 1 for i in range(nd))
    shape = tuple(count if i == axis else d for i, d in enumerate(n.shape))
    return _slice(n, st, sp, shape)


def join(nodes: Sequence[Node], axis: int) -> Node:
    """Nodes concatenated along axis: binary concatenations in a balanced tree."""
    nodes = [n for n in nodes]
    if len(nodes) > 1:
        nodes = [n for n in nodes if not (isinstance(n.shape[axis], int) and n.shape[axis] == 0)] or nodes[:1]
    while len(nodes) > 1:
        nodes = [make("concatenate", nodes[i], nodes[i + 1], axis=axis) if i + 1 < len(nodes) else nodes[i]
                 for i in range(0, len(nodes), 2)]
    return nodes[0]




# ------------------------------------------------------------------ indexing


def _index_items(x: Tracer, key: Any) -> list[tuple[str, Any]]:
    """NumPy's index expression as a list of (kind, payload): "none", "int", "slice",
    "arr" (a NumPy int64 array or a traced int64 value), each but "none" taking one axis;
    the ellipsis expanded (and full slices appended) to cover every axis."""
    if not isinstance(key, tuple):
        key = (key,)
    items: list[tuple[str, Any]] = []
    ellipsis = 0
    for k in key:
        if k is None:
            items.append(("none", None))
        elif k is Ellipsis:
            ellipsis += 1
            items.append(("ellipsis", None))
        elif isinstance(k, slice):
            for part in (k.start, k.stop, k.step):
                if part is not None and (isinstance(part, (bool, np.bool_)) or not isinstance(part, (int, np.integer))):
                    if isinstance(part, Tracer):
                        raise TracingError("a slice bound is a traced value: slice bounds must be known while "
                                           "tracing (Python ints); use take/gather indices for data positions")
                    raise TracingError(f"slice bounds must be integers or None, got {k!r}")
            items.append(("slice", k))
        elif isinstance(k, (bool, np.bool_)):
            raise UnsupportedError("indexing with a Python bool (a 0-d mask) is not supported: use None to add an "
                                   "axis, or graphc.numpy.where(mask, x, 0)")
        elif isinstance(k, (int, np.integer)):
            items.append(("int", int(k)))
        elif isinstance(k, Tracer):
            if k.node.dtype == "i64":
                items.append(("arr", k))
            elif k.node.dtype == "bool":
                raise UnsupportedError("indexing with a traced boolean mask gives a shape that depends on the data: "
                                       "use graphc.numpy.where(mask, x, 0) (and a sum or mean over it)")
            else:
                raise TracingError(f"an index is a traced float value ({k.node.type}): indices must be integers "
                                   "(pass them as int64 arguments)")
        else:
            try:
                a = np.asarray(k)
            except Exception:  # noqa: BLE001 - a ragged list, say
                raise TracingError(f"cannot index with {k!r}") from None
            if a.dtype == object:
                raise TracingError("an index list holds traced values or mixed objects: build an int64 array "
                                   "(pass it as an argument) or index one position at a time")
            if a.dtype.kind == "b":
                if a.ndim == 0:
                    raise UnsupportedError("indexing with a 0-d boolean is not supported")
                items.append(("mask", a))
            elif a.dtype.kind in "iu" or a.size == 0:
                a = a.astype(np.int64)
                items.append(("int", int(a)) if a.ndim == 0 else ("arr", a))
            else:
                raise TracingError("only integers, slices (`:`), ellipsis (`...`), None and integer or boolean "
                                   f"arrays are valid indices; got {k!r}")
    if ellipsis > 1:
        raise IndexRangeError("an index can only have a single ellipsis ('...')")
    nd = x.node.type.ndim
    used = builtins.sum(1 if kind in ("int", "slice", "arr") else (p.ndim if kind == "mask" else 0)
                        for kind, p in items)
    if used > nd:
        raise IndexRangeError(f"too many indices for array: {_name(x)} is {nd}-dimensional (shape "
                              f"{fmt_shape(x.node.shape)}), but {used} were indexed")
    fill = [("slice", slice(None))] * (nd - used)
    if ellipsis:
        at = next(i for i, (kind, _) in enumerate(items) if kind == "ellipsis")
        items = items[:at] + fill + items[at + 1:]
    else:
        items = items + fill
    # boolean masks: their nonzero positions, one int array per axis they cover (NumPy's rule)
    out: list[tuple[str, Any]] = []
    axis = 0
    for kind, p in items:
        if kind == "mask":
            sizes = x.node.shape[axis:axis + p.ndim]
            if tuple(sizes) != p.shape:
                raise IndexRangeError(f"boolean index of shape {p.shape} does not match {_name(x)} of shape "
                                      f"{fmt_shape(x.node.shape)} on axes {axis}..{axis + p.ndim - 1}")
            out += [("arr", i.astype(np.int64)) for i in np.nonzero(p)]
            axis += p.ndim
            continue
        out.append((kind, p))
        axis += kind != "none"
    return out


def _int_index(x: Tracer, i: int, axis: int) -> int:
    d = x.node.shape[axis]
    if isinstance(d, str):
        raise TracingError(f"indexing axis {axis} of {_name(x)}: the size of dimension {d} is not known while tracing "
                           "(one program serves every size)")
    if not -d <= i < d:
        raise IndexRangeError(f"index {i} is out of bounds for axis {axis} with size {d} (indexing {_name(x)} of "
                              f"shape {fmt_shape(x.node.shape)})")
    return i % d


def _slice_index(x: Tracer, s: slice, axis: int) -> tuple[int, int, Dim]:
    """(start, step, count) of a slice on one axis, as NumPy's slice.indices."""
    d = x.node.shape[axis]
    if isinstance(d, str):
        if s.start in (None, 0) and s.stop is None and s.step in (None, 1):
            return 0, 1, d
        raise TracingError(f"slicing axis {axis} of {_name(x)} by {s!r}: the size of dimension {d} is not known "
                           "while tracing (one program serves every size)")
    if s.step == 0:
        raise IndexRangeError(f"slice step cannot be zero (indexing axis {axis} of {_name(x)})")
    start, stop, step = s.indices(d)
    n = len(range(start, stop, step))
    return (start, step, n) if n else (0, 1, 0)


def _index_array(a: np.ndarray, like: Tracer) -> Node:
    a = np.asarray(a, dtype=np.int64)
    return make("index_array", const(0.0, like.trace.dtype), values=tuple(int(v) for v in a.ravel()),
                shape=a.shape)


class _Index:
    """One index expression resolved against a traced array: the basic slice of every
    axis, then (advanced indexing) the gather's transpose, indices and the result's layout."""

    def __init__(self, x: Tracer, key: Any):
        self.x = x
        items = _index_items(x, key)
        self.advanced = any(kind == "arr" for kind, _ in items)
        start, step, region = [], [], []
        final: list[Dim] = []
        axis = 0
        adv: list[tuple[int, int, Any]] = []  # (position in items, axis, index)
        sliced: list[int] = []  # axes kept by a slice
        for pos, (kind, p) in enumerate(items):
            if kind == "none":
                final.append(1)
                continue
            d = x.node.shape[axis]
            if kind == "slice":
                s, st, n = _slice_index(x, p, axis)
                start.append(s)
                step.append(st)
                region.append(n)
                final.append(n)
                sliced.append(axis)
            elif kind == "int" and not self.advanced:
                start.append(_int_index(x, p, axis))
                step.append(1)
                region.append(1)
            else:  # an int among arrays is an index array of shape () (NumPy's rule)
                start.append(0)
                step.append(1)
                region.append(d)
                adv.append((pos, axis, p))
            axis += 1
        self.start, self.step, self.region = tuple(start), tuple(step), tuple(region)
        self.final = tuple(final)
        self.items = items
        if not self.advanced:
            return
        # the advanced axes first (in order), then the sliced ones
        self.perm = tuple(a for _, a, _ in adv) + tuple(sliced)
        self.nadv = len(adv)
        cols: list[Any] = []
        for _, a, p in adv:
            if isinstance(p, Tracer):
                cols.append(p)
                continue
            d = x.node.shape[a]
            if isinstance(d, str):
                raise TracingError(f"indexing axis {a} of {_name(x)} by constant indices: the size of dimension {d} is "
                                   "not known while tracing (one program serves every size)")
            p = np.asarray(p, dtype=np.int64)
            bad = (p < -d) | (p >= d)
            if bad.any():
                raise IndexRangeError(f"index {int(p[bad].flat[0])} is out of bounds for axis {a} with size {d} "
                                      f"(indexing {_name(x)} of shape {fmt_shape(x.node.shape)})")
            cols.append(np.where(p < 0, p + d, p))
        shapes = [tuple(c.node.shape) if isinstance(c, Tracer) else c.shape for c in cols]
        try:
            self.batch = broadcast_shapes("index", shapes)
        except ShapeError:
            raise IndexRangeError("shape mismatch: indexing arrays could not be broadcast together with shapes "
                                  + " ".join(fmt_shape(s) for s in shapes)) from None
        if all(isinstance(c, np.ndarray) for c in cols):
            idx = np.stack(np.broadcast_arrays(*cols), axis=-1) if cols else np.zeros((0,), np.int64)
            self.idx = _index_array(idx, x)
        else:
            parts = []
            for c in cols:
                n = c.node if isinstance(c, Tracer) else _index_array(c, x)
                if n.shape != self.batch:
                    n = make("broadcast_to", n, shape=self.batch)
                parts.append(_reshape(n, self.batch + (1,)))
            self.idx = join(parts, len(self.batch))
        nb = len(self.batch)
        positions = [pos for pos, _, _ in adv]
        adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
        # the result's layout: tokens "B" (the broadcast index shape), ("s", j) a sliced axis, 1 a None
        tokens: list[Any] = [] if adjacent else ["B"]
        j = 0
        for pos, (kind, _) in enumerate(self.items):
            if kind == "none":
                tokens.append(1)
            elif kind == "slice":
                tokens.append(("s", j))
                j += 1
            elif adjacent and pos == positions[0]:
                tokens.append("B")
        self.order: list[int] = []  # the gather result's axes (B..., sliced...) in the final order
        final = []
        for t in tokens:
            if t == "B":
                self.order += list(range(nb))
                final += list(self.batch)
            elif t == 1:
                final.append(1)
            else:
                self.order.append(nb + t[1])
                final.append(self.region[sliced[t[1]]])
        self.final = tuple(final)

    def region_node(self) -> Node:
        return _slice(self.x.node, self.start, self.step, self.region)

    def get(self) -> Tracer:
        y = self.region_node()
        if self.advanced:
            y = make("gather", _transpose(y, self.perm), self.idx, clip=True)
            y = _transpose(y, self.order)
        return _wrap(_reshape(y, self.final), self.x)

    def update(self, v: Any, mode: str) -> Tracer:
        x = self.x
        vn = _node(v, x, "the update value")
        if not vn.type.is_float:
            raise TracingError(f"the update value is {vn.type}: updates take floats")
        if vn.dtype != x.node.dtype:
            raise TracingError(f"the update value is {vn.type}, the array {x.node.type}")
        # v broadcast to the indexed shape (leading size-1 axes beyond it dropped, as NumPy's)
        vs = tuple(vn.shape)
        while len(vs) > len(self.final) and vs[0] == 1:
            vs = vs[1:]
        vn = _reshape(vn, vs)
        try:
            shape = broadcast_shapes("at[...]", [vs, self.final])
        except ShapeError:
            shape = None
        if shape != self.final:
            raise ShapeError(f"{_name(x)}.at[...]: an update of shape {fmt_shape(vn.shape)} does not broadcast to the "
                             f"indexed shape {fmt_shape(self.final)}")
        if vn.shape != self.final:
            vn = make("broadcast_to", vn, shape=self.final)
        y = self.region_node()
        if not self.advanced:
            v_r = _reshape(vn, y.shape)
            y2 = _combine(y, v_r, mode)
        else:
            inv = [0] * len(self.order)
            for k, o in enumerate(self.order):
                inv[o] = k
            yt = _transpose(y, self.perm)
            gathered = tuple(self.batch) + tuple(yt.shape[self.nadv:])
            v_t = _transpose(_reshape(vn, tuple(gathered[o] for o in self.order)), inv)
            z = make("scatter", yt, v_t, self.idx, update=_UPDATE[mode], clip=False)
            y2 = _transpose(z, tuple(int(i) for i in np.argsort(self.perm)))
        if y2 is y:
            return x
        if y is x.node:
            return _wrap(y2, x)
        one = const(1.0, x.node.dtype)
        hit = make("gt", make("unslice", make("broadcast_to", one, shape=y.shape), start=self.start,
                                  step=self.step, shape=x.node.shape), const(0.5, x.node.dtype))
        placed = make("unslice", y2, start=self.start, step=self.step, shape=x.node.shape)
        return _wrap(make("where", hit, placed, x.node), x)


_UPDATE = {"set": "set", "add": "add", "multiply": "mul", "max": "max", "min": "min"}


def _combine(y: Node, v: Node, mode: str) -> Node:
    if mode == "set":
        return v
    op = {"add": "add", "multiply": "mul", "max": "max", "min": "min"}[mode]
    return make(op, y, v)


def getitem(x: Tracer, key: Any) -> Tracer:
    """x[key] on a traced array, NumPy's indexing: basic (ints, slices, None, ...) and
    advanced (integer arrays, NumPy boolean masks; traced int64 indices clamp, as JAX's)."""
    return _Index(x, key).get()


def index_update(x: Tracer, key: Any, v: Any, mode: str) -> Tracer:
    """JAX's x.at[key].set(v) / add / multiply / max / min: a new value, x unchanged.
    Duplicate indices: "add", "multiply", "max" and "min" combine every update (as
    numpy.add.at); "set" keeps the last (NumPy's fancy assignment; JAX leaves it
    unspecified). Traced indices out of range drop their update (JAX's rule)."""
    if mode not in _UPDATE:
        raise UnsupportedError(f"x.at[...].{mode} is not an update: use set, add, multiply, max or min")
    return _Index(x, key).update(v, mode)


# ------------------------------------------------------------------ graphc.numpy functions


def _lift(fn: str, arrays: Sequence[Any], like: Tracer, what: str = "arrays") -> list[Node]:
    """The arrays to join as nodes; a captured NumPy array of one number (np.r_[x, 1.0] makes
    one of the 1.0) is that number broadcast to its shape."""
    return [make("broadcast_to", const(float(a.reshape(())), like.trace.dtype), shape=a.shape)
            if isinstance(a, np.ndarray) and a.size == 1 and a.ndim > 0 and a.dtype.kind in "iuf"
            else _node(a, like, f"graphc.numpy.{fn}: {what}[{k}]") for k, a in enumerate(arrays)]


def _check_join(fn: str, nodes: Sequence[Node], axis: int, what: str = "arrays") -> None:
    first = nodes[0]
    for k, n in enumerate(nodes):
        if n.type.ndim != first.type.ndim:
            raise ShapeError(f"graphc.numpy.{fn}: {what}[{k}] of shape {fmt_shape(n.shape)} has {n.type.ndim} "
                             f"dimension(s), {what}[0] of shape {fmt_shape(first.shape)} has {first.type.ndim}")
        for i, (p, q) in enumerate(zip(first.shape, n.shape)):
            if i != axis and p != q:
                raise ShapeError(f"graphc.numpy.{fn}: {what}[{k}] of shape {fmt_shape(n.shape)} and {what}[0] of "
                                 f"shape {fmt_shape(first.shape)} differ on axis {i} ({q} against {p}); all but the "
                                 f"joined axis {axis} must match")


def concatenate(arrays: Any, /, axis: Any = 0, out: Any = None, *, dtype: Any = None,
                casting: Any = "same_kind") -> Any:
    """numpy.concatenate: the arrays joined along an existing axis (axis=None: flattened
    first). Gradient: each array's slice of the upstream gradient."""
    arrays = list(arrays)
    t = _traced(arrays)
    if t is None:
        return np.concatenate(arrays, axis=axis, out=out, dtype=dtype, casting=casting)
    _refuse("concatenate", out=(out, None), dtype=(dtype, None), casting=(casting, "same_kind"))
    nodes = _lift("concatenate", arrays, t)
    if axis is None:
        nodes = [ravel(_wrap(n, t)).node for n in nodes]
        axis = 0
    for k, n in enumerate(nodes):
        if n.type.ndim == 0:
            raise ShapeError(f"graphc.numpy.concatenate: arrays[{k}] is zero-dimensional and cannot be concatenated")
    ax = _int_axis("concatenate", axis, nodes[0].type.ndim)
    _check_join("concatenate", nodes, ax)
    return _wrap(join(nodes, ax), t)


def stack(arrays: Any, axis: Any = 0, out: Any = None, *, dtype: Any = None, casting: Any = "same_kind") -> Any:
    """numpy.stack: the arrays (all of one shape) joined along a new axis."""
    arrays = list(arrays)
    t = _traced(arrays)
    if t is None:
        return np.stack(arrays, axis=axis, out=out, dtype=dtype, casting=casting)
    _refuse("stack", out=(out, None), dtype=(dtype, None), casting=(casting, "same_kind"))
    nodes = _lift("stack", arrays, t)
    for k, n in enumerate(nodes):
        if n.shape != nodes[0].shape:
            raise ShapeError(f"graphc.numpy.stack: all input arrays must have the same shape: arrays[{k}] has shape "
                             f"{fmt_shape(n.shape)}, arrays[0] {fmt_shape(nodes[0].shape)}")
    ax = _int_axis("stack", axis, nodes[0].type.ndim + 1)
    shape = nodes[0].shape[:ax] + (1,) + nodes[0].shape[ax:]
    return _wrap(join([_reshape(n, shape) for n in nodes], ax), t)


def _atleast(n: Node, nd: int) -> Node:
    if n.type.ndim >= nd:
        return n
    if nd == 1:
        return _reshape(n, (1,))
    return _reshape(n, (1,) * (2 - n.type.ndim) + tuple(n.shape))


def _stack_rows(fn: str, tup: Any, dtype: Any, casting: Any, nd: int) -> Any:
    """hstack (nd=1) and vstack (nd=2): the arrays raised to nd axes, joined along axis
    0, or axis 1 for hstack of 2-D and more."""
    if isinstance(tup, Tracer):  # one array: NumPy joins its rows (x[0], x[1], ...)
        _refuse(fn, dtype=(dtype, None), casting=(casting, "same_kind"))
        return _stack_own_rows(fn, tup, nd)
    arrays = list(tup)
    t = _traced(arrays)
    if t is None:
        return getattr(np, fn)(arrays, dtype=dtype, casting=casting)
    _refuse(fn, dtype=(dtype, None), casting=(casting, "same_kind"))
    nodes = [_atleast(n, nd) for n in _lift(fn, arrays, t, "tup")]
    ax = 1 if nd == 1 and nodes[0].type.ndim > 1 else 0
    _check_join(fn, nodes, ax, "tup")
    return _wrap(join(nodes, ax), t)


def _stack_own_rows(fn: str, x: Tracer, nd: int) -> Tracer:
    """hstack (nd=1) / vstack (nd=2) of one array's rows x[0], x[1], ..., in closed form:
    a reshape (or, for hstack of 3-D and more, axis 0 moved to 1 first)."""
    shape = x.node.shape
    if not shape:
        raise TypeError(f"graphc.numpy.{fn}: iteration over a 0-d array")
    n = _int(shape[0], fn, 0)
    if n == 0:
        raise ValueError("need at least one array to concatenate")
    rest = tuple(shape[1:])
    if nd == 2:  # rows raised to 2-D, joined on axis 0
        if len(rest) <= 1:
            return _wrap(_reshape(x.node, (n, rest[0] if rest else 1)), x)
        return _wrap(_reshape(x.node, (n * _int(rest[0], fn, 1),) + rest[1:]), x)
    if len(rest) <= 1:  # rows raised to 1-D, joined on axis 0
        return _wrap(_reshape(x.node, (n * _int(rest[0], fn, 1) if rest else n,)), x)
    moved = _transpose(x.node, (1, 0) + tuple(range(2, len(shape))))  # rows joined on their axis 1
    return _wrap(_reshape(moved, (rest[0], n * _int(rest[1], fn, 2)) + rest[2:]), x)


def hstack(tup: Any, *, dtype: Any = None, casting: Any = "same_kind") -> Any:
    """numpy.hstack: joined along axis 1 (axis 0 for 1-D arrays)."""
    return _stack_rows("hstack", tup, dtype, casting, 1)


def vstack(tup: Any, *, dtype: Any = None, casting: Any = "same_kind") -> Any:
    """numpy.vstack: joined along axis 0, 1-D arrays as rows."""
    return _stack_rows("vstack", tup, dtype, casting, 2)


def _split(fn: str, ary: Tracer, indices_or_sections: Any, axis: Any, equal: bool) -> list:
    nd = ary.node.type.ndim
    ax = _int_axis(fn, axis, nd)
    d = _int(ary.node.shape[ax], fn, ax)
    if isinstance(indices_or_sections, (int, np.integer)) and not isinstance(indices_or_sections, bool):
        n = int(indices_or_sections)
        if n <= 0:
            raise ShapeError(f"graphc.numpy.{fn}: the number of sections must be larger than 0, got {n}")
        if equal and d % n:
            raise ShapeError(f"graphc.numpy.{fn}: array split does not result in an equal division: axis {ax} of "
                             f"size {d} into {n} sections")
        each, extra = divmod(d, n)
        points = np.cumsum([0] + extra * [each + 1] + (n - extra) * [each]).tolist()
    else:
        points = [0] + [int(i) for i in indices_or_sections] + [d]
    pre = (slice(None),) * ax
    return [ary[pre + (slice(a, b),)] for a, b in zip(points[:-1], points[1:])]


def split(ary: Any, indices_or_sections: Any, axis: Any = 0) -> Any:
    """numpy.split: equal sections (or at the given indices) along an axis, as a list."""
    if not isinstance(ary, Tracer):
        return np.split(ary, indices_or_sections, axis=axis)
    return _split("split", ary, indices_or_sections, axis, True)


def array_split(ary: Any, indices_or_sections: Any, axis: Any = 0) -> Any:
    """numpy.array_split: as split, the first sections one longer when they do not divide."""
    if not isinstance(ary, Tracer):
        return np.array_split(ary, indices_or_sections, axis=axis)
    return _split("array_split", ary, indices_or_sections, axis, False)


def _split_at(fn: str, ary: Any, indices_or_sections: Any, axis: int, min_nd: int) -> Any:
    """vsplit (axis 0), hsplit (axis 1, axis 0 of a 1-D array) and dsplit (axis 2): split's rule."""
    if not isinstance(ary, Tracer):
        return getattr(np, fn)(ary, indices_or_sections)
    nd = ary.node.type.ndim
    if nd < min_nd:
        raise ShapeError(f"graphc.numpy.{fn}: {fn} only works on arrays of {min_nd} or more dimensions; "
                         f"ary has {nd}")
    return _split(fn, ary, indices_or_sections, 0 if fn == "hsplit" and nd == 1 else axis, True)


def vsplit(ary: Any, indices_or_sections: Any) -> Any:
    """numpy.vsplit: split along axis 0 (2-D and more)."""
    return _split_at("vsplit", ary, indices_or_sections, 0, 2)


def hsplit(ary: Any, indices_or_sections: Any) -> Any:
    """numpy.hsplit: split along axis 1 (axis 0 of a 1-D array)."""
    return _split_at("hsplit", ary, indices_or_sections, 1, 1)


def dsplit(ary: Any, indices_or_sections: Any) -> Any:
    """numpy.dsplit: split along axis 2 (3-D and more)."""
    return _split_at("dsplit", ary, indices_or_sections, 2, 3)


def append(arr: Any, values: Any, axis: Any = None) -> Any:
    """numpy.append: values joined at the end of arr (both flattened when axis is None)."""
    if not _nested_tracers([arr, values]):
        return np.append(arr, values, axis=axis)
    if axis is None:
        return concatenate([ravel(asarray(arr)), ravel(asarray(values))])
    return concatenate([arr, values], axis=axis)


def real(val: Any) -> Any:
    """numpy.real: a real value itself (graphc computes real functions)."""
    return val if isinstance(val, Tracer) else np.real(val)


def imag(val: Any) -> Any:
    """numpy.imag: zeros of a real value's shape (no gradient flows)."""
    return val * 0.0 if isinstance(val, Tracer) else np.imag(val)


def expand_dims(a: Any, axis: Any) -> Any:
    """numpy.expand_dims: new axes of size 1 at the given positions of the result."""
    if not isinstance(a, Tracer):
        return np.expand_dims(a, axis)
    shape = list(a.node.shape)
    n = len(shape) + (len(axis) if isinstance(axis, (tuple, list)) else 1)
    axes = _axes("expand_dims", axis, n)
    it = iter(shape)
    return _wrap(_reshape(a.node, tuple(1 if i in axes else next(it) for i in range(n))), a)


def squeeze(a: Any, axis: Any = None) -> Any:
    """numpy.squeeze: axes of size 1 removed (axis=None: every one)."""
    if not isinstance(a, Tracer):
        return np.squeeze(a, axis=axis)
    shape = a.node.shape
    if axis is None:
        axes = tuple(i for i, d in enumerate(shape) if d == 1)
    else:
        axes = _axes("squeeze", axis, len(shape))
        for i in axes:
            if shape[i] != 1:
                raise ShapeError(f"graphc.numpy.squeeze: cannot select an axis to squeeze out which has size not "
                                 f"equal to one: axis {i} of {_name(a)}'s shape {fmt_shape(shape)}")
    return _wrap(_reshape(a.node, tuple(d for i, d in enumerate(shape) if i not in axes)), a)


def flip(m: Any, axis: Any = None) -> Any:
    """numpy.flip: the entries in reverse order along the axes (None: all). Gradient: flipped back."""
    if not isinstance(m, Tracer):
        return np.flip(m, axis=axis)
    nd = m.node.type.ndim
    axes = tuple(range(nd)) if axis is None else _axes("flip", axis, nd)
    key = tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(nd))
    return m[key]


def tile(A: Any, reps: Any) -> Any:  # noqa: N803 - NumPy's name
    """numpy.tile: A repeated reps times along each axis (a broadcast and a reshape;
    the gradient sums the copies)."""
    if not isinstance(A, Tracer):
        return np.tile(A, reps)
    reps = (int(reps),) if isinstance(reps, (int, np.integer)) else tuple(int(r) for r in reps)
    if any(r < 0 for r in reps):
        raise ShapeError(f"graphc.numpy.tile: negative repetitions in reps={reps!r}")
    shape = tuple(A.node.shape)
    d = max(len(reps), len(shape))
    shape = (1,) * (d - len(shape)) + shape
    reps = (1,) * (d - len(reps)) + reps
    n = _reshape(A.node, shape)
    if all(r == 1 for r in reps):
        return _wrap(n, A)
    for i, (s, r) in enumerate(zip(shape, reps)):
        if r != 1:
            _int(s, "tile", i)
    inter = tuple(x for s in shape for x in (1, s))
    big = tuple(x for s, r in zip(shape, reps) for x in (r, s))
    n = make("broadcast_to", _reshape(n, inter), shape=big)
    return _wrap(_reshape(n, tuple(s if r == 1 else r * s for s, r in zip(shape, reps))), A)


def repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
    """numpy.repeat: each entry repeated (a count, or one per entry along the axis);
    the gradient sums the copies."""
    if not isinstance(a, Tracer):
        if isinstance(repeats, Tracer):
            raise UnsupportedError("graphc.numpy.repeat: traced repeats give a shape that depends on the data")
        return np.repeat(a, repeats, axis=axis)
    if isinstance(repeats, Tracer):
        raise UnsupportedError("graphc.numpy.repeat: traced repeats give a shape that depends on the data: "
                               "pass them as Python ints (static_argnames)")
    if axis is None:
        a, axis = ravel(a), 0
    nd = a.node.type.ndim
    ax = _int_axis("repeat", axis, nd)
    r = np.asarray(repeats)
    if r.dtype.kind not in "iu":
        raise TypeError(f"graphc.numpy.repeat: repeats must be integers, got {repeats!r}")
    if (r < 0).any():
        raise ShapeError("graphc.numpy.repeat: negative repeats are not allowed")
    shape = a.node.shape
    if r.size == 1:
        k = int(r.ravel()[0])
        d = _int(shape[ax], "repeat", ax) if k != 1 else shape[ax]
        if k == 1:
            return a
        inter = shape[:ax + 1] + (1,) + shape[ax + 1:]
        n = make("broadcast_to", _reshape(a.node, inter), shape=shape[:ax + 1] + (k,) + shape[ax + 1:])
        return _wrap(_reshape(n, shape[:ax] + (d * k,) + shape[ax + 1:]), a)
    d = _int(shape[ax], "repeat", ax)
    if r.ndim != 1 or r.size != d:
        raise ShapeError(f"graphc.numpy.repeat: {r.size} repeats for axis {ax} of size {d}")
    return take(a, np.repeat(np.arange(d), r), axis=ax)


def _as_pairs(fn: str, x: Any, nd: int, what: str, as_index: bool) -> np.ndarray:
    """NumPy's numpy.lib._arraypad_impl._as_pairs: one (before, after) pair per axis."""
    a = np.asarray(x)
    if as_index:
        if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(a == np.round(a))):
            raise TypeError(f"graphc.numpy.{fn}: {what} must be integers, got {x!r}")
        a = np.round(a).astype(np.int64)
    if a.ndim < 3 and a.size == 1:
        a = a.ravel()
        out = np.array([[a[0], a[0]]] * nd) if nd else np.zeros((0, 2), a.dtype)
    elif a.ndim < 3 and a.size == 2 and a.shape != (2, 1):
        a = a.ravel()
        out = np.array([[a[0], a[1]]] * nd) if nd else np.zeros((0, 2), a.dtype)
    else:
        try:
            out = np.broadcast_to(a, (nd, 2))
        except ValueError:
            raise ShapeError(f"graphc.numpy.{fn}: {what} of shape {a.shape} does not give a (before, after) pair for "
                             f"each of the {nd} axes") from None
    if as_index and (out < 0).any():
        raise ShapeError(f"graphc.numpy.{fn}: {what} can't contain negative values")
    return out


_PAD_MODES = {"constant": ("constant_values",), "edge": (), "reflect": ("reflect_type",),
              "symmetric": ("reflect_type",), "wrap": ()}


def pad(array: Any, pad_width: Any, mode: Any = "constant", **kwargs: Any) -> Any:
    """numpy.pad with modes "constant" (constant_values=), "edge", "reflect", "symmetric"
    and "wrap" (reflect_type="even"); padded axis by axis as NumPy does. Constant
    padding is a join with constant blocks; the others gather the source entries
    (numpy.pad of the positions), so gradients accumulate onto the entries copied."""
    if not isinstance(array, Tracer):
        return np.pad(array, pad_width, mode, **kwargs)
    if callable(mode) or mode not in _PAD_MODES:
        raise UnsupportedError(f"graphc.numpy.pad: mode={mode!r} is not supported (graphc pads with "
                               f"{', '.join(repr(m) for m in _PAD_MODES)})")
    unknown = set(kwargs) - set(_PAD_MODES[mode])
    if unknown:
        raise ValueError(f"unsupported keyword arguments for mode '{mode}': {unknown}")
    if kwargs.get("reflect_type", "even") != "even":
        raise UnsupportedError(f"graphc.numpy.pad: reflect_type={kwargs['reflect_type']!r} is not supported "
                               "(graphc honours only 'even')")
    n = array.node
    nd = n.type.ndim
    widths = _as_pairs("pad", pad_width, nd, "pad_width", True)
    if mode == "constant":
        values = _as_pairs("pad", kwargs.get("constant_values", 0), nd, "constant_values", False)
    for ax in range(nd):
        before, after = (int(w) for w in widths[ax])
        if not before and not after:
            continue
        d = _int(n.shape[ax], "pad", ax)
        if mode == "constant":
            parts = []
            for w, c in ((before, values[ax][0]), (after, values[ax][1])):
                block = tuple(w if i == ax else s for i, s in enumerate(n.shape))
                if isinstance(c, Tracer) or np.ndim(c):
                    raise UnsupportedError("graphc.numpy.pad: constant_values must be numbers")
                parts.append(make("broadcast_to", const(float(c), n.dtype), shape=block))
            n = join([parts[0], n, parts[1]], ax)
            continue
        if d == 0:
            raise ShapeError(f"graphc.numpy.pad: can't extend empty axis {ax} using modes other than 'constant'")
        positions = np.pad(np.arange(d), (before, after), mode=mode)
        n = take(_wrap(n, array), positions, axis=ax).node
    return _wrap(n, array)


def roll(a: Any, shift: Any, axis: Any = None) -> Any:
    """numpy.roll: entries shifted cyclically along axes (None: the flattened array)."""
    if not isinstance(a, Tracer):
        return np.roll(a, shift, axis=axis)
    if axis is None:
        return reshape_to(roll(ravel(a), shift, 0), a.node.shape)
    nd = a.node.type.ndim
    b = np.broadcast(np.asarray(shift), np.asarray(axis))
    total: dict[int, int] = {}
    for s, ax in b:
        ax = _int_axis("roll", int(ax), nd)
        total[ax] = total.get(ax, 0) + int(s)
    n = a.node
    for ax, s in total.items():
        d = _int(n.shape[ax], "roll", ax)
        if not d or not s % d:
            continue
        s %= d
        n = join([_axis_slice(n, ax, d - s, 1, s), _axis_slice(n, ax, 0, 1, d - s)], ax)
    return _wrap(n, a)


def reshape_to(a: Tracer, shape: Sequence[Dim]) -> Tracer:
    return _wrap(_reshape(a.node, shape), a)


def swapaxes(a: Any, axis1: Any, axis2: Any) -> Any:
    """numpy.swapaxes: two axes exchanged (a transpose)."""
    if not isinstance(a, Tracer):
        return np.swapaxes(a, axis1, axis2)
    nd = a.node.type.ndim
    i, j = _int_axis("swapaxes", axis1, nd, "axis1"), _int_axis("swapaxes", axis2, nd, "axis2")
    perm = list(range(nd))
    perm[i], perm[j] = j, i
    return _wrap(_transpose(a.node, perm), a)


def moveaxis(a: Any, source: Any, destination: Any) -> Any:
    """numpy.moveaxis: axes moved to new positions, the others in their order (a transpose)."""
    if not isinstance(a, Tracer):
        return np.moveaxis(a, source, destination)
    nd = a.node.type.ndim
    src = _axes("moveaxis", source, nd, "source")
    dst = _axes("moveaxis", destination, nd, "destination")
    if len(src) != len(dst):
        raise ShapeError("graphc.numpy.moveaxis: `source` and `destination` arguments must have the same number of "
                         "elements")
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return _wrap(_transpose(a.node, order), a)


def ravel(a: Any, order: Any = "C") -> Any:
    """numpy.ravel in C order: the entries as one axis."""
    if not isinstance(a, Tracer):
        return np.ravel(a, order=order)
    _refuse("ravel", order=(order, "C"))
    shape = a.node.shape
    if len(shape) == 1:
        return a
    names = [d for d in shape if isinstance(d, str)]
    if names and not all(d == 1 for d in shape if not isinstance(d, str)) or len(names) > 1:
        _int(names[0], "ravel", shape.index(names[0]))
    size = names[0] if names else int(np.prod(shape, dtype=np.int64))
    return _wrap(_reshape(a.node, (size,)), a)


def take(a: Any, indices: Any, axis: Any = None, out: Any = None, mode: Any = "raise") -> Any:
    """numpy.take: entries at the indices along an axis (None: of the flattened array).
    Constant indices: mode "raise" checks them while tracing, "wrap" and "clip" as
    NumPy's. Traced int64 indices are data: negative ones count from the end and any
    still out of range are clamped (JAX's rule for x[idx]; mode "raise" cannot raise
    at run time). Gradient: a scatter-add (duplicates accumulate, as numpy.add.at)."""
    if not isinstance(a, Tracer) and not isinstance(indices, Tracer):
        return np.take(a, indices, axis=axis, out=out, mode=mode)
    if not isinstance(a, Tracer):
        a = Tracer(captured_array(np.asarray(a), indices.trace.dtype), indices.trace)  # a constant table
    _refuse("take", out=(out, None))
    if mode not in ("raise", "wrap", "clip"):
        raise ValueError(f"clipmode must be one of 'clip', 'raise', or 'wrap' (got {mode!r})")
    if axis is None:
        a, axis = ravel(a), 0
    ax = _int_axis("take", axis, a.node.type.ndim)
    if isinstance(indices, Tracer):
        if mode != "raise":
            raise UnsupportedError(f"graphc.numpy.take: mode={mode!r} with traced indices is not supported (traced "
                                   "indices are clamped into range, JAX's rule)")
    else:
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu" and idx.size:
            raise TypeError(f"graphc.numpy.take: indices must be integers, got {indices!r}")
        idx = idx.astype(np.int64)
        d = _int(a.node.shape[ax], "take", ax)
        if mode == "wrap" and d:
            idx = np.mod(idx, d)
        elif mode == "clip" and d:
            idx = np.clip(idx, 0, d - 1)
        indices = idx
    return a[(slice(None),) * ax + (indices,)]


def take_along_axis(arr: Any, indices: Any, axis: Any = -1) -> Any:
    """numpy.take_along_axis: arr's entries at the indices along one axis, matched
    position by position on the others (broadcast). Traced indices clamp, as take's."""
    if not isinstance(arr, Tracer) and not isinstance(indices, Tracer):
        return np.take_along_axis(arr, indices, axis=axis)
    if not isinstance(arr, Tracer):
        arr = Tracer(captured_array(np.asarray(arr), indices.trace.dtype), indices.trace)  # a constant
    if axis is None:
        arr, axis = ravel(arr), 0
    nd = arr.node.type.ndim
    ishape = tuple(indices.node.shape) if isinstance(indices, Tracer) else np.shape(indices)
    if len(ishape) != nd:
        raise ShapeError(f"graphc.numpy.take_along_axis: indices of shape {fmt_shape(ishape)} and arr of shape "
                         f"{fmt_shape(arr.node.shape)} must have the same number of dimensions")
    ax = _int_axis("take_along_axis", axis, nd)
    if not isinstance(indices, Tracer):
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError("graphc.numpy.take_along_axis: indices must be integers")
    key = []
    for i in range(nd):
        if i == ax:
            key.append(indices)
            continue
        d = _int(arr.node.shape[i], "take_along_axis", i)
        key.append(np.arange(d).reshape((1,) * i + (d,) + (1,) * (nd - i - 1)))
    return arr[tuple(key)]


def diag(v: Any, k: Any = 0) -> Any:
    """numpy.diag: a 1-D array's square matrix with it on diagonal k, or a 2-D array's
    diagonal k (a strided slice of the flattened matrix; its adjoint places the
    gradient back on the diagonal)."""
    if not isinstance(v, Tracer):
        return np.diag(v, k)
    k = int(k)
    shape = v.node.shape
    if len(shape) == 1:
        n = _int(shape[0], "diag", 0)
        m = n + abs(k)
        start = k if k >= 0 else -k * m
        flat = make("unslice", v.node, start=(start if n else 0,), step=(m + 1,), shape=(m * m,))
        return _wrap(_reshape(flat, (m, m)), v)
    if len(shape) == 2:
        a, b = _int(shape[0], "diag", 0), _int(shape[1], "diag", 1)
        if k >= 0:
            n, start = max(0, min(a, b - k)), k
        else:
            n, start = max(0, min(a + k, b)), -k * b
        flat = _reshape(v.node, (a * b,))
        return _wrap(_slice(flat, (start if n else 0,), (b + 1,), (n,)), v)
    raise ShapeError(f"graphc.numpy.diag: input must be 1- or 2-d; {_name(v)} has shape {fmt_shape(shape)}")


def _triangle(fn: str, m: Any, k: Any, upper: bool) -> Any:
    n = m.node
    if n.type.ndim == 0:
        raise ShapeError(f"graphc.numpy.{fn}: needs at least one dimension; {_name(m)} is a scalar")
    if n.type.ndim == 1:
        n = make("broadcast_to", n, shape=(n.shape[0],) + tuple(n.shape))
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"graphc.numpy.{fn}: k must be an integer, got {k!r}")
    return _wrap(make("triangle", n, k=int(k), upper=upper), m)


def tril(m: Any, k: Any = 0) -> Any:
    """numpy.tril: entries above diagonal k set to zero (the last two axes). Gradient: tril of it."""
    if not isinstance(m, Tracer):
        return np.tril(m, k)
    return _triangle("tril", m, k, False)


def triu(m: Any, k: Any = 0) -> Any:
    """numpy.triu: entries below diagonal k set to zero (the last two axes). Gradient: triu of it."""
    if not isinstance(m, Tracer):
        return np.triu(m, k)
    return _triangle("triu", m, k, True)


__all__ = [
    "concatenate", "stack", "hstack", "vstack", "split", "array_split", "expand_dims", "squeeze", "flip", "tile",
    "repeat", "pad", "roll", "swapaxes", "moveaxis", "ravel", "take", "take_along_axis", "diag", "tril", "triu",
]


def rollaxis(a: Any, axis: Any, start: Any = 0) -> Any:
    """numpy.rollaxis: axis moved to before position `start` (moveaxis's older spelling)."""
    if not isinstance(a, Tracer):
        return np.rollaxis(a, axis, start)
    nd = a.node.type.ndim
    ax = _int_axis("rollaxis", axis, nd, "axis")
    if not -nd <= int(start) <= nd:
        raise ShapeError(f"graphc.numpy.rollaxis: start={start} is out of range for {nd} axes")
    st = int(start) + nd if int(start) < 0 else int(start)
    if ax < st:
        st -= 1
    return moveaxis(a, ax, st) if ax != st else a


def _at_least_nd(name: str, nd: int, arys: tuple) -> Any:
    """numpy.atleast_Nd: size-1 axes added (in NumPy's positions) up to nd axes."""
    out = []
    for x in arys:
        if not isinstance(x, Tracer):
            out.append(getattr(np, name)(x))
            continue
        k = x.node.type.ndim
        if k >= nd:
            out.append(x)
        elif nd == 3 and k == 2:
            out.append(expand_dims(x, 2))
        elif nd == 3 and k == 1:
            out.append(expand_dims(expand_dims(x, 0), 2))
        else:
            y = x
            for _ in range(nd - k):
                y = expand_dims(y, 0)
            out.append(y)
    return out[0] if len(out) == 1 else tuple(out)


def atleast_1d(*arys: Any) -> Any:
    """numpy.atleast_1d."""
    return _at_least_nd("atleast_1d", 1, arys)


def atleast_2d(*arys: Any) -> Any:
    """numpy.atleast_2d: a 1-D array becomes one row."""
    return _at_least_nd("atleast_2d", 2, arys)


def atleast_3d(*arys: Any) -> Any:
    """numpy.atleast_3d: (n,) becomes (1, n, 1), (m, n) becomes (m, n, 1)."""
    return _at_least_nd("atleast_3d", 3, arys)


__all__ += ["rollaxis", "atleast_1d", "atleast_2d", "atleast_3d"]


def _nested_tracers(a: Any) -> bool:
    return isinstance(a, Tracer) or (isinstance(a, (list, tuple)) and builtins.any(_nested_tracers(x) for x in a))


def asarray(a: Any, dtype: Any = None, order: Any = None, *, device: Any = None, copy: Any = None,
            like: Any = None) -> Any:
    """numpy.asarray: a traced value as it is; a (nested) list or tuple holding traced
    values stacked into one (jax.numpy.asarray's rule); anything else NumPy's asarray."""
    if not _nested_tracers(a):
        return np.asarray(a, dtype=dtype, order=order, device=device, copy=copy, like=like)
    _refuse("asarray", (), dtype=(dtype, None), order=(order, None), device=(device, None), copy=(copy, None),
            like=(like, None))
    if isinstance(a, Tracer):
        return a
    return stack([asarray(x) if isinstance(x, (list, tuple)) else x for x in a])


def array(object: Any, dtype: Any = None, *, copy: Any = True, order: Any = "K", subok: Any = False,  # noqa: A002
          ndmin: Any = 0, ndmax: Any = 0, like: Any = None) -> Any:
    """numpy.array: as `asarray` for traced values (immutable: no copy to make)."""
    if not _nested_tracers(object):
        kw = {"ndmax": ndmax} if ndmax else {}
        return np.array(object, dtype=dtype, copy=copy, order=order, subok=subok, ndmin=ndmin, like=like, **kw)
    _refuse("array", (), order=(order, "K"), like=(like, None))  # subok: a tracer has no subclasses
    if ndmax:
        raise UnsupportedError("graphc.numpy.array: ndmax= is not supported on traced values")
    out = asarray(object)
    if dtype is not None:
        out = out.astype(dtype)  # a float dtype keeps graphc's float dtype; masks become numbers
    k = out.node.type.ndim
    if int(ndmin) > k:  # NumPy's ndmin: size-1 axes in front
        out = _wrap(_reshape(out.node, (1,) * (int(ndmin) - k) + tuple(out.node.shape)), out)
    return out


__all__ += ["asarray", "array"]

INDEXING.update(getitem=getitem, index_update=index_update)


# ------------------------------------------------------------------ sizes, flips and more joins


def ndim(a: Any) -> int:
    """numpy.ndim: a traced value's number of axes (known while tracing)."""
    if isinstance(a, Tracer):
        return a.node.type.ndim
    return np.ndim(asarray(a)) if _nested_tracers(a) else np.ndim(a)


def shape(a: Any) -> tuple:
    """numpy.shape: a traced value's shape (ints; a symbolic dimension as its SymbolicDim)."""
    if isinstance(a, Tracer):
        return a.shape
    return asarray(a).shape if _nested_tracers(a) else np.shape(a)


def size(a: Any, axis: Any = None) -> int:
    """numpy.size: a traced value's number of entries (or its length along axis); refused
    for a dimension that is symbolic (one program serves every size)."""
    if not isinstance(a, Tracer):
        if not _nested_tracers(a):
            return np.size(a, axis)
        a = asarray(a)
    dims = a.node.shape
    if axis is None:
        return int(np.prod([_int(d, "size", i) for i, d in enumerate(dims)], dtype=np.int64))
    if isinstance(axis, (tuple, list)):
        return int(np.prod([_int(dims[i], "size", i) for i in _axes("size", axis, len(dims))], dtype=np.int64))
    ax = _int_axis("size", axis, len(dims))
    return _int(dims[ax], "size", ax)


def fliplr(m: Any) -> Any:
    """numpy.fliplr: the columns (axis 1) in reverse order."""
    if not isinstance(m, Tracer):
        return np.fliplr(m)
    if m.node.type.ndim < 2:
        raise ShapeError(f"graphc.numpy.fliplr: the input must be >= 2-d, got shape {fmt_shape(m.node.shape)}")
    return flip(m, 1)


def flipud(m: Any) -> Any:
    """numpy.flipud: the rows (axis 0) in reverse order."""
    if not isinstance(m, Tracer):
        return np.flipud(m)
    if m.node.type.ndim < 1:
        raise ShapeError("graphc.numpy.flipud: the input must be >= 1-d, got a 0-d value")
    return flip(m, 0)


def rot90(m: Any, k: Any = 1, axes: Any = (0, 1)) -> Any:
    """numpy.rot90: rotated by 90 degrees k times in the plane of axes (from the first
    towards the second): flips and a transpose, as NumPy composes them."""
    if not isinstance(m, Tracer):
        return np.rot90(m, k, axes)
    axes = tuple(axes)
    nd = m.node.type.ndim
    if len(axes) != 2:
        raise ValueError("len(axes) must be 2.")
    if axes[0] == axes[1] or abs(axes[0] - axes[1]) == nd:
        raise ValueError("Axes must be different.")
    a0, a1 = (_int_axis("rot90", a, nd, "axes") for a in axes)
    k = operator_index(k) % 4
    if k == 0:
        return m
    if k == 2:
        return flip(flip(m, a0), a1)
    perm = list(range(nd))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    if k == 1:
        return _wrap(_transpose(flip(m, a1).node, perm), m)
    return flip(_wrap(_transpose(m.node, perm), m), a1)


def column_stack(tup: Any) -> Any:
    """numpy.column_stack: 1-D arrays (and 0-d) as columns, 2-D and more as they are, joined
    along axis 1."""
    if isinstance(tup, Tracer):  # one array: NumPy joins its rows
        tup = [tup[i] for i in range(_int(tup.node.shape[0], "column_stack", 0))] if tup.node.shape else [tup]
    arrays = list(tup)
    t = _traced(arrays)
    if t is None:
        return np.column_stack(arrays)
    nodes = []
    for n in _lift("column_stack", arrays, t, "tup"):
        if n.type.ndim < 2:  # NumPy's array(a, ndmin=2).T
            n = _reshape(n, (n.shape[0] if n.shape else 1, 1))
        nodes.append(n)
    _check_join("column_stack", nodes, 1, "tup")
    return _wrap(join(nodes, 1), t)


def dstack(tup: Any) -> Any:
    """numpy.dstack: the arrays raised to 3-D (atleast_3d) joined along axis 2."""
    if isinstance(tup, Tracer):  # one array: NumPy joins its rows
        tup = [tup[i] for i in range(_int(tup.node.shape[0], "dstack", 0))] if tup.node.shape else [tup]
    arrays = list(tup)
    t = _traced(arrays)
    if t is None:
        return np.dstack(arrays)
    nodes = [atleast_3d(_wrap(n, t)).node for n in _lift("dstack", arrays, t, "tup")]
    _check_join("dstack", nodes, 2, "tup")
    return _wrap(join(nodes, 2), t)


__all__ += ["ndim", "shape", "size", "fliplr", "flipud", "rot90", "column_stack", "dstack"]

if hasattr(np, "row_stack"):  # NumPy 1.x and 2.0-2.4 (deprecated there, gone in 2.5): vstack's alias
    def row_stack(tup: Any, *, dtype: Any = None, casting: Any = "same_kind") -> Any:
        """numpy.row_stack: vstack's alias."""
        return vstack(tup, dtype=dtype, casting=casting)

    __all__ += ["row_stack"]


# NumPy's r_ and c_ (AxisConcatenator) turn each item into an array with numpy.array, which
# does not dispatch on its argument (__array_function__), then join them with np.concatenate,
# which does: their module's `array` is wrapped to take traced values (nested ones too) to
# graphc.numpy.array; anything else reaches NumPy's array with the same arguments.
def _hook_index_tricks() -> None:
    mod = sys.modules.get(type(np.r_).__module__)
    np_array = getattr(mod, "array", None)
    if mod is None or np_array is None or getattr(np_array, "_graphc_hook", False):
        return

    def hooked_array(object: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: A002 - NumPy's name
        if _nested_tracers(object):
            return array(object, *args, **kwargs)
        return np_array(object, *args, **kwargs)

    hooked_array._graphc_hook = True  # type: ignore[attr-defined]
    hooked_array.__wrapped__ = np_array  # type: ignore[attr-defined]
    mod.array = hooked_array


_hook_index_tricks()

__all__ += ["vsplit", "hsplit", "dsplit", "append", "real", "imag"]
