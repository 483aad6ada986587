"""Regressions from probing graphc as a careful user and as an attacker would
(issue 10): every case here once gave a silently wrong number, a traceback or
a crash, and must now give the right result or a clear GraphcError."""

import subprocess
import sys

import numpy as np
import pytest

import graphc
from graphc.errors import ArgumentError, GraphcError, IRError

HOST = ["numpy", "cpu", "parallel", "llvm"]


@pytest.mark.parametrize("target", HOST)
def test_out_buffers_may_not_alias_inputs_or_each_other(target):
    fn = graphc.compile("x*y + sin(x)", target=target)
    x, y = np.linspace(-1, 1, 6), np.linspace(2, 3, 6)
    want = fn(x, y)
    for out, match in [([x, np.empty(6), np.empty(6)], "overlaps argument 'x'"),
                       ([np.empty(6), y, np.empty(6)], "overlaps argument 'y'")]:
        with pytest.raises(ArgumentError, match=match):
            fn(x, y, out=out)
    e = np.empty(6)
    with pytest.raises(ArgumentError, match="one buffer for both f and df/dx"):
        fn(x, y, out=[e, e, np.empty(6)])
    buf = np.arange(8.0)
    with pytest.raises(ArgumentError, match="overlaps argument 'x'"):
        fn(buf[0:6], y, out=[buf[1:7], np.empty(6), np.empty(6)])
    two = np.empty(12)
    with pytest.raises(ArgumentError, match="overlap in memory"):
        fn(x, y, out=[two[0:6], two[3:9], np.empty(6)])
    # inputs untouched, and the same call without out= is still right
    np.testing.assert_array_equal(x, np.linspace(-1, 1, 6))
    np.testing.assert_array_equal(fn(x, y)[0], want[0])
    # the fast path (same-length contiguous arrays, a list of buffers) refuses too
    fn(x, y, out=[np.empty(6) for _ in range(3)])
    with pytest.raises(ArgumentError, match="overlaps argument 'x'"):
        fn(x, y, out=[x, np.empty(6), np.empty(6)])


@pytest.mark.parametrize("bad", [5, "abc", None.__class__, 3.0])
def test_out_must_be_a_list_or_dict(bad):
    with pytest.raises(ArgumentError, match="must be a list or dict"):
        graphc.compile("x*y", target="cpu")(np.ones(3), np.ones(3), out=bad)


def test_variables_named_like_call_options():
    assert graphc.compile("self*2", target="cpu")(self=3.0) == (6.0, {"self": 2.0})
    fn = graphc.compile("out*stream + x", target="numpy")
    assert fn(out=1.0, stream=2.0, x=3.0) == (5.0, {"out": 2.0, "stream": 1.0, "x": 1.0})
    bufs = [np.empty(2) for _ in range(4)]
    v, g = fn.call({"out": np.ones(2), "stream": 2.0, "x": 1.0}, out=bufs)
    assert v is bufs[0] and list(v) == [3.0, 3.0]
    assert fn.call([1.0, 2.0, 3.0]) == fn(1.0, 2.0, 3.0)
    with pytest.raises(ArgumentError, match="unknown option"):
        fn.call([1.0, 2.0, 3.0], strean=0)
    r = subprocess.run([sys.executable, "-m", "graphc", "eval", "self*2", "self=3", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '"self": 2.0' in r.stdout, r.stderr


def test_huge_variable_names_never_reach_generated_code():
    name = "x_" + "a" * 1100
    fn = graphc.compile(f"{name} * y + sin({name})", target="cpu")
    v, g = fn(np.array([0.5, 1.0]), np.array([2.0, 3.0]))
    np.testing.assert_allclose(v, [0.5 * 2 + np.sin(0.5), 3 + np.sin(1.0)])
    assert name not in "\n".join(ln for ln in fn.source.splitlines() if not ln.lstrip().startswith("#"))


@pytest.mark.parametrize("bad", ["x\n", "x y", "1x", "x\nimport os", ""])
def test_names_that_are_not_identifiers_are_refused_everywhere(bad):
    import sympy as sp

    from graphc import ir

    with pytest.raises(GraphcError):
        graphc.compile(sp.Symbol(bad) * 2 if bad else sp.Symbol("x") * 2 + sp.Symbol(" "), target="cpu")
    with pytest.raises(IRError):
        ir.verify(ir.Graph([ir.input_node(bad)], [("f", ir.input_node(bad))]))
    if bad != "1x":  # output names ("df/dx") need not be identifiers, only free of blanks and quotes
        with pytest.raises(IRError):
            ir.verify(ir.Graph([ir.input_node("x")], [(bad, ir.input_node("x"))]))


@pytest.mark.parametrize("argv,match", [
    (["--points", "-1"], "points must be"), (["--points", "0"], "points must be"),
    (["--points", "1000000"], "points must be"), (["--time-limit", "nan"], "time limit"),
    (["--time-limit", "-5"], "time limit"), (["--seed", "-1"], "seed must be"),
])
def test_check_options_are_validated(argv, match, capsys):
    from graphc.cli import main

    assert main(["check", "x*y", "--no-symbolic", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from graphc import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_eval", interrupted)
    assert cli.main(["eval", "x*y", "x=1", "y=2"]) == 130
    assert capsys.readouterr().err.strip() == "graphc: interrupted"


def test_float32_kernel_takes_out_of_range_input_silently():
    import warnings

    fn = graphc.compile("x*2", target="cpu", dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v, g = fn(np.array([1e300, -1e300, 1.0]))
    assert list(v) == [np.inf, -np.inf, 2.0]


@pytest.mark.parametrize("target", HOST)
def test_power_at_zero_base(target):
    """Regression: d/dy x**y at x = 0 was 0 * log(0) = NaN; the exact limit for
    y > 0 is 0 (JAX and PyTorch give 0 too), and so are the Hessian's xy, yx, yy."""
    fn = graphc.compile("x**y", target=target)
    assert fn(0.0, 2.0) == (0.0, {"x": 0.0, "y": 0.0})
    v, g = fn(0.0, 0.5)
    assert v == 0.0 and g["x"] == np.inf and g["y"] == 0.0
    assert fn(0.0, 0.0) == (1.0, {"x": 0.0, "y": 0.0})  # x**0 = 1 for every x: d/dx = 0
    assert fn(2.0, 3.0)[1]["y"] == pytest.approx(8 * np.log(2.0), rel=1e-15)
    assert graphc.compile("0**y", target=target)(2.0) == (0.0, {"y": 0.0})
    v, g, h = graphc.hessian("x**y", target=target)(0.0, 2.0)
    assert h == {"x": {"x": 2.0, "y": 0.0}, "y": {"x": 0.0, "y": 0.0}}


def test_reference_takes_limits_where_the_formula_is_0_times_inf():
    from graphc.verify import oracle

    g = graphc.parse("x**y")
    ref = oracle.sympy_reference(g, [{"x": 0.0, "y": 2.0}, {"x": 0.0, "y": 0.5}, {"x": 2.0, "y": 3.0}], ["x", "y"])
    assert ref[0] == [0.0, 0.0, 0.0] and ref[1] == [0.0, np.inf, 0.0]
    assert ref[2] == pytest.approx([8.0, 12.0, 8 * np.log(2.0)], rel=1e-15)


@pytest.mark.parametrize("formula", ["relu(x)", "max(x, 0)", "min(x, 0)", "abs(x)", "x**y", "clip(x, y, z)"])
def test_check_agrees_with_the_documented_kink_conventions(formula):
    """Regression: check used SymPy's Heaviside(0) = 1/2 as the truth for relu'(0)."""
    rep = graphc.check(formula, target="cpu", points=16, symbolic=False)
    assert rep.ok, str(rep)
    if formula != "x**y":  # the report says which points sit on a kink, and whose convention holds there
        assert any("sit on a kink" in n and formula.split("(")[0] in n for n in rep.notes), rep.notes


def test_check_uses_the_graphs_output_names():
    """Regression: a graph whose output is not named f gave KeyError: 'f'."""
    from graphc import ir

    x = ir.input_node("x")
    g = ir.Graph([x], [("y", ir.make("sin", x))])
    rep = graphc.check(g, target="numpy", points=8)
    assert rep.ok and [o.name for o in rep.outputs] == ["y", "dy/dx"]


def test_reference_sees_terms_absorbed_at_two_precisions():
    """Regression: log(1 + exp(-700)) was 'exact 0.0' (0 at 40 and at 80 digits);
    the truth is 9.86e-305, and the report said max relative error inf, yet OK."""
    from graphc.verify import oracle

    g = graphc.parse("log(1+exp(x))")
    (row,) = oracle.sympy_reference(g, [{"x": -700.0}], ["x"])
    assert row[0] == pytest.approx(9.85967654375977e-305, rel=1e-14) and row[1] == pytest.approx(row[0], rel=1e-14)
    rep = graphc.check("log(1+exp(x))", target="cpu", points=16, symbolic=False)
    assert rep.ok and all(np.isfinite(o.max_rel) and o.max_ulp < 1e6 for o in rep.outputs), str(rep)


def test_long_checks_show_progress_on_a_terminal():
    import io

    from graphc.verify.pointwise import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    quiet = Progress("reference values", 3, stream=io.StringIO(), after=0.0)
    for k in (1, 2, 3):
        quiet(k)
    assert quiet.stream.getvalue() == ""  # not a terminal: nothing
    tty = Tty()
    bar = Progress("reference values", 20_000, stream=tty, after=0.0)
    bar(1)
    bar(20_000)
    assert tty.getvalue() == "\rgraphc check: reference values 1/20,000\rgraphc check: reference values 20,000/20,000\n"
    late = Progress("reference values", 5, stream=Tty(), after=60.0)
    late(5)
    assert late.stream.getvalue() == ""  # short runs stay quiet


def test_a_long_compile_shows_its_progress(monkeypatch, tmp_path):
    import io
    import sys

    from graphc import progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(progress, "AFTER", 0.0)  # as if every stage took longer than 2 s
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    graphc.compile("sin(x) * y + exp(y)", target="llvm")
    text = err.getvalue()
    assert "graphc compile: passes 1/" in text and "graphc compile: LLVM stages (IR, optimise, machine code) 3/3\n" in text


@pytest.mark.parametrize("formula", ["sin(x)/x", "(exp(x)-1)/x"])
def test_ill_conditioned_formulas_are_not_reported_as_graphc_errors(formula):
    """Regression: these FAILED at x = 1e-8, where the formula itself cancels in
    float64; the report now says how many digits the formula loses there."""
    rep = graphc.check(formula, target="cpu", points=16, symbolic=False)
    assert rep.ok and rep.ill_conditioned >= 1, str(rep)
    assert any("the formula loses" in n and "x=1e-08" in n for n in rep.notes)
    assert "ill-conditioned" in str(rep)


def test_a_wrong_rule_is_not_excused_as_conditioning():
    import dataclasses

    from graphc import ir
    from graphc.registry import REGISTRY, register_op

    spec = REGISTRY["sin"]
    register_op(dataclasses.replace(spec, grad=lambda n, g: (ir.make("mul", g, ir.make("sin", n.args[0])),)),
                replace=True)
    try:
        rep = graphc.check("sin(x)/x", target="numpy", points=16, symbolic=False)
    finally:
        register_op(spec, replace=True)
    assert not rep.ok


def test_kernel_source_for_thousands_of_inputs_is_valid_python():
    """Regression: the size check was one expression of 2 x inputs terms, and
    Python's compiler hit its recursion limit at ~1,500 inputs."""
    from graphc.backends.numba.pointwise import generate_source

    g = graphc.Program(" + ".join(f"x{i}" for i in range(2000)), wrt="x0").graph
    for mask in [(True,) * 2000, (False, True) * 1000]:
        src = generate_source(g, "cpu", mask)
        compile(src, "<kernel>", "exec")  # raised RecursionError


def test_check_samples_a_power_base_at_zero():
    """Item 3: `graphc check "x**y"` samples x = 0 (y > 0), so a naive d/dy = x**y log(x),
    0 * -inf = NaN there, is caught; the shipped rule passes."""
    import dataclasses

    from graphc import ir
    from graphc.registry import REGISTRY, register_op
    from graphc.verify.pointwise import sample_points

    fwd = graphc.parse("x**y")
    zero = [p for p in sample_points(fwd, 4, 0, "float64") if p["x"] == 0.0]
    assert {p["y"] for p in zero} == {1.5, 2.0}
    assert graphc.check("x**y", target="numpy", points=8).ok
    spec = REGISTRY["pow"]

    def naive(n, g):
        da, _ = spec.grad(n, g)
        return da, ir.make("mul", g, ir.make("mul", n, ir.make("log", n.args[0])))

    register_op(dataclasses.replace(spec, grad=naive), replace=True)
    try:
        report = graphc.check("x**y", target="numpy", points=8)
    finally:
        register_op(spec, replace=True)
    assert not report.ok
