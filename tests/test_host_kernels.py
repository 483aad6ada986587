"""The compiled host steps (backends/host_kernels.py) against the NumPy forms they replace, and
the sorted-window rewrite (sort then a slice of ranks -> argpartition of the window) with its
positive and negative cases, values and gradients against hand-written NumPy."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphc
import graphc.numpy as gnp
from graphc.backends import host_kernels
from graphc.errors import ShapeError
from graphc.ir import input_node, make
from graphc.passes.fuse import _sorted_window
from graphc.registry import REGISTRY
from graphc.verify.tensor import check_tensor

from conftest import FUZZ, TENSOR_TARGETS


@FUZZ
@given(rows=st.integers(1, 12), width=st.integers(1, 5), n=st.integers(0, 30), lead=st.integers(1, 2),
       clip=st.booleans(), f32=st.booleans(), seed=st.integers(0, 2**16), given_out=st.booleans())
def test_scatter_add_is_numpys_bit_for_bit(rows, width, n, lead, clip, f32, seed, given_out):
    rng = np.random.default_rng(seed)
    dt = np.float32 if f32 else np.float64
    shape = (rows,) * lead + (width,)
    x = rng.normal(size=shape).astype(dt)
    idx = rng.integers(-rows - 2, rows + 2, size=(n, lead))  # negatives and out of range: clipped or dropped
    v = rng.normal(size=(n, width)).astype(dt)
    out = np.full(shape, np.nan, dtype=dt) if given_out else None
    got = host_kernels.scatter(x, v, idx, "add", clip, out=out)
    want = REGISTRY["scatter"].numpy(x, v, idx, update="add", clip=clip)
    assert got.dtype == want.dtype and np.array_equal(got, want)


@FUZZ
@given(rows=st.integers(1, 12), width=st.integers(1, 4), n=st.integers(1, 20), clip=st.booleans(),
       seed=st.integers(0, 2**16))
def test_gather_is_numpys(rows, width, n, clip, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, width))
    idx = rng.integers(-rows - 2, rows + 2, size=(n, 1))
    want = REGISTRY["gather"].numpy(x, idx, clip=clip)
    got = host_kernels.gather(x, idx, clip, out=np.empty(want.shape))
    assert np.array_equal(got, want)


@FUZZ
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), reverse=st.booleans(), f32=st.booleans(),
       seed=st.integers(0, 2**16), data=st.data())
def test_cumsum_is_numpys_bit_for_bit(shape, reverse, f32, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32 if f32 else np.float64)
    got = host_kernels.cumsum(x, axis, reverse, out=np.empty_like(x))
    assert np.array_equal(got, REGISTRY["cumsum"].numpy(x, axis=axis, reverse=reverse))


def test_the_compiled_plans_use_them_and_the_reference_does_not():
    rng = np.random.default_rng(0)
    t, w = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    idx = np.array([0, 2, 2, 5, 0])
    vg = graphc.value_and_grad(lambda t, i, w: gnp.sum(gnp.cumsum(t[i] * w, axis=1)))
    v, g = vg(t, idx, w)
    steps = vg._sigs[0].fn.plan.steps
    ran = {s.node.op: s.into for s in steps if s.kind == "host"}
    assert ran.get("gather") and ran.get("scatter") and ran.get("cumsum"), ran
    ref = np.zeros_like(t)
    np.add.at(ref, idx, w * np.arange(3, 0, -1))
    assert v == pytest.approx(np.sum(np.cumsum(t[idx] * w, axis=1)))
    np.testing.assert_allclose(g, ref, rtol=1e-12)
    v0, g0 = graphc.value_and_grad(lambda t, i, w: gnp.sum(gnp.cumsum(t[i] * w, axis=1)), target="numpy")(t, idx, w)
    assert v0 == pytest.approx(v, rel=1e-13) and np.allclose(g0, g, rtol=1e-13)


# ---------------------------------------------------------------- sort then a window of ranks

def _top(x, lo, hi, axis=1):
    """Hand NumPy: the values of ranks lo..hi-1 and the gradient of sum(them ** 2)."""
    order = np.take(np.argsort(x, axis=axis, kind="stable"), np.arange(lo, hi), axis=axis)
    vals = np.take_along_axis(x, order, axis=axis)
    g = np.zeros_like(x)
    np.put_along_axis(g, order, 2 * vals, axis=axis)
    return np.sum(vals ** 2), g


@pytest.mark.parametrize("target", TENSOR_TARGETS)
@pytest.mark.parametrize("lo,hi", [(7, 10), (0, 3), (2, 6), (9, 10)])
def test_a_window_of_a_sort_is_an_argpartition(lo, hi, target):
    x = np.random.default_rng(lo).normal(size=(5, 10))
    vg = graphc.value_and_grad(lambda x: gnp.sum(gnp.sort(x, axis=1)[:, lo:hi] ** 2), target=target)
    v, g = vg(x)
    want_v, want_g = _top(x, lo, hi)
    assert v == pytest.approx(want_v, rel=1e-13)
    np.testing.assert_allclose(g, want_g, rtol=1e-13)
    ops = [n.op for n in vg._sigs[0].program.graph.body]
    assert "take_along" in ops and "sort" not in ops and "put_along" in ops, ops


def test_a_window_on_axis_0_and_its_hessian():
    x = np.random.default_rng(3).normal(size=(6, 2))
    f = lambda x: gnp.sum(gnp.sort(x, axis=0)[-2:] ** 3)  # noqa: E731
    v, g = graphc.value_and_grad(f)(x)
    order = np.argsort(x, axis=0)[-2:]
    vals = np.take_along_axis(x, order, axis=0)
    want = np.zeros_like(x)
    np.put_along_axis(want, order, 3 * vals ** 2, axis=0)
    assert v == pytest.approx(np.sum(vals ** 3)) and np.allclose(g, want)
    h = graphc.hessian(f)(x[:, :1].copy() + 0)  # take_along / put_along differentiate again
    assert h.shape == (6, 1, 6, 1)
    flat = x[:, 0]
    top = np.argsort(flat)[-2:]
    want_h = np.zeros((6, 6))
    want_h[top, top] = 6 * flat[top]
    np.testing.assert_allclose(h.reshape(6, 6), want_h, rtol=1e-12, atol=1e-12)


def test_the_window_rewrite_against_sympy():
    x = np.random.default_rng(1).normal(size=(2, 3))
    fn = graphc.compile(graphc.value_and_grad(lambda x: gnp.sum(gnp.sort(x, 1)[:, 1:3] ** 3)).lower(x))
    assert "take_along" in [n.op for n in fn.program.graph.body]
    report = check_tensor(fn, values=[{"x": x}])
    assert report.ok, str(report)


@pytest.mark.parametrize("case", ["whole", "step", "other axis cut", "not a sort"])
def test_look_alikes_keep_the_sort(case):
    x = input_node("x", "f64", (4, 6))
    s = make("sort", x, axis=1)
    slices = {
        "whole": make("slice", s, start=(0, 0), step=(1, 1), shape=(4, 6)),
        "step": make("slice", s, start=(0, 0), step=(1, 2), shape=(4, 3)),
        "other axis cut": make("slice", s, start=(1, 3), step=(1, 1), shape=(3, 3)),
        "not a sort": make("slice", make("exp", x), start=(0, 3), step=(1, 1), shape=(4, 3)),
    }
    assert _sorted_window(slices[case]) is None
    hit = _sorted_window(make("slice", s, start=(0, 3), step=(1, 1), shape=(4, 3)))
    assert hit is not None and hit.op == "take_along" and hit.args[1].attrs["window"] == (3, 6)


def test_windows_out_of_range_are_shape_errors():
    x = input_node("x", "f64", (4, 6))
    with pytest.raises(ShapeError, match="window"):
        make("argsort", x, axis=1, window=(4, 9))
    with pytest.raises(ShapeError, match="differ off axis"):
        make("take_along", x, make("argsort", input_node("y", "f64", (3, 6)), axis=1), axis=1)
