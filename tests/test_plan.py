"""The loop plan (issue 24): a new kind of step is a class in the plan module and
one function per renderer; the cross-entropy row is one list of passes that every
renderer spells."""

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pytest

import graphc
from graphc.backends import scalar
from graphc.backends.llvm.tensor import LlvmTensorKernel
from graphc.backends.numba.tensor import TensorKernel
from graphc.schedule import plan as plan_mod
from graphc.schedule.plan import XENT_ROW, HostStep


@dataclass(frozen=True, slots=True, eq=False)
class Negate:
    """A toy kind of step: out = -a, written as the plan module's steps are."""

    kind: ClassVar[str] = "negate"
    a: int
    out: int

    @property
    def reads(self) -> tuple[int, ...]:
        return (self.a,)

    @property
    def writes(self) -> tuple[int, ...]:
        return (self.out,)


def _with_negate(kernel):
    """The kernel's plan with its `negative` host step replaced by the toy kind."""
    steps = []
    for s in kernel.plan.steps:
        if isinstance(s, HostStep) and s.node.op == "neg":
            s = Negate(s.ins[0], s.out)
        steps.append(s)
    assert any(isinstance(s, Negate) for s in steps), [type(s).__name__ for s in steps]
    kernel.plan = replace(kernel.plan, steps=tuple(steps))
    return kernel


class LlvmWithNegate(LlvmTensorKernel):
    def run_negate(self, s, env, dims, buffer):  # the one function this renderer needs
        env[s.out] = np.negative(env[s.a])


class NumbaWithNegate(TensorKernel):
    def run_negate(self, s, env, dims, buffer):
        env[s.out] = np.negative(env[s.a])


FORMULA = "sum(-(x @ W))"
SHAPES = {"x": (3, 4), "W": (4, 2)}


@pytest.mark.parametrize("cls", [LlvmWithNegate, NumbaWithNegate])
def test_a_toy_step_kind_needs_one_function_per_renderer(cls):
    ref = graphc.compile(FORMULA, shapes=SHAPES, target="numpy")
    fn = graphc.compile(FORMULA, shapes=SHAPES, target="llvm" if cls is LlvmWithNegate else "cpu")
    fn.kernel = _with_negate(cls(fn.kernel.graph, fn.kernel.target, False))
    rng = np.random.default_rng(0)
    x, W = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    (v, g), (rv, rg) = fn(x, W), ref(x, W)
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    for k in rg:
        np.testing.assert_allclose(g[k], rg[k], rtol=1e-12)


def test_a_renderer_without_the_kind_says_so():
    """Negative case: the step-by-step runner of a backend that lacks the kind fails by
    name, never skips the step."""
    fn = graphc.compile(FORMULA, shapes=SHAPES, target="llvm")
    fn.kernel = _with_negate(LlvmTensorKernel(fn.kernel.graph, "llvm", False))
    with pytest.raises(AttributeError, match="run_negate"):
        fn(np.ones((3, 4)), np.ones((4, 2)))


def test_every_renderer_spells_each_pass_of_the_row():
    kinds = [op.kind for op in XENT_ROW]
    assert kinds == ["max", "exp_sum", "normalize", "nll"]
    assert set(scalar.ROW_PASSES) == set(kinds)  # the Python spelling (Numba, numba-cuda)
    src = scalar.xent_function(XENT_ROW, "@njit")
    for op in XENT_ROW:  # in the plan's order
        assert scalar.ROW_PASSES[op.kind][0] in src
    order = [src.index(scalar.ROW_PASSES[op.kind][0]) for op in XENT_ROW]
    assert order == sorted(order)


def test_the_row_step_carries_the_plan_passes():
    fn = graphc.compile("cross_entropy(x @ W, y)", shapes={"x": ("N", 3), "W": (3, 4), "y": ("N",)},
                        dtypes={"y": "int64"}, target="llvm")
    rows = [s for s in fn.kernel.plan.steps if s.kind == "row"]
    assert rows and all(s.ops is plan_mod.XENT_ROW for s in rows)


def test_a_region_of_inputs_only_joins_the_loop_that_needs_it():
    """Adam's `b2 * v` reads only an input: it joins the loop that finishes the gradient
    (one pass over the weight) instead of making a loop, or a NumPy step, of its own."""
    import graphc

    rng = np.random.default_rng(0)
    X, W, v = rng.normal(size=(6, 4)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) ** 2

    def moment(W, v, X):
        g = X.T @ (X @ W)
        return 0.999 * v + 0.001 * g * g

    fn = graphc.jit(moment)
    got = fn(W, v, X)
    g = X.T @ (X @ W)
    np.testing.assert_allclose(got, 0.999 * v + 0.001 * g * g, rtol=1e-14)
    text = fn._sigs[0].fn.describe().split("# ----")[0]
    assert text.count("kernel ") == 1 and "numpy: " not in text.replace("numpy: %", "", 0).split("gemm")[-1], text
    # another shape: the input-only region cannot join, it stays a loop of its own
    fn2 = graphc.jit(lambda W, v, X: (0.999 * v * v + 1.0, (X @ W) * 2.0 + 1.0))
    a, b = fn2(W, v[:, :1] @ np.ones((1, 5)), X)
    np.testing.assert_allclose(a, 0.999 * (v[:, :1] @ np.ones((1, 5))) ** 2 + 1.0)
    assert fn2._sigs[0].fn.describe().split("# ----")[0].count("kernel ") == 2


def test_outputs_are_recycled_only_once_their_caller_let_go():
    """A call writes its result into the array the last call returned when nothing refers to it
    any more (memory already mapped); results the caller keeps are never written again."""
    import graphc
    import graphc.numpy as gnp

    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(300, 200)), rng.normal(size=(300, 200))
    vg = graphc.value_and_grad(lambda x, w: gnp.sum(gnp.cumsum(x * x, axis=1) * w))
    v1, g1 = vg(x, w)
    kept = g1.copy()
    v2, g2 = vg(x + 1.0, w)  # g1 still held: g2 is a new array, g1 unchanged
    assert g2 is not g1 and np.array_equal(g1, kept)
    v0, g0 = graphc.value_and_grad(lambda x, w: gnp.sum(gnp.cumsum(x * x, axis=1) * w),
                                   target="numpy")(x + 1.0, w)
    np.testing.assert_allclose(g2, g0, rtol=1e-12)
    address = g2.ctypes.data
    del g1, g2
    v3, g3 = vg(x, w)  # the last result was dropped: its memory holds this one
    assert g3.ctypes.data == address
    np.testing.assert_array_equal(g3, kept)
    view = g3[:10]  # a view keeps g3 alive: no reuse
    del g3
    _, g4 = vg(x + 2.0, w)
    assert g4.ctypes.data != view.ctypes.data or not np.shares_memory(g4, view)
    np.testing.assert_array_equal(view, kept[:10])
