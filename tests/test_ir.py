"""IR: hash-consing, printer/parser round trip, verifier, JSON/DOT, deep graphs."""

import json

import pytest
from formulas import CORE, SECOND_ORDER

import graphc
from graphc import ir
from graphc.errors import IRError


def test_hash_consing_identity():
    x, y = ir.input_node("x"), ir.input_node("y")
    assert ir.make("mul", x, y) is ir.make("mul", x, y)
    assert ir.const(2.0) is ir.const(2)
    assert ir.const(0.0) is not ir.const(-0.0)
    assert ir.const(2.0, "f32") is not ir.const(2.0)
    with pytest.raises(AttributeError):
        x.op = "add"


def test_float32_constants_are_rounded():
    assert ir.const(0.1, "f32").value == float(__import__("numpy").float32(0.1))


@pytest.mark.parametrize("formula", [f for f, _ in CORE + SECOND_ORDER])
def test_round_trip(formula):
    for fn in (graphc.compile(formula, target="numpy"), graphc.compile(formula, target="numpy", passes=())):
        for g in (fn.forward_graph, fn.graph):
            text = ir.print_graph(g)
            g2 = ir.parse_graph(text)
            assert g2 == g
            assert ir.print_graph(g2) == text
    h = graphc.hessian(formula, target="numpy")
    assert ir.parse_graph(h.ir) == h.graph


def test_round_trip_float32_and_special_constants():
    g = graphc.compile("x*0.1 + 1e300*y + 2.5e-8", dtype="float32", target="numpy").graph
    assert ir.parse_graph(ir.print_graph(g)) == g
    x = ir.input_node("x")
    g = ir.Graph([x], [("f", ir.make("add", ir.make("mul", x, ir.const(float("inf"))), ir.const(float("nan"))))])
    assert ir.parse_graph(ir.print_graph(g)) == g


def test_parse_rejects_bad_text():
    good = "graph(%x: f64) {\n  %0 = exp %x : f64\n  return f = %0\n}"
    assert ir.parse_graph(good).op_count() == 1
    bad = {
        "graph(%x: f64) {\n  %0 = exp %y : f64\n  return f = %0\n}": "not defined",
        "graph(%x: f64) {\n  %0 = exp %x, %x : f64\n  return f = %0\n}": "takes 1",
        "graph(%x: f64) {\n  %0 = frob %x : f64\n  return f = %0\n}": "unknown op",
        "graph(%x: f64) {\n  %0 = exp %x : f32\n  return f = %0\n}": "declared type",
        "graph(%x: f64) {\n  %0 = exp %x : f64\n}": "no 'return'",
        "graph(%x: f64) {\n  %0 = exp %1 : f64\n  %1 = exp %x : f64\n  return f = %0\n}": "not defined",
    }
    for text, phrase in bad.items():
        with pytest.raises(IRError, match=phrase):
            ir.parse_graph(text)


def _raw(op, args, typ="f64"):
    """A node built around the checks of `make` (to hand-make broken graphs)."""
    return ir._intern(op, tuple(args), None, ir.scalar_type(typ))


def test_verifier_rejects_broken_graphs():
    x, y = ir.input_node("x"), ir.input_node("y")
    e = ir.make("exp", x)
    cases = [
        (ir.Graph([x], [("f", _raw("exp", [x, x]))]), "expects 1"),
        (ir.Graph([x], [("f", _raw("frob", [x]))]), "unknown op"),
        (ir.Graph([x], [("f", _raw("exp", [ir.input_node("x", "f32")]))]), "not a graph input"),
        (ir.Graph([x], [("f", ir.make("mul", x, y))]), "not a graph input"),
        (ir.Graph([x], [("f", ir.make("neg", e))], body=[ir.make("neg", e), e]), "before it is defined"),
        (ir.Graph([x], [("f", e)], body=[]), "not in the graph"),
        (ir.Graph([x, x], [("f", e)]), "appears twice"),
        (ir.Graph([x], [("f", e), ("f", e)]), "appears twice"),
        (ir.Graph([x], [("f", _raw("neg", [ir.make("exp", x)], "f32"))]), "argument of type"),
    ]
    for g, phrase in cases:
        with pytest.raises(IRError, match=phrase):
            ir.verify(g)
    ir.verify(ir.Graph([x], [("f", e)]))


def test_make_checks_arity_and_types():
    x = ir.input_node("x")
    with pytest.raises(IRError, match="takes 2"):
        ir.make("add", x)
    with pytest.raises(IRError, match="mixed types"):
        ir.make("add", x, ir.input_node("y", "f32"))
    with pytest.raises(IRError, match="unknown op"):
        ir.make("nope", x)


def test_json_and_dot_exports():
    g = graphc.compile("(x + y) * z", target="numpy").graph
    data = json.loads(ir.to_json(g))
    assert data["inputs"] == ["x", "y", "z"]
    ops = [n["op"] for n in data["nodes"]]
    assert ops.count("input") == 3 and "add" in ops and "mul" in ops
    assert set(data["outputs"]) == {"f", "df/dx", "df/dy", "df/dz"}
    assert ir.from_json(ir.to_json(g)) == g
    for bad, phrase in [("{", "not graphc IR JSON"), ('{"nodes": [], "outputs": {"f": "%9"}}', "unknown node")]:
        with pytest.raises(IRError, match=phrase):
            ir.from_json(bad)
    dot = ir.to_dot(g)
    assert dot.startswith("digraph graphc {") and dot.rstrip().endswith("}")
    assert dot.count("->") >= 5


@pytest.mark.slow  # 10^5-node chains through every traversal; test_frontend, test_cli_errors keep deep formulas fast
def test_deep_chain_traversals_are_iterative():
    x = ir.input_node("x")
    n = x
    for _ in range(100_000):
        n = ir.make("neg", n)
    g = ir.Graph([x], [("f", n)])
    assert g.op_count() == 100_000
    ir.verify(g)
    text = ir.print_graph(g)
    assert ir.parse_graph(text) == g
    from graphc.passes.autodiff import autodiff

    assert autodiff(g).op_count() >= 100_000
