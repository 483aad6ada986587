"""Formula text and SymPy frontends: syntax, errors with carets, depth limits."""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc
from graphc import ir
from graphc.errors import ArityError, GraphcError, ParseError, UnknownFunctionError, UnsupportedError


def parse(text):
    return graphc.parse(text)


def test_numbers_variables_constants():
    fn = graphc.compile("3 + 2.5*x + 1e-3*y + .5 + 2. + pi + e")
    v, _ = fn(1.0, 1000.0)
    assert v == pytest.approx(3 + 2.5 + 1 + 0.5 + 2 + np.pi + np.e, rel=1e-15)


def test_inputs_in_order_of_first_appearance():
    assert parse("b*a + c*a + b").input_names == ("b", "a", "c")


def test_precedence_and_associativity():
    cases = {
        "-x**2": -9.0, "2**-1": 0.5, "2**3**2": 512.0, "x-1-1": 1.0, "x/3/3": 1 / 3,
        "-x*-x": 9.0, "+x": 3.0, "2*x**2": 18.0, "(1+x)*2": 8.0, "--x": 3.0, "2**-x*3": 2**-3 * 3,
    }
    for text, want in cases.items():
        assert graphc.compile(text, inputs=("x",))(3.0)[0] == pytest.approx(want, rel=1e-15), text


def test_all_required_functions_parse():
    names = ["exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "softplus", "abs",
             "log1p", "expm1"]
    for n in names:
        graphc.compile(f"{n}(x)")(0.5)
    for n in ["max", "min", "pow", "logaddexp"]:
        graphc.compile(f"{n}(x, y)")(0.5, 1.5)


def _err(text, cls=ParseError):
    with pytest.raises(cls) as info:
        parse(text)
    return str(info.value)


def test_caret_under_missing_paren():
    msg = _err("exp(x")
    assert "expected ')'" in msg
    lines = msg.splitlines()
    assert lines[1] == "  exp(x" and lines[2] == "       ^"


@pytest.mark.parametrize(
    "text,phrase,col",
    [
        ("x = 2", "assignment", 2),
        ("x.real", "attribute access", 1),
        ("x[0]", "subscripts", 1),
        ("lambda x: x", "lambda", 0),
        ("[x for x in y]", "subscripts", 0),
        ("x for x in y", "comprehensions", 2),
        ("'abc'", "strings", 0),
        ("x; y", "';'", 1),
        ("x ^ 2", "**", 2),
        ("x < y", "comparison", 2),
        ("x == y", "comparison", 2),
        ("import os", "statements", 0),
        ("__import__('os')", "strings", 11),
        ("x +", "unexpected end", 3),
        ("(x", "expected ')'", 2),
        ("x)", "unmatched ')'", 1),
        ("2x", "missing operator", 1),
        ("x y", "missing operator", 2),
        ("()", "empty parentheses", 1),
        ("", "empty formula", 0),
        ("x, y", "','", 1),
        ("x // y", "floor division", 2),
        ("1e", "exponent", 1),
        ("x # y", "unexpected character", 2),
        ("exp", "is a function", 0),
        ("pi(2)", "constant", 0),
        ("if x", "conditional", 0),
    ],
)
def test_bad_input_errors(text, phrase, col):
    with pytest.raises(ParseError) as info:
        parse(text)
    assert phrase in str(info.value)
    assert info.value.col == col
    assert isinstance(info.value, GraphcError)


def test_unknown_function_suggests():
    with pytest.raises(UnknownFunctionError, match="did you mean 'sigmoid'"):
        parse("sigmod(x)")
    with pytest.raises(UnknownFunctionError, match="did you mean 'log'"):
        parse("ln(x)")
    with pytest.raises(UnknownFunctionError, match="known functions"):
        parse("zzzzqq(x)")


def test_arity_errors_name_function_and_count():
    with pytest.raises(ArityError, match=r"max\(\) takes 2 arguments, got 1"):
        parse("max(x)")
    with pytest.raises(ArityError, match=r"exp\(\) takes 1 argument, got 2"):
        parse("exp(x, y)")
    with pytest.raises(ArityError, match=r"got 0"):
        parse("sin()")


def test_user_text_is_never_executed(tmp_path, monkeypatch):
    import builtins

    graphc.compile("x*y", target="numpy")  # import every module first: imports themselves use exec

    def boom(*a, **k):
        raise AssertionError("eval/exec called on user text")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    marker = tmp_path / "pwned"
    for text in [f"__import__('os').system('touch {marker}')", "open('x').read()", "x.__class__"]:
        with pytest.raises(GraphcError):
            graphc.compile(text, target="numpy")
    assert not marker.exists()
    assert graphc.compile("x*y", target="numpy")(2.0, 3.0)[0] == 6.0


def test_deep_parentheses():
    depth = 5000
    fn = graphc.compile("(" * depth + "x + 1" + ")" * depth)  # default target: one small kernel
    assert fn(2.0) == (3.0, {"x": 1.0})


def test_deep_call_chain():
    depth = 2000
    fn = graphc.compile("tanh(" * depth + "x" + ")" * depth, target="numpy")  # depth, not Numba's compile time
    v, g = fn(0.5)
    ref, d = 0.5, 1.0
    for _ in range(depth):
        t = np.tanh(ref)
        d *= 1 - t * t
        ref = t
    assert v == pytest.approx(ref, rel=1e-12) and g["x"] == pytest.approx(d, rel=1e-10)


@pytest.mark.slow  # 20,000 terms; test_llvm compiles 2,000 inputs in the fast tier
def test_long_sum():
    n = 20000
    fn = graphc.compile(" + ".join(f"{i % 7}*x{i % 50} * y" for i in range(n)), target="numpy")
    v, g = fn(*np.ones(len(fn.inputs)))
    assert v == sum(i % 7 for i in range(n))
    assert g["y"] == v
    assert sys.getrecursionlimit() <= 10000  # we never raised it to get here


def test_deep_power_tower_and_negations():
    fn = graphc.compile("-" * 3001 + "x")
    assert fn(2.0) == (-2.0, {"x": -1.0})


def test_sympy_unsupported_function():
    sp = pytest.importorskip("sympy")
    x = sp.Symbol("x")
    with pytest.raises(UnsupportedError, match="gamma"):
        graphc.compile(sp.gamma(x))
    with pytest.raises(UnsupportedError, match="complex"):
        graphc.compile(x * sp.I)
    f = sp.Function("f")
    with pytest.raises(UnsupportedError, match="f"):
        graphc.compile(f(x))


def test_compile_rejects_other_objects():
    with pytest.raises(GraphcError, match="cannot compile"):
        graphc.compile(42)
    with pytest.raises(GraphcError, match="cannot compile"):
        graphc.compile(lambda x: x)


def test_non_ascii_names_are_refused_clearly():
    for text, col in [("λ*2", 0), ("x²", 1), ("２*x", 0)]:
        with pytest.raises(ParseError, match="non-ASCII") as info:
            parse(text)
        assert info.value.col == col
    sp = pytest.importorskip("sympy")
    with pytest.raises(UnsupportedError, match="cannot be a graphc variable"):
        graphc.compile(sp.Symbol("x.y") * 2)


_ALPHABET = "xyz0123456789.+-*/()^,=[]'\" eE_;:<>!%@#\tλ²" + "exppisinlogmaxrelutanh"


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(alphabet=_ALPHABET, max_size=30) | st.text(max_size=20))
def test_any_text_parses_or_raises_a_graphc_error(text):
    """No input text makes graphc fail with anything but a GraphcError."""
    try:
        fn = graphc.compile(text, target="numpy")
    except GraphcError:
        return
    ir.verify(fn.graph)
    fn(*[0.5] * len(fn.inputs))
