"""Hypothesis strategy for random tensor programs with small concrete shapes.

A program is formula text plus declared shapes. The builder tracks each
subexpression's shape, so every drawn program type-checks: elementwise ops
over broadcasting shapes, reductions over random axes (negative, tuples,
keepdims), matmul where shapes fit (x @ W, x @ x.T, vector dots), where with a
comparison, softmax/log_softmax/logsumexp. Draws are hypothesis choices, so a
failing program shrinks to a small one.
"""

from __future__ import annotations

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
        out.append(max(x, y) if 1 in (x, y) else x)
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
