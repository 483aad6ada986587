"""The nineteen functions added with the open registry: gradients against SymPy
(40 digits) and finite differences on the compiled targets, stability at the
edges of their domains and at large arguments, the documented conventions
(clip's bounds, hypot at the origin, floor/ceil), SymPy import, and
`graphc check` on each."""

import math

import numpy as np
import pytest
from conftest import TARGETS_THREADS_SLOW
from formulas import FUNCTIONS, sample

import graphc
from graphc.verify import oracle

NEW = ["atan", "asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh", "erf", "erfc", "log2", "log10",
       "exp2", "hypot", "atan2", "clip", "gelu", "floor", "ceil"]


def test_every_new_function_is_in_the_formula_set():
    text = " ".join(f for f, _ in FUNCTIONS)
    assert all(f"{name}(" in text for name in NEW)


def _rel(a, b):
    return abs(a - b) / abs(b) if b else abs(a)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-4)])
@pytest.mark.parametrize("target", TARGETS_THREADS_SLOW)
@pytest.mark.parametrize("formula,ranges", FUNCTIONS, ids=[f for f, _ in FUNCTIONS])
def test_gradients_match_sympy(formula, ranges, target, dtype, tol):
    fn = graphc.compile(formula, target=target, dtype=dtype)
    rng = np.random.default_rng(len(formula))
    pts = sample(fn.inputs, ranges, rng, n=4)
    pts = {k: v.astype(dtype) for k, v in pts.items()}
    value, grads = fn(**pts)
    for i in range(4):
        pt = {k: float(v[i]) for k, v in pts.items()}
        ref = oracle.exact(fn.forward_graph, pt)
        scale = max(1.0, *(abs(r) for r in ref.values()))
        got = {"f": value[i], **{f"df/d{k}": g[i] for k, g in grads.items()}}
        for name, want in ref.items():
            assert _rel(float(got[name]), want) <= tol or abs(float(got[name]) - want) <= tol * scale, \
                (name, pt, got[name], want)


@pytest.mark.parametrize("formula,ranges", FUNCTIONS, ids=[f for f, _ in FUNCTIONS])
def test_gradients_match_finite_differences(formula, ranges):
    fn = graphc.compile(formula, target="cpu")
    pt = sample(fn.inputs, ranges, np.random.default_rng(3))
    _, grads = fn(**pt)
    for name in fn.inputs:
        h = 1e-6 * max(1.0, abs(pt[name]))
        fd = (fn.forward(**dict(pt, **{name: pt[name] + h})) - fn.forward(**dict(pt, **{name: pt[name] - h}))) / (2 * h)
        assert abs(grads[name] - fd) <= 1e-6 * max(1.0, abs(fd)), (name, grads[name], fd)


# (formula, point): where a naive derivative loses digits, overflows or cancels
EDGES = [
    ("asin(x)", {"x": 1 - 1e-12}), ("acos(x)", {"x": -1 + 1e-12}), ("atanh(x)", {"x": 1 - 1e-12}),
    ("atanh(x)", {"x": -1 + 1e-15}), ("acosh(x)", {"x": 1 + 1e-12}), ("acosh(x)", {"x": 1e300}),
    ("asinh(x)", {"x": 1e200}), ("asinh(x)", {"x": -1e-200}), ("atan(x)", {"x": 1e150}),
    ("gelu(x)", {"x": -30.0}), ("gelu(x)", {"x": -8.0}), ("gelu(x)", {"x": 30.0}), ("gelu(x)", {"x": 1e-10}),
    ("erf(x)", {"x": 5.0}), ("erfc(x)", {"x": 25.0}), ("erfc(x)", {"x": -6.0}),
    ("hypot(x, y)", {"x": 1e300, "y": 1e300}), ("hypot(x, y)", {"x": 1e-300, "y": 3e-300}),
    ("atan2(x, y)", {"x": 1e300, "y": -1e300}), ("atan2(x, y)", {"x": 1e-300, "y": 2e-300}),
    ("log2(x)", {"x": 1e-300}), ("log10(x)", {"x": 1e300}), ("exp2(x)", {"x": -1000.0}), ("exp2(x)", {"x": 1000.0}),
    ("sinh(x)", {"x": 700.0}), ("cosh(x)", {"x": -700.0}), ("sinh(x)", {"x": 1e-10}),
]


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@pytest.mark.parametrize("formula,pt", EDGES, ids=[f"{f}@{list(p.values())}" for f, p in EDGES])
def test_stable_at_domain_edges_and_large_arguments(formula, pt, target):
    fn = graphc.compile(formula, target=target)
    value, grads = fn(**pt)
    ref = oracle.exact(fn.forward_graph, pt)
    got = {"f": value, **{f"df/d{k}": v for k, v in grads.items()}}
    for name, want in ref.items():
        g = got[name]
        if abs(want) > np.finfo(np.float64).max:
            assert math.isinf(g) and (g > 0) == (want > 0), (name, g, want)
        elif abs(want) < np.finfo(np.float64).tiny:
            assert abs(g) < 1e-290, (name, g, want)
        else:
            assert _rel(g, want) <= 1e-13, (name, g, want, _rel(g, want))


def test_conventions():
    clip = graphc.compile("clip(x, lo, hi)", target="cpu")
    # d/dx = 1 on [lo, hi], bounds included; outside, the bound that is the value gets it
    for x, lo, hi, want in [(1.0, 1.0, 2.0, (1, 0, 0)), (2.0, 1.0, 2.0, (1, 0, 0)), (0.5, 1.0, 2.0, (0, 1, 0)),
                            (3.0, 1.0, 2.0, (0, 0, 1)), (1.5, 1.5, 1.5, (1, 0, 0)),
                            (1.5, 3.0, 2.0, (0, 0, 1))]:  # lo > hi: numpy.clip gives hi
        v, g = clip(x, lo, hi)
        assert v == np.clip(x, lo, hi)
        assert (g["x"], g["lo"], g["hi"]) == want, (x, lo, hi, g)
    assert math.isnan(clip(math.nan, 0.0, 1.0)[1]["x"])
    _, g = graphc.compile("hypot(x, y)", target="cpu")(0.0, 0.0)
    assert g == {"x": 0.0, "y": 0.0}  # like abs'(0) = 0
    _, g = graphc.compile("atan2(x, y)", target="cpu")(0.0, 0.0)
    assert math.isnan(g["x"])  # the angle is undefined at the origin: documented NaN
    fc = graphc.compile("floor(x) + ceil(x)", target="cpu")
    x = np.array([-1.5, -1.0, 0.0, 0.5, 2.0, np.inf, -np.inf, np.nan])
    v, g = fc(x)
    np.testing.assert_array_equal(v, np.floor(x) + np.ceil(x))
    np.testing.assert_array_equal(g["x"], np.zeros_like(x))  # 0 everywhere, NaN included (as JAX and PyTorch)


def test_gelu_is_recognised_and_matches_its_erf_form():
    fused = graphc.compile("0.5*x*(1+erf(x/sqrt(2)))", target="numpy")
    assert [n.op for n in fused.optimised_forward().body if n.op != "const"] == ["gelu"]
    direct = graphc.compile("gelu(x)", target="numpy")
    x = np.linspace(-6, 6, 100)  # 0 excluded: relative errors below
    np.testing.assert_allclose(fused(x)[1]["x"], direct(x)[1]["x"], rtol=1e-15)
    # accurate where the spelled-out form cancels (1 + erf(x) for x << 0)
    import mpmath

    with mpmath.workdps(50):
        exact = [float(mpmath.mpf(v) / 2 * mpmath.erfc(-mpmath.mpf(v) / mpmath.sqrt(2))) for v in x]
    np.testing.assert_allclose(fused(x)[0], exact, rtol=1e-14)
    raw = graphc.compile("0.5*x*(1+erf(x/sqrt(2)))", target="numpy", passes=())
    assert np.max(np.abs(raw(x)[0] - exact) / np.abs(exact)) > 1e-9  # what the fusion saves


def test_sympy_import_of_new_functions():
    import sympy as sp

    x, y = sp.symbols("x y", real=True)
    fn = graphc.compile(sp.atan2(x, y) + sp.erfc(x) * sp.floor(y) + sp.Max(x, y, 1) + sp.asinh(x), target="numpy")
    ops = {n.op for n in fn.forward_graph.body}
    assert {"atan2", "erfc", "floor", "max", "asinh"} <= ops
    v, _ = fn(0.3, 1.5)
    assert v == pytest.approx(math.atan2(0.3, 1.5) + math.erfc(0.3) * 1 + 1.5 + math.asinh(0.3))


@pytest.mark.parametrize("name", NEW)
def test_graphc_check_passes(name):
    arity = graphc.registry.REGISTRY[name].arity
    formula = f"{name}({', '.join('xyz'[:arity])})"
    rep = graphc.check(formula, target="cpu", points=24, time_limit=30)
    assert rep.ok, str(rep)
    assert not any(o.symbolic == "differs" for o in rep.outputs)
