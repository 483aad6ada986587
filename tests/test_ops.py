"""The op registry: every op has every facet, and each facet agrees with the others."""

import numpy as np
import pytest
from conftest import TARGETS

from graphc import ir
from graphc.registry import REGISTRY
from graphc.verify.oracle import derivative, to_sympy

# the per-element ops; tensor ops (reductions, matmul, masks) have their facet tests in test_tensor.py
POINTWISE = sorted(n for n, s in REGISTRY.items() if s.pointwise)


def test_every_op_has_every_facet():
    for name in POINTWISE:
        spec = REGISTRY[name]
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


@pytest.mark.parametrize("name", POINTWISE)
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


@pytest.mark.parametrize("name", POINTWISE)
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


def _all_ops_graph(dtype):
    """One graph computing every registered op (internal ones included) on
    in-domain arguments: each op's code template against its NumPy form with one
    kernel compile per target and dtype."""
    xs = [ir.input_node(f"a{i}", dtype) for i in range(3)]
    outs = []
    for name in POINTWISE:
        spec = REGISTRY[name]
        args = []
        for i, d in enumerate(spec.domain):
            x = xs[i]
            if d.lo > -np.inf and d.hi < np.inf:  # (lo, hi): lo + (hi - lo) * sigmoid(x)
                x = ir.make("add", ir.const(d.lo, dtype),
                            ir.make("mul", ir.const(d.hi - d.lo, dtype), ir.make("sigmoid", x)))
            elif d.lo > -np.inf:  # (lo, inf): lo + 0.5 + |x|
                x = ir.make("add", ir.const(d.lo + 0.5, dtype), ir.make("abs", x))
            elif d.excluded:
                x = ir.make("add", ir.const(0.5, dtype), ir.make("abs", x))
            args.append(x)
        outs.append((name, ir.make(name, *args)))
    return ir.Graph(xs, outs)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
# numpy is the reference itself; parallel's loop body is cpu's (the same templates), so it runs in the slow tier
@pytest.mark.parametrize("target", [pytest.param(t, marks=[pytest.mark.slow] if t == "parallel" else [])
                                    for t in TARGETS if t != "numpy"])
def test_every_template_matches_numpy_on_compiled_targets(target, dtype):
    from graphc.backends.numpy_ref import evaluate
    from graphc.backends.targets import build

    g = _all_ops_graph(dtype)
    kernel = build(g, target)
    np_dt = np.float64 if dtype == "f64" else np.float32
    rng = np.random.default_rng(1)
    args = [rng.uniform(-3, 3, 257).astype(np_dt) for _ in range(3)]
    args[0][:4] = [0.0, 1.0, -1.0, 2.5]  # ties, integers and half-integers for floor/ceil/sign/cmpw
    args[1][:4] = [0.0, 1.0, 0.5, -2.5]
    got = kernel.run(args, (257,))
    want = evaluate(g, args)
    tol = 1e-14 if dtype == "f64" else 2e-6
    for (name, _), a, b in zip(g.outputs, got, want):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=name)
