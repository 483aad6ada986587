"""Property tests over random tensor programs (tensor_strategies.py): the
default pipeline equals passes=(), gradients equal central finite differences
and, on a sample, SymPy's exact derivatives element by element; the llvm and cpu
schedules equal the numpy target. Each sweep runs in two sizes: a quick one in the
test command (the fast tier) and a long one in the slow tier (-m slow, .ci/run) of
GRAPHC_TENSOR_FUZZ_EXAMPLES programs (default 500; GRAPHC_TENSOR_FUZZ_LLVM_EXAMPLES,
default 400, and GRAPHC_TENSOR_FUZZ_CPU_EXAMPLES, default 30, for the compiled
schedules)."""

import dataclasses
import math
import os

import numpy as np
import pytest
from conftest import fuzz, tiers
from hypothesis import given, settings
from tensor_strategies import tensor_programs

import graphc
from graphc import ir
from graphc.registry import REGISTRY, register_op
from graphc.verify.tensor import check_tensor

EXAMPLES = {"quick": 60, "long": int(os.environ.get("GRAPHC_TENSOR_FUZZ_EXAMPLES", "500"))}
LLVM_EXAMPLES = {"quick": 50, "long": int(os.environ.get("GRAPHC_TENSOR_FUZZ_LLVM_EXAMPLES", "400"))}
CPU_EXAMPLES = {"quick": 4, "long": int(os.environ.get("GRAPHC_TENSOR_FUZZ_CPU_EXAMPLES", "30"))}  # Numba compiles
TIERS = tiers("quick", "long")


def _point(fn, seed):
    rng = np.random.default_rng(seed)
    return {n.attr: rng.uniform(-1.5, 1.5, size=n.shape) for n in fn.forward_graph.inputs}


def _close(a, b, tol):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return bool(np.all(same | (np.abs(a - b) <= tol * (1 + np.abs(b)))))


def disagreements(text: str, shapes: dict, sympy: bool = False) -> list[str]:
    """Where the optimised function disagrees with passes=(), finite differences or SymPy
    (the passes under test, so the reference target evaluates them)."""
    fn = graphc.compile(text, shapes=shapes, target="numpy")
    raw = graphc.compile(text, shapes=shapes, passes=(), target="numpy")
    pt = _point(fn, len(text))
    v, g = fn(**pt)
    rv, rg = raw(**pt)
    bad = []
    if not _close(v, rv, 1e-12):
        bad.append(f"value {v} vs passes=() {rv}")
    for k in g:
        if not _close(g[k], rg[k], 1e-10):
            bad.append(f"d/d{k} differs from passes=()")
    h = 1e-6
    for k, base in pt.items():
        flat = np.asarray(base, dtype=float).reshape(-1)
        grad = np.asarray(g[k]).reshape(-1)
        for i in range(flat.size):
            up, down = flat.copy(), flat.copy()
            up[i] += h
            down[i] -= h
            fu = fn.forward(**{**pt, k: up.reshape(np.shape(base))})
            fd = fn.forward(**{**pt, k: down.reshape(np.shape(base))})
            num = (fu - fd) / (2 * h)
            # kinks (max ties, where's switch) make finite differences meaningless: skip points near one
            if abs(num - grad[i]) > 1e-4 * (1 + abs(num)) and not _near_kink(fn, pt, k, i, h):
                bad.append(f"d/d{k}[{i}] = {grad[i]} but finite differences give {num}")
    if sympy and not bad:
        report = check_tensor(fn, values=[pt])
        if not report.ok:
            bad.append(str(report))
    return bad


def _near_kink(fn, pt, k, i, h):
    """One-sided differences disagree: the function has a kink within h."""
    base = np.asarray(pt[k], dtype=float).reshape(-1)
    vals = []
    for step in (-h, 0.0, h):
        x = base.copy()
        x[i] += step
        vals.append(fn.forward(**{**pt, k: x.reshape(np.shape(pt[k]))}))
    left, right = (vals[1] - vals[0]) / h, (vals[2] - vals[1]) / h
    return abs(left - right) > 1e-3 * (1 + abs(left))


def _sympy_sample(text: str, shapes: dict) -> bool:
    """A fifth of the programs are checked against SymPy too, but not max/min over inputs of
    more than four entries: SymPy's Max/Min of nine entries takes minutes to differentiate and
    evaluate (or exceeds its recursion limit); finite differences and passes=() check those."""
    many = any(math.prod(s) > 4 for s in shapes.values())
    return len(text) % 5 == 0 and not (many and ("max(" in text or "min(" in text))


@pytest.mark.parametrize("tier", TIERS)
def test_random_tensor_programs(tier):
    @fuzz(tier, EXAMPLES[tier])
    @given(tensor_programs())
    def check(program):
        text, shapes = program
        assert not disagreements(text, shapes, sympy=_sympy_sample(text, shapes)), text

    check()


@pytest.mark.parametrize("tier", TIERS)
def test_tensor_ir_round_trips(tier):
    @fuzz(tier, EXAMPLES[tier])
    @given(tensor_programs())
    def check(program):
        text, shapes = program
        fn = graphc.compile(text, shapes=shapes, target="numpy")
        assert ir.parse_graph(fn.ir) == fn.graph
        assert ir.from_json(ir.to_json(fn.graph)) == fn.graph

    check()


@pytest.mark.slow  # two searches of up to 1,000 programs
def test_broken_matmul_and_broadcast_rules_are_caught_and_shrunk():
    from hypothesis import find

    spec = REGISTRY["matmul"]

    def broken(n, g):  # dB = A^T G is right; dA gets G B (no transpose) -- wrong unless B is symmetric
        da, db = spec.grad(n, g)
        a, b = n.args
        if a.type.ndim == 2 and b.type.ndim == 2 and b.shape[0] == b.shape[1]:
            da = ir.make("matmul", g, b)
        return da, db

    register_op(dataclasses.replace(spec, grad=broken), replace=True)
    try:
        shrunk = find(tensor_programs(), lambda p: "@" in p[0] and bool(disagreements(*p)),
                      settings=settings(max_examples=1000, deadline=None, derandomize=True, database=None))
    finally:
        register_op(spec, replace=True)
    assert "@" in shrunk[0] and len(shrunk[0]) <= 30, shrunk

    from graphc.passes import autodiff

    real = autodiff.sum_to
    autodiff.sum_to = lambda c, shape: real(c, shape) if c.shape == shape else ir.make(
        "reshape", ir.make("sum", c, axis=None), shape=(1,) * len(shape)) if all(d == 1 for d in shape) else real(
        ir.make("mul", c, ir.const(2.0, c.dtype)), shape)  # a broadcast adjoint counted twice
    try:
        shrunk = find(tensor_programs(), lambda p: bool(disagreements(*p)),
                      settings=settings(max_examples=1000, deadline=None, derandomize=True, database=None))
    finally:
        autodiff.sum_to = real
    assert len(shrunk[0]) <= 30, shrunk


def _agrees_with_numpy(text: str, shapes: dict, target: str):
    """Compile for `target`, call at a point, assert agreement with the numpy target;
    returns (fn, point, reference value, reference gradients)."""
    fn = graphc.compile(text, shapes=shapes, target=target)
    ref = graphc.compile(text, shapes=shapes, target="numpy")
    pt = _point(fn, len(text))
    v, g = fn(**pt)
    rv, rg = ref(**pt)
    assert _close(v, rv, 1e-12), (text, v, rv)
    for k in rg:
        assert _close(g[k], rg[k], 1e-10), (text, k)
    return fn, pt, rv, rg


@pytest.mark.parametrize("tier", TIERS)
def test_llvm_schedule_equals_the_numpy_target(tier):
    """The llvm target's loops (the cpu schedule, llvmlite kernels) against the
    numpy target; they compile in milliseconds, so many more examples."""
    @fuzz(tier, LLVM_EXAMPLES[tier])
    @given(tensor_programs())
    def check(program):
        _agrees_with_numpy(*program, "llvm")

    check()


@pytest.mark.parametrize("tier", TIERS)
def test_compiled_cpu_schedule_equals_the_numpy_target(tier):
    """The cpu target's schedule (fused regions, reduction epilogues, GEMMs) against
    the numpy target; few examples, since each compiles Numba kernels."""
    fuzz(tier, CPU_EXAMPLES[tier])(given(tensor_programs())(_cpu_schedule_agrees))()


def _cpu_schedule_agrees(program):
    text, shapes = program
    fn, pt, rv, rg = _agrees_with_numpy(text, shapes, "cpu")
    if getattr(fn.kernel, "_whole", None) is not None:  # the one-function form: the step-wise schedule too
        from graphc.backends.numba import tensor as tensor_cpu

        tensor_cpu.WHOLE_STEP = False
        try:
            stepwise = graphc.compile(text, shapes=shapes, target="cpu")
        finally:
            tensor_cpu.WHOLE_STEP = True
        sv, sg = stepwise(**pt)
        assert _close(sv, rv, 1e-12) and all(_close(sg[k], rg[k], 1e-10) for k in rg), text


def test_a_sum_epilogue_is_never_read_inside_its_own_loop():
    for formula in ("sum(exp(x - sum(x * 2, axis=1, keepdims=True)))", "sum(x * y) * sum(x * y, axis=0) @ y"):
        shapes = {"x": (3, 4), "y": (4,)} if "y" in formula else {"x": (3, 4)}
        if "@" in formula:
            shapes = {"x": (4, 4), "y": (4,)}
        fn = graphc.compile(formula, shapes=shapes, target="cpu")
        ref = graphc.compile(formula, shapes=shapes, target="numpy")
        pt = _point(fn, 1)
        assert _close(fn(**pt)[0], ref(**pt)[0], 1e-12)
        assert all(_close(a, ref(**pt)[1][k], 1e-10) for k, a in fn(**pt)[1].items())
