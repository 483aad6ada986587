"""graphc.numpy's statistics, scans, sorting, contractions and extra elementwise functions
(issue 26) through graphc.value_and_grad: values against NumPy, gradients against central
differences in float64 and hand-derived NumPy gradients, float32 within tolerance, on the
tensor targets. Many cases are ported from autograd's tests/test_numpy.py and JAX's
NumpyGradTests (tests/lax_numpy_test.py), rewritten in graphc's terms."""

import numpy as np
import pytest
from conftest import TENSOR_TARGETS, fuzz
from hypothesis import given
from hypothesis import strategies as st

import graphc
import graphc.numpy as gnp
from graphc.errors import GraphcError, ShapeError, UnsupportedError

R = np.random.default_rng(0)


def _fd(f, args, k, h=1e-6):
    """Central differences of f by args[k]."""
    x = np.asarray(args[k], dtype=np.float64)
    out = np.zeros_like(x)
    flat, of = x.reshape(-1), out.reshape(-1)
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += h
        down[i] -= h
        a_up = list(args)
        a_up[k] = up.reshape(x.shape)
        a_dn = list(args)
        a_dn[k] = down.reshape(x.shape)
        of[i] = (float(f(*a_up)) - float(f(*a_dn))) / (2 * h)
    return out


def vg_all(f, target=None):
    """value_and_grad of f by every argument: (value, (one gradient per argument))."""
    return graphc.value_and_grad(lambda *a: f(*a), argnums=0, target=target)


def check(f, ref, *args, target="numpy", rtol=1e-6, atol=1e-6):
    """f through value_and_grad against ref (NumPy) for the value, and its gradient against
    central differences of ref, for every argument."""
    value, grads = vg_all(f, target)(*args)
    assert value == pytest.approx(float(ref(*args)), rel=1e-10, abs=1e-12)
    for k, g in enumerate(grads):
        np.testing.assert_allclose(g, _fd(ref, args, k), rtol=rtol, atol=atol, err_msg=f"argument {k}")
    return value, grads


def w_like(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape)


# name, graphc function, NumPy reference, argument shapes: sum(w * f(x)) with a fixed random w
# (ported from autograd's test_numpy.py and JAX's NumpyGradTests)
CASES = [
    ("var", lambda x: gnp.var(x), lambda x: np.var(x), [(3, 4)]),
    ("var_axis0_ddof1", lambda x: gnp.var(x, axis=0, ddof=1), lambda x: np.var(x, axis=0, ddof=1), [(3, 4)]),
    ("var_axis1_keepdims", lambda x: gnp.var(x, axis=1, keepdims=True), lambda x: np.var(x, axis=1, keepdims=True),
     [(3, 4)]),
    ("std", lambda x: gnp.std(x, axis=1), lambda x: np.std(x, axis=1), [(3, 4)]),
    ("std_ddof", lambda x: gnp.std(x, axis=(0, 2), ddof=1), lambda x: np.std(x, axis=(0, 2), ddof=1), [(2, 3, 2)]),
    ("prod", lambda x: gnp.prod(x), lambda x: np.prod(x), [(2, 3)]),
    ("prod_axis1", lambda x: gnp.prod(x, axis=1), lambda x: np.prod(x, axis=1), [(3, 4)]),
    ("prod_axis0_keep", lambda x: gnp.prod(x, 0, keepdims=True), lambda x: np.prod(x, 0, keepdims=True), [(3, 2)]),
    ("cumsum", lambda x: gnp.cumsum(x), lambda x: np.cumsum(x), [(3, 4)]),
    ("cumsum_axis0", lambda x: gnp.cumsum(x, axis=0), lambda x: np.cumsum(x, axis=0), [(3, 4)]),
    ("cumprod_axis1", lambda x: gnp.cumprod(x, axis=1), lambda x: np.cumprod(x, axis=1), [(3, 4)]),
    ("cumprod_flat", lambda x: gnp.cumprod(x), lambda x: np.cumprod(x), [(2, 3)]),
    ("diff", lambda x: gnp.diff(x), lambda x: np.diff(x), [(3, 5)]),
    ("diff_n2_axis0", lambda x: gnp.diff(x, n=2, axis=0), lambda x: np.diff(x, n=2, axis=0), [(5, 2)]),
    ("sort", lambda x: gnp.sort(x), lambda x: np.sort(x), [(3, 4)]),
    ("sort_axis0", lambda x: gnp.sort(x, axis=0), lambda x: np.sort(x, axis=0), [(4, 3)]),
    ("sort_flat", lambda x: gnp.sort(x, axis=None), lambda x: np.sort(x, axis=None), [(2, 3)]),
    ("einsum_matmul", lambda a, b: gnp.einsum("ij,jk->ik", a, b), lambda a, b: np.einsum("ij,jk->ik", a, b),
     [(2, 3), (3, 4)]),
    ("einsum_trace", lambda a: gnp.einsum("ii", a), lambda a: np.einsum("ii", a), [(3, 3)]),
    ("einsum_diag", lambda a: gnp.einsum("ii->i", a), lambda a: np.einsum("ii->i", a), [(3, 3)]),
    ("einsum_sum", lambda a: gnp.einsum("ijk->i", a), lambda a: np.einsum("ijk->i", a), [(2, 3, 2)]),
    ("einsum_dot", lambda a, b: gnp.einsum("i,i", a, b), lambda a, b: np.einsum("i,i", a, b), [(4,), (4,)]),
    ("einsum_outer", lambda a, b: gnp.einsum("i,j->ij", a, b), lambda a, b: np.einsum("i,j->ij", a, b),
     [(3,), (2,)]),
    ("einsum_batch", lambda a, b: gnp.einsum("bij,bjk->bik", a, b), lambda a, b: np.einsum("bij,bjk->bik", a, b),
     [(2, 3, 4), (2, 4, 2)]),
    ("einsum_ellipsis", lambda a, b: gnp.einsum("...ij,...jk->...ik", a, b),
     lambda a, b: np.einsum("...ij,...jk->...ik", a, b), [(2, 2, 3), (3, 2)]),
    ("einsum_implicit", lambda a, b: gnp.einsum("ij,jk", a, b), lambda a, b: np.einsum("ij,jk", a, b),
     [(2, 3), (3, 2)]),
    ("einsum_three", lambda a, b, c: gnp.einsum("ij,jk,kl->il", a, b, c),
     lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c), [(2, 3), (3, 2), (2, 2)]),
    ("einsum_transpose", lambda a: gnp.einsum("ijk->kji", a), lambda a: np.einsum("ijk->kji", a), [(2, 3, 4)]),
    ("einsum_hadamard", lambda a, b: gnp.einsum("ij,ij->", a, b), lambda a, b: np.einsum("ij,ij->", a, b),
     [(2, 3), (2, 3)]),
    ("einsum_bilinear", lambda a, b, c: gnp.einsum("i,ij,j->", a, b, c),
     lambda a, b, c: np.einsum("i,ij,j->", a, b, c), [(3,), (3, 4), (4,)]),
    ("tensordot_2", lambda a, b: gnp.tensordot(a, b), lambda a, b: np.tensordot(a, b), [(2, 3, 4), (3, 4, 2)]),
    ("tensordot_axes", lambda a, b: gnp.tensordot(a, b, axes=([0, 2], [1, 0])),
     lambda a, b: np.tensordot(a, b, axes=([0, 2], [1, 0])), [(2, 3, 4), (4, 2, 3)]),
    ("tensordot_0", lambda a, b: gnp.tensordot(a, b, axes=0), lambda a, b: np.tensordot(a, b, axes=0),
     [(2,), (3,)]),
    ("inner", lambda a, b: gnp.inner(a, b), lambda a, b: np.inner(a, b), [(2, 3), (4, 3)]),
    ("outer", lambda a, b: gnp.outer(a, b), lambda a, b: np.outer(a, b), [(3,), (2, 2)]),
    ("trace", lambda a: gnp.trace(a), lambda a: np.trace(a), [(3, 3)]),
    ("trace_axes", lambda a: gnp.trace(a, axis1=1, axis2=2), lambda a: np.trace(a, axis1=1, axis2=2),
     [(2, 3, 3)]),
    # issue 26 follow-up: offsets, non-square diagonals, sublists, gradient, partition, ldexp/frexp
    ("trace_offset", lambda a: gnp.trace(a, offset=3), lambda a: np.trace(a, offset=3), [(4, 6)]),
    ("trace_offset_neg", lambda a: gnp.trace(a, -2), lambda a: np.trace(a, -2), [(6, 4)]),
    ("trace_nonsquare", lambda a: gnp.trace(a), lambda a: np.trace(a), [(5, 3)]),
    ("trace_extradims", lambda a: gnp.trace(a, offset=-2), lambda a: np.trace(a, offset=-2), [(5, 6, 4, 3)]),
    ("trace_axes_offset", lambda a: gnp.trace(a, 1, axis1=2, axis2=0), lambda a: np.trace(a, 1, axis1=2, axis2=0),
     [(3, 2, 4)]),
    ("diagonal_offset", lambda a: gnp.diagonal(a, offset=1, axis1=1, axis2=2),
     lambda a: np.diagonal(a, offset=1, axis1=1, axis2=2), [(2, 3, 4)]),
    ("diagonal_offset_neg", lambda a: gnp.diagonal(a, -1), lambda a: np.diagonal(a, -1), [(4, 3)]),
    ("einsum_sublist", lambda a, b: gnp.einsum(a, [0, 1], b, [1, 2], [0, 2]),
     lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [0, 2]), [(2, 3), (3, 4)]),
    ("einsum_sublist_implicit", lambda a, b, c: gnp.einsum(a, [0, 1], b, [1, 2], c, [2, 3]),
     lambda a, b, c: np.einsum(a, [0, 1], b, [1, 2], c, [2, 3]), [(2, 3), (3, 2), (2, 2)]),
    ("einsum_sublist_ellipsis", lambda a, b: gnp.einsum(a, [Ellipsis, 0, 1], b, [Ellipsis, 1, 27], [Ellipsis, 27, 0]),
     lambda a, b: np.einsum(a, [Ellipsis, 0, 1], b, [Ellipsis, 1, 27], [Ellipsis, 27, 0]), [(2, 2, 3), (2, 3, 2)]),
    ("einsum_sublist_trace", lambda a: gnp.einsum(a, [0, 0]), lambda a: np.einsum(a, [0, 0]), [(3, 3)]),
    ("gradient_1d", lambda x: gnp.gradient(x), lambda x: np.gradient(x), [(6,)]),
    ("gradient_1d_edge2", lambda x: gnp.gradient(x, 0.5, edge_order=2), lambda x: np.gradient(x, 0.5, edge_order=2),
     [(5,)]),
    ("gradient_2d", lambda x: gnp.stack(gnp.gradient(x, 2.0, 0.5)), lambda x: np.stack(np.gradient(x, 2.0, 0.5)),
     [(4, 3)]),
    ("gradient_axis", lambda x: gnp.gradient(x, axis=-1, edge_order=2), lambda x: np.gradient(x, axis=-1, edge_order=2),
     [(2, 3, 4)]),
    ("gradient_axes", lambda x: gnp.stack(gnp.gradient(x, axis=(0, -1))), lambda x: np.stack(np.gradient(x, axis=(0, -1))),
     [(3, 2, 2)]),
    ("gradient_short", lambda x: gnp.stack(gnp.gradient(x)), lambda x: np.stack(np.gradient(x)), [(2, 2)]),
    ("partition", lambda x: gnp.partition(x, 2), lambda x: np.partition(x, 2), [(3, 5)]),
    ("partition_kths_axis0", lambda x: gnp.partition(x, (0, 3), axis=0), lambda x: np.partition(x, (0, 3), axis=0),
     [(5, 2)]),
    ("partition_flat", lambda x: gnp.partition(x, -2, axis=None), lambda x: np.partition(x, -2, axis=None), [(2, 3)]),
    ("ldexp", lambda x: gnp.ldexp(x, 3), lambda x: np.ldexp(x, 3), [(4,)]),
    ("ldexp_neg", lambda x: gnp.ldexp(x, -4) + gnp.ldexp(x, np.int64(2)), lambda x: np.ldexp(x, -4) + np.ldexp(x, 2),
     [(2, 3)]),
    ("frexp", lambda x: gnp.frexp(x * 8.0)[0], lambda x: np.frexp(x * 8.0)[0], [(6,)]),
    ("kron", lambda a, b: gnp.kron(a, b), lambda a, b: np.kron(a, b), [(2, 2), (3, 2)]),
    ("cross", lambda a, b: gnp.cross(a, b), lambda a, b: np.cross(a, b), [(4, 3), (3,)]),
    ("cross_axis", lambda a, b: gnp.cross(a, b, axisa=0, axisb=0), lambda a, b: np.cross(a, b, axisa=0, axisb=0),
     [(3, 2), (3, 2)]),
    ("norm", lambda x: gnp.linalg.norm(x), lambda x: np.linalg.norm(x), [(3, 4)]),
    ("norm_axis", lambda x: gnp.linalg.norm(x, axis=1), lambda x: np.linalg.norm(x, axis=1), [(3, 4)]),
    ("norm_1", lambda x: gnp.linalg.norm(x, ord=1, axis=0, keepdims=True),
     lambda x: np.linalg.norm(x, ord=1, axis=0, keepdims=True), [(3, 4)]),
    ("norm_inf", lambda x: gnp.linalg.norm(x, ord=np.inf), lambda x: np.linalg.norm(x, ord=np.inf), [(5,)]),
    ("norm_minf", lambda x: gnp.linalg.norm(x, ord=-np.inf), lambda x: np.linalg.norm(x, ord=-np.inf), [(5,)]),
    ("norm_p3", lambda x: gnp.linalg.norm(x, ord=3, axis=-1), lambda x: np.linalg.norm(x, ord=3, axis=-1),
     [(2, 4)]),
    ("norm_fro", lambda x: gnp.linalg.norm(x, "fro"), lambda x: np.linalg.norm(x, "fro"), [(3, 4)]),
    ("norm_mat1", lambda x: gnp.linalg.norm(x, 1), lambda x: np.linalg.norm(x, 1), [(3, 4)]),
    ("norm_matinf", lambda x: gnp.linalg.norm(x, np.inf), lambda x: np.linalg.norm(x, np.inf), [(3, 4)]),
    ("fmax", lambda a, b: gnp.fmax(a, b), np.fmax, [(3, 4), (4,)]),
    ("fmin", lambda a, b: gnp.fmin(a, b), np.fmin, [(3, 4), (3, 4)]),
    ("logaddexp2", lambda a, b: gnp.logaddexp2(a, b), np.logaddexp2, [(3,), (3,)]),
    ("sinc", lambda x: gnp.sinc(x), np.sinc, [(5,)]),
    ("deg2rad", lambda x: gnp.deg2rad(x) + gnp.radians(x), lambda x: np.deg2rad(x) + np.radians(x), [(3,)]),
    ("rad2deg", lambda x: gnp.rad2deg(x), np.rad2deg, [(3,)]),
    ("reciprocal", lambda x: gnp.reciprocal(x * x + 1.0), lambda x: np.reciprocal(x * x + 1.0), [(3,)]),
    ("mod_op", lambda a, b: a % (b * b + 1.0), lambda a, b: a % (b * b + 1.0), [(4,), (4,)]),
    ("mod_np", lambda a, b: np.mod(a, b * b + 1.0), lambda a, b: np.mod(a, b * b + 1.0), [(4,), (4,)]),
    ("floordiv", lambda a, b: a + a // (b * b + 1.0) + 3.0 // (b * b + 2.0),
     lambda a, b: a + a // (b * b + 1.0) + 3.0 // (b * b + 2.0), [(4,), (4,)]),
    ("nan_to_num", lambda x: gnp.nan_to_num(x), np.nan_to_num, [(4,)]),
    ("np_dispatch", lambda x: np.var(x, axis=0) + np.prod(x, 0) + np.fmax(x, 0.1).sum(0) + np.sinc(x).sum(0),
     lambda x: np.var(x, axis=0) + np.prod(x, 0) + np.fmax(x, 0.1).sum(0) + np.sinc(x).sum(0), [(3, 2)]),
    ("method_calls", lambda x: x.var(axis=1) + x.std(axis=1) + x.prod(axis=1) + x.cumsum(axis=1).sum(axis=1),
     lambda x: x.var(axis=1) + x.std(axis=1) + x.prod(axis=1) + x.cumsum(axis=1).sum(axis=1), [(2, 3)]),
]


def _case(f, ref, shapes, seed):
    """sum(w * f(*args)) with a random weight w as the last argument (traced functions take
    arrays as arguments, not captured), its NumPy reference, and the arguments."""
    rng = np.random.default_rng(seed)
    args = [rng.normal(size=s) for s in shapes]
    args.append(rng.normal(size=np.shape(ref(*args))))
    return (lambda *a: gnp.sum(f(*a[:-1]) * a[-1])), (lambda *a: np.sum(ref(*a[:-1]) * a[-1])), args


@pytest.mark.parametrize("name,f,ref,shapes", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient_against_numpy_and_finite_differences(name, f, ref, shapes):
    gf, rf, args = _case(f, ref, shapes, len(name))
    if name.startswith("cumprod") or name.startswith("prod"):
        args = [a + np.sign(a) * 0.5 for a in args]
    check(gf, rf, *args)


SAMPLE = [c for c in CASES if c[0] in ("var_axis0_ddof1", "prod_axis1", "cumsum_axis0", "sort", "einsum_batch",
                                        "einsum_trace", "norm_axis", "fmax", "mod_op", "cross")]


# Numba's targets (cpu, parallel) compile a second or more per case: the slow tier
@pytest.mark.parametrize("target", [t if t == "llvm" else pytest.param(t, marks=pytest.mark.slow)
                                    for t in TENSOR_TARGETS if t != "numpy"])
@pytest.mark.parametrize("name,f,ref,shapes", SAMPLE, ids=[c[0] for c in SAMPLE])
def test_on_every_tensor_target(name, f, ref, shapes, target):
    gf, rf, args = _case(f, ref, shapes, len(name))
    want_v, want_g = vg_all(gf, "numpy")(*args)
    got_v, got_g = vg_all(gf, target)(*args)
    assert got_v == pytest.approx(want_v, rel=1e-12)
    for a, b in zip(got_g, want_g):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)



@pytest.mark.parametrize("name,f,ref,shapes", SAMPLE[:5], ids=[c[0] for c in SAMPLE[:5]])
def test_float32_within_tolerance(name, f, ref, shapes):
    gf, rf, args = _case(f, ref, shapes, 3)
    v64, g64 = vg_all(gf)(*args)
    v32, g32 = vg_all(gf)(*[a.astype(np.float32) for a in args])
    assert v32 == pytest.approx(v64, rel=1e-4, abs=1e-4)
    for a, b in zip(g32, g64):
        assert np.ndim(a) == 0 or a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------ hand-derived gradients


def test_var_gradient_is_hand_derived():
    x = R.normal(size=(4, 3))
    _, g = graphc.value_and_grad(lambda x: gnp.sum(gnp.var(x, axis=0, ddof=1)))(x)
    np.testing.assert_allclose(g, 2 * (x - x.mean(0)) / (x.shape[0] - 1), rtol=1e-13)


def test_var_is_stable_mean_shifted():
    x = 1e8 + np.array([1.0, 2.0, 3.0, 4.0])
    v, _ = graphc.value_and_grad(lambda x: gnp.var(x))(x)
    assert v == pytest.approx(1.25, rel=1e-12)  # sum(x**2)/n - mean**2 would give garbage


def test_einsum_gradient_is_hand_derived():
    a, b, g = R.normal(size=(3, 4)), R.normal(size=(4, 2)), R.normal(size=(3, 2))
    _, (ga, gb) = graphc.value_and_grad(lambda a, b, g: gnp.sum(gnp.einsum("ij,jk->ik", a, b) * g),
                                        argnums=(0, 1))(a, b, g)
    np.testing.assert_allclose(ga, g @ b.T, rtol=1e-13)
    np.testing.assert_allclose(gb, a.T @ g, rtol=1e-13)


def test_einsum_lowers_to_matmul_not_a_loop():
    a, b = R.normal(size=(2, 3, 4)), R.normal(size=(2, 4, 5))
    program = graphc.value_and_grad(lambda a, b: gnp.sum(gnp.einsum("bij,bjk->bik", a, b))).lower(a, b)
    ops = {n.op for n in program.graph.body}
    assert "matmul" in ops
    big = [n for n in program.graph.body if n.type.ndim >= 4]
    assert not big  # no (b, i, j, k) product was formed


def test_norm_gradient_is_hand_derived():
    x = R.normal(size=(5,))
    _, g = graphc.value_and_grad(lambda x: gnp.linalg.norm(x))(x)
    np.testing.assert_allclose(g, x / np.linalg.norm(x), rtol=1e-13)
    _, g = graphc.value_and_grad(lambda x: gnp.linalg.norm(x, ord=1))(x)
    np.testing.assert_array_equal(g, np.sign(x))
    v, g = graphc.value_and_grad(lambda x: gnp.linalg.norm(x, ord=0) + gnp.sum(x))(np.array([0.0, 2.0, -1.0]))
    assert v == 3.0
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])


def test_np_linalg_norm_dispatches_on_tracers():
    x = R.normal(size=(3, 2))
    v, g = graphc.value_and_grad(lambda x: np.linalg.norm(x))(x)
    assert v == pytest.approx(np.linalg.norm(x))


# ------------------------------------------------------------------ comparisons and integers as numbers


def test_comparisons_used_as_numbers():
    x, y = R.normal(size=(5,)), R.normal(size=(5,))
    f = graphc.value_and_grad(lambda x, y: gnp.sum(x < y) + gnp.mean((x > 0).astype(float)) +
                              gnp.sum(x * (x > y).astype(float)) + np.sum(x >= y) + (x != y).sum())
    v, g = f(x, y)
    assert v == pytest.approx(np.sum(x < y) + np.mean(x > 0) + np.sum(x * (x > y)) + np.sum(x >= y) + 5)
    np.testing.assert_array_equal(g, (x > y).astype(float))
    v, _ = graphc.value_and_grad(lambda x, y: gnp.count_nonzero(x > y) + x.sum())(x, y)
    assert v == pytest.approx(np.count_nonzero(x > y) + x.sum())


def test_argmax_accuracy_with_has_aux():
    s = R.normal(size=(6, 3))
    labels = np.argmax(s + 0.5 * R.normal(size=(6, 3)), axis=1)

    def loss(s):
        pred = gnp.argmax(s, axis=1)
        hit = gnp.sum(s, axis=1) * 0.0 + pred.astype(float)
        return gnp.sum(s * s), hit

    (v, aux), g = graphc.value_and_grad(loss, has_aux=True)(s)
    np.testing.assert_array_equal(aux, np.argmax(s, axis=1))
    np.testing.assert_allclose(g, 2 * s)
    assert labels.shape == (6,)


def test_integer_outputs_through_jit():
    x = R.normal(size=(3, 4))
    am, ai, order = graphc.jit(lambda x: (gnp.argmax(x, axis=0), gnp.argmin(x), gnp.argsort(x, axis=1)))(x)
    np.testing.assert_array_equal(am, np.argmax(x, axis=0))
    assert int(ai) == int(np.argmin(x))
    np.testing.assert_array_equal(order, np.argsort(x, axis=1, kind="stable"))


def test_select_and_constants():
    x = R.normal(size=(6,))
    f = lambda x: gnp.sum(gnp.select([x < -0.5, x > 0.5], [x * 2.0, x * x], default=x) +  # noqa: E731
                          gnp.ones_like(x) * 2.0 + gnp.full_like(x, 3.0) + gnp.zeros_like(x))
    ref = lambda x: np.sum(np.select([x < -0.5, x > 0.5], [x * 2.0, x * x], default=x) + 5.0)  # noqa: E731
    check(f, ref, x)
    t = graphc.value_and_grad(lambda a: gnp.sum(gnp.linspace(0.0, a, 5) ** 2))
    v, g = t(2.0)
    assert v == pytest.approx(np.sum(np.linspace(0.0, 2.0, 5) ** 2))
    assert g == pytest.approx(2 * np.sum(np.linspace(0.0, 1.0, 5) ** 2) * 2.0)
    np.testing.assert_array_equal(gnp.arange(5), np.arange(5))
    np.testing.assert_array_equal(gnp.linspace(0, 1, 7), np.linspace(0, 1, 7))


def test_eager_calls_match_numpy():
    x, y = R.normal(size=(3, 3)), R.normal(size=(3, 3))
    np.testing.assert_allclose(gnp.var(x, axis=1), np.var(x, axis=1))
    np.testing.assert_allclose(gnp.einsum("ij,jk", x, y), x @ y)
    np.testing.assert_allclose(gnp.cumsum(x, axis=1), np.cumsum(x, axis=1))
    np.testing.assert_allclose(gnp.prod(x), np.prod(x))
    np.testing.assert_array_equal(gnp.sort(x), np.sort(x))
    np.testing.assert_array_equal(gnp.argmax(x, axis=1), np.argmax(x, axis=1))
    np.testing.assert_allclose(gnp.linalg.norm(x, axis=0), np.linalg.norm(x, axis=0))
    np.testing.assert_allclose(gnp.mod(x, 0.7), np.mod(x, 0.7))
    np.testing.assert_allclose(gnp.kron(x, y), np.kron(x, y))


# ------------------------------------------------------------------ property tests


@st.composite
def einsum_cases(draw):
    letters = "abcde"
    sizes = {c: draw(st.integers(1, 3)) for c in letters}
    n_ops = draw(st.integers(1, 3))
    subs = []
    for _ in range(n_ops):
        k = draw(st.integers(0, 3))
        subs.append("".join(draw(st.lists(st.sampled_from(letters), min_size=k, max_size=k))))
    used = sorted(set("".join(subs)))
    out = draw(st.permutations(used)) if used else []
    out = "".join(out[:draw(st.integers(0, len(out)))]) if out else ""
    return ",".join(subs) + "->" + out, [tuple(sizes[c] for c in s) for s in subs]


@fuzz("quick", 25)
@given(einsum_cases())
def test_einsum_property_against_numpy(case):
    subs, shapes = case
    rng = np.random.default_rng(len(subs))
    args = [rng.normal(size=s) for s in shapes]
    want = np.einsum(subs, *args)
    args.append(rng.normal(size=np.shape(want)))
    check(lambda *a: gnp.sum(gnp.einsum(subs, *a[:-1]) * a[-1]), lambda *a: np.sum(np.einsum(subs, *a[:-1]) * a[-1]),
          *args)



@st.composite
def reduction_cases(draw):
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    axis = draw(st.one_of(st.none(), st.integers(-nd, nd - 1)))
    fn = draw(st.sampled_from(["var", "std", "prod", "cumsum", "sort", "norm"]))
    return fn, shape, axis


@fuzz("quick", 25)
@given(reduction_cases())
def test_reductions_property_against_numpy(case):
    fn, shape, axis = case
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape) + 0.1
    if fn == "var" or fn == "std":
        n = x.size if axis is None else shape[axis]
        if n < 2:
            return
    gf = {"var": lambda x: gnp.var(x, axis=axis, ddof=0), "std": lambda x: gnp.std(x, axis=axis),
          "prod": lambda x: gnp.prod(x, axis=axis), "cumsum": lambda x: gnp.cumsum(x, axis=axis),
          "sort": lambda x: gnp.sort(x, axis=axis), "norm": lambda x: gnp.linalg.norm(x, axis=axis)}[fn]
    rf = {"var": lambda x: np.var(x, axis=axis), "std": lambda x: np.std(x, axis=axis),
          "prod": lambda x: np.prod(x, axis=axis), "cumsum": lambda x: np.cumsum(x, axis=axis),
          "sort": lambda x: np.sort(x, axis=axis), "norm": lambda x: np.linalg.norm(x, axis=axis)}[fn]
    w = rng.normal(size=np.shape(rf(x)))
    check(lambda x, w: gnp.sum(gf(x) * w), lambda x, w: np.sum(rf(x) * w), x, w, rtol=1e-5, atol=1e-6)



# ------------------------------------------------------------------ errors


def _trace(f, *args):
    return graphc.value_and_grad(f, target="numpy")(*args)


@pytest.mark.parametrize("f,args,cls,word", [
    (lambda a, b: gnp.sum(gnp.einsum("ij,jk->ik", a, b)), [(2, 3), (4, 2)], ShapeError, "letter 'j'"),
    (lambda a, b: gnp.sum(gnp.einsum("ij->ii", a)), [(2, 2), (2,)], ShapeError, "repeats letter 'i'"),
    (lambda a, b: gnp.sum(gnp.einsum("ijk,jk->i", a, b)), [(2, 3), (3, 2)], ShapeError, "operand 0"),
    (lambda a, b: gnp.sum(gnp.einsum("ij,jk->il", a, b)), [(2, 3), (3, 2)], ShapeError, "'l'"),
    (lambda a, b: gnp.sum(gnp.einsum("ij->i", a, b)), [(2, 3), (3, 2)], ShapeError, "1 operand"),
    (lambda a, b: gnp.sum(gnp.var(a, axis=2)), [(2, 3), (3,)], ShapeError, "axis=2"),
    (lambda a, b: gnp.sum(gnp.cumsum(a, axis=-3)), [(2, 3), (3,)], ShapeError, "axis=-3"),
    (lambda a, b: gnp.sum(gnp.argmax(a, axis=3).astype(float)), [(2, 3), (3,)], ShapeError, "axis=3"),
    (lambda a, b: gnp.sum(gnp.tensordot(a, b, axes=([1], [1]))), [(2, 3), (3,)], ShapeError, "axes"),
    (lambda a, b: gnp.sum(gnp.cross(a, b)), [(2, 2), (2,)], ShapeError, "3 components"),
    (lambda a, b: gnp.sum(gnp.var(a, where=a > 0)), [(2, 2), (2,)], UnsupportedError, "where="),
    (lambda a, b: gnp.linalg.norm(a, "nuc"), [(2, 2), (2,)], UnsupportedError, "nuc"),
    (lambda a, b: gnp.sum(gnp.gradient(a, b, axis=1)), [(2, 2), (2,)], UnsupportedError, "spacing"),
    (lambda a, b: gnp.sum(gnp.diagonal(a, offset=2)), [(2, 2), (2,)], ShapeError, "offset=2"),
    (lambda a, b: gnp.sum(gnp.gradient(a, edge_order=2)), [(2, 2), (2,)], ValueError, "too small"),
    (lambda a, b: gnp.sum(gnp.ldexp(a, b)), [(2, 2), (2,)], TypeError, "integers"),
    (lambda a, b: gnp.sum(gnp.partition(a, 2)), [(2, 2), (2,)], ShapeError, "kth"),
])
def test_bad_input_is_a_graphc_error_naming_the_argument(f, args, cls, word):
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=s) for s in args)
    with pytest.raises(cls, match=word):
        graphc.value_and_grad(f, target="numpy")(a, b)


def test_missing_attribute_names_the_closest_functions():
    with pytest.raises(AttributeError, match="concatenate") as info:
        gnp.concatnate  # noqa: B018
    assert isinstance(info.value, GraphcError)
    with pytest.raises(GraphcError, match="norm"):
        gnp.linalg.nrom  # noqa: B018
    assert not hasattr(gnp, "definitely_not_numpy")


def test_coverage_lists_every_function_issue_26_names():
    table = dict(gnp.coverage())
    assert len(table) >= 150
    mine = ["var", "std", "prod", "cumsum", "cumprod", "diff", "argmax", "argmin", "sort", "argsort", "einsum",
            "outer", "inner", "tensordot", "trace", "kron", "cross", "linalg.norm", "fmax", "fmin", "logaddexp2",
            "reciprocal", "sinc", "deg2rad", "rad2deg", "nan_to_num", "mod", "floor_divide", "linspace", "arange",
            "ones_like", "zeros_like", "full_like", "select", "maximum", "minimum", "dot"]
    for name in mine:
        assert table[name], name
    shape_engineers = ["concatenate", "stack", "hstack", "vstack", "split", "array_split", "expand_dims", "squeeze",
                       "flip", "tile", "repeat", "pad", "roll", "swapaxes", "moveaxis", "reshape", "ravel", "diag",
                       "tril", "triu", "take", "take_along_axis"]
    assert all(name in table for name in shape_engineers)
    assert all(isinstance(ok, bool) for ok in table.values())


def test_sort_method_in_place_is_refused():
    with pytest.raises(GraphcError, match="in place"):
        _trace(lambda x: x.sort(), np.ones(3))


# ------------------------------------------------------------------ issue 26 follow-up


def test_frexp_matches_numpy_at_special_points_and_powers_of_two():
    v = np.array([0.0, -0.0, 1.0, -2.5, 3e-310, np.inf, -np.inf, np.nan, 0.5, 1 - 2**-53, 2**100 * (1 - 2**-53),
                  1e300, -7.0, 2.0**-1000, 1024.0])
    m, e = graphc.jit(lambda x: gnp.frexp(x))(v)
    want_m, want_e = np.frexp(v)
    np.testing.assert_array_equal(m, want_m)
    np.testing.assert_array_equal(e, want_e)
    # the mantissa's gradient is 2**-exponent; the exponent carries none
    x = np.array([3.0, -0.3, 8.0, 1e-3])
    g = graphc.grad(lambda x: gnp.sum(gnp.frexp(x)[0] + gnp.frexp(x)[1]))(x)
    np.testing.assert_array_equal(g, np.ldexp(1.0, -np.frexp(x)[1]))
    v32 = np.array([0.3, -5.0, 6e-39], dtype=np.float32)
    m32, e32 = graphc.jit(lambda x: gnp.frexp(x))(v32)
    assert m32.dtype == np.float32
    np.testing.assert_array_equal(m32, np.frexp(v32)[0])
    np.testing.assert_array_equal(e32, np.frexp(v32)[1])


def test_ldexp_gradient_is_two_to_the_x2_and_integer_tracers_work():
    x = np.array([1.5, -2.0, 0.25])
    g = graphc.grad(lambda x: gnp.sum(gnp.ldexp(x, -3) * x))(x)
    np.testing.assert_allclose(g, 2 * x / 8, rtol=1e-15)
    # a traced integer exponent (argmax's int64) counts as numbers, with no gradient
    v, g = graphc.value_and_grad(lambda x: gnp.sum(gnp.ldexp(x, gnp.argmax(x))))(x)
    assert v == pytest.approx(np.sum(np.ldexp(x, np.argmax(x))))
    np.testing.assert_array_equal(g, np.full(3, 2.0 ** np.argmax(x)))


def test_partition_value_is_numpys_exactly_with_ties_and_gradient_follows_it():
    x = np.array([[3.0, 1.0, 2.0, 1.0, 3.0, 0.5], [2.0, 2.0, 2.0, 1.0, 5.0, -1.0]])
    for kth in (0, 2, (1, 4), -1):
        got = graphc.jit(lambda x, kth=kth: gnp.partition(x, kth), static_argnames=("kth",))(x)
        np.testing.assert_array_equal(got, np.partition(x, kth))
    w = np.arange(1.0, 7.0)
    g = graphc.grad(lambda x, w: gnp.sum(gnp.partition(x, 2) * w))(x, w)
    perm = np.argpartition(x, 2)
    want = np.zeros_like(x)
    np.put_along_axis(want, perm, np.broadcast_to(w, x.shape), axis=1)
    np.testing.assert_array_equal(g, want)
    assert np.array_equal(gnp.partition(x, 1, axis=0), np.partition(x, 1, axis=0))  # eager


def test_gradient_returns_numpys_containers_and_second_derivatives():
    x = np.linspace(0.0, 1.0, 7) ** 3
    one = graphc.jit(lambda x: gnp.gradient(x, 1 / 6, edge_order=2))(x)
    np.testing.assert_allclose(one, np.gradient(x, 1 / 6, edge_order=2), rtol=1e-12)
    y = R.normal(size=(3, 4))
    got = graphc.jit(lambda y: gnp.gradient(y))(y)
    want = np.gradient(y)
    assert type(got) is type(want) and len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert type(gnp.gradient(y)) is type(want)  # eager: NumPy's own
    # linear in f (f -> D f): the Hessian-vector product of |D f|^2 / 2 is D^T D v, at any point
    gq = graphc.grad(lambda x: gnp.sum(gnp.gradient(x) ** 2) / 2)
    hv = graphc.grad(lambda x, v: gnp.sum(gq(x) * v))
    D = np.stack([np.gradient(e) for e in np.eye(5)], axis=1)
    v = R.normal(size=5)
    np.testing.assert_allclose(hv(R.normal(size=5), v), D.T @ D @ v, rtol=1e-12, atol=1e-12)


def test_einsum_sublists_match_numpy_eagerly_and_refuse_bad_subscripts():
    a, b = R.normal(size=(2, 3)), R.normal(size=(3, 4))
    np.testing.assert_allclose(gnp.einsum(a, [0, 1], b, [1, 2]), np.einsum(a, [0, 1], b, [1, 2]))
    np.testing.assert_allclose(gnp.einsum(a, [1, 0], [0]), np.einsum(a, [1, 0], [0]))
    with pytest.raises(ValueError, match="sublist"):
        graphc.jit(lambda a: gnp.einsum(a, [0, -1]))(a)


def test_diagonal_offsets_eagerly_and_on_non_square_matrices():
    a = R.normal(size=(3, 5))
    for k in range(-2, 5):
        np.testing.assert_array_equal(graphc.jit(lambda a, k: gnp.diagonal(a, k), static_argnames=("k",))(a, k=k),
                                      np.diagonal(a, k))
        got = graphc.jit(lambda a, k: gnp.trace(a, k), static_argnames=("k",))(a, k=k)
        assert got == pytest.approx(np.trace(a, k), rel=1e-14)
        np.testing.assert_array_equal(gnp.diagonal(a, k), np.diagonal(a, k))
    # past the matrix (autograd's test_trace2 draws such offsets): 0, and a zero gradient
    for k in (5, -3):
        v, g = graphc.value_and_grad(lambda a, k: gnp.sum(gnp.trace(a, k)), static_argnames=("k",))(a, k=k)
        assert v == 0.0 and np.array_equal(g, np.zeros_like(a))
    v, g = graphc.value_and_grad(lambda a: gnp.sum(gnp.trace(a, 4, axis1=1, axis2=2) * 2.0))(R.normal(size=(2, 3, 4)))
    assert v == 0.0 and g.shape == (2, 3, 4) and not g.any()


# ---------------------------------------------------------------- captured arrays and the coverage table

@pytest.mark.parametrize("target", TENSOR_TARGETS)
def test_captured_numpy_arrays_are_constants_of_the_program(target):
    """As JAX's closure constants: a float array, a mask, integers used as numbers, infinities,
    uniform arrays (one broadcast number); values and gradients against hand NumPy."""
    rng = np.random.default_rng(0)
    w, mask, ints = rng.normal(size=(2, 3)), np.array([[True, False, True], [False, True, True]]), np.arange(3)
    low = np.array([-np.inf, 0.0, -np.inf])

    def f(x):
        y = gnp.where(mask, x * w + ints, 0.0) + gnp.maximum(x, low) * gnp.ones((2, 3)) + gnp.zeros(3)
        return gnp.sum(y ** 2)

    x = rng.normal(size=(2, 3))
    v, g = graphc.value_and_grad(f, target=target)(x)
    y = np.where(mask, x * w + ints, 0.0) + np.maximum(x, low)
    dmax = np.where(low == -np.inf, 1.0, (x > low) + 0.5 * (x == low))
    assert v == pytest.approx(np.sum(y ** 2), rel=1e-13)
    np.testing.assert_allclose(g, 2 * y * (np.where(mask, w, 0.0) + dmax), rtol=1e-12)


def test_captured_arrays_print_parse_and_check_against_sympy():
    from graphc.verify.tensor import check_tensor

    c = np.array([0.25, -3.0, 1e-3])
    x = np.array([0.3, -1.2, 2.0])
    fn = graphc.compile(graphc.value_and_grad(lambda x: gnp.sum(gnp.exp(x * c)) + gnp.sum(x * np.arange(3))).lower(x))
    text = graphc.print_graph(fn.forward_graph)
    assert "array" in text and graphc.print_graph(graphc.parse_graph(text)) == text
    graphc.from_json(graphc.to_json(fn.forward_graph))
    assert check_tensor(fn, values=[{"x": x}]).ok


def test_the_coverage_doc_is_generated_from_coverage():
    from pathlib import Path

    from graphc.numpy_math import coverage_markdown

    doc = Path(__file__).resolve().parent.parent / "docs" / "numpy-coverage.md"
    assert doc.read_text() == coverage_markdown(), (
        "docs/numpy-coverage.md is stale: python -c 'import graphc.numpy_math as m; m.write_coverage_doc()'")


ISSUE_26 = """concatenate stack hstack vstack split array_split expand_dims squeeze flip tile repeat pad roll swapaxes
moveaxis reshape ravel var std prod cumsum cumprod diff argmax argmin sort argsort einsum outer inner tensordot trace
diag tril triu kron cross linalg.norm maximum minimum fmax fmin logaddexp2 reciprocal sinc deg2rad rad2deg
nan_to_num mod floor_divide linspace arange ones_like zeros_like full_like select dot take take_along_axis where
zeros ones full eye identity copy""".split()


def test_every_function_issue_26_names_is_covered_and_supported():
    table = dict(gnp.coverage())
    missing = [name for name in ISSUE_26 if not table.get(name)]
    assert not missing, missing
