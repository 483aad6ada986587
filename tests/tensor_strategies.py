"""Hypothesis strategy for random tensor programs with small concrete shapes.

A program is formula text plus declared shapes. The builder tracks each
subexpression's shape, so every drawn program type-checks: elementwise ops
over broadcasting shapes, reductions over random axes (negative, tuples,
keepdims), matmul where shapes fit (x @ W, x @ x.T, vector dots), where with a
comparison, softmax/log_softmax/logsumexp. Draws are hypothesis choices, so a
failing program shrinks to a small one.

`array_programs` draws traced Python functions over NumPy's array language (issue 26):
slices, gathers with repeated indices as data, x.at[...] updates, joins, pad, flip/roll,
scans, sort, var/std/norm, tril/triu and einsum with random subscripts (test_fuzz_arrays.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

SHAPES = [(), (2,), (3,), (2, 3), (3, 2), (1, 3), (2, 1), (3, 3)]
VARS = {"a": None, "b": None, "c": None}
UNARY = ["sin", "tanh", "sigmoid", "softplus", "atan", "-"]
BINARY = ["+", "-", "*"]


def broadcast(s: tuple, t: tuple) -> tuple | None:
    out = []
    for k in range(max(len(s), len(t))):
        x = s[len(s) - 1 - k] if k < len(s) else 1
        y = t[len(t) - 1 - k] if k < len(t) else 1
        if x != y and 1 not in (x, y):
            return None
        out.append(x if y == 1 else y)  # (a size-0 axis broadcasts against 1 to 0)
    return tuple(reversed(out))


def _reduced(shape, axes, keep):
    return tuple(1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes)


@st.composite
def tensor_programs(draw, max_depth: int = 3):
    shapes = {v: draw(st.sampled_from(SHAPES), label=f"shape {v}") for v in VARS}
    shapes["W"] = (3, 3)

    def expr(depth: int) -> tuple[str, tuple]:
        kind = draw(st.sampled_from(["leaf"] if depth == 0 else
                                    ["leaf", "unary", "binary", "binary", "reduce", "matmul", "where", "softmax"]))
        if kind == "leaf":
            v = draw(st.sampled_from(["a", "b", "c", "0.5"]))
            return (v, ()) if v == "0.5" else (v, shapes[v])
        if kind == "unary":
            f = draw(st.sampled_from(UNARY))
            e, s = expr(depth - 1)
            return (f"(-{e})" if f == "-" else f"{f}({e})"), s
        if kind == "binary":
            e1, s1 = expr(depth - 1)
            e2, s2 = expr(depth - 1)
            out = broadcast(s1, s2)
            if out is None:
                return e1, s1
            return f"({e1} {draw(st.sampled_from(BINARY))} {e2})", out
        if kind == "reduce":
            e, s = expr(depth - 1)
            if not s:
                return e, s
            f = draw(st.sampled_from(["sum", "mean", "max", "min", "logsumexp"]))
            nd = len(s)
            axes = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
            neg = draw(st.booleans())
            keep = draw(st.booleans())
            written = tuple(a - nd if neg else a for a in axes)
            axis = written[0] if len(written) == 1 else written
            return f"{f}({e}, axis={axis!r}, keepdims={keep})", _reduced(s, set(axes), keep)
        if kind == "matmul":
            e, s = expr(depth - 1)
            if not s:
                return e, s
            form = draw(st.sampled_from(["W", "T", "dot"]))
            if form == "W" and s[-1] == 3:
                return f"({e} @ W)", s[:-1] + (3,) if len(s) > 1 else (3,)
            if form == "T" and len(s) == 2:
                return f"({e} @ {e}.T)", (s[0], s[0])
            if len(s) == 1:
                return f"({e} @ {e})", ()
            return e, s
        if kind == "where":
            c1, s1 = expr(depth - 1)
            e1, s2 = expr(depth - 1)
            e2, s3 = expr(depth - 1)
            out = broadcast(s1, s2)
            if out is not None:
                out = broadcast(out, s3)
            if out is None:
                return e1, s2
            op = draw(st.sampled_from([">", "<=", "!="]))
            return f"where({c1} {op} 0.1, {e1}, {e2})", out
        e, s = expr(depth - 1)  # softmax / log_softmax
        if not s:
            return e, s
        f = draw(st.sampled_from(["softmax", "log_softmax"]))
        axis = draw(st.integers(-len(s), len(s) - 1))
        return f"{f}({e}, axis={axis})", s

    body, shape = expr(max_depth)
    text = body if not shape else f"sum({body})"
    used = {v: s for v, s in shapes.items() if _uses(text, v)}
    if not used:
        text, used = f"{text} + sum(a)", {**used, "a": shapes["a"]}
        if not shapes["a"]:
            text = text.replace(" + sum(a)", " + a")
    return text, used


def _uses(text: str, name: str) -> bool:
    import re

    return re.search(rf"\b{name}\b", text) is not None


# ------------------------------------------------------------------ array programs (issue 26)
#
# Random traced Python functions over NumPy's array language: static slices (steps, negative
# indices, None, ...), gathers with repeated integer indices passed as data, `x.at[...]`
# updates, concatenate / stack / split, pad, flip / roll, cumsum / cumprod / diff, sort,
# var / std / norm, tril / triu and einsum with random subscripts. A program is the text of
# one Python expression in `m` (numpy for the reference, graphc.numpy when traced), the float
# inputs `a` and `b`, the tuple `ints` of int64 index arrays (data, not constants) and
# `at(x, ix[key], v, how)` (NumPy's ufunc.at / item assignment, or JAX's x.at[key].how(v);
# ix is np.s_, which turns any key into its tuple). Every
# node's shape is NumPy's own (the subexpression run on zeros), so every drawn program is
# valid NumPy; draws are Hypothesis choices, so a failing program shrinks.

# (2,) and (2, 2) first: failing programs shrink toward the first shapes, and two entries
# are the fewest a repeated index, a sort or a non-symmetric matrix needs
ARRAY_SHAPES = [(2,), (), (2, 2), (3,), (4,), (2, 3), (3, 2), (3, 3), (1, 3), (2, 1, 3), (2, 3, 2)]
ARRAY_KINDS = ["leaf", "unary", "binary", "slice", "slice", "gather", "gather", "at", "at", "concatenate", "stack",
               "split", "pad", "flip", "roll", "scan", "sort", "stat", "einsum", "einsum", "einsum", "tri"]
_EINSUM_LETTERS = "ijklmnopqrstuvwxyz"  # more than two operands of the deepest programs have axes


@dataclass(frozen=True)
class ArrayProgram:
    text: str  # the loss: a Python expression in m, a, b, ints, at
    shapes: dict  # {"a": shape, "b": shape}
    ints: tuple  # int64 index arrays, passed as data
    kinds: tuple  # the node kinds drawn, in the order drawn

    def __repr__(self) -> str:
        ints = ", ".join(f"np.array({i.tolist()})" for i in self.ints)
        return f"ArrayProgram({self.text!r}, shapes={self.shapes}, ints=({ints}{',' if len(self.ints) == 1 else ''}))"

    @property
    def size(self) -> int:
        """How many ops the program has (leaves not counted)."""
        return len(self.kinds)

    def run(self, module, a, b, ints):
        """The loss with `module` (numpy on arrays, graphc.numpy on tracers)."""
        at = _at_numpy if module is np else _at_traced
        with np.errstate(all="ignore"):
            return eval(_code(self.text), {"m": module, "at": at, "ix": np.s_, "a": a, "b": b, "ints": ints})  # noqa: S307


def _at_numpy(x, key, v, how):
    """NumPy's reference for JAX's x.at[key].add / .multiply (ufunc.at: duplicates accumulate) and .set."""
    y = np.array(x, dtype=float)
    if how == "set":
        y[key] = v
    else:  # v broadcast first: NumPy 2.4's ufunc.at mis-broadcasts v over a 2-d index array
        getattr(np, how).at(y, key, np.broadcast_to(v, y[key].shape).copy())
    return y


def _at_traced(x, key, v, how):
    return getattr(x.at[key], how)(v)


@functools.lru_cache(maxsize=4096)
def _code(text: str):
    return compile(text, "<array program>", "eval")


def _np_shape(text: str, shapes: dict, ints: list) -> tuple:
    env = {"m": np, "at": _at_numpy, "ix": np.s_, "a": np.zeros(shapes["a"]), "b": np.zeros(shapes["b"]), "ints": ints}
    with np.errstate(all="ignore"):
        return np.shape(eval(_code(text), env))  # noqa: S307


def _fits(s: tuple, t: tuple) -> bool:
    """s broadcasts to t without growing it."""
    return broadcast(s, t) == t and len(s) <= len(t)


@st.composite
def array_programs(draw, max_depth: int = 3):
    shapes = {v: draw(st.sampled_from(ARRAY_SHAPES), label=f"shape {v}") for v in ("a", "b")}
    ints: list = []
    kinds: list = []

    def shape(text):
        return _np_shape(text, shapes, ints)

    def index_data(n: int, shape_: tuple, unique: bool = False) -> str:
        """A new int64 index array of shape `shape_` into an axis of size n (negative
        entries too; repeats unless `unique`), passed as data: its name in the program."""
        if unique and math.prod(shape_) > n:
            shape_ = (n,)
        size = math.prod(shape_)
        vals = st.lists(st.integers(-n, n - 1), min_size=size, max_size=size,
                        unique_by=(lambda v: v % n) if unique else None)
        ints.append(np.array(draw(vals), dtype=np.int64).reshape(shape_))
        return f"ints[{len(ints) - 1}]"

    def index_shape() -> tuple:
        return draw(st.sampled_from([(1,), (2,), (3,), (4,), (2, 2)]))

    def static_key(s: tuple) -> str:
        """A basic (static) key: ints (negative too), slices with steps and any bounds,
        None and ..., in NumPy's placement rules."""
        nd = len(s)
        front = draw(st.integers(0, nd))
        back = draw(st.integers(0, nd - front)) if draw(st.booleans()) else None  # None: no ...
        axes = list(s[:front]) + ([] if back is None else list(s[nd - back:]) if back else [])
        parts = []
        for d in axes:
            form = draw(st.sampled_from(["full", "slice", "int"] if d else ["full", "slice"]))
            if form == "int":
                parts.append(str(draw(st.integers(-d, d - 1))))
            elif form == "slice":
                bound = st.none() | st.integers(-d - 1, d + 1)
                start, stop = draw(bound), draw(bound)
                step = draw(st.sampled_from([None, 1, 2, -1, -2, 3]))
                parts.append(f"{'' if start is None else start}:{'' if stop is None else stop}"
                             + ("" if step is None else f":{step}"))
            else:
                parts.append(":")
        if back is not None:
            parts.insert(front, "...")
        for _ in range(draw(st.integers(0, 2))):
            parts.insert(draw(st.integers(0, len(parts))), "None")
        return ", ".join(parts) if parts else "..."

    def gather_key(s: tuple, unique: bool = False) -> str:
        """An advanced key with index arrays passed as data (repeated, negative)."""
        nd = len(s)
        forms = ["first", "last"] + (["second"] if nd >= 2 and s[1] else [])
        if not unique:  # a pair of arrays, or a static list, may address one entry twice
            forms += (["pair"] if nd >= 2 and s[1] else []) + ["static"]
        form = draw(st.sampled_from(forms))
        if form == "first":
            return index_data(s[0], index_shape(), unique)
        if form == "second":
            return f":, {index_data(s[1], index_shape(), unique)}"
        if form == "pair":
            shp = index_shape()
            i = index_data(s[0], shp, unique)
            return f"{i}, {index_data(s[1], draw(st.sampled_from([shp, (1,)])), unique)}"
        if form == "last":
            return f"..., {index_data(s[-1], index_shape(), unique)}" if s[-1] else index_data(s[0], (2,), unique)
        vals = draw(st.lists(st.integers(-s[0], s[0] - 1), min_size=1, max_size=4))
        return f"{vals}"  # a static list: a constant index array

    def axis(nd: int) -> int:
        return draw(st.integers(-nd, nd - 1))

    def axes_or_none(nd: int):
        form = draw(st.sampled_from(["int", "none", "tuple"]))
        if form == "none" or nd == 0:
            return None
        if form == "int":
            return axis(nd)
        picked = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        return tuple(a - nd if draw(st.booleans()) else a for a in picked)

    def ramp(e: str, s: tuple) -> str:
        """e plus distinct constants: std and norm stay away from their kink at zero spread."""
        return f"({e} + m.cumsum(m.ones_like({e})).reshape({s}) * 0.37)"

    @st.composite
    def subexpression(draw_, depth: int):
        return _expr(depth, draw_(st.sampled_from(["leaf"] if depth == 0 else ARRAY_KINDS)))

    def expr(depth: int) -> tuple[str, tuple]:
        """A subexpression of at most `depth` ops, drawn as a strategy of its own, so the
        shrinker can replace any node by one of its descendants (a span of the same label)."""
        return draw(subexpression(depth))

    def _expr(depth: int, kind: str) -> tuple[str, tuple]:
        if kind == "leaf":
            v = draw(st.sampled_from(["a", "b"]))
            return v, shapes[v]
        e, s = expr(depth - 1)
        nd = len(s)
        out = _node(kind, e, s, nd, depth)
        if out is None:
            return e, s
        kinds.append(kind)
        return out, shape(out)

    def _node(kind, e, s, nd, depth):
        if kind == "unary":
            f = draw(st.sampled_from(["m.sin", "m.tanh", "square"]))
            return f"({e} * {e})" if f == "square" else f"{f}({e})"
        if kind == "binary":
            e2, s2 = expr(depth - 1)
            if broadcast(s, s2) is None:
                return None
            return f"({e} {draw(st.sampled_from(['+', '*', '-']))} {e2})"
        if kind == "slice":
            return f"{e}[{static_key(s)}]"
        if kind == "gather":
            if not nd or not s[0]:
                return None
            form = draw(st.sampled_from(["key", "take", "along"]))
            if form == "key":
                return f"{e}[{gather_key(s)}]"
            ax = axis(nd)
            if not s[ax]:
                return None
            if form == "take":
                return f"m.take({e}, {index_data(s[ax], index_shape())}, axis={ax})"
            ishape = tuple(draw(st.integers(1, 3)) if i == ax % nd else draw(st.sampled_from([d, 1]))
                           for i, d in enumerate(s))
            return f"m.take_along_axis({e}, {index_data(s[ax], ishape)}, axis={ax})"
        if kind == "at":
            how = draw(st.sampled_from(["add", "set", "multiply"]))
            data = nd and s[0] and draw(st.booleans())
            key = gather_key(s, unique=how != "add") if data else static_key(s)
            t = shape(f"{e}[{key}]")
            v, sv = expr(depth - 1)
            if not _fits(sv, t):
                v = f"m.tanh({e}[{key}])"
            return f"at({e}, ix[{key}], {v}, {how!r})"
        if kind == "concatenate":
            e2, s2 = expr(depth - 1)
            if not nd or draw(st.integers(0, 4)) == 0:
                return f"m.concatenate([{e}, {e2}], axis=None)"
            ax = axis(nd)
            if len(s2) != nd or any(x != y for i, (x, y) in enumerate(zip(s, s2)) if i != ax % nd):
                e2 = f"m.tanh({e}[{':, ' * (ax % nd)}{draw(st.integers(0, s[ax]))}:])"
            return f"m.concatenate([{e}, {e2}], axis={ax})"
        if kind == "stack":
            e2, s2 = expr(depth - 1)
            if s2 != s:
                e2 = f"m.cos({e})"
            return f"m.stack([{e}, {e2}], axis={draw(st.integers(-nd - 1, nd))})"
        if kind == "split":
            if not nd:
                return None
            ax = axis(nd)
            if draw(st.booleans()):
                n = draw(st.sampled_from([k for k in (1, 2, 3, 4) if s[ax] % k == 0]))
                spec, pieces, fn = n, n, "split"
            else:
                spec = sorted(draw(st.lists(st.integers(0, s[ax] + 1), min_size=1, max_size=3)))
                pieces, fn = len(spec) + 1, "array_split"
            if draw(st.booleans()):
                return f"m.concatenate(m.{fn}({e}, {spec}, axis={ax})[::-1], axis={ax})"
            return f"m.{fn}({e}, {spec}, axis={ax})[{draw(st.integers(-pieces, pieces - 1))}]"
        if kind == "pad":
            if not nd:
                return None
            mode = draw(st.sampled_from(["constant", "edge", "reflect", "symmetric", "wrap"]))
            if 0 in s:
                mode = "constant"
            if draw(st.booleans()):
                width = draw(st.integers(0, 2))
            else:
                width = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in s)
            extra = ", constant_values=0.5" if mode == "constant" and draw(st.booleans()) else ""
            return f"m.pad({e}, {width}, mode={mode!r}{extra})"
        if kind == "flip":
            return f"m.flip({e}, axis={axes_or_none(nd)})" if nd else None
        if kind == "roll":
            ax = axes_or_none(nd)
            if isinstance(ax, tuple):
                shift = tuple(draw(st.integers(-4, 4)) for _ in ax)
            else:
                shift = draw(st.integers(-4, 4))
            return f"m.roll({e}, {shift}, axis={ax})"
        if kind == "scan":
            fn = draw(st.sampled_from(["cumsum", "cumprod", "diff"]))
            if fn == "diff":  # (not along an empty axis: graphc refuses it, test_fuzz_arrays xfails that)
                ax = axis(nd) if nd else 0
                return f"m.diff({e}, axis={ax})" if nd and s[ax] else None
            ax = None if not nd or draw(st.booleans()) else axis(nd)
            return f"m.{fn}({e}, axis={ax})"
        if kind == "sort":
            return f"m.sort({e}, axis={axis(nd) if draw(st.booleans()) else None})" if nd else None
        if kind == "stat":
            fn = draw(st.sampled_from(["var", "std", "norm"]))
            ax = axes_or_none(nd)
            if isinstance(ax, tuple) and fn == "norm" and len(ax) > 1:
                ax = ax[0]
            counted = range(nd) if ax is None else [ax] if isinstance(ax, int) else ax
            count = math.prod(s[a] for a in counted)
            keep = draw(st.booleans())
            if fn == "norm":
                return f"m.linalg.norm({ramp(e, s)}, axis={ax}, keepdims={keep})" if count else None
            ddof = draw(st.integers(0, 1))
            if count < 2 + ddof:  # var is nan at count <= ddof; std's spread is zero at count 1
                return None
            return f"m.{fn}({ramp(e, s) if fn == 'std' else e}, axis={ax}, ddof={ddof}, keepdims={keep})"
        if kind == "tri":
            if nd < 2:
                return None
            return f"m.{draw(st.sampled_from(['tril', 'triu']))}({e}, {draw(st.integers(-1, 1))})"
        # einsum: one or two operands, shared and free letters, a letter repeated within an
        # operand (its diagonal), explicit output in random order or NumPy's implicit one
        letters = iter(draw(st.permutations(_EINSUM_LETTERS)))
        size: dict = {}

        def subscript(shape_, others: str) -> str:
            sub = ""
            for d in shape_:
                shared = [c for c in dict.fromkeys(others + sub) if size[c] == d and c not in sub]
                repeat = [c for c in dict.fromkeys(sub) if size[c] == d]
                form = draw(st.sampled_from(["new", "shared", "shared", "repeat"]))
                if form == "shared" and shared:
                    c = draw(st.sampled_from(shared))
                elif form == "repeat" and repeat:
                    c = draw(st.sampled_from(repeat))
                else:
                    c = next(letters)
                    size[c] = d
                sub += c
            return sub

        sub1 = subscript(s, "")
        two = draw(st.integers(0, 3)) > 0
        if two:
            e2, s2 = expr(depth - 1)
            sub2 = subscript(s2, sub1)
        else:
            e2, sub2 = None, None
        lhs = sub1 if sub2 is None else f"{sub1},{sub2}"
        if draw(st.integers(0, 3)) == 0:
            subs = lhs  # implicit output: the letters used once, alphabetically
        else:
            used = list(dict.fromkeys(sub1 + (sub2 or "")))
            out = draw(st.lists(st.sampled_from(used), unique=True, max_size=len(used))) if used else []
            subs = f"{lhs}->{''.join(out)}"
        return f"m.einsum({subs!r}, {e})" if e2 is None else f"m.einsum({subs!r}, {e}, {e2})"

    body, _ = expr(max_depth)
    return ArrayProgram(f"m.sum(m.sin({body}))", shapes, tuple(ints), tuple(kinds))
