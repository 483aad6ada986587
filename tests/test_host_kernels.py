"""The compiled host steps (backends/host_kernels.py) against the NumPy forms they replace, and
the sorted-window rewrite (sort then a slice of ranks -> argpartition of the window) with its
positive and negative cases, values and gradients against hand-written NumPy."""

import numpy as np
import pytest
from conftest import FUZZ, TENSOR_TARGETS
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


# ---------------------------------------------------------------- convolutions and pools (issue 27)

def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit: -0.0 is not 0.0, and NaNs must match too."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    ints = np.uint32 if a.dtype == np.float32 else np.uint64
    return np.array_equal(np.ascontiguousarray(a).view(ints), np.ascontiguousarray(b).view(ints))


@st.composite
def _geometries(draw):
    """A window geometry and an image it fits (PyTorch's output size >= 1), narrow or wide (unfold's gathers
    and its row copies: host_kernels.NARROW_ROWS windows a row or more)."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    wide = draw(st.booleans()) * host_kernels.NARROW_ROWS * stride[1]
    size = tuple(max(1, d * (k - 1) + 1 - padding[2 * a] - padding[2 * a + 1] + draw(st.integers(0, 4)))
                 + a * wide for a, (k, d) in enumerate(zip(kernel, dilation)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) + size
    return shape, {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}


@FUZZ
@given(case=_geometries(), merged=st.booleans(), f32=st.booleans(), given_out=st.booleans(),
       pad_value=st.sampled_from(["0.0", "-inf", "1.5"]), strided=st.booleans(), seed=st.integers(0, 2**16))
def test_unfold_and_fold_are_numpys_bit_for_bit(case, merged, f32, given_out, pad_value, strided, seed):
    shape, geo = case
    rng = np.random.default_rng(seed)
    dt = np.float32 if f32 else np.float64
    x = rng.normal(size=shape).astype(dt)
    x[rng.random(shape) < 0.2] = -0.0
    if strided:  # a view (read through a contiguous copy)
        x = np.concatenate([x, x], axis=3)[:, :, :, ::2]
    want = REGISTRY["unfold"].numpy(x, pad_value=pad_value, merged=merged, **geo)
    out = np.full(want.shape, np.nan, dtype=dt) if given_out else None
    got = host_kernels.unfold(x, pad_value=pad_value, merged=merged, out=out, **geo)
    assert _same_bits(got, want) and (out is None or got is out)
    g = rng.normal(size=want.shape).astype(dt)
    g[rng.random(g.shape) < 0.2] = -0.0  # a copy keeps -0.0 (windows apart), an add from zero makes it 0.0
    want = REGISTRY["fold"].numpy(g, output_size=shape[2:], merged=merged, **geo)
    out = np.full(want.shape, np.nan, dtype=dt) if given_out else None
    got = host_kernels.fold(g, shape[2:], merged=merged, out=out, **geo)
    assert _same_bits(got, want) and (out is None or got is out)


@st.composite
def _tiles(draw):
    kernel = draw(st.sampled_from([(2, 2), (2, 2), (1, 1), (2, 3), (3, 1), (3, 3)]))
    size = tuple(k * draw(st.integers(1, 3)) + draw(st.sampled_from([0, 0, 1])) for k in kernel)
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3))) + size, kernel


@FUZZ
@given(case=_tiles(), f32=st.booleans(), given_out=st.booleans(), strided=st.booleans(), seed=st.integers(0, 2**16))
def test_tile_max_and_its_gradient_are_numpys_bit_for_bit(case, f32, given_out, strided, seed):
    """Ties (small integers), -0.0 against 0.0, NaN, +-inf, rows and columns past the last window, the 2x2
    straight-line loops and the general ones, contiguous and strided arguments."""
    shape, kernel = case
    rng = np.random.default_rng(seed)
    dt = np.float32 if f32 else np.float64
    x = rng.integers(-1, 2, size=shape).astype(dt)  # mostly ties
    special = rng.random(shape)
    x[special < 0.04] = np.nan
    x[(special >= 0.04) & (special < 0.08)] = np.inf
    x[(special >= 0.08) & (special < 0.12)] = -np.inf
    x[(special >= 0.12) & (special < 0.45)] = -0.0  # the first of equal maxima is kept: 0.0 or -0.0
    if strided:
        x = np.concatenate([x, x], axis=2)[:, :, ::2]
    want = REGISTRY["tile_max"].numpy(x, kernel=kernel)
    out = np.full(want.shape, 7.0, dtype=dt) if given_out else None
    got = host_kernels.tile_max(x, kernel, out=out)
    assert _same_bits(got, want) and (out is None or got is out)
    g = rng.normal(size=want.shape).astype(dt)
    g[rng.random(g.shape) < 0.1] = np.inf
    g[rng.random(g.shape) < 0.1] = -0.0
    if strided:
        g = np.concatenate([g, g], axis=3)[:, :, :, ::2]
    want = REGISTRY["tile_max_grad"].numpy(x, g, kernel=kernel)
    out = np.full(want.shape, 7.0, dtype=dt) if given_out else None
    got = host_kernels.tile_max_grad(x, g, kernel, out=out)
    assert _same_bits(got, want) and (out is None or got is out)


def test_a_cnn_step_runs_the_compiled_window_steps():
    """A conv - relu - max_pool step on the default target: unfold, fold, tile_max and tile_max_grad as compiled
    host steps into the plan's buffers, values and gradients as the numpy target's (the reference)."""
    import graphc.nn as gnn

    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(3, 2, 6, 6)), rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4)

    def loss(w, b, x):
        return gnp.sum(gnp.sin(gnn.max_pool2d(gnn.relu(gnn.conv2d(x, w, b, padding=1)), 2)))

    def loss_x(x, w, b):  # the input's gradient: the fold of the first convolution
        return loss(w, b, x)

    vg = graphc.value_and_grad(loss_x, argnums=(0, 1, 2))
    v, grads = vg(x, w, b)
    ran = {s.node.op: s.into for s in vg._sigs[0].fn.plan.steps if s.kind == "host"}
    assert all(ran.get(op) for op in ("unfold", "fold", "tile_max", "tile_max_grad")), ran
    v0, grads0 = graphc.value_and_grad(loss_x, argnums=(0, 1, 2), target="numpy")(x, w, b)
    assert v == pytest.approx(v0, rel=1e-13)
    for a, r in zip(grads, grads0):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-14)
