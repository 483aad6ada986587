"""Gradients against references: SymPy's exact derivatives (40 digits) and
central finite differences, on the core formula set; Hessians against SymPy."""

import numpy as np
import pytest
from conftest import TARGETS, on_every_target
from formulas import CORE, SECOND_ORDER, sample

import graphc
from graphc.verify import oracle


def rel_err(a, b):
    return abs(a - b) / max(abs(b), 1e-300) if b != 0 else abs(a)


def test_core_set_is_big_enough():
    assert len(CORE) >= 30 and len(SECOND_ORDER) >= 5


# float64: 1e-10 relative; float32: 1e-4 relative (a few ulp over a few ops), each
# with an absolute floor for results that cancel to (nearly) zero
TOL = {"float64": (1e-10, 1e-13), "float32": (1e-4, 1e-5)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("formula,ranges,target", on_every_target(CORE, [f for f, _ in CORE]))
def test_gradient_matches_sympy(formula, ranges, target, dtype):
    fn = graphc.compile(formula, target=target, dtype=dtype)
    rel, absol = TOL[dtype]
    rng = np.random.default_rng(sum(map(ord, formula)))
    for _ in range(3):
        pt = sample(fn.inputs, ranges, rng)
        pt = {k: float(getattr(np, dtype)(v)) for k, v in pt.items()}
        value, grads = fn(**pt)
        ref = oracle.exact(fn.forward_graph, pt)
        scale = max(1.0, max(abs(v) for v in ref.values()))
        assert rel_err(value, ref["f"]) <= rel or abs(value - ref["f"]) <= absol * scale, (pt, value, ref["f"])
        for name, g in grads.items():
            r = ref[f"df/d{name}"]
            assert rel_err(g, r) <= rel or abs(g - r) <= absol * scale, (name, pt, g, r)


@pytest.mark.parametrize("formula,ranges,target", on_every_target(CORE, [f for f, _ in CORE]))
def test_gradient_matches_finite_differences(formula, ranges, target):
    fn = graphc.compile(formula, target=target)
    rng = np.random.default_rng(7)
    pt = sample(fn.inputs, ranges, rng)
    _, grads = fn(**pt)
    for name in fn.inputs:
        h = 1e-6 * max(1.0, abs(pt[name]))
        up = dict(pt, **{name: pt[name] + h})
        dn = dict(pt, **{name: pt[name] - h})
        fd = (fn.forward(**up) - fn.forward(**dn)) / (2 * h)
        assert abs(grads[name] - fd) <= 1e-6 * max(1.0, abs(fd)), (name, grads[name], fd)


@pytest.mark.parametrize("formula,ranges,target", on_every_target(SECOND_ORDER, [f for f, _ in SECOND_ORDER]))
def test_hessian_matches_sympy(formula, ranges, target):
    fn = graphc.hessian(formula, target=target)
    rng = np.random.default_rng(3)
    pt = sample(fn.inputs, ranges, rng)
    value, grads, hess = fn(**pt)
    ref = oracle.exact(fn.forward_graph, pt, order=2)
    assert rel_err(value, ref["f"]) <= 1e-10
    for x in fn.wrt:
        assert rel_err(grads[x], ref[f"df/d{x}"]) <= 1e-10
        for y in fn.wrt:
            r = ref[f"d2f/d{x}d{y}"]
            assert rel_err(hess[x][y], r) <= 1e-9 or abs(hess[x][y] - r) <= 1e-13, (x, y, hess[x][y], r)


@pytest.mark.parametrize("target", TARGETS)
def test_hessian_repeated_scalar_calls(target):
    fn = graphc.hessian("x*x*y", target=target)
    first = fn(1.5, 2.0)
    assert fn(1.5, 2.0) == first and len(first) == 3  # the scalar fast path never drops the Hessian
    assert first[2] == {"x": {"x": 4.0, "y": 3.0}, "y": {"x": 3.0, "y": 0.0}}


def test_hessian_is_ir_and_symmetric():
    fn = graphc.hessian("sigmoid(x*y) + x**3")
    assert "d2f/dxdy" in fn.graph.output_names
    _, _, h = fn(0.3, -0.7)
    assert h["x"]["y"] == pytest.approx(h["y"]["x"], rel=1e-14)
    # the Hessian graph is ordinary IR: it round-trips through text
    assert graphc.parse_graph(fn.ir) == fn.graph


def test_wrt_subset_and_order():
    fn = graphc.compile("x*y + z", wrt=["z", "x"])
    assert fn.wrt == ("z", "x")
    _, g = fn(2.0, 3.0, 4.0)
    assert list(g) == ["z", "x"] and g == {"z": 1.0, "x": 3.0}
    # gradients left out of wrt cost nothing: no op computes d/dy
    assert "df/dy" not in fn.graph.output_names


def test_unused_input_has_zero_gradient():
    fn = graphc.compile("x*2", inputs=("x", "y"))
    assert fn(1.0, 5.0) == (2.0, {"x": 2.0, "y": 0.0})
    v, g = fn(np.ones(3), 5.0)
    np.testing.assert_array_equal(g["y"], np.zeros(3))


def test_kink_conventions():
    # relu'(0) = 0, abs'(0) = 0, max/min ties split the gradient evenly
    assert graphc.compile("relu(x)")(0.0)[1]["x"] == 0.0
    assert graphc.compile("abs(x)")(0.0)[1]["x"] == 0.0
    assert graphc.compile("max(x, y)")(1.0, 1.0)[1] == {"x": 0.5, "y": 0.5}
    assert graphc.compile("min(x, y)")(1.0, 1.0)[1] == {"x": 0.5, "y": 0.5}
    assert graphc.compile("max(x, y)")(2.0, 1.0)[1] == {"x": 1.0, "y": 0.0}
    assert graphc.compile("min(x, y)")(2.0, 1.0)[1] == {"x": 0.0, "y": 1.0}


def test_sympy_frontend_matches_text():
    sp = pytest.importorskip("sympy")
    w0, x0, w1, x1, w2 = sp.symbols("w0 x0 w1 x1 w2")
    expr = 1 / (1 + sp.exp(-(w0 * x0 + w1 * x1 + w2)))
    fn = graphc.compile(expr, inputs=("w0", "x0", "w1", "x1", "w2"))
    ref = graphc.compile("1/(1+exp(-(w0*x0 + w1*x1 + w2)))")
    a = fn(2.0, -1.0, -3.0, -2.0, -3.0)
    b = ref(2.0, -1.0, -3.0, -2.0, -3.0)
    assert a[0] == pytest.approx(b[0], rel=1e-15)
    for k in b[1]:
        assert a[1][k] == pytest.approx(b[1][k], rel=1e-14)
    # default order for SymPy input: sorted by name
    assert graphc.compile(expr).inputs == ("w0", "w1", "w2", "x0", "x1")


def test_sympy_frontend_functions():
    sp = pytest.importorskip("sympy")
    x, y = sp.symbols("x y", real=True)
    expr = sp.sqrt(x) * sp.log(y) - x / y + sp.Max(x, y) + sp.Abs(x - 3) + sp.tanh(x) ** 3 + sp.pi
    fn = graphc.compile(expr)
    pt = {"x": 1.7, "y": 0.6}
    value, grads = fn(**pt)
    ref = oracle.exact(fn.forward_graph, pt)
    f = sp.lambdify((x, y), expr)
    assert value == pytest.approx(f(1.7, 0.6), rel=1e-13)
    for k in grads:
        g = float(sp.diff(expr, sp.Symbol(k, real=True)).subs({x: 1.7, y: 0.6}))
        assert grads[k] == pytest.approx(g, rel=1e-12)
        assert grads[k] == pytest.approx(ref[f"df/d{k}"], rel=1e-12)
