"""Regression tests for issue 23 (items 1-2) and reductions over empty axes.

- numpy.dot's own rule for N-D operands (graphc.numpy.dot, np.dot on a tracer,
  tracer.dot): values and shapes against NumPy's np.dot, gradients against central
  finite differences of the NumPy reference and a hand-derived einsum.
- matmul's vector-Jacobian rule with a 1-D operand against a batched one.
- max/min over an empty axis: a ShapeError naming the input and its shape.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc
import graphc.numpy as gnp
from graphc import GraphcError, ShapeError

# a subset on purpose: the reference and the default; cpu and parallel run the same schedule with
# Numba loops (a compile of seconds per program), which test_tensor and the tensor fuzzer cover
TARGETS = ["numpy", "llvm"]


def numeric_grad(f, args, k, h=1e-6):
    """Central differences of the scalar NumPy function f(*args) in args[k]."""
    base = np.asarray(args[k], dtype=np.float64)
    flat = base.reshape(-1)
    out = np.empty(flat.size)
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += h
        down[i] -= h
        hi = f(*[up.reshape(base.shape) if j == k else a for j, a in enumerate(args)])
        lo = f(*[down.reshape(base.shape) if j == k else a for j, a in enumerate(args)])
        out[i] = (hi - lo) / (2 * h)
    return out.reshape(base.shape)


def check_vjp(fun, args, target, argnums=None, seed=0, rtol=1e-6, atol=1e-8):
    """fun(m, *args) with m = numpy (the reference) or graphc.numpy (traced): the
    traced value equals NumPy's (shape included), and the gradient of
    sum(fun(...) * W), W random, equals central finite differences of NumPy's."""
    want = np.asarray(fun(np, *args))
    W = np.random.default_rng(seed).normal(size=want.shape)
    W = float(W) if W.ndim == 0 else W
    argnums = tuple(range(len(args))) if argnums is None else tuple(argnums)

    # graphc traces one argument per parameter: spell the arity out
    if len(args) == 1:
        def loss(m):
            return lambda x, W: m.sum(fun(m, x) * W)
        value = graphc.jit(lambda x: fun(gnp, x), target=target)(*args)
    else:
        assert len(args) == 2

        def loss(m):
            return lambda x, y, W: m.sum(fun(m, x, y) * W)
        value = graphc.jit(lambda x, y: fun(gnp, x, y), target=target)(*args)
    assert np.shape(value) == want.shape
    np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-12)

    v, grads = graphc.value_and_grad(loss(gnp), argnums=argnums, target=target)(*args, W)
    assert v == pytest.approx(float(loss(np)(*args, W)), rel=1e-12, abs=1e-12)
    for k, g in zip(argnums, grads):
        num = numeric_grad(loss(np), [*args, W], k)
        assert np.shape(g) == np.shape(args[k]), (k, np.shape(g))
        np.testing.assert_allclose(g, num, rtol=rtol, atol=atol, err_msg=f"d/d(argument {k})")
    return grads


@pytest.mark.parametrize("target", ["llvm", "cpu"])  # the targets with pooled buffers (parallel: cpu's kernel)
def test_output_that_views_a_pooled_gemm_result_is_not_overwritten(target):
    """Regression: the cpu/llvm memory plan freed a pooled GEMM result once the reshape
    reading it ran, although a program output is that reshape (a view of the buffer),
    so a later GEMM overwrote the first output. numpy.dot of two operands of 3+ axes
    returns d/da = reshape(GEMM), so those gradients were wrong on llvm."""
    rng = np.random.default_rng(0)
    A, B, C, D = rng.normal(size=(4, 8)), rng.normal(size=(8, 3)), rng.normal(size=(3, 4)), rng.normal(size=(4, 8))
    got1, got2 = graphc.jit(lambda A, B, C, D: (gnp.reshape(A @ B, (2, 2, 3)), gnp.reshape(C @ D, (3, 2, 4))),
                            target=target)(A, B, C, D)
    np.testing.assert_allclose(got1, np.reshape(A @ B, (2, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(got2, np.reshape(C @ D, (3, 2, 4)), rtol=1e-12)


def rand(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in shapes]


# ------------------------------------------------------------------ item 1: numpy.dot


DOT_SHAPES = [
    ((2, 3), (2, 3, 4)),        # the issue's: matmul gave a different value
    ((2, 2, 3), (2, 3, 4)),     # the issue's: matmul gave shape (2, 2, 4)
    ((4, 1, 3), (2, 5, 3, 2)),
    ((3,), (2, 3, 4)),
    ((2, 2, 3), (3,)),
    ((2, 2, 3), (3, 4)),
    ((2, 3), (3, 4)),
    ((3,), (3,)),
    ((), (2, 3)),
    ((2, 3), ()),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("sa, sb", DOT_SHAPES)
def test_dot_is_numpys_dot(sa, sb, target):
    a, b = rand(sa, sb)
    check_vjp(lambda m, a, b: m.dot(a, b), [a, b], target)


def test_dot_issue_values_and_shapes():
    a, b = rand((2, 3), (2, 3, 4), seed=23)
    want = np.dot(a, b)
    got = graphc.jit(lambda a, b: gnp.dot(a, b))(a, b)
    assert got.shape == want.shape == (2, 2, 4)
    np.testing.assert_allclose(got, want, rtol=1e-13)
    c, d = rand((2, 2, 3), (2, 3, 4), seed=5)
    assert graphc.jit(lambda a, b: gnp.dot(a, b))(c, d).shape == np.dot(c, d).shape == (2, 2, 2, 4)


@pytest.mark.parametrize("spelling", ["gnp.dot", "np.dot", "method"])
def test_every_spelling_of_dot_takes_numpys_rule(spelling):
    f = {"gnp.dot": lambda a, b: gnp.dot(a, b), "np.dot": lambda a, b: np.dot(a, b),
         "method": lambda a, b: a.dot(b)}[spelling]
    a, b = rand((2, 2, 3), (2, 3, 4), seed=1)
    C = np.random.default_rng(2).normal(size=(2, 2, 2, 4))
    v, (ga, gb) = graphc.value_and_grad(lambda a, b, C: gnp.sum(f(a, b) * C), argnums=(0, 1))(a, b, C)
    assert v == pytest.approx(float(np.sum(np.dot(a, b) * C)), rel=1e-12)
    # hand-derived: out[i,j,k,n] = sum_l a[i,j,l] b[k,l,n]
    np.testing.assert_allclose(ga, np.einsum("ijkn,kln->ijl", C, b), rtol=1e-12)
    np.testing.assert_allclose(gb, np.einsum("ijkn,ijl->kln", C, a), rtol=1e-12)
    assert graphc.jit(f)(a, b).shape == (2, 2, 2, 4)


@pytest.mark.parametrize("target", TARGETS)
def test_dot_traced_for_several_batch_sizes(target):
    """Calls with batch sizes 2, 5, 7: the batch axis may be traced as a symbolic
    dimension (one program for every size); values and gradients stay numpy.dot's."""
    f = graphc.value_and_grad(lambda a, b, W: gnp.sum(gnp.dot(a, b) * W), argnums=(0, 1), target=target)
    for N in (2, 5, 7):
        a, b, W = rand((N, 2, 3), (2, 3, 4), (N, 2, 2, 4), seed=N)
        v, (ga, gb) = f(a, b, W)
        assert v == pytest.approx(float(np.sum(np.dot(a, b) * W)), rel=1e-12)
        np.testing.assert_allclose(ga, np.einsum("ijkn,kln->ijl", W, b), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(gb, np.einsum("ijkn,ijl->kln", W, a), rtol=1e-12, atol=1e-14)


def test_dot_refuses_out():
    a = np.ones((2, 2))
    with pytest.raises(GraphcError, match="dot: out= is not supported"):
        graphc.jit(lambda a, b: np.dot(a, b, out=a))(a, a)


def test_dot_eager_on_arrays_is_numpys():
    for sa, sb in DOT_SHAPES:
        a, b = rand(sa, sb, seed=4)
        got = gnp.dot(a, b)
        assert np.shape(got) == np.dot(a, b).shape
        np.testing.assert_allclose(got, np.dot(a, b), rtol=1e-13)


def test_dot_of_misaligned_shapes_is_a_shape_error_naming_both():
    a, b = rand((2, 3), (2, 4, 5))
    with pytest.raises(ShapeError, match=r"dot: shapes \(2, 3\) and \(2, 4, 5\) are not aligned"):
        graphc.jit(lambda a, b: gnp.dot(a, b))(a, b)
    with pytest.raises(ShapeError, match="dot: shapes"):
        gnp.dot(np.ones(3), np.ones(4))


def test_matmul_stays_matmul():
    a, b = rand((2, 3), (2, 3, 4))
    got = graphc.jit(lambda a, b: a @ b)(a, b)
    assert got.shape == (2, 2, 4)
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-13)


# ------------------------------------------------------------------ item 2: matmul's VJP with a vector side


MATMUL_SHAPES = [
    ((3,), (2, 3, 4)),      # the issue's: VJP raised "inner dimensions differ"
    ((2, 2, 3), (3,)),      # the issue's: d/dx raised "cannot reshape (2,) to (3,)"
    ((2, 3, 4), (4,)),      # sum((D @ B)**2)
    ((3,), (5, 2, 3, 4)),
    ((5, 1, 2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((1, 2, 2), (3, 2, 1)),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES)
def test_matmul_vector_against_batch_differentiates(sa, sb, target):
    a, b = rand(sa, sb, seed=7)
    check_vjp(lambda m, a, b: m.matmul(a, b), [a, b], target)


@pytest.mark.parametrize("target", TARGETS)
def test_issue_matmul_gradients_by_hand(target):
    x, B = rand((3,), (2, 3, 4), seed=8)
    gx, gB = graphc.grad(lambda x, B: gnp.sum(gnp.matmul(x, B)), argnums=(0, 1), target=target)(x, B)
    np.testing.assert_allclose(gx, B.sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(gB, np.broadcast_to(x[None, :, None], B.shape), rtol=1e-12)

    A, x = rand((2, 2, 3), (3,), seed=9)
    gA, gx = graphc.grad(lambda A, x: gnp.sum(gnp.matmul(A, x)), argnums=(0, 1), target=target)(A, x)
    np.testing.assert_allclose(gx, A.sum(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(gA, np.broadcast_to(x, A.shape), rtol=1e-12)

    D, B = rand((2, 3, 4), (4,), seed=10)
    v, (gD, gB) = graphc.value_and_grad(lambda D, B: gnp.sum((D @ B) ** 2), argnums=(0, 1), target=target)(D, B)
    r = D @ B
    assert v == pytest.approx(float(np.sum(r ** 2)), rel=1e-12)
    np.testing.assert_allclose(gD, 2 * r[..., None] * B, rtol=1e-12)
    np.testing.assert_allclose(gB, np.einsum("ij,ijk->k", 2 * r, D), rtol=1e-12)

    B, D = rand((3,), (2, 3, 4), seed=11)
    v, (gB, gD) = graphc.value_and_grad(lambda B, D: gnp.sum((B @ D) ** 2), argnums=(0, 1), target=target)(B, D)
    r = B @ D
    assert v == pytest.approx(float(np.sum(r ** 2)), rel=1e-12)
    np.testing.assert_allclose(gB, np.einsum("ik,ijk->j", 2 * r, D), rtol=1e-12)
    np.testing.assert_allclose(gD, 2 * B[None, :, None] * r[:, None, :], rtol=1e-12)


# ------------------------------------------------------------------ max/min over an empty axis


@pytest.mark.parametrize("fn, word", [(gnp.max, "max"), (gnp.min, "min"), (gnp.amax, "max")])
@pytest.mark.parametrize("axis", [0, None, (0, 1)])
def test_max_min_over_an_empty_axis_is_a_shape_error(fn, word, axis):
    x = np.zeros((0, 3))
    with pytest.raises(ShapeError, match=rf"{word}: x of shape \(0, 3\) is empty"):
        graphc.jit(lambda x: fn(x, axis=axis))(x)
    with pytest.raises(ShapeError, match=rf"{word}: .* of shape \(0, 3\) is empty"):
        fn(x, axis=axis)  # eagerly, on the array
    with pytest.raises(GraphcError, match="no identity"):
        graphc.value_and_grad(lambda x: gnp.sum(fn(x, axis=axis)))(x)


def test_max_over_a_nonempty_axis_of_an_empty_array_is_numpys():
    x = np.zeros((0, 3))
    got = graphc.jit(lambda x: gnp.max(x, axis=1), target="numpy")(x)
    assert got.shape == np.max(x, axis=1).shape == (0,)


# ---------------------------------------------------------------- a batch of rows times a matrix: one GEMM

def test_rows_times_a_matrix_is_one_gemm_with_one_gemm_gradient():
    from graphc.ir import input_node, make
    from graphc.passes.fuse import _rows_matmul

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3, 5)), rng.normal(size=(5, 2))
    vg = graphc.value_and_grad(lambda a, b: gnp.sum(gnp.tanh(a @ b)), argnums=(0, 1))
    v, (ga, gb) = vg(a, b)
    t = np.tanh(a @ b)
    assert v == pytest.approx(np.sum(t), rel=1e-13)
    d = 1 - t ** 2
    np.testing.assert_allclose(ga, d @ b.T, rtol=1e-12)
    np.testing.assert_allclose(gb, np.einsum("bmk,bmn->kn", a, d), rtol=1e-12)
    text = vg._sigs[0].fn.describe()
    assert text.count("gemm:") == 3 and "numpy: " not in [line[:7] for line in text.splitlines()
                                                           if "matmul" in line], text
    # negative cases: already 2-D, a batch on the right, sizes not all known
    x2, x3, w = input_node("x", "f64", (6, 5)), input_node("y", "f64", (4, 3, 5)), input_node("w", "f64", (5, 2))
    assert _rows_matmul(make("matmul", x2, w)) is None
    assert _rows_matmul(make("matmul", w, input_node("z", "f64", (4, 2, 3)))) is None
    assert _rows_matmul(make("matmul", input_node("s", "f64", ("N", 3, 5)), w)) is None
    hit = _rows_matmul(make("matmul", x3, w))
    assert hit.op == "reshape" and hit.args[0].op == "matmul" and hit.args[0].args[0].shape == (12, 5)
