"""Checking tensor programs against SymPy, element by element.

Symbolic dimensions are bound to small sizes, every input element becomes a
SymPy symbol (`X_0_1`), the graph is evaluated over object arrays of
expressions with each op's SymPy form (`OpSpec.symbolic`, or `sympy` per
element), and each gradient element is SymPy's exact derivative of the scalar
value by that symbol, evaluated with mpmath at 40 digits. Integer labels are
drawn first and enter as numbers (they index; they are not differentiated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphcError
from ..ir import DTYPE_NUMPY, Graph, Node, topo_order
from ..registry import REGISTRY
from ..tensor_ops import resolve_attrs
from .oracle import derivative

DEFAULT_DIM = 3
DIGITS = 40
ABS_FLOOR = 1e-6


def concrete_shape(node: Node, dims: Mapping[str, int]) -> tuple[int, ...]:
    try:
        return tuple(d if isinstance(d, int) else int(dims[d]) for d in node.shape)
    except KeyError as exc:
        raise GraphcError(f"no size for dimension {exc.args[0]} of {node.attr}: give dims={{'{exc.args[0]}': 3}}") from None


def symbols_for(graph: Graph, dims: Mapping[str, int], labels: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """One object array of real SymPy symbols per float input (labels as given)."""
    import sympy as sp

    out: dict[str, Any] = {}
    for n in graph.inputs:
        if not n.type.is_float:
            out[n.attr] = np.asarray(labels[n.attr])
            continue
        shape = concrete_shape(n, dims)
        arr = np.empty(shape, dtype=object)
        for idx in np.ndindex(*shape):
            arr[idx] = sp.Symbol("_".join([n.attr, *map(str, idx)]), real=True)
        out[n.attr] = arr if shape else arr[()]
    return out


def expand(graph: Graph, values: Mapping[str, Any], dims: Mapping[str, int]) -> dict[str, Any]:
    """Every output as an object array of SymPy expressions (a scalar for 0-d)."""
    import sympy as sp

    env: dict[int, Any] = {id(n): values[n.attr] for n in graph.inputs}
    for n in topo_order(v for _, v in graph.outputs):
        if n.op == "input":
            continue
        if n.op == "const":
            env[id(n)] = sp.Float(n.value, 30) if not float(n.value).is_integer() else sp.Integer(int(n.value))
            continue
        spec = REGISTRY[n.op]
        args = [env[id(a)] for a in n.args]
        if spec.symbolic is not None:
            val = spec.symbolic(*args, **resolve_attrs(n.attrs, dict(dims)))
        elif any(isinstance(a, np.ndarray) and a.ndim for a in args):
            val = np.vectorize(spec.sympy, otypes=[object])(*[np.asarray(a, dtype=object) for a in args])
        else:
            val = spec.sympy(*[a[()] if isinstance(a, np.ndarray) else a for a in args])
        if isinstance(val, np.ndarray) and val.ndim == 0:
            val = val[()]
        env[id(n)] = val
    return {name: env[id(v)] for name, v in graph.outputs}


@dataclass
class TensorCheck:
    """Worst errors of graphc's numpy-target gradients against SymPy's exact ones."""

    formula: str
    dims: dict[str, int]
    dtype: str
    points: int
    max_rel: dict[str, float] = field(default_factory=dict)  # output -> max relative error (scaled)
    worst: dict[str, str] = field(default_factory=dict)
    tolerance: float = 0.0

    @property
    def ok(self) -> bool:
        return all(np.isfinite(v) and v <= self.tolerance for v in self.max_rel.values())

    def to_json(self) -> str:
        import json

        return json.dumps({"formula": self.formula, "dims": self.dims, "dtype": self.dtype, "points": self.points,
                           "ok": self.ok, "tolerance": self.tolerance,
                           "outputs": {k: {"max_error": v if np.isfinite(v) else str(v), "worst": self.worst[k]}
                                       for k, v in self.max_rel.items()}}, indent=1)

    def __str__(self) -> str:
        lines = [f"{self.formula}  (dims {self.dims}, {self.dtype}, {self.points} point(s))"]
        for k, v in self.max_rel.items():
            lines.append(f"  {k:<12} max error {v:.2e} (relative to the output's largest entry, "
                         f"absolute below {ABS_FLOOR:g})  {self.worst[k]}")
        lines.append(("OK" if self.ok else "FAILS") + f" (tolerance {self.tolerance:.1e})")
        return "\n".join(lines)


def check_tensor(fn: Any, dims: Mapping[str, int] | None = None, points: int = 2, seed: int = 0,
                 scale: float = 1.0, values: list[dict[str, Any]] | None = None,
                 adversarial: bool = False) -> TensorCheck:
    """Compare a compiled tensor function's value and gradients with SymPy's
    exact derivatives at `points` random points (entries ~ N(0, scale), labels
    uniform), or at the given `values`. `adversarial` adds a point of large
    entries (+-1000, where softmax, logsumexp or cross_entropy overflow unless
    stable) when the program uses one of those."""
    import mpmath
    import sympy as sp

    graph = fn.forward_graph
    dims = dict(dims or {})
    for n in graph.inputs:
        for d in n.shape:
            if isinstance(d, str):
                dims.setdefault(d, DEFAULT_DIM)
    rng = np.random.default_rng(seed)
    if values is None:
        values = [_draw(graph, dims, rng, scale) for _ in range(points)]
        stable = {"softmax", "log_softmax", "logsumexp", "cross_entropy"}
        if adversarial and any(n.op in stable for n in graph.body):
            values.append(_draw(graph, dims, rng, 1000.0))
    dt = np.dtype(fn.dtype)
    eps = float(np.finfo(dt).eps)
    report = TensorCheck(str(getattr(fn.program, "source", "")), dims, fn.dtype, 0,
                         tolerance=2e-11 if dt == np.float64 else 2e-4)
    for point in values:
        labels = {n.attr: np.asarray(point[n.attr]) for n in graph.inputs if not n.type.is_float}
        syms = symbols_for(graph, dims, labels)
        (expr,) = expand(graph, syms, dims).values()
        if isinstance(expr, np.ndarray):
            expr = expr[()] if expr.ndim == 0 else expr
        flat = [s for n in graph.inputs if n.type.is_float for s in np.ravel(np.asarray(syms[n.attr], dtype=object))]
        with mpmath.workdps(DIGITS):
            sub = {}
            for n in graph.inputs:
                if n.type.is_float:
                    for s, v in zip(np.ravel(np.asarray(syms[n.attr], dtype=object)),
                                    np.ravel(np.asarray(point[n.attr], dtype=dt).astype(np.float64))):
                        sub[s] = mpmath.mpf(float(v))
            args = [sub[s] for s in flat]
            f_exact = sp.lambdify(flat, expr, modules="mpmath")(*args)
            value, grads = fn(**{n.attr: _as_input(n, point[n.attr], dt) for n in graph.inputs})
            _record(report, "f", np.asarray(value), np.asarray([f_exact], dtype=object).reshape(np.shape(value)), eps)
            for n in graph.inputs:
                if n.attr not in grads:
                    continue
                s_arr = np.asarray(syms[n.attr], dtype=object)
                exact = np.empty(s_arr.shape, dtype=object)
                for idx in np.ndindex(*s_arr.shape):
                    d = derivative(expr, s_arr[idx])
                    if d.has(sp.DiracDelta):  # kinks (relu at 0): a null set; graphc's convention holds there
                        d = d.replace(sp.DiracDelta, lambda *a: sp.S.Zero)
                    exact[idx] = sp.lambdify(flat, d, modules="mpmath")(*args)
                _record(report, f"df/d{n.attr}", np.asarray(grads[n.attr]), exact, eps)
        report.points += 1
    return report


def _as_input(n: Node, v: Any, dt: np.dtype) -> Any:
    return np.asarray(v, dtype=dt) if n.type.is_float else np.asarray(v)


def _draw(graph: Graph, dims: Mapping[str, int], rng: np.random.Generator, scale: float) -> dict[str, Any]:
    point: dict[str, Any] = {}
    for n in graph.inputs:
        shape = concrete_shape(n, dims)
        if n.type.is_float:
            point[n.attr] = rng.normal(size=shape) * scale
        else:  # labels index the last axis of whatever picks with them: draw within the smallest class count
            classes = _classes(graph, n, dims)
            point[n.attr] = rng.integers(0, classes, size=shape)
    return point


def _classes(graph: Graph, labels: Node, dims: Mapping[str, int]) -> int:
    out = []
    for n in topo_order(v for _, v in graph.outputs):
        if labels in n.args:
            if n.op in ("pick", "cross_entropy"):
                d = n.args[0].shape[-1]
                out.append(d if isinstance(d, int) else dims[d])
            elif n.op == "one_hot":
                d = n.attrs["n"]
                out.append(d if isinstance(d, int) else dims[d])
    return min(out) if out else 2


def _record(report: TensorCheck, name: str, got: np.ndarray, exact: np.ndarray, eps: float) -> None:
    ex = np.vectorize(lambda v: float(v), otypes=[np.float64])(exact) if exact.size else np.zeros(exact.shape)
    g = np.asarray(got, dtype=np.float64).reshape(ex.shape)
    # errors relative to the output's largest entry, and absolute below 1e-6 (an exact 0, as the
    # gradient of sum(softmax(x)), comes out of float arithmetic as +-1e-17)
    finite = np.abs(ex[np.isfinite(ex)])
    scale = max(float(np.max(finite)) if finite.size else 0.0, ABS_FLOOR)
    both_nonfinite = ~np.isfinite(ex) & (g == ex)
    err = np.where(both_nonfinite, 0.0, np.abs(g - ex) / scale)
    err = np.where(np.isnan(err), np.inf, err)
    worst = float(np.max(err)) if err.size else 0.0
    if worst >= report.max_rel.get(name, -1.0):
        report.max_rel[name] = worst
        if err.size:
            i = np.unravel_index(int(np.argmax(err)), err.shape)
            report.worst[name] = f"at {name}[{', '.join(map(str, i))}]: {g[i]!r} (exact {ex[i]!r})"
        else:
            report.worst[name] = ""


__all__ = ["check_tensor", "expand", "symbols_for", "TensorCheck", "DTYPE_NUMPY"]
