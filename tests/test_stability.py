"""Fused ops are stable forward and backward, written fused or spelled out:
compared with 40-digit references (mpmath through SymPy) at adversarial points."""

import math

import numpy as np
import pytest
from conftest import TARGETS

import graphc
from graphc.verify import oracle

MAGS = [0.0, 1e-8, 1.0, 17.0, 37.0, 40.0, 100.0, 700.0, 800.0]
POINTS = sorted({s * m for m in MAGS for s in (1.0, -1.0)})
TOL = {"float64": 1e-12, "float32": 1e-5}
TINY = {"float64": np.finfo(np.float64).tiny, "float32": np.finfo(np.float32).tiny}
HUGE = {"float64": np.finfo(np.float64).max, "float32": np.finfo(np.float32).max}

UNARY = {
    "sigmoid": ["sigmoid(x)", "1/(1+exp(-x))", "exp(x)/(1+exp(x))"],
    "softplus": ["softplus(x)", "log(1+exp(x))"],
    "log-sigmoid": ["log(sigmoid(x))", "log(1/(1+exp(-x)))"],
    "tanh": ["tanh(x)", "(exp(x)-exp(-x))/(exp(x)+exp(-x))", "(exp(2*x)-1)/(exp(2*x)+1)"],
}
BINARY = {"logaddexp": ["logaddexp(x, y)", "log(exp(x)+exp(y))"]}


def _check(fn, pt, dtype):
    value, grads = fn(**pt)
    exact_pt = {k: float(getattr(np, dtype)(v)) for k, v in pt.items()}
    ref = oracle.exact(fn.forward_graph, exact_pt)
    got = {"f": value, **{f"df/d{k}": v for k, v in grads.items()}}
    for name, want in ref.items():
        g = got[name]
        if math.isfinite(want) and abs(want) <= HUGE[dtype]:
            assert math.isfinite(g), (name, pt, g, want)
        if abs(want) >= TINY[dtype] and abs(want) <= HUGE[dtype]:
            err = abs(g - want) / abs(want)
            assert err <= TOL[dtype], (name, pt, g, want, err)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("formula", [f for fs in UNARY.values() for f in fs])
def test_unary_stability(formula, dtype, target):
    fn = graphc.compile(formula, target=target, dtype=dtype)
    assert "exp" not in {n.op for n in fn.graph.body}, fn.ir
    for x in POINTS:
        _check(fn, {"x": x}, dtype)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("formula", BINARY["logaddexp"])
def test_logaddexp_stability(formula, dtype, target):
    fn = graphc.compile(formula, target=target, dtype=dtype)
    assert "exp" not in {n.op for n in fn.graph.body}, fn.ir
    for x in POINTS:
        for y in (x - 1.0, 0.5 * x, -x, x):
            _check(fn, {"x": x, "y": y}, dtype)


@pytest.mark.parametrize("target", TARGETS)
def test_headline_values(target):
    v, g = graphc.compile("softplus(x)", target=target)(800.0)
    assert v == 800.0 and g["x"] == 1.0
    v, g = graphc.compile("log(exp(a) + exp(b))", target=target)(1000.0, 999.0)
    assert v == pytest.approx(1000.0 + math.log1p(math.exp(-1.0)), rel=1e-15)
    assert g["a"] == pytest.approx(1 / (1 + math.exp(-1.0)), rel=1e-15)
    # sigmoid'(40) = e^-40 / (1+e^-40)^2: s*(1-s) would give exactly 0 here
    _, g = graphc.compile("1/(1+exp(-x))", target=target)(40.0)
    assert g["x"] == pytest.approx(math.exp(-40.0), rel=1e-14)
    _, g = graphc.compile("sigmoid(x)", target=target, dtype="float32")(np.float32(20.0))
    assert g["x"] == pytest.approx(math.exp(-20.0), rel=1e-6)
    _, g = graphc.compile("tanh(x)", target=target)(20.0)
    assert g["x"] == pytest.approx(4 * math.exp(-40.0), rel=1e-14)


def test_unfused_forms_would_fail():
    # negative control: without fusion the spelled-out forms overflow at 800 --
    # the stability above comes from the fused ops
    v, _ = graphc.compile("log(1+exp(x))", target="numpy", passes=())(800.0)
    assert v == math.inf
    v, _ = graphc.compile("log(exp(a) + exp(b))", target="numpy", passes=())(1000.0, 999.0)
    assert v == math.inf
