"""The statistics, scan, sorting and contraction ops of math_ops.py and the elementwise rows
issue 26 added to ops.py: each op's gradient against SymPy's exact derivatives element by
element (graphc.verify.tensor), finite differences in float64, float32 within tolerance, its
NumPy form against NumPy, and its shape errors."""

import numpy as np
import pytest

import graphc
from graphc import ir
from graphc.errors import GraphcError, ShapeError
from graphc.registry import REGISTRY
from graphc.verify.tensor import check_tensor

NEW_OPS = ["prod", "cumsum", "cumprod", "diff", "diff_t", "argmax", "argmin", "sort", "argsort", "sort_by",
           "unsort", "diagonal", "diag_embed", "cross", "iota", "to_float"]
NEW_ROWS = ["fmax", "fmin", "logaddexp2", "reciprocal", "sinc", "deg2rad", "rad2deg", "mod", "floor_divide"]


def test_every_new_op_has_every_tensor_facet():
    for name in NEW_OPS:
        spec = REGISTRY[name]
        assert callable(spec.infer) and callable(spec.numpy) and callable(spec.grad), name
        assert callable(spec.symbolic), name
        assert spec.code == "" and spec.doc, name
    for name in NEW_ROWS:
        spec = REGISTRY[name]
        assert spec.pointwise and spec.callable, name


# formula, shapes: each new op's value and gradient against SymPy (element by element) and
# central differences; weights w make every output entry matter differently
PROGRAMS = [
    ("sum(prod(x, axis=1) * w)", {"x": (2, 3), "w": (2,)}),
    ("sum(prod(x) * w)", {"x": (2, 2), "w": ()}),
    ("sum(prod(x, axis=0, keepdims=True) * w)", {"x": (3, 2), "w": (1, 2)}),
    ("sum(cumsum(x, axis=1) * w)", {"x": (2, 3), "w": (2, 3)}),
    ("sum(cumsum(x, axis=0, reverse=True) * w)", {"x": (3, 2), "w": (3, 2)}),
    ("sum(cumprod(x, axis=1) * w)", {"x": (2, 3), "w": (2, 3)}),
    ("sum(cumprod(x, axis=0, reverse=True) * w)", {"x": (3, 2), "w": (3, 2)}),
    ("sum(diff(x, axis=1) * w)", {"x": (2, 4), "w": (2, 3)}),
    ("sum(diff(diff(x, axis=0), axis=0) * w)", {"x": (4, 2), "w": (2, 2)}),
    ("sum(sort(x, axis=1) * w)", {"x": (1, 3), "w": (1, 3)}),
    ("sum(sort(x, axis=0) ** 3 * w)", {"x": (2, 2), "w": (2, 2)}),
    ("sum(diagonal(x) * w)", {"x": (3, 3), "w": (3,)}),
    ("sum(diagonal(x, axis1=0, axis2=2) * w)", {"x": (2, 3, 2), "w": (3, 2)}),
    ("sum(cross(a, b) * w)", {"a": (2, 3), "b": (3,), "w": (2, 3)}),
    ("sum(fmax(x, y) * w + fmin(x, y))", {"x": (3,), "y": (3,), "w": (3,)}),
    ("sum(logaddexp2(x, y) * w)", {"x": (3,), "y": (3,), "w": (3,)}),
    ("sum(sinc(x) * w + deg2rad(x) + rad2deg(w))", {"x": (3,), "w": (3,)}),
    ("sum(reciprocal(x * x + 1) * w)", {"x": (3,), "w": (3,)}),
    ("sum(mod(x, y * y + 0.5) * w)", {"x": (3,), "y": (3,), "w": (3,)}),
    ("sum(prod(exp(x), axis=1) * w)", {"x": (2, 2), "w": (2,)}),
]


def fd_check(fn, shapes, seed=0, h=1e-6):
    rng = np.random.default_rng(seed)
    point = {k: rng.normal(size=s) for k, s in shapes.items()}
    _, grads = fn(**point)
    for name, g in grads.items():
        base = np.asarray(point[name], dtype=np.float64)
        flat = base.reshape(-1)
        g = np.asarray(g).reshape(-1)
        for i in range(flat.size):
            up, down = flat.copy(), flat.copy()
            up[i] += h
            down[i] -= h
            fu = fn.forward(**{**point, name: up.reshape(base.shape)})
            fd = fn.forward(**{**point, name: down.reshape(base.shape)})
            assert g[i] == pytest.approx((fu - fd) / (2 * h), rel=1e-5, abs=1e-6), (name, i)


@pytest.mark.parametrize("formula,shapes", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_programs_against_sympy_and_finite_differences(formula, shapes):
    fn = graphc.compile(formula, shapes=shapes)
    report = check_tensor(fn, points=1, seed=len(formula))
    assert report.ok, str(report)
    fd_check(fn, shapes, seed=len(formula))


@pytest.mark.parametrize("formula,shapes", PROGRAMS[::4], ids=[p[0] for p in PROGRAMS[::4]])
def test_programs_in_float32(formula, shapes):
    fn = graphc.compile(formula, shapes=shapes, dtype="float32")
    report = check_tensor(fn, points=1, seed=7)
    assert report.ok, str(report)


def _grad(formula, shapes, **point):
    fn = graphc.compile(formula, shapes=shapes)
    return fn(**point)


def test_prod_gradient_at_zeros_is_exact():
    # hand-derived: one zero gets the product of the others, the rest 0; two zeros: all 0
    shapes = {"x": (2, 3)}
    x = np.array([[2.0, 0.0, 5.0], [0.0, 3.0, 0.0]])
    value, g = _grad("sum(prod(x, axis=1))", shapes, x=x)
    assert value == 0.0
    np.testing.assert_array_equal(g["x"], [[0.0, 10.0, 0.0], [0.0, 0.0, 0.0]])
    value, g = _grad("sum(prod(x, axis=1))", shapes, x=np.array([[2.0, 4.0, 5.0], [1.0, 3.0, -2.0]]))
    np.testing.assert_allclose(g["x"], [[20.0, 10.0, 8.0], [-6.0, -2.0, 3.0]])


def test_cumprod_gradient_at_zeros_is_exact():
    x = np.array([2.0, 0.0, 3.0, 0.0, 5.0])
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    _, g = _grad("sum(cumprod(x, axis=0) * w)", {"x": (5,), "w": (5,)}, x=x, w=w)
    # y = [x0, x0x1, x0x1x2, ...]: d/dx_j = sum_{i >= j} w_i prod_{k <= i, k != j} x_k
    want = [sum(w[i] * np.prod([x[k] for k in range(i + 1) if k != j]) for i in range(j, 5)) for j in range(5)]
    np.testing.assert_allclose(g["x"], want)


def test_sort_gradient_follows_the_permutation_and_ties():
    x = np.array([3.0, 1.0, 2.0, 1.0])
    w = np.array([10.0, 20.0, 30.0, 40.0])
    _, g = _grad("sum(sort(x, axis=0) * w)", {"x": (4,), "w": (4,)}, x=x, w=w)
    # stable order: x1 (1.0), x3 (1.0), x2, x0
    np.testing.assert_array_equal(g["x"], [40.0, 10.0, 30.0, 20.0])


def test_numpy_forms_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    spec = REGISTRY
    np.testing.assert_array_equal(spec["prod"].numpy(x, axis=(1,), keepdims=False), np.prod(x, axis=1))
    np.testing.assert_array_equal(spec["cumsum"].numpy(x, axis=1, reverse=False), np.cumsum(x, axis=1))
    np.testing.assert_allclose(spec["cumsum"].numpy(x, axis=0, reverse=True), np.cumsum(x[::-1], axis=0)[::-1])
    np.testing.assert_array_equal(spec["diff"].numpy(x, axis=0), np.diff(x, axis=0))
    np.testing.assert_array_equal(spec["argmax"].numpy(x, axis=1, keepdims=False), np.argmax(x, axis=1))
    np.testing.assert_array_equal(spec["argmin"].numpy(x, axis=None, keepdims=False), np.argmin(x))
    np.testing.assert_array_equal(spec["sort"].numpy(x, axis=0), np.sort(x, axis=0))
    np.testing.assert_array_equal(spec["argsort"].numpy(x, axis=1), np.argsort(x, axis=1, kind="stable"))
    np.testing.assert_array_equal(spec["diagonal"].numpy(x[:, :3], axis1=0, axis2=1), np.diagonal(x[:, :3]))
    a, b = rng.normal(size=(2, 3)), rng.normal(size=(3,))
    np.testing.assert_allclose(spec["cross"].numpy(a, b), np.cross(a, b))
    # the transposes are transposes: <D x, g> = <x, D^T g>
    g = rng.normal(size=(3, 3))
    assert np.sum(np.diff(x, axis=1) * g) == pytest.approx(np.sum(x * spec["diff_t"].numpy(g, axis=1)))
    d = rng.normal(size=(2, 3))
    emb = spec["diag_embed"].numpy(d, axis1=1, axis2=2)
    np.testing.assert_array_equal(np.diagonal(emb, axis1=1, axis2=2), d)
    assert np.count_nonzero(emb) == 6


@pytest.mark.parametrize("formula,shapes,word", [
    ("sum(cumsum(x, axis=2))", {"x": (2, 3)}, "axis=2"),
    ("sum(diagonal(x))", {"x": (2, 3)}, "diagonal"),
    ("sum(cross(a, b))", {"a": (2,), "b": (3,)}, "3 components"),
    ("sum(prod(x, axis=5))", {"x": (2, 3)}, "axis 5"),
    ("sum(sort(x, axis=-3))", {"x": (2, 3)}, "axis=-3"),
    ("sum(diff(x, axis=1))", {"x": (3,)}, "axis=1"),
])
def test_shape_errors_name_the_argument(formula, shapes, word):
    with pytest.raises(ShapeError, match=word):
        graphc.compile(formula, shapes=shapes)


def test_integer_outputs_carry_no_gradient_and_convert():
    x = ir.input_node("x", "f64", (2, 3))
    am = ir.make("argmax", x, axis=1)
    assert am.type == ir.Type("i64", (2,))
    f = ir.make("to_float", am, dtype="f64")
    assert f.type == ir.Type("f64", (2,))
    assert REGISTRY["argmax"].grad(am, None) == (None,)
    with pytest.raises(GraphcError, match="takes floats"):
        ir.make("sum", am)


def test_elementwise_rows_match_numpy_at_special_points():
    nan, inf = np.nan, np.inf
    a = np.array([1.0, nan, 2.0, 0.0, -0.0])
    b = np.array([nan, 1.0, 2.0, -0.0, 0.0])
    np.testing.assert_array_equal(REGISTRY["fmax"].numpy(a, b), np.fmax(a, b))
    for v in (0.0, 1e-9, -2.5, 3.0):
        assert REGISTRY["sinc"].numpy(v) == np.sinc(v)
    assert REGISTRY["logaddexp2"].numpy(1000.0, 1000.0) == np.logaddexp2(1000.0, 1000.0) == 1001.0
    assert np.isinf(REGISTRY["logaddexp2"].numpy(inf, 1.0))


@pytest.mark.parametrize("target", ["numpy", "llvm"])
def test_elementwise_rows_compile_and_agree(target):
    fn = graphc.compile("sum(fmax(x, y) + fmin(x, y) + logaddexp2(x, y) + sinc(x) + mod(x, y) + "
                        "floor_divide(x, y) + deg2rad(x) + rad2deg(y) + reciprocal(y))",
                        shapes={"x": (5,), "y": (5,)}, target=target)
    x = np.array([0.0, 1.5, -2.3, 4.0, 7.1])
    y = np.array([1.0, 2.0, 0.7, -3.0, 2.5])
    want = np.sum(np.fmax(x, y) + np.fmin(x, y) + np.logaddexp2(x, y) + np.sinc(x) + np.mod(x, y)
                  + np.floor_divide(x, y) + np.deg2rad(x) + np.rad2deg(y) + 1 / y)
    value, g = fn(x=x, y=y)
    assert value == pytest.approx(want, rel=1e-13)
    # mod's gradient is JAX's: 1 for x, -floor(x / y) for y; floor_divide's is 0
    dsinc = np.where(x == 0, 0.0, (np.cos(np.pi * x) - np.sinc(x)) / np.where(x == 0, 1, x))
    ln2 = np.log(2)
    # fmax' + fmin' = 1 (ties split), logaddexp2' = sigmoid((x - y) ln 2), sinc', mod' = 1, deg2rad'
    gx = 1.0 + 1 / (1 + np.exp(-(x - y) * ln2)) + dsinc + 1.0 + np.pi / 180
    np.testing.assert_allclose(g["x"], gx, rtol=1e-12)


def test_argsort_with_kth_is_numpys_argpartition_and_gives_numpy_partition():
    rng = np.random.default_rng(3)
    spec = REGISTRY["argsort"]
    for x, kth, axis in [(rng.normal(size=(3, 7)), (2,), 1), (rng.integers(0, 3, size=(6, 2)).astype(float), (0, 4), 0),
                         (rng.normal(size=(9,)), (8,), 0)]:
        perm = spec.numpy(x, axis=axis, kth=kth)
        assert perm.dtype == np.int64
        np.testing.assert_array_equal(perm, np.argpartition(x, kth, axis=axis))
        # the value is numpy.partition's output exactly (ties included)
        np.testing.assert_array_equal(np.take_along_axis(x, perm, axis=axis), np.partition(x, kth, axis=axis))
    # the SymPy form: the same permutation, away from ties
    x = np.array([[0.3, -1.0, 2.0, 0.1]])
    sym = spec.symbolic(x.astype(object), axis=1, kth=(1,))
    np.testing.assert_array_equal(np.array(sym, dtype=np.int64), np.argpartition(x, 1, axis=1))
    node = ir.make("argsort", ir.input_node("x", "f64", (1, 4)), axis=1, kth=(-3,))
    assert node.type == ir.Type("i64", (1, 4)) and node.attrs == {"axis": 1, "kth": (1,)}
    assert ir.make("argsort", ir.input_node("x", "f64", (1, 4)), axis=1).attrs == {"axis": 1}


def test_argsort_kth_out_of_range_is_a_shape_error():
    x = ir.input_node("x", "f64", (2, 4))
    with pytest.raises(ShapeError, match="kth"):
        ir.make("argsort", x, axis=1, kth=(4,))
    with pytest.raises(GraphcError, match="kth"):
        ir.make("sort", x, axis=1, kth=(1,))
