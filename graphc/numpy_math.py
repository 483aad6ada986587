"""graphc.numpy's statistics, scans, sorting, contraction and extra elementwise
functions (NumPy's names and signatures), re-exported by graphc.numpy.

Each function follows NumPy's semantics (and, for gradients, JAX's `jax.numpy`); the
reference is named in its docstring. On NumPy arrays a function evaluates at once; on
traced values it records IR: the ops of `math_ops.py` (prod, cumsum, cumprod, diff,
argmax, argmin, sort, argsort, diagonal, cross), the elementwise rows of `ops.py` (fmax,
fmin, logaddexp2, reciprocal, sinc, deg2rad, rad2deg, mod, floor_divide), or
compositions: var/std (mean-shifted, two passes), einsum and its kin (lowered to
transposes, reductions and matmul -- never a loop over the whole index space),
linalg.norm, nan_to_num, select, gradient (slices and one concatenate per axis), partition
(take_along_axis by argsort's kth= form, numpy.argpartition's permutation), ldexp and frexp
(exp2, floor and log2). Masks (comparisons) and integers are used as numbers
(0/1) by sum, mean, astype and these functions. Complex numbers are out of scope.
"""

from __future__ import annotations

import builtins
import difflib
import math
import string
import sys
from typing import Any

import numpy as np

from .errors import GraphcError, ShapeError, UnsupportedError
from .ir import const, make
from .numpy_args import refuse as _refuse
from .trace import NUMPY_FUNCTIONS, Tracer, apply

_NoValue: Any = np._NoValue

# ------------------------------------------------------------------ helpers


def _traced(*xs: Any) -> bool:
    return builtins.any(isinstance(x, Tracer) for x in xs)




def _float_dtype_ok(fn: str, dtype: Any) -> None:
    if dtype is None:
        return
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        kind = "?"
    if kind != "f":
        raise UnsupportedError(f"graphc.numpy.{fn}: dtype={dtype!r} is not supported: graphc computes in the "
                               "arguments' float dtype")


def as_number(x: Any) -> Any:
    """A mask (comparison) or integer tracer as numbers in the trace's dtype (True -> 1.0);
    anything else unchanged."""
    if isinstance(x, Tracer):
        dt = x.node.dtype
        if dt == "bool":
            return Tracer(make("where", x.node, const(1.0, x.trace.dtype), const(0.0, x.trace.dtype)), x.trace)
        if dt == "i64":
            return Tracer(make("to_float", x.node, dtype=x.trace.dtype), x.trace)
    return x


def _flag(v: Any) -> bool:
    return False if v is _NoValue else bool(v)


def _shape(x: Any) -> tuple:
    return tuple(x.shape) if isinstance(x, Tracer) else np.shape(x)


def _ndim(x: Any) -> int:
    return len(_shape(x))


def _int(d: Any) -> bool:
    return isinstance(d, (int, np.integer)) and not isinstance(d, bool)


def _axes(fn: str, nd: int, axis: Any, name: str = "axis") -> tuple[int, ...]:
    """NumPy's axis argument (None: all) as sorted non-negative ints; ShapeError names it."""
    if axis is None:
        return tuple(range(nd))
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if not _int(a):
            raise ShapeError(f"graphc.numpy.{fn}: {name} must be an int or a tuple of ints, got {axis!r}")
        if not -nd <= a < nd:
            raise ShapeError(f"graphc.numpy.{fn}: {name}={a} is out of range for an array of {nd} dimension"
                             f"{'s' if nd != 1 else ''}")
        if int(a) % nd in out:
            raise ShapeError(f"graphc.numpy.{fn}: {name} repeats axis {int(a) % nd}")
        out.append(int(a) % nd)
    return tuple(sorted(out))


def _ravel(x: Any) -> Any:
    shape = _shape(x)
    if len(shape) == 1:
        return x
    if not builtins.all(_int(d) for d in shape):
        raise ShapeError("graphc.numpy: flattening an array needs its sizes known while tracing, got shape "
                         f"{shape}")
    return apply("reshape", x, shape=(int(np.prod(shape, dtype=np.int64)),))


def _reshape(x: Any, shape: tuple) -> Any:
    return x if tuple(_shape(x)) == tuple(shape) else apply("reshape", x, shape=tuple(shape))


def _transpose(x: Any, perm: tuple) -> Any:
    return x if tuple(perm) == tuple(range(len(perm))) else apply("transpose", x, axes=tuple(perm))


def _moveaxis(x: Any, src: int, dst: int) -> Any:
    nd = _ndim(x)
    src, dst = src % nd, dst % nd
    order = [i for i in range(nd) if i != src]
    order.insert(dst, src)
    return _transpose(x, tuple(order))


def _ufunc_options(fn: str, out: Any, where: Any, casting: Any, order: Any, dtype: Any, subok: Any,
                   signature: Any) -> None:
    _refuse(fn, out=(out, None), where=(where, True), casting=(casting, "same_kind"), order=(order, "K"),
            subok=(subok, True), signature=(signature, None))
    _float_dtype_ok(fn, dtype)


def _ufunc(op: str, arity: int, doc: str):
    """A NumPy ufunc recording `op` (a registry row of ops.py), with numpy's signature:
    (x, /, out=None, *, where=True, casting=..., ...) or (x1, x2, /, out=None, *, ...)."""
    if arity == 1:
        def f(x: Any, /, out: Any = None, *, where: Any = True, casting: Any = "same_kind", order: Any = "K",
              dtype: Any = None, subok: Any = True, signature: Any = None) -> Any:
            _ufunc_options(f.__name__, out, where, casting, order, dtype, subok, signature)
            return apply(op, as_number(x))
    else:
        def f(x1: Any, x2: Any, /, out: Any = None, *, where: Any = True,  # type: ignore[misc]
              casting: Any = "same_kind", order: Any = "K", dtype: Any = None, subok: Any = True,
              signature: Any = None) -> Any:
            _ufunc_options(f.__name__, out, where, casting, order, dtype, subok, signature)
            return apply(op, as_number(x1), as_number(x2))

    f.__name__ = f.__qualname__ = op
    f.__doc__ = doc
    f._numpy_ufunc = arity  # type: ignore[attr-defined]
    return f


# ------------------------------------------------------------------ elementwise

fmax = _ufunc("fmax", 2, "numpy.fmax: the larger of x1, x2, the other where one is NaN; ties split the gradient")
fmin = _ufunc("fmin", 2, "numpy.fmin: the smaller of x1, x2, the other where one is NaN; ties split the gradient")
logaddexp2 = _ufunc("logaddexp2", 2, "numpy.logaddexp2: log2(2**x1 + 2**x2) without overflow")
reciprocal = _ufunc("reciprocal", 1, "numpy.reciprocal: 1 / x (floats)")
deg2rad = _ufunc("deg2rad", 1, "numpy.deg2rad: x * pi / 180")
rad2deg = _ufunc("rad2deg", 1, "numpy.rad2deg: x * 180 / pi")
radians, degrees = deg2rad, rad2deg
mod = _ufunc("mod", 2, "numpy.mod (numpy.remainder, x1 % x2): x1 - floor(x1 / x2) * x2, the sign of x2; "
             "gradient as jax.numpy.mod: 1 for x1, -floor(x1 / x2) for x2")
remainder = mod
floor_divide = _ufunc("floor_divide", 2, "numpy.floor_divide (x1 // x2): floor(x1 / x2); gradient 0 (as JAX's)")


def sinc(x: Any) -> Any:
    """numpy.sinc: sin(pi x) / (pi x), 1 at x = 0 (the normalised sinc); sinc'(0) = 0."""
    return apply("sinc", as_number(x))


def nan_to_num(x: Any, copy: Any = True, nan: Any = 0.0, posinf: Any = None, neginf: Any = None) -> Any:
    """numpy.nan_to_num: NaN -> nan, +inf -> posinf (default: the dtype's largest float),
    -inf -> neginf (default: its most negative). The gradient passes where x is finite
    (as jax.numpy.nan_to_num) and is 0 elsewhere."""
    if not _traced(x, nan, posinf, neginf):
        return np.nan_to_num(np.asarray(x, dtype=float) if np.asarray(x).dtype.kind not in "fc" else x,
                             copy=copy, nan=nan, posinf=posinf, neginf=neginf)
    x = as_number(x)
    big = float(np.finfo(np.float32 if x.trace.dtype == "f32" else np.float64).max)
    posinf = big if posinf is None else posinf
    neginf = -big if neginf is None else neginf
    out = apply("where", apply("eq", x, -math.inf), neginf, x)
    out = apply("where", apply("eq", x, math.inf), posinf, out)
    return apply("where", apply("ne", x, x), nan, out)


# ------------------------------------------------------------------ statistics


def _n_over(a: Any, axes: tuple[int, ...]) -> Any:
    """The number of entries over axes: an int, or a traced count where a size is symbolic."""
    shape = _shape(a)
    sizes = [shape[i] for i in axes]
    if builtins.all(_int(d) for d in sizes):
        return int(np.prod(sizes, dtype=np.int64))
    return apply("count", a, axis=axes)


def var(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0, keepdims: Any = _NoValue, *,
        where: Any = _NoValue, mean: Any = _NoValue, correction: Any = _NoValue) -> Any:
    """numpy.var: mean((a - mean(a))**2) * n / (n - ddof), computed mean-shifted (two passes, no
    cancellation of sum(a**2) - n mean**2); correction= is NumPy 2's name for ddof."""
    _refuse("var", out=(out, None), where=(where, _NoValue), mean=(mean, _NoValue))
    _float_dtype_ok("var", dtype)
    if correction is not _NoValue:
        if ddof != 0:
            raise ValueError("var(): ddof and correction can't be provided simultaneously.")
        ddof = correction
    keep = _flag(keepdims)
    if not _traced(a):
        return np.var(np.asarray(a, dtype=float), axis=axis, ddof=ddof, keepdims=keep)
    a = as_number(a)
    axes = _axes("var", a.ndim, axis)
    d = a - apply("mean", a, axis=axes, keepdims=True)
    # a sum divided by the count (numpy.mean's arithmetic), so the square's sum joins the loop that centres
    n = _n_over(a, axes)
    s = apply("sum", d * d, axis=axes, keepdims=keep)
    if isinstance(ddof, Tracer) or ddof != 0:
        return s / n * (n / (n - ddof))
    return s / n


def std(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0, keepdims: Any = _NoValue, *,
        where: Any = _NoValue, mean: Any = _NoValue, correction: Any = _NoValue) -> Any:
    """numpy.std: sqrt(var(a, axis, ddof=ddof)); its gradient is NaN where the variance is 0
    (as JAX's), except over groups of one entry, where std is constantly 0 and its gradient 0
    (as autograd's and finite differences)."""
    v = var(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims, where=where, mean=mean,
            correction=correction)
    if not _traced(v):
        return np.sqrt(v)
    if ddof == 0 and _n_over(a, _axes("std", _ndim(a), axis)) == 1:
        return v  # one entry per group: std is 0 whatever a is, so is var, and its gradient is 0 (not 0 * inf)
    return apply("sqrt", v)


def prod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: Any = _NoValue,
         initial: Any = _NoValue, where: Any = _NoValue) -> Any:
    """numpy.prod over axes; the gradient is exact where entries are 0 (as jax.numpy.prod's):
    at a line's only zero, the product of the others; 0 elsewhere on a line with a zero."""
    if type(initial) in (int, float) and initial == 1:
        initial = _NoValue
    _refuse("prod", out=(out, None), initial=(initial, _NoValue), where=(where, _NoValue))
    _float_dtype_ok("prod", dtype)
    a = as_number(a)
    return apply("prod", a, axis=_axes("prod", _ndim(a), axis), keepdims=_flag(keepdims))


def _scan(fn: str, a: Any, axis: Any, dtype: Any, out: Any) -> Any:
    _refuse(fn, out=(out, None))
    _float_dtype_ok(fn, dtype)
    a = as_number(a)
    if axis is None:
        a = _ravel(a) if _ndim(a) != 1 else a
        axis = 0
    if _ndim(a) == 0:
        raise ShapeError(f"graphc.numpy.{fn}: axis={axis} is out of range for a scalar")
    (ax,) = _axes(fn, _ndim(a), axis)
    return apply(fn, a, axis=ax, reverse=False)


def cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """numpy.cumsum (axis=None: of the flattened array); its gradient is the cumsum of the
    adjoint from the other end."""
    return _scan("cumsum", a, axis, dtype, out)


def cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """numpy.cumprod (axis=None: of the flattened array); the gradient is exact at zeros (as JAX's)."""
    return _scan("cumprod", a, axis, dtype, out)


def diff(a: Any, n: Any = 1, axis: Any = -1, prepend: Any = _NoValue, append: Any = _NoValue) -> Any:
    """numpy.diff: the n-th difference along axis (prepend=/append= joined first, by
    graphc.numpy.concatenate)."""
    if not _int(n) or n < 0:
        raise ValueError(f"order must be non-negative but got {n!r}")
    a = as_number(a)
    nd = _ndim(a)
    if nd == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    (ax,) = _axes("diff", nd, axis)
    if prepend is not _NoValue or append is not _NoValue:
        cat = NUMPY_FUNCTIONS.get("concatenate")
        if cat is None:
            raise UnsupportedError("graphc.numpy.diff: prepend=/append= need graphc.numpy.concatenate")
        shape = list(_shape(a))
        parts = []
        for extra in (prepend, None, append):
            if extra is None:
                parts.append(a)
            elif extra is not _NoValue:
                if _ndim(extra) == 0:
                    shape[ax] = 1
                    extra = broadcast_like(extra, tuple(shape), a)
                parts.append(extra)
        a = cat(parts, axis=ax)
    for _ in range(n):
        if _shape(a)[ax] == 0:  # NumPy: the difference of an empty axis is empty (the same shape)
            break
        a = apply("diff", a, axis=ax)
    return a


def broadcast_like(v: Any, shape: tuple, like: Any) -> Any:
    """v (a scalar or array) broadcast to shape, traced where `like` or v is."""
    if isinstance(v, Tracer):
        return apply("broadcast_to", v, shape=shape)
    if isinstance(like, Tracer):
        return Tracer(make("broadcast_to", const(float(v), like.trace.dtype), shape=shape), like.trace)
    return np.broadcast_to(v, shape)


def _argred(fn: str, a: Any, axis: Any, out: Any, keepdims: Any) -> Any:
    _refuse(fn, out=(out, None))
    a = as_number(a)
    ax = None if axis is None else _axes(fn, _ndim(a), axis)[0] if _int(axis) else axis
    if ax is not None and not _int(ax):
        raise ShapeError(f"graphc.numpy.{fn}: axis must be an int or None, got {axis!r}")
    return apply(fn, a, axis=ax, keepdims=_flag(keepdims))


def argmax(a: Any, axis: Any = None, out: Any = None, *, keepdims: Any = _NoValue) -> Any:
    """numpy.argmax: the index (int64) of the first largest entry; no gradient."""
    return _argred("argmax", a, axis, out, keepdims)


def argmin(a: Any, axis: Any = None, out: Any = None, *, keepdims: Any = _NoValue) -> Any:
    """numpy.argmin: the index (int64) of the first smallest entry; no gradient."""
    return _argred("argmin", a, axis, out, keepdims)


_KINDS = (None, "quicksort", "mergesort", "heapsort", "stable")


def _sort_args(fn: str, a: Any, axis: Any, kind: Any, order: Any, stable: Any) -> tuple[Any, int]:
    if kind not in _KINDS:
        raise ValueError(f"{fn}: sort kind must be one of 'quick', 'heap', or 'stable' (got {kind!r})")
    _refuse(fn, order=(order, None))
    a = as_number(a)
    if axis is None:
        a, axis = _ravel(a), 0
    if _ndim(a) == 0:
        raise ShapeError(f"graphc.numpy.{fn}: axis={axis} is out of range for a scalar")
    if not _int(axis):
        raise ShapeError(f"graphc.numpy.{fn}: axis must be an int or None, got {axis!r}")
    return a, _axes(fn, _ndim(a), axis)[0]


def sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> Any:
    """numpy.sort (axis=None: the flattened array); the gradient flows back through the sorting
    permutation (as jax.numpy.sort's); every kind sorts the same values."""
    a, ax = _sort_args("sort", a, axis, kind, order, stable)
    return apply("sort", a, axis=ax)


def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *, stable: Any = None) -> Any:
    """numpy.argsort, always stable (kind='stable': ties in their order; NumPy's default
    quicksort may order ties differently); int64, no gradient."""
    a, ax = _sort_args("argsort", a, axis, kind, order, stable)
    return apply("argsort", a, axis=ax)


def partition(a: Any, kth: Any, axis: Any = -1, kind: Any = "introselect", order: Any = None) -> Any:
    """numpy.partition: the kth entries (an int or a sequence) in their sorted places, smaller
    ones before, larger after -- exactly numpy.partition's output (np.argpartition's permutation
    applied); the gradient flows back through that permutation (axis=None: the flattened array)."""
    if kind != "introselect":
        raise ValueError(f"partition: kind must be 'introselect', got {kind!r}")
    _refuse("partition", order=(order, None))
    if not _traced(a):
        return np.partition(a, kth, axis=axis)
    a, ax = _sort_args("partition", a, axis, "stable", order, None)  # its kind is introselect, checked above
    kth = tuple(int(k) for k in np.atleast_1d(np.asarray(kth)).reshape(-1)) if not _int(kth) else int(kth)
    perm = apply("argsort", a, axis=ax, kth=kth)  # argsort with kth=: numpy.argpartition's permutation
    return NUMPY_FUNCTIONS["take_along_axis"](a, perm, axis=ax)


# ------------------------------------------------------------------ contractions

_LETTERS = string.ascii_letters


def _einsum_parse(subscripts: Any, shapes: list[tuple]) -> tuple[list[str], str]:
    """numpy.einsum's subscripts -> (letters per operand, output letters), '...' expanded to
    letters of its own; ShapeError/GraphcError name what does not match."""
    if not isinstance(subscripts, str):
        raise UnsupportedError("graphc.numpy.einsum: subscripts must be a string like 'ij,jk->ik' (the interleaved "
                               "operand/sublist form is not supported)")
    text = subscripts.replace(" ", "")
    explicit = "->" in text
    lhs, _, rhs = text.partition("->")
    if "->" in rhs or (explicit and ("-" in rhs or ">" in rhs)):
        raise ShapeError(f"einsum: subscripts {subscripts!r}: '->' may appear once")
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise ShapeError(f"einsum: subscripts {subscripts!r} name {len(ins)} operand(s), but {len(shapes)} "
                         "operand(s) were given")
    for part in ins + [rhs]:
        bad = [c for c in part.replace("...", "") if c not in _LETTERS]
        if bad:
            raise ShapeError(f"einsum: subscripts {subscripts!r}: {bad[0]!r} is not a letter")
    used = set(text) & set(_LETTERS)
    spare = [c for c in _LETTERS if c not in used]
    ell_nd = 0
    for k, (part, shape) in enumerate(zip(ins, shapes)):
        n_letters = len(part.replace("...", ""))
        if "..." in part:
            if part.count("...") > 1:
                raise ShapeError(f"einsum: subscripts {subscripts!r}: operand {k} has '...' twice")
            if len(shape) < n_letters:
                raise ShapeError(f"einsum: subscripts {subscripts!r}: operand {k} has {len(shape)} dimension(s) but "
                                 f"{n_letters} letter(s) besides '...'")
            ell_nd = builtins.max(ell_nd, len(shape) - n_letters)
        elif n_letters != len(shape):
            raise ShapeError(f"einsum: subscripts {subscripts!r}: operand {k} has {len(shape)} dimension(s) "
                             f"(shape {shape}) but its subscript {part!r} has {n_letters} letter(s)")
    ell = "".join(spare[:ell_nd])
    letters = []
    for part, shape in zip(ins, shapes):
        if "..." in part:
            k = len(shape) - len(part.replace("...", ""))
            part = part.replace("...", ell[ell_nd - k:])
        letters.append(part)
    if explicit:
        if "..." in rhs:
            rhs = rhs.replace("...", ell)
        elif ell_nd and builtins.any("..." in p for p in ins):
            pass  # NumPy: '...' summed away when the output leaves it out
    else:
        counts = {c: builtins.sum(p.count(c) for p in letters) for c in set("".join(letters))}
        rhs = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    for c in rhs:
        if rhs.count(c) > 1:
            raise ShapeError(f"einsum: subscripts {subscripts!r}: the output repeats letter {c!r} (NumPy: "
                             "'output subscript appears more than once')")
        if not builtins.any(c in p for p in letters):
            raise ShapeError(f"einsum: subscripts {subscripts!r}: output letter {c!r} appears in no operand")
    sizes: dict[str, Any] = {}
    for k, (part, shape) in enumerate(zip(letters, shapes)):
        for c, d in zip(part, shape):
            if c in sizes and sizes[c] != d and d != 1 and sizes[c] != 1:
                raise ShapeError(f"einsum: subscripts {subscripts!r}: letter {c!r} has size {sizes[c]} in one "
                                 f"operand and {d} in operand {k}")
            if c not in sizes or sizes[c] == 1:
                sizes[c] = d
    return letters, rhs


def _squeeze_ones(x: Any, lets: str, sizes: dict[str, Any]) -> tuple[Any, str]:
    """Drop axes of size 1 whose letter has another size elsewhere (NumPy broadcasts them)."""
    shape = _shape(x)
    drop = [i for i, (c, d) in enumerate(zip(lets, shape)) if d == 1 and sizes[c] != 1]
    if not drop:
        return x, lets
    keep = [i for i in range(len(shape)) if i not in drop]
    return _reshape(x, tuple(shape[i] for i in keep)), "".join(lets[i] for i in keep)


def _diagonals(x: Any, lets: str) -> tuple[Any, str]:
    """Repeated letters within one operand ('ii'): their diagonal, as the last axis."""
    while True:
        rep = next((c for c in lets if lets.count(c) > 1), None)
        if rep is None:
            return x, lets
        i = lets.index(rep)
        j = lets.index(rep, i + 1)
        x = apply("diagonal", x, axis1=i, axis2=j)
        lets = "".join(c for k, c in enumerate(lets) if k not in (i, j)) + rep


def _sum_out(x: Any, lets: str, keep: set[str]) -> tuple[Any, str]:
    axes = tuple(i for i, c in enumerate(lets) if c not in keep)
    if not axes:
        return x, lets
    return apply("sum", x, axis=axes, keepdims=False), "".join(c for c in lets if c in keep)


def _align(x: Any, lets: str, order: str) -> Any:
    """x transposed to `order`'s letters, with size-1 axes for the letters it lacks."""
    have = [c for c in order if c in lets]
    x = _transpose(x, tuple(lets.index(c) for c in have))
    shape = dict(zip(have, _shape(x)))
    return _reshape(x, tuple(shape.get(c, 1) for c in order))


def _merge(dims: list) -> Any:
    if not dims:
        return 1
    if len(dims) == 1:
        return dims[0]
    if not builtins.all(_int(d) for d in dims):
        return None
    return int(np.prod(dims, dtype=np.int64))


def _contract(a: Any, la: str, b: Any, lb: str, later: set[str]) -> tuple[Any, str]:
    """One pairwise step: shared letters needed later are batch axes, the other shared
    letters are contracted by one (batched) matmul; the rest are outer axes."""
    batch = [c for c in la if c in lb and c in later]
    contract = [c for c in la if c in lb and c not in later]
    a_only = [c for c in la if c not in lb]
    b_only = [c for c in lb if c not in la]
    sa, sb = dict(zip(la, _shape(a))), dict(zip(lb, _shape(b)))
    size = {**sb, **sa}
    m, k, n = _merge([sa[c] for c in a_only]), _merge([size[c] for c in contract]), _merge([sb[c] for c in b_only])
    if not contract or (not a_only and not b_only) or None in (m, k, n):
        # an outer product (nothing to contract), a batched dot (a fused multiply-and-sum),
        # or sizes that cannot be merged while tracing: broadcast and sum
        order = "".join(batch + a_only + b_only + contract)
        prod_ = _align(a, la, order) * _align(b, lb, order)
        nk = len(contract)
        if nk:
            prod_ = apply("sum", prod_, axis=tuple(range(len(order) - nk, len(order))), keepdims=False)
        return prod_, "".join(batch + a_only + b_only)
    bshape = tuple(size[c] for c in batch)
    a2 = _reshape(_transpose(a, tuple(la.index(c) for c in batch + a_only + contract)), bshape + (m, k))
    b2 = _reshape(_transpose(b, tuple(lb.index(c) for c in batch + contract + b_only)), bshape + (k, n))
    r = apply("matmul", a2, b2)
    out_shape = bshape + tuple(sa[c] for c in a_only) + tuple(sb[c] for c in b_only)
    return _reshape(r, out_shape), "".join(batch + a_only + b_only)


def _sublist_letters(sub: Any) -> str:
    out = []
    try:
        items = list(sub)
    except TypeError:
        raise ShapeError(f"einsum: a sublist must be a list of ints (and Ellipsis), got {sub!r}") from None
    for s in items:
        if s is Ellipsis:
            out.append("...")
        elif _int(s) and 0 <= s < len(_LETTERS):
            out.append(_LETTERS[int(s)])
        else:
            raise ValueError(f"einsum: subscript {s!r} in a sublist is not an int in [0, {len(_LETTERS)})")
    return "".join(out)


def _einsum_sublists(args: tuple) -> tuple[str, tuple]:
    """numpy.einsum's interleaved form (op0, sublist0, op1, sublist1, ..., [sublistout]) as
    (subscripts, operands): int k is the k-th of a-zA-Z (NumPy's letters), Ellipsis '...'."""
    ops_, subs = list(args[0::2]), list(args[1::2])
    out = None
    if len(args) % 2:
        out = ops_.pop()  # the trailing output sublist
    text = ",".join(_sublist_letters(s) for s in subs)
    if out is not None:
        text += "->" + _sublist_letters(out)
    return text, tuple(ops_)


def einsum(*operands: Any, out: Any = None, optimize: Any = False, **kwargs: Any) -> Any:
    """numpy.einsum (jax.numpy.einsum) for subscripts without a repeated output letter, implicit
    output and '...' included; a letter repeated in one operand takes its diagonal ('ii->i').
    Lowered to diagonals, reductions, transposes and (batched) matmuls -- GEMMs -- pairwise
    from the left, never a loop over the whole index space; gradients are those ops'. The
    interleaved form einsum(op0, sublist0, op1, sublist1, ..., [sublistout]) is converted to
    subscripts (int k: the k-th of a-zA-Z, Ellipsis: '...'). kwargs: numpy's dtype=, order=, casting=."""
    bad = [k for k in kwargs if k not in ("dtype", "order", "casting")]
    if bad:
        raise TypeError(f"einsum() got an unexpected keyword argument {bad[0]!r}")
    if not operands:
        raise ShapeError("einsum: no subscripts and operands given")
    if isinstance(operands[0], str):
        subscripts, operands = operands[0], operands[1:]
    else:
        subscripts, operands = _einsum_sublists(operands)
    dtype, order, casting = kwargs.get("dtype"), kwargs.get("order", "K"), kwargs.get("casting", "safe")
    _refuse("einsum", out=(out, None), order=(order, "K"))
    _float_dtype_ok("einsum", dtype)
    if casting not in ("no", "equiv", "safe", "same_kind", "unsafe"):
        raise ValueError("einsum(): casting must be one of 'no', 'equiv', 'safe', 'same_kind', or 'unsafe'")
    if not operands:
        raise ShapeError("einsum: no operands given")
    shapes = [_shape(x) for x in operands]
    letters, rhs = _einsum_parse(subscripts, shapes)
    if not _traced(*operands):
        return np.einsum(subscripts, *operands)
    sizes: dict[str, Any] = {}
    for lets, shape in zip(letters, shapes):
        for c, d in zip(lets, shape):
            if c not in sizes or sizes[c] == 1:
                sizes[c] = d
    ops_ = []
    for k, (x, lets) in enumerate(zip(operands, letters)):
        x = as_number(x)
        x, lets = _squeeze_ones(x, lets, sizes)
        x, lets = _diagonals(x, lets)
        others = set(rhs).union(*(set(p) for j, p in enumerate(letters) if j != k))
        x, lets = _sum_out(x, lets, others)
        ops_.append((x, lets))
    cur, lc = ops_[0]
    for k in range(1, len(ops_)):
        x, lx = ops_[k]
        later = set(rhs).union(*(set(p) for _, p in ops_[k + 1:]))
        cur, lc = _contract(cur, lc, x, lx, later)
    cur, lc = _sum_out(cur, lc, set(rhs))
    return _transpose(cur, tuple(lc.index(c) for c in rhs))


def _tensordot_axes(a_nd: int, b_nd: int, axes: Any) -> tuple[list[int], list[int]]:
    if _int(axes):
        n = int(axes)
        if n < 0 or n > a_nd or n > b_nd:
            raise ShapeError(f"tensordot: axes={n} needs at least {n} dimensions on each side")
        return list(range(a_nd - n, a_nd)), list(range(n))
    try:
        xa, xb = axes
    except (TypeError, ValueError):
        raise ShapeError(f"tensordot: axes must be an int or a pair of axis lists, got {axes!r}") from None
    xa = [xa] if _int(xa) else list(xa)
    xb = [xb] if _int(xb) else list(xb)
    if len(xa) != len(xb):
        raise ShapeError(f"tensordot: axes {axes!r}: the two lists differ in length")
    for name, lst, nd in (("a", xa, a_nd), ("b", xb, b_nd)):
        for v in lst:
            if not _int(v) or not -nd <= v < nd:
                raise ShapeError(f"tensordot: axes {axes!r}: {v!r} is not an axis of {name} ({nd} dimensions)")
    return [int(v) % a_nd for v in xa], [int(v) % b_nd for v in xb]


def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    """numpy.tensordot: sum over a's axes[0] against b's axes[1] (an int n: a's last n with b's
    first n); the result has a's free axes, then b's. Lowered as einsum (one GEMM)."""
    na, nb = _ndim(a), _ndim(b)
    xa, xb = _tensordot_axes(na, nb, axes)
    la = list(_LETTERS[:na])
    lb = list(_LETTERS[na:na + nb])
    for i, j in zip(xa, xb):
        if _shape(a)[i] != _shape(b)[j]:
            raise ShapeError(f"tensordot: axis {i} of a (size {_shape(a)[i]}) and axis {j} of b (size "
                             f"{_shape(b)[j]}) differ")
        lb[j] = la[i]
    out = [c for i, c in enumerate(la) if i not in xa] + [c for j, c in enumerate(lb) if j not in xb]
    return einsum(f"{''.join(la)},{''.join(lb)}->{''.join(out)}", a, b)


def outer(a: Any, b: Any, out: Any = None) -> Any:
    """numpy.outer: the flattened a times the flattened b, as a matrix (a broadcast product)."""
    _refuse("outer", out=(out, None))
    if not _traced(a, b):
        return np.outer(a, b)
    a, b = as_number(a), as_number(b)
    a = _ravel(a) if _ndim(a) != 1 else a
    b = _ravel(b) if _ndim(b) != 1 else b
    return _reshape(a, (_shape(a)[0], 1)) * _reshape(b, (1, _shape(b)[0]))


def inner(a: Any, b: Any, /) -> Any:
    """numpy.inner: the sum over the last axes of a and b (a scalar side multiplies)."""
    if not _traced(a, b):
        return np.inner(a, b)
    if _ndim(a) == 0 or _ndim(b) == 0:
        return apply("mul", as_number(a), as_number(b))
    if _shape(a)[-1] != _shape(b)[-1]:
        raise ShapeError(f"inner: the last axes of a {_shape(a)} and b {_shape(b)} differ")
    return tensordot(a, b, axes=([-1], [-1]))


def _offset_square(fn: str, a: Any, offset: Any, axis1: Any, axis2: Any) -> tuple[Any, int, int]:
    """a cut to the square block whose main diagonal is a's diagonal `offset` of axes axis1,
    axis2 (NumPy's: offset > 0 above it, < 0 below; non-square matrices too): (block, a1, a2);
    block None for trace where that diagonal is empty (diagonal refuses it)."""
    nd = _ndim(a)
    if nd < 2:
        raise ShapeError(f"graphc.numpy.{fn}: needs at least two dimensions, got shape {_shape(a)}")
    if not _int(offset):
        raise TypeError(f"{fn}: offset must be an int, got {offset!r}")
    a1 = _axes(fn, nd, axis1, "axis1")[0]
    a2 = _axes(fn, nd, axis2, "axis2")[0]
    if a1 == a2:
        raise ShapeError(f"graphc.numpy.{fn}: axis1 and axis2 are the same axis ({a1})")
    n1, n2 = _shape(a)[a1], _shape(a)[a2]
    k = int(offset)
    if k == 0 and n1 == n2:
        return a, a1, a2
    if not (_int(n1) and _int(n2)):
        raise ShapeError(f"graphc.numpy.{fn}: offset={k} or a non-square diagonal needs the sizes of axes {a1} "
                         f"and {a2} known while tracing, got {n1} and {n2}")
    s1, s2 = (0, k) if k >= 0 else (-k, 0)
    m = builtins.max(0, builtins.min(n1 - s1, n2 - s2))
    if m == 0 and fn == "trace":
        return None, a1, a2  # an empty diagonal: trace's sum is 0
    if m == 0:
        raise ShapeError(f"graphc.numpy.{fn}: the diagonal offset={k} of axes {a1} and {a2} of shape {_shape(a)} "
                         "is empty (graphc has no empty arrays)")
    key = [slice(None)] * nd
    key[a1], key[a2] = slice(s1, s1 + m), slice(s2, s2 + m)
    return a[tuple(key)], a1, a2


def trace(a: Any, offset: Any = 0, axis1: Any = 0, axis2: Any = 1, dtype: Any = None, out: Any = None) -> Any:
    """numpy.trace: the sum of the diagonal `offset` (above the main one if > 0, below if < 0)
    of axes axis1, axis2 -- non-square matrices too; the gradient puts g on that diagonal."""
    _refuse("trace", out=(out, None))
    _float_dtype_ok("trace", dtype)
    if not _traced(a):
        return np.trace(a, offset=offset, axis1=axis1, axis2=axis2, dtype=dtype)
    a = as_number(a)
    sq, a1, a2 = _offset_square("trace", a, offset, axis1, axis2)
    if sq is None:  # the offset is past the matrix: 0 (NumPy's sum of an empty diagonal), no gradient
        return broadcast_like(0.0, tuple(d for i, d in enumerate(_shape(a)) if i not in (a1, a2)), a)
    d = apply("diagonal", sq, axis1=a1, axis2=a2)
    return apply("sum", d, axis=_ndim(d) - 1, keepdims=False)


def diagonal(a: Any, offset: Any = 0, axis1: Any = 0, axis2: Any = 1) -> Any:
    """numpy.diagonal: the diagonal `offset` (> 0 above the main one, < 0 below) of axes axis1,
    axis2 as the last axis (non-square matrices too): the square block it crosses, sliced,
    then its main diagonal."""
    if not _traced(a):
        return np.diagonal(a, offset=offset, axis1=axis1, axis2=axis2)
    sq, a1, a2 = _offset_square("diagonal", as_number(a), offset, axis1, axis2)
    return apply("diagonal", sq, axis1=a1, axis2=a2)


def kron(a: Any, b: Any) -> Any:
    """numpy.kron: the Kronecker product (a broadcast product, then one reshape)."""
    if not _traced(a, b):
        return np.kron(a, b)
    a, b = as_number(a), as_number(b)
    nd = builtins.max(_ndim(a), _ndim(b))
    sa = (1,) * (nd - _ndim(a)) + tuple(_shape(a))
    sb = (1,) * (nd - _ndim(b)) + tuple(_shape(b))
    if not builtins.all(_int(d) for d in sa + sb):
        raise ShapeError("kron: the sizes of both arguments must be known while tracing")
    a2 = _reshape(a, tuple(v for d in sa for v in (d, 1)))
    b2 = _reshape(b, tuple(v for d in sb for v in (1, d)))
    return _reshape(a2 * b2, tuple(x * y for x, y in zip(sa, sb)))


def cross(a: Any, b: Any, axisa: Any = -1, axisb: Any = -1, axisc: Any = -1, axis: Any = None) -> Any:
    """numpy.cross of 3-vectors (on axisa of a, axisb of b, the result's on axisc; axis= sets
    all three); gradients b x g and g x a. 2-vectors (deprecated in NumPy 2) are not supported."""
    if axis is not None:
        axisa = axisb = axisc = axis
    if not _traced(a, b):
        return np.cross(a, b, axisa=axisa, axisb=axisb, axisc=axisc)
    a, b = as_number(a), as_number(b)
    if _ndim(a) == 0 or _ndim(b) == 0:
        raise ShapeError("cross: both arguments must be arrays of vectors")
    a = _moveaxis(a, _axes("cross", _ndim(a), axisa, "axisa")[0], -1)
    b = _moveaxis(b, _axes("cross", _ndim(b), axisb, "axisb")[0], -1)
    c = apply("cross", a, b)
    return _moveaxis(c, -1, _axes("cross", _ndim(c), axisc, "axisc")[0])


# ------------------------------------------------------------------ numerical gradient


def _np_fn(name: str) -> Any:
    """graphc.numpy's function `name`, looked up when called (numpy_shape's, for instance)."""
    return NUMPY_FUNCTIONS[name]


def _spacings(varargs: tuple, n_axes: int) -> list[Any]:
    if len(varargs) == 0:
        return [1.0] * n_axes
    if len(varargs) == 1 and _ndim(varargs[0]) == 0:
        return [varargs[0]] * n_axes
    if len(varargs) != n_axes:
        raise TypeError("invalid number of arguments")
    for h in varargs:
        if _ndim(h) != 0:
            raise UnsupportedError("graphc.numpy.gradient: coordinate arrays as spacings are not supported "
                                   "(graphc honours uniform spacing: a scalar per axis)")
    return list(varargs)


def _gradient_axis(f: Any, ax: int, h: Any, edge_order: int) -> Any:
    """f's derivative along ax with uniform spacing h (numpy.gradient's stencils): central
    differences inside, one-sided ones of order edge_order at both ends."""
    nd, n = _ndim(f), _shape(f)[ax]

    def at(start: int, stop: Any) -> Any:
        key = [slice(None)] * nd
        key[ax] = slice(start, stop)
        return f[tuple(key)]

    parts = []
    if edge_order == 1:
        parts.append((at(1, 2) - at(0, 1)) / h)
    else:
        parts.append((-1.5 * at(0, 1) + 2.0 * at(1, 2) - 0.5 * at(2, 3)) / h)
    if n > 2:
        parts.append((at(2, None) - at(0, n - 2)) / (2.0 * h))
    if edge_order == 1:
        parts.append((at(n - 1, n) - at(n - 2, n - 1)) / h)
    else:
        parts.append((0.5 * at(n - 3, n - 2) - 2.0 * at(n - 2, n - 1) + 1.5 * at(n - 1, n)) / h)
    return _np_fn("concatenate")(parts, axis=ax)


def gradient(f: Any, *varargs: Any, axis: Any = None, edge_order: Any = 1) -> Any:
    """numpy.gradient with uniform spacing (no spacing: 1; one scalar: every axis's; one scalar
    per axis): second-order central differences inside, one-sided differences of order
    edge_order (1 or 2) at the edges, as NumPy's. Linear in f: slices, arithmetic and one
    concatenate per axis, so its gradient is exact. One axis: an array; several: a tuple, as
    NumPy 2's. Coordinate arrays as spacings are refused."""
    if not _traced(f, *varargs):
        return np.gradient(f, *varargs, axis=axis, edge_order=edge_order)
    f = as_number(f)
    nd = _ndim(f)
    if nd == 0:
        raise ValueError("graphc.numpy.gradient: needs an array of at least one dimension, got a scalar")
    if axis is None:
        axes = tuple(range(nd))
    else:
        items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
        axes = tuple(_axes("gradient", nd, a)[0] for a in items)
        if len(set(axes)) != len(axes):
            raise ValueError("duplicate value in 'axis'")
    if edge_order not in (1, 2) or isinstance(edge_order, bool):
        raise ValueError("'edge_order' greater than 2 not supported")
    hs = _spacings(varargs, len(axes))
    outs = []
    for ax, h in zip(axes, hs):
        n = _shape(f)[ax]
        if not _int(n):
            raise ShapeError(f"graphc.numpy.gradient: the size of axis {ax} ({n}) must be known while tracing")
        if n < edge_order + 1:
            raise ValueError("Shape of array too small to calculate a numerical gradient, at least (edge_order "
                             "+ 1) elements are required.")
        outs.append(_gradient_axis(f, ax, h, int(edge_order)))
    return outs[0] if len(outs) == 1 else tuple(outs)


# ------------------------------------------------------------------ ldexp and frexp


def ldexp(x1: Any, x2: Any, /, out: Any = None, *, where: Any = True, casting: Any = "same_kind", order: Any = "K",
          dtype: Any = None, subok: Any = True, signature: Any = None) -> Any:
    """numpy.ldexp: x1 * 2**x2 for integer x2 (a Python int, an int array or a traced integer);
    the gradient flows to x1 only (2**x2), x2 being an integer (as jax.numpy.ldexp)."""
    _ufunc_options("ldexp", out, where, casting, order, dtype, subok, signature)
    if not _traced(x1, x2):
        return np.ldexp(x1, x2)
    if isinstance(x2, Tracer):
        if x2.node.dtype not in ("i64", "bool"):
            raise TypeError("graphc.numpy.ldexp: x2 must be integers (NumPy's ldexp takes an int exponent), got "
                            f"a traced {x2.dtype}")
        return as_number(x1) * apply("exp2", as_number(x2))
    k = np.asarray(x2)
    if k.dtype.kind not in "iub":
        raise TypeError(f"graphc.numpy.ldexp: x2 must be integers (NumPy's ldexp takes an int exponent), got "
                        f"{k.dtype}")
    scale = np.ldexp(1.0, k)
    return as_number(x1) * (float(scale) if scale.ndim == 0 else scale)


def frexp(x: Any, /, out: Any = (None, None), *, where: Any = True, casting: Any = "same_kind", order: Any = "K",
          dtype: Any = None, subok: Any = True, signature: Any = None) -> Any:
    """numpy.frexp: (mantissa, exponent) with x = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    (both 0 at 0; inf and NaN keep x with exponent 0). The mantissa's gradient is 2**-exponent;
    the exponent carries none (traced, it is a float holding the integer: graphc counts in
    floats)."""
    _ufunc_options("frexp", None if out == (None, None) else out, where, casting, order, dtype, subok, signature)
    if not _traced(x):
        return np.frexp(x)
    x = as_number(x)
    ax = apply("abs", x)
    ok = apply("gt", apply("where", apply("gt", ax, 0.0), apply("where", apply("lt", ax, math.inf), 1.0, 0.0),
                           0.0), 0.5)  # finite and nonzero (NaN: False)
    safe = apply("where", ok, ax, 1.0)
    e = apply("floor", apply("log2", safe)) + 1.0
    # log2 may round across a power of two: fix the exponent so that 0.5 <= |m| < 1 exactly
    m = _scale2(safe, -e)
    e = e + apply("where", apply("ge", m, 1.0), 1.0, 0.0) - apply("where", apply("lt", m, 0.5), 1.0, 0.0)
    e = apply("where", ok, e, 0.0)
    return _scale2(x, -e), e


def _scale2(x: Any, k: Any) -> Any:
    """x * 2**k for an integer-valued k, in two factors (no overflow of 2**k for subnormal x)."""
    half = apply("floor", k * 0.5)
    return x * apply("exp2", half) * apply("exp2", k - half)


# ------------------------------------------------------------------ linalg.norm


def _vector_norm(x: Any, ord: Any, axes: tuple[int, ...], keep: bool) -> Any:  # noqa: A002
    if ord is None or ord == 2:
        return apply("sqrt", apply("sum", x * x, axis=axes, keepdims=keep))
    ax = apply("abs", x)
    if ord == math.inf:
        return apply("amax", ax, axis=axes, keepdims=keep)
    if ord == -math.inf:
        return apply("amin", ax, axis=axes, keepdims=keep)
    if ord == 0:
        return apply("sum", as_number(apply("ne", x, 0.0)), axis=axes, keepdims=keep)
    if ord == 1:
        return apply("sum", ax, axis=axes, keepdims=keep)
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
    p = float(ord)
    return apply("sum", ax ** p, axis=axes, keepdims=keep) ** (1.0 / p)


def _matrix_norm(x: Any, ord: Any, axes: tuple[int, int], keep: bool) -> Any:  # noqa: A002
    r, c = axes
    if ord in (None, "fro", "f"):
        return apply("sqrt", apply("sum", x * x, axis=(r, c), keepdims=keep))
    if ord in ("nuc", 2, -2):
        raise UnsupportedError(f"graphc.numpy.linalg.norm: ord={ord!r} for matrices needs singular values "
                               "(not supported)")
    if ord not in (1, -1, math.inf, -math.inf):
        raise ValueError("Invalid norm order for matrices.")
    inner_ax, outer_ax = (r, c) if ord in (1, -1) else (c, r)
    s = apply("sum", apply("abs", x), axis=(inner_ax,), keepdims=True)
    red = "amax" if ord in (1, math.inf) else "amin"
    v = apply(red, s, axis=(outer_ax,), keepdims=True)
    if keep:
        return v
    return _reshape(v, tuple(d for i, d in enumerate(_shape(x)) if i not in (r, c)))


class _Linalg:
    """graphc.numpy.linalg: numpy.linalg's norm (others raise, naming what exists)."""

    __name__ = "graphc.numpy.linalg"

    @staticmethod
    def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: Any = False) -> Any:  # noqa: A002
        """numpy.linalg.norm: vector p-norms (ord None/2, 1, inf, -inf, 0, any p) over one axis,
        matrix norms (None/'fro', 1, -1, inf, -inf) over two; axis=None with ord=None: the
        2-norm of all entries. Gradients: sqrt's (NaN at 0, as JAX's), max's ties split."""
        if not _traced(x):
            return np.linalg.norm(np.asarray(x, dtype=float), ord=ord, axis=axis, keepdims=keepdims)
        x = as_number(x)
        nd = _ndim(x)
        keep = bool(keepdims)
        if axis is None:
            if ord is None:
                return _vector_norm(x, None, tuple(range(nd)), keep)
            if nd not in (1, 2):
                raise ValueError("Improper number of dimensions to norm.")
            axis = tuple(range(nd))
        axes = axis if isinstance(axis, (tuple, list)) else (axis,)
        if len(axes) == 1:
            (ax,) = _axes("linalg.norm", nd, axes[0])
            return _vector_norm(x, ord, (ax,), keep)
        if len(axes) == 2:
            r = _axes("linalg.norm", nd, axes[0])[0]
            c = _axes("linalg.norm", nd, axes[1])[0]
            if r == c:
                raise ValueError("Duplicate axes given.")
            return _matrix_norm(x, ord, (r, c), keep)
        raise ValueError("Improper number of dimensions to norm.")

    def __getattr__(self, name: str) -> Any:
        raise missing_attribute(name, ["norm"], "graphc.numpy.linalg")

    def __dir__(self):
        return ["norm"]


linalg = _Linalg()


# ------------------------------------------------------------------ statistics helpers and masks


def count_nonzero(a: Any, axis: Any = None, *, keepdims: Any = False) -> Any:
    """numpy.count_nonzero: the number of nonzero (true) entries over axes (a float when traced)."""
    if not _traced(a):
        return np.count_nonzero(a, axis=axis, keepdims=keepdims)
    m = a if a.node.dtype == "bool" else apply("ne", as_number(a), 0.0)
    return apply("sum", as_number(m), axis=_axes("count_nonzero", a.ndim, axis), keepdims=bool(keepdims))


def select(condlist: Any, choicelist: Any, default: Any = 0) -> Any:
    """numpy.select: the choice of the first true condition, else default (nested where:
    every branch's gradient selected, never multiplied)."""
    condlist, choicelist = list(condlist), list(choicelist)
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    if not _traced(*condlist, *choicelist, default):
        return np.select(condlist, choicelist, default)
    if not condlist:
        raise ValueError("select with an empty condition list is not possible")
    out = as_number(default)
    for cond, choice in reversed(list(zip(condlist, choicelist))):
        if isinstance(cond, Tracer) and cond.node.dtype != "bool":
            cond = apply("ne", as_number(cond), 0.0)
        out = apply("where", cond, as_number(choice), out)
    return out


def _base(name: str) -> Any:
    return _BASE[name]


_BASE: dict[str, Any] = {}
_gnp = sys.modules.get(__name__.rpartition(".")[0] + ".numpy")
for _n in ("sum", "mean"):
    if _gnp is not None and hasattr(_gnp, _n):
        _BASE[_n] = getattr(_gnp, _n)


def sum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: Any = False,  # noqa: A001
        initial: Any = _NoValue, where: Any = _NoValue) -> Any:
    """numpy.sum; a mask (comparison) or integers count as numbers: sum(x < y) counts."""
    return _base("sum")(as_number(a), axis=axis, dtype=dtype, out=out, keepdims=keepdims, initial=initial,
                        where=where)


def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: Any = False, *,
         where: Any = _NoValue) -> Any:
    """numpy.mean; a mask (comparison) counts as numbers: mean(pred == y) is an accuracy."""
    return _base("mean")(as_number(a), axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=where)


# ------------------------------------------------------------------ constants


def _like(fn: str, a: Any, fill: Any, dtype: Any, order: Any, subok: Any, shape: Any) -> Any:
    _refuse(fn, order=(order, "K"), subok=(subok, True))
    if not _traced(a, fill):
        return np.full_like(a, fill, dtype=dtype, shape=shape)
    if dtype is not None and np.dtype(dtype).kind not in "fiub":
        raise UnsupportedError(f"graphc.numpy.{fn}: dtype={dtype!r} is not supported")
    like = a if isinstance(a, Tracer) else fill
    shp = tuple(_shape(a)) if shape is None else ((shape,) if _int(shape) else tuple(shape))
    return broadcast_like(as_number(fill), shp, like)


def zeros(shape: Any, dtype: Any = None, order: Any = "C", *, device: Any = None, like: Any = None) -> Any:
    """numpy.zeros: a NumPy array; used in a traced function it is a constant of the program
    (a broadcast zero), as every NumPy array it captures."""
    return np.zeros(shape, dtype=dtype, order=order)


def ones(shape: Any, dtype: Any = None, order: Any = "C", *, device: Any = None, like: Any = None) -> Any:
    """numpy.ones: a NumPy array (a constant of a traced program, as zeros)."""
    return np.ones(shape, dtype=dtype, order=order)


def full(shape: Any, fill_value: Any, dtype: Any = None, order: Any = "C", *, device: Any = None,
         like: Any = None) -> Any:
    """numpy.full: a NumPy array of a number; a traced fill value is broadcast (differentiable)."""
    if isinstance(fill_value, Tracer):
        return NUMPY_FUNCTIONS["broadcast_to"](fill_value, shape if isinstance(shape, tuple) else
                                                tuple(np.atleast_1d(shape).tolist()))
    return np.full(shape, fill_value, dtype=dtype, order=order)


def eye(N: Any, M: Any = None, k: Any = 0, dtype: Any = float, order: Any = "C", *, device: Any = None,  # noqa: N803
        like: Any = None) -> Any:
    """numpy.eye: a NumPy array (a constant of a traced program)."""
    return np.eye(N, M, k, dtype=dtype, order=order)


def identity(n: Any, dtype: Any = None, *, like: Any = None) -> Any:
    """numpy.identity: a NumPy array (a constant of a traced program)."""
    return np.identity(n, dtype=dtype)


def copy(a: Any, order: Any = "K", subok: Any = False) -> Any:
    """numpy.copy: traced values are never written in place, so a traced copy is the value itself."""
    return a if isinstance(a, Tracer) else np.copy(a, order=order, subok=subok)


def empty_like(prototype: Any, /, dtype: Any = None, order: Any = "K", subok: Any = True, shape: Any = None, *,
               device: Any = None) -> Any:
    """numpy.empty_like: zeros of the prototype's shape (its contents are unspecified in NumPy)."""
    return zeros_like(prototype, dtype=dtype, order=order, subok=subok, shape=shape)


def zeros_like(a: Any, dtype: Any = None, order: Any = "K", subok: Any = True, shape: Any = None, *,
               device: Any = None) -> Any:
    """numpy.zeros_like: zeros of a's shape (a constant: no gradient to a)."""
    return _like("zeros_like", a, 0.0, dtype, order, subok, shape)


def ones_like(a: Any, dtype: Any = None, order: Any = "K", subok: Any = True, shape: Any = None, *,
              device: Any = None) -> Any:
    """numpy.ones_like: ones of a's shape (a constant: no gradient to a)."""
    return _like("ones_like", a, 1.0, dtype, order, subok, shape)


def full_like(a: Any, fill_value: Any, dtype: Any = None, order: Any = "K", subok: Any = True, shape: Any = None,
              *, device: Any = None) -> Any:
    """numpy.full_like: fill_value (traced or not) broadcast to a's shape."""
    return _like("full_like", a, fill_value, dtype, order, subok, shape)


def arange(start_or_stop: Any, /, stop: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None,
           like: Any = None) -> Any:
    """numpy.arange(start, stop, step) of Python numbers: a NumPy array (a constant)."""
    if stop is None:
        return np.arange(start_or_stop, step=step, dtype=dtype) if step != 1 else np.arange(start_or_stop, dtype=dtype)
    return np.arange(start_or_stop, stop, step, dtype=dtype)


def linspace(start: Any, stop: Any, num: Any = 50, endpoint: Any = True, retstep: Any = False, dtype: Any = None,
             axis: Any = 0, *, device: Any = None) -> Any:
    """numpy.linspace: num points from start to stop. Of Python numbers, a NumPy array (a
    constant); of traced scalars, start + (stop - start) * i / div (differentiable in both)."""
    if not _traced(start, stop):
        return np.linspace(start, stop, num=num, endpoint=endpoint, retstep=retstep, dtype=dtype, axis=axis)
    _refuse("linspace", axis=(axis, 0))
    if _ndim(start) or _ndim(stop):
        raise UnsupportedError("graphc.numpy.linspace: traced start and stop must be scalars")
    if not _int(num) or num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    t = start if isinstance(start, Tracer) else stop
    div = (num - 1) if endpoint else num
    i = Tracer(make("iota", const(0.0, t.trace.dtype), n=int(num)), t.trace)
    step = (stop - start) / div if div > 0 else (stop - start) * 0.0
    out = start + i * step if div > 0 else start + i * 0.0
    return (out, step) if retstep else out


# ------------------------------------------------------------------ coverage and missing names

# NumPy's most used functions (by use in public code and the peers' test suites), each checked
# against what graphc.numpy defines when coverage() is called
COMMON = (
    "abs", "absolute", "add", "all", "allclose", "amax", "amin", "any", "append", "arange", "arccos", "arccosh",
    "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "argmax", "argmin", "argsort", "around", "array",
    "array_split", "asarray", "atleast_1d", "atleast_2d", "average", "broadcast_to", "cbrt", "ceil", "clip",
    "column_stack", "concatenate", "copy", "cos", "cosh", "count_nonzero", "cross", "cumprod", "cumsum",
    "deg2rad", "degrees", "diag", "diagonal", "diff", "divide", "dot", "dstack", "einsum", "empty_like", "equal",
    "exp", "exp2", "expand_dims", "expm1", "eye", "flip", "fliplr", "flipud", "floor", "floor_divide", "fmax",
    "fmin", "full", "full_like", "greater", "greater_equal", "hstack", "hypot", "identity", "inner", "isclose",
    "isfinite", "isinf", "isnan", "kron", "less", "less_equal", "linspace", "log", "log10", "log1p", "log2",
    "logaddexp", "logaddexp2", "logical_and", "logical_not", "logical_or", "matmul", "max", "maximum", "mean",
    "median", "meshgrid", "min", "minimum", "mod", "moveaxis", "multiply", "nan_to_num", "nanmax", "nanmean",
    "nansum", "negative", "nonzero", "not_equal", "ones", "ones_like", "outer", "pad", "percentile", "power",
    "prod", "rad2deg", "radians", "ravel", "reciprocal", "remainder", "repeat", "reshape", "roll", "round",
    "select", "sign", "sin", "sinc", "sinh", "sort", "split", "sqrt", "square", "squeeze", "stack", "std",
    "subtract", "sum", "swapaxes", "take", "take_along_axis", "tan", "tanh", "tensordot", "tile", "trace",
    "transpose", "tril", "triu", "true_divide", "unique", "var", "vstack", "where", "zeros", "zeros_like",
    "linalg.norm", "linalg.inv", "linalg.det", "linalg.solve", "linalg.svd", "linalg.eigh", "linalg.cholesky",
)


def coverage() -> list[tuple[str, bool]]:
    """(NumPy function name, supported by graphc.numpy) for NumPy's most used functions."""
    gnp = sys.modules[__name__.rpartition(".")[0] + ".numpy"]
    names = set(getattr(gnp, "__all__", ())) | set(EXTRA)
    out = []
    for name in COMMON:
        if name.startswith("linalg."):
            out.append((name, name.split(".", 1)[1] in dir(linalg)))
        else:
            out.append((name, name in names))
    return out


def coverage_markdown() -> str:
    """coverage() as the Markdown table of docs/numpy-coverage.md (tests/test_numpy_more.py keeps
    that file equal to this text: regenerate it with `write_coverage_doc()`)."""
    rows = coverage()
    done = builtins.sum(ok for _, ok in rows)
    lines = ["# graphc.numpy: NumPy's common functions", "",
             f"Generated from `graphc.numpy.coverage()`: {done} of {len(rows)} of NumPy's most used functions "
             "work on traced values (value and gradient; integer results such as argmax carry none). "
             "Complex numbers are out of scope. Any other name raises an error naming the closest supported "
             "functions.", "", "| function | supported |", "|---|---|"]
    lines += [f"| `numpy.{name}` | {'yes' if ok else 'no'} |" for name, ok in rows]
    return "\n".join(lines) + "\n"


def write_coverage_doc() -> str:
    """Rewrite docs/numpy-coverage.md from coverage() (in a source checkout); its path."""
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "docs" / "numpy-coverage.md"
    path.write_text(coverage_markdown())
    return str(path)


class MissingFunctionError(GraphcError, AttributeError):
    """A function graphc.numpy (or its linalg) does not have: the message names the closest ones."""


def missing_attribute(name: str, available: Any = None, where: str = "graphc.numpy") -> MissingFunctionError:
    """The error for `graphc.numpy.<name>` that does not exist, naming the closest supported names."""
    if available is None:
        gnp = sys.modules[__name__.rpartition(".")[0] + ".numpy"]
        available = list(getattr(gnp, "__all__", ())) + list(EXTRA)
    close = difflib.get_close_matches(name, available, n=4, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.3)
    hint = f"; closest supported: {', '.join(close)}" if close else ""
    return MissingFunctionError(f"{where} has no function {name!r}{hint} (graphc.numpy.coverage() lists NumPy's "
                                "common functions and which exist)")


__all__ = [
    "fmax", "fmin", "logaddexp2", "reciprocal", "deg2rad", "rad2deg", "radians", "degrees", "mod", "remainder",
    "floor_divide", "sinc", "nan_to_num", "var", "std", "prod", "cumsum", "cumprod", "diff", "argmax", "argmin",
    "sort", "argsort", "einsum", "tensordot", "outer", "inner", "trace", "diagonal", "kron", "cross",
    "count_nonzero", "select", "sum", "mean", "zeros_like", "ones_like", "full_like", "arange", "linspace",
    "zeros", "ones", "full", "eye", "identity", "copy", "empty_like",
    "gradient", "partition",
]
# graphc.numpy's names that are not NumPy functions: served by graphc.numpy's module __getattr__
EXTRA = {"linalg": linalg, "coverage": coverage}
# NumPy ufuncs served here rather than from __all__: ldexp takes an integer x2 and frexp has two
# outputs, which the signature tests' float, one-output ufunc calls do not fit
EXTRA.update(ldexp=ldexp, frexp=frexp)
NUMPY_FUNCTIONS.update(ldexp=ldexp, frexp=frexp)

NUMPY_FUNCTIONS["norm"] = linalg.norm  # numpy.linalg.norm on a tracer (__array_function__ goes by name)

