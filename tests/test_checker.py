"""graphc check: verdicts against SymPy, exit codes, time limits, swell report."""

import json
import math
import subprocess
import sys
import time

import pytest
from conftest import TARGETS

import graphc
from graphc.verify import pointwise as checker

NEURON = "sigmoid(w0*x0 + w1*x1 + w2)"


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "graphc", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("formula", [NEURON, pytest.param("1/(1+exp(-(w0*x0 + w1*x1 + w2)))", marks=pytest.mark.slow)])
def test_check_neuron_json(formula):
    r = run("check", formula, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["ok"] is True
    names = [o["name"] for o in data["outputs"]]
    assert names == ["f", "df/dw0", "df/dx0", "df/dw1", "df/dx1", "df/dw2"]
    for o in data["outputs"]:
        assert o["max_rel"] <= 1e-12, o
        assert o["symbolic"] == "proved", o
        assert o["checked"] >= 64


def test_check_text_report_names_worst_point():
    r = run("check", "log(x) * sqrt(y) + x/y", "--points", "16")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "worst point" in r.stdout and "OK: every output agrees" in r.stdout
    assert "0 outside the domain" in r.stdout  # log/sqrt/div arguments sampled positive


@pytest.mark.parametrize("target,dtype", [pytest.param(t, ("float64", "float32")[k % 2], marks=[pytest.mark.slow]
                                                       if t == "parallel" else []) for k, t in enumerate(TARGETS)])
def test_check_targets_and_dtypes(target, dtype):
    rep = graphc.check("softplus(x*y) + tanh(x) - logaddexp(x, y)", target=target, dtype=dtype, points=24)
    assert rep.ok, str(rep)
    assert rep.dtype == dtype and rep.target == target


def test_broken_rule_makes_check_exit_1():
    code = (
        "import sys, dataclasses, graphc.registry as reg, graphc.ir as ir\n"
        "from graphc.cli import main\n"
        "spec = reg.REGISTRY['tanh']\n"
        "bad = lambda n, g: (ir.make('mul', g, ir.make('tanh', n.args[0])),)\n"
        "reg.register_op(dataclasses.replace(spec, grad=bad), replace=True)\n"
        "sys.exit(main(['check', 'tanh(x) * y', '--points', '8', '--target', 'numpy']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stdout and "FAILS" in r.stdout and "differs" in r.stdout


def test_bad_input_exits_2():
    r = run("check", "exp(x")
    assert r.returncode == 2 and "expected ')'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # SymPy on a 16-deep chain, up to its time limit
def test_deep_tanh_chain_returns_in_time():
    formula = "tanh(" * 16 + "x" + ")" * 16
    t0 = time.perf_counter()
    rep = graphc.check(formula, target="numpy", points=16, time_limit=10)
    assert time.perf_counter() - t0 < 30
    assert rep.ok, str(rep)
    (f, d) = rep.outputs
    assert d.checked > 0 and d.max_rel <= 1e-12
    assert d.symbolic in ("proved", "undecided")
    if d.symbolic == "undecided":
        assert d.symbolic_note


def test_time_limit_falls_back_and_says_so():
    rep = graphc.check("sin(x)*exp(y)", target="numpy", points=8, time_limit=0.001)
    assert rep.ok, str(rep)
    assert "mpmath" in rep.reference
    assert any("SymPy could not" in n for n in rep.notes)
    assert all(o.symbolic == "undecided" and "time limit" in o.symbolic_note for o in rep.outputs)


def test_domain_inference():
    g = graphc.parse("log(a) + sqrt(b) + c/d + log1p(g) + f**2 + h**c")
    dom = {k: d.name for k, d in checker.infer_domains(g).items()}
    assert dom == {"a": "positive", "b": "positive", "c": "real", "d": "nonzero", "g": "> -1", "f": "real",
                   "h": "positive"}
    pts = checker.sample_points(g, 20, 0, "float64")
    # h is a power's base: sampled at 0 too, with a positive exponent (not at (0, 0))
    assert all(p["a"] > 0 and p["b"] > 0 and p["d"] != 0 and p["g"] > -1 and (p["h"] > 0 or p["c"] > 0)
               for p in pts)
    assert {p["c"] for p in pts if p["h"] == 0.0} == {1.5, 2.0}
    assert any(p["c"] == 700.0 for p in pts) and any(p["c"] == -1e-8 for p in pts)


def test_domains_intersect_and_edges_are_sampled():
    g = graphc.parse("asin(x) + log(x) + acosh(y) + atanh(z)")
    dom = checker.infer_domains(g)
    assert (dom["x"].lo, dom["x"].hi) == (0.0, 1.0)  # (-1, 1) and (0, inf)
    assert (dom["y"].lo, dom["y"].hi) == (1.0, math.inf)
    pts = checker.sample_points(g, 50, 1, "float64")
    assert all(0 < p["x"] < 1 and p["y"] > 1 and -1 < p["z"] < 1 for p in pts)
    assert any(p["y"] == 1 + 1e-8 for p in pts) and any(p["z"] == -1 + 1e-8 for p in pts)
    assert any(p["x"] == 1 - 1e-8 for p in pts)


def test_error_measures():
    assert checker.ulp_error(1.0, 1.0, "float64") == 0
    assert checker.ulp_error(1.0 + 2**-52, 1.0, "float64") == pytest.approx(1.0)
    assert checker.rel_error(1.1, 1.0) == pytest.approx(0.1)
    assert checker.output_passes(float("inf"), 1e400 if False else float("inf"), 1.0, "float64")[0]
    assert not checker.output_passes(float("nan"), 1.0, 1.0, "float64")[0]
    assert not checker.output_passes(1.001, 1.0, 1.0, "float64")[0]
    assert checker.output_passes(1.00001, 1.0, 1.0, "float32")[0]


@pytest.mark.slow  # a process and SymPy differentiating eight neurons
def test_swell_report():
    neurons = " + ".join(f"sigmoid(w{i}*x + b{i})" for i in range(8))
    r = run("check", neurons, "--swell")
    assert r.returncode == 0, r.stderr
    assert "graphc value+gradient" in r.stdout and "SymPy raw derivatives" in r.stdout
    res = checker.swell(neurons, time_limit=60)
    assert res["graphc"]["value_grad_ops"] < res["sympy_diff"]["ops"]
    slow = checker.swell("tanh(" * 12 + "x" + ")" * 12, time_limit=0.001)
    assert "skipped" in slow["sympy_diff"] and "time limit" in slow["sympy_diff"]["skipped"]
