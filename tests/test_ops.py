"""The op registry: every op has every facet, and each facet agrees with the others."""

import numpy as np
import pytest

from graphc import ir
from graphc.oracle import derivative, to_sympy
from graphc.registry import REGISTRY


def test_every_op_has_every_facet():
    for name, spec in REGISTRY.items():
        assert spec.name == name
        assert spec.arity >= 1, name
        assert callable(spec.numpy), name
        assert callable(spec.grad), name
        assert callable(spec.sympy), name
        uses = spec.code + spec.prelude  # a template reads its arguments directly or via the prelude
        assert isinstance(spec.code, str) and "{0}" in uses, name
        assert all(f"{{{i}}}" in uses for i in range(spec.arity)), name
        assert ("{p}" in spec.code) == bool(spec.prelude), name
        assert spec.doc, name
        assert len(spec.domain) == spec.arity, name
        for template in [spec.code, *spec.codes.values()]:  # expressions, for every backend
            compile(template.format(*[f"a{i}" for i in range(spec.arity)], p="p"), name, "eval")


def _points(spec, k):
    """The k-th example point of an op, each argument inside its domain."""
    return [d.examples()[(k + i) % 3] for i, d in enumerate(spec.domain)]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_numpy_matches_sympy_facet(name):
    spec = REGISTRY[name]
    xs = [ir.input_node(f"a{i}") for i in range(spec.arity)]
    g = ir.Graph(xs, [("f", ir.make(name, *xs))])
    exprs, syms = to_sympy(g)
    for k in range(3):
        vals = _points(spec, k)
        got = float(spec.numpy(*[np.float64(v) for v in vals]))
        want = float(exprs["f"].subs({syms[f"a{i}"]: v for i, v in enumerate(vals)}).evalf(30))
        assert got == pytest.approx(want, rel=1e-13, abs=1e-300), (name, vals)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_grad_rule_matches_sympy_derivative(name):
    import sympy as sp

    from graphc.passes.autodiff import gradients

    spec = REGISTRY[name]
    xs = [ir.input_node(f"a{i}") for i in range(spec.arity)]
    root = ir.make(name, *xs)
    grads = gradients(root, xs)
    g = ir.Graph(xs, [("f", root)] + [(f"d{i}", d) for i, d in enumerate(grads)])
    exprs, syms = to_sympy(g)
    for k in range(3):
        vals = _points(spec, k)
        sub = {syms[f"a{i}"]: v for i, v in enumerate(vals)}
        for i in range(spec.arity):
            want = derivative(exprs["f"], syms[f"a{i}"]).subs(sub).evalf(30)
            want = float(want.rewrite(sp.Piecewise)) if want.has(sp.Heaviside) else float(want)
            got = float(exprs[f"d{i}"].subs(sub).evalf(30))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-300), (name, i, vals)
