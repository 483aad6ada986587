"""Property tests over random formulas (see strategies.py): gradients equal
SymPy's, the optimised pipeline equals passes=(), every backend equals the
NumPy reference, print/parse round-trips. Each sweep runs in two sizes: a quick one
of 60 formulas in the test command (the fast tier) and a long one of
GRAPHC_FUZZ_EXAMPLES formulas (default 600) in the slow tier (-m slow, .ci/run);
half as many go through Numba and llvm."""

import dataclasses
import itertools
import math
import os

import numpy as np
import pytest
from conftest import fuzz, tiers
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import covered_ops, formulas

import graphc
from graphc import ir
from graphc.registry import REGISTRY, register_op
from graphc.verify import oracle
from graphc.verify.pointwise import output_passes

EXAMPLES = {"quick": 60, "long": int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "600"))}
TIERS = tiers("quick", "long")


def test_strategy_covers_every_op():
    """Every pointwise user function is written by the strategy; every internal
    pointwise op is made by the derivative rule of some user function (tensor ops
    have their own strategy: tensor_strategies.py)."""
    from graphc.passes.autodiff import gradients

    assert covered_ops() >= {n for n, s in REGISTRY.items() if not s.internal and s.pointwise}
    made = set()
    for name in covered_ops():
        spec = REGISTRY[name]
        xs = [ir.input_node(f"a{i}") for i in range(spec.arity)]
        made |= {n.op for n in ir.topo_order(gradients(ir.make(name, *xs), xs))}
    assert made >= {n for n, s in REGISTRY.items() if s.internal and s.pointwise}


def _points(inputs, seed, n=3):
    rng = np.random.default_rng(seed)
    return [{k: float(rng.uniform(-2.5, 2.5)) for k in inputs} for _ in range(n)]


def gradient_disagreements(formula: str, target: str = "numpy") -> list[str]:
    """Where graphc's value or gradient disagrees with SymPy's exact derivative."""
    fn = graphc.compile(formula, target=target)
    bad = []
    pts = _points(fn.inputs, len(formula))
    refs = oracle.sympy_reference(fn.forward_graph, pts, fn.wrt)
    for pt, ref in zip(pts, refs):
        if any(math.isnan(r) or abs(r) > 1e200 for r in ref):
            continue  # outside the domain, or too large to compare meaningfully
        value, grads = fn(**pt)
        got = [value] + [grads[w] for w in fn.wrt]
        scale = max([1.0] + [abs(r) for r in ref])
        for name, g, r in zip(["f"] + [f"df/d{w}" for w in fn.wrt], got, ref):
            ok, rel, _ = output_passes(g, r, scale * 1e2, "float64")  # random formulas can be ill-conditioned
            if not ok:
                bad.append(f"{name} = {g!r}, exact {r!r} at {pt}")
    return bad


def _close(a, b, rtol):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(b), b, 0)))))
    same_nan = np.isnan(a) == np.isnan(b)
    both_inf = np.isinf(a) & (a == b)
    fin = np.isfinite(a) & np.isfinite(b)
    return bool(np.all(same_nan) and np.all(both_inf | ~np.isinf(b) | np.isnan(a))
                and np.all(np.abs(a[fin] - b[fin]) <= rtol * np.maximum(np.abs(b[fin]), scale)))


@pytest.mark.parametrize("tier", TIERS)
def test_gradients_match_sympy(tier):
    @fuzz(tier, EXAMPLES[tier])
    @given(formulas())
    def check(formula):
        assert gradient_disagreements(formula) == []

    check()


@pytest.mark.parametrize("tier", TIERS)
def test_pipeline_agrees_with_autodiff_alone(tier):
    @fuzz(tier, EXAMPLES[tier])
    @given(formulas(), st.integers(0, 2**16))
    @example("max(x, 0) * y", 0)  # kinks that rewrites have broken before
    @example("min(0, sin(x)) + max(x, y) + relu(z) + abs(x - y)", 1)
    @example("clip(x, y, z) + floor(x) + sign(y)", 2)
    def check(formula, rng_seed):
        _pipeline_agrees_with_autodiff_alone(formula, rng_seed)

    check()


def _pipeline_agrees_with_autodiff_alone(formula, seed):
    opt = graphc.compile(formula, target="numpy")
    raw = graphc.compile(formula, target="numpy", passes=())
    assert opt.graph.op_count() <= raw.graph.op_count()
    rng = np.random.default_rng(seed)
    args = {k: rng.uniform(-2.5, 2.5, 16) for k in opt.inputs}
    # kink points too, where conventions show: each variable alone at 0 and at 1,
    # all at 0, all tied, and each pair tied (the other entries stay random)
    names = list(args)
    tie = float(rng.uniform(-2.5, 2.5))
    rows = [{k: 0.0} for k in names] + [{k: 1.0} for k in names] + [dict.fromkeys(names, 0.0)]
    rows += [dict.fromkeys(names, tie)] + [{a: tie, b: tie} for a, b in itertools.combinations(names, 2)]
    for i, row in enumerate(rows):
        for k, v in row.items():
            args[k][i] = v
    v0, g0 = opt(**args)
    v1, g1 = raw(**args)
    assert _close(v1, v0, 1e-9)
    for k in g0:
        assert _close(g1[k], g0[k], 1e-8), k
    for g in (opt.forward_graph, opt.graph, raw.graph):
        assert ir.parse_graph(ir.print_graph(g)) == g


BATCH = 10  # formulas per compiled kernel: Numba's fixed cost per compile dominates small kernels


@pytest.mark.parametrize("tier", TIERS)
def test_compiled_backends_agree_with_the_reference(tier):
    @fuzz(tier, max(1, EXAMPLES[tier] // (2 * BATCH)))
    @given(st.lists(formulas(), min_size=BATCH, max_size=BATCH), st.integers(0, 2**16))
    def check(batch, rng_seed):
        _compiled_backends_agree_with_the_reference(batch, rng_seed)

    check()


def _compiled_backends_agree_with_the_reference(batch, seed):
    """examples / 2 formulas in all (Numba compiles ~10 ms per op), BATCH per
    kernel: every value+gradient graph of
    the batch becomes an output of one graph, compiled once for the cpu target
    (the parallel target's loop body is the same code; test_ops runs every op's
    template through both) and once for the llvm target."""
    from graphc.backends.numpy_ref import evaluate
    from graphc.backends.targets import build

    xs = [ir.input_node(v) for v in ("x", "y", "z")]
    outs = []
    for i, formula in enumerate(batch):
        g = graphc.Program(formula).graph
        outs += [(f"{i}:{name}", node) for name, node in g.outputs]
    graph = ir.Graph(xs, outs)
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-2.5, 2.5, 16) for _ in xs]
    want = [np.broadcast_to(w, (16,)) for w in evaluate(graph, args)]
    for target in ("cpu", "llvm"):  # llvm: libmvec's vector math, a few ULP from libm per call
        got = build(graph, target).run(args, (16,))
        for (name, _), a, b in zip(outs, got, want):
            assert _close(a, b, 1e-12 if target == "cpu" else 1e-10), (target, name, batch[int(name.split(":")[0])])


@pytest.mark.slow  # a search of up to 2,000 formulas
def test_broken_rule_is_caught_and_shrunk():
    """A deliberately wrong derivative rule: check exits 1, the fuzzer finds a small formula."""
    from hypothesis import find

    spec = REGISTRY["sin"]
    broken = lambda n, g: (ir.make("mul", g, ir.make("sin", n.args[0])),)  # noqa: E731  (should be cos)
    register_op(dataclasses.replace(spec, grad=broken), replace=True)
    try:
        report = graphc.check("sin(x) * y", target="numpy", points=16)
        assert not report.ok
        assert any(o.name == "df/dx" and not o.ok for o in report.outputs)
        shrunk = find(formulas(), lambda f: "sin" in f and bool(gradient_disagreements(f)),
                      settings=settings(max_examples=2000, deadline=None, derandomize=True, database=None))
    finally:
        register_op(spec, replace=True)
    assert "sin" in shrunk and len(shrunk) <= 40, shrunk
