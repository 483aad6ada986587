"""Indexing traced arrays (issue 26): NumPy's basic and advanced indexing, traced int64
indices as data (JAX's clamp / drop rule), JAX's functional updates `x.at[idx]`.

References: NumPy's own indexing for values; np.add.at of the upstream gradient (the
scatter-add every gather's gradient is); central differences of NumPy's ufunc.at for
the updates; SymPy's exact derivatives (graphc.verify.tensor) on small shapes.
"""

import numpy as np
import pytest
from conftest import FUZZ, TENSOR_TARGETS_THREADS_SLOW, fd_grad
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc
import graphc.numpy as gnp
from graphc import GraphcError, ShapeError, UnsupportedError
from graphc.numpy_shape import IndexRangeError
from graphc.verify.tensor import check_tensor

RNG = np.random.default_rng(26)
X = RNG.normal(size=(3, 4, 5))
I = np.array([0, 2, 2, -1])  # noqa: E741 - repeated and negative

# static keys: basic, then advanced (NumPy's placement rules: adjacent arrays in place, separated first)
BASIC = [
    (0,), (-1,), (slice(None), slice(1, None)), (Ellipsis, 0), (None,), (slice(None, None, -1),),
    (slice(None), None, slice(None, None, -2), -1), (1, slice(3, 0, -2), slice(None, None, 3)), (Ellipsis,),
    (slice(5, 1),), (-2, Ellipsis, None), (slice(-100, 100, 2),), (2, 3, 4), (slice(None), 1, None, slice(1, 4)),
]
ADVANCED = [
    (I,), (0, slice(None), I), (slice(None), I, I), (I, None, I), (Ellipsis, np.array([1, 3]), 0),
    (slice(1, None), [[0, 1], [2, 3]]), (np.array([True, False, True]),), (None, I), (-1, -2, -3),
    (slice(None, None, -2), None, np.array([[3], [0]]), np.array([1, 1, 4])), (Ellipsis, I),
    (np.ones((3, 4), bool) & (X[..., 0] > 0),), (I[:, None], slice(None), np.array([0, 4])), ([],),
]
KEYS = BASIC + ADVANCED


def _scatter_ref(shape, key, C):
    G = np.zeros(shape)
    np.add.at(G, key, C)  # every gather's gradient: duplicates accumulate
    return G


def _show(key):
    return "-".join(type(k).__name__ if isinstance(k, (np.ndarray, list)) else repr(k) for k in key)


@pytest.mark.parametrize("target", TENSOR_TARGETS_THREADS_SLOW)
def test_every_static_key_against_numpy_in_one_program(target):
    """All the keys in one traced program per target: each value against NumPy's, the
    gradient against np.add.at of its upstream weights."""
    Cs = [RNG.normal(size=np.shape(X[k])) for k in KEYS]

    def f(x, Cs):
        return gnp.sum(gnp.stack([gnp.sum(x[k] * C) for k, C in zip(KEYS, Cs)]) * np.arange(1.0, len(KEYS) + 1))

    # the weights 1..n captured: constants of the program (one more compile: on llvm and numpy only,
    # Numba's targets take seconds a program)
    captured = graphc.value_and_grad(f, target=target if target in ("llvm", "numpy") else "llvm")(X, Cs)

    def g(x, Cs, w):
        return gnp.sum(gnp.stack([gnp.sum(x[k] * C) for k, C in zip(KEYS, Cs)]) * w)

    w = np.arange(1.0, len(KEYS) + 1)
    v, grad = graphc.value_and_grad(g, target=target)(X, Cs, w)
    assert v == pytest.approx(sum(wk * np.sum(X[k] * C) for wk, k, C in zip(w, KEYS, Cs)), rel=1e-12)
    want = sum(wk * _scatter_ref(X.shape, k, C) for wk, k, C in zip(w, KEYS, Cs))
    np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-12)
    assert captured[0] == pytest.approx(v, rel=1e-14)
    np.testing.assert_allclose(captured[1], grad, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("key", KEYS, ids=_show)
def test_each_key_shape_value_and_gradient(key):
    want = X[key]
    seen = {}

    def f(x):
        y = x[key]
        seen["shape"] = y.shape
        return gnp.sum(y * y)

    v, g = graphc.value_and_grad(f, target="numpy")(X)
    assert seen["shape"] == want.shape
    assert v == pytest.approx(float(np.sum(want**2)), rel=1e-13)
    np.testing.assert_allclose(g, _scatter_ref(X.shape, key, 2 * want), rtol=1e-13)


def test_python_loop_over_rows_unrolls():
    Xs, w = RNG.normal(size=(5, 3)), RNG.normal(size=3)

    def loss(w, X):
        total = 0.0
        for i in range(X.shape[0]):
            total = total + (X[i] @ w - float(i)) ** 2
        return total

    v, g = graphc.value_and_grad(loss)(w, Xs)
    r = Xs @ w - np.arange(5)
    assert v == pytest.approx(float(np.sum(r**2)), rel=1e-13)
    np.testing.assert_allclose(g, 2 * Xs.T @ r, rtol=1e-12)
    with pytest.raises(GraphcError, match="iterating"):
        graphc.value_and_grad(lambda X: gnp.sum(gnp.stack([r for r in X])))(Xs)


def test_a_batch_axis_traced_by_name_keeps_full_slices():
    """x[:, 1:] keeps a symbolic batch axis (one program for every size); x[0] of it
    traces per size. Values stay NumPy's at every size."""
    f = graphc.value_and_grad(lambda x: gnp.sum(x[:, 1:] ** 2) + gnp.sum(x[None, ..., ::-1][0, :, 0]))
    h = graphc.value_and_grad(lambda x: gnp.sum(x[0] ** 2) + gnp.sum(x[-1]))
    for n in (3, 5, 7):
        x = RNG.normal(size=(n, 4))
        v, g = f(x)
        assert v == pytest.approx(float(np.sum(x[:, 1:] ** 2) + np.sum(x[:, -1])), rel=1e-13)
        want = np.zeros_like(x)
        want[:, 1:] = 2 * x[:, 1:]
        want[:, -1] += 1
        np.testing.assert_allclose(g, want, rtol=1e-13)
        v, g = h(x)
        assert v == pytest.approx(float(np.sum(x[0] ** 2) + np.sum(x[-1])), rel=1e-13)
    assert f.cache_info()["signatures"] == 2  # the concrete first trace and the symbolic one


# ------------------------------------------------------------------ traced (data) indices


@pytest.mark.parametrize("target", TENSOR_TARGETS_THREADS_SLOW)
def test_traced_indices_gather_clamp_and_scatter_add_gradients(target):
    """x[idx], x[rows, cols] and x[arange(N), labels] with int64 indices passed as data:
    negatives count from the end, indices still out of range clamp (JAX's rule)."""
    x = RNG.normal(size=(4, 3))
    idx = np.array([0, 3, 3, -1, 9, -7])
    rows, cols = np.array([[0, 1], [3, 3]]), np.array([2, -1])
    labels = np.array([2, 0, 0, 1])
    C1, C2 = RNG.normal(size=(6, 3)), RNG.normal(size=(2, 2))

    def f(x, idx, rows, cols, labels, C1, C2):
        return gnp.sum(x[idx] * C1) + gnp.sum(x[rows, cols] * C2) + gnp.sum(x[np.arange(4), labels] ** 2)

    v, g = graphc.value_and_grad(f, target=target)(x, idx, rows, cols, labels, C1, C2)
    ci = np.clip(np.where(idx < 0, idx + 4, idx), 0, 3)
    want_v = np.sum(x[ci] * C1) + np.sum(x[rows, cols] * C2) + np.sum(x[np.arange(4), labels] ** 2)
    assert v == pytest.approx(float(want_v), rel=1e-12)
    G = np.zeros_like(x)
    np.add.at(G, ci, C1)
    np.add.at(G, (rows, cols), C2)
    np.add.at(G, (np.arange(4), labels), 2 * x[np.arange(4), labels])
    np.testing.assert_allclose(g, G, rtol=1e-12)


def test_traced_index_through_take_and_take_along_axis():
    x = RNG.normal(size=(3, 5))
    idx = np.array([[4, 0], [1, 1], [-1, 2]])
    C = RNG.normal(size=(3, 2))
    v, g = graphc.value_and_grad(lambda x, i, C: gnp.sum(gnp.take_along_axis(x, i, axis=1) * C))(x, idx, C)
    assert v == pytest.approx(float(np.sum(np.take_along_axis(x, idx, 1) * C)), rel=1e-13)
    G = np.zeros_like(x)
    np.add.at(G, (np.arange(3)[:, None], idx), C)
    np.testing.assert_allclose(g, G, rtol=1e-13)
    v, g = graphc.value_and_grad(lambda x, i: gnp.sum(gnp.take(x, i, axis=1) ** 2))(x, np.array([0, 0, 4]))
    assert v == pytest.approx(float(np.sum(np.take(x, [0, 0, 4], axis=1) ** 2)), rel=1e-13)


def test_traced_scalar_index():
    x = RNG.normal(size=(4, 2))
    for i in (0, 3, -2):
        v, g = graphc.value_and_grad(lambda x, i: gnp.sum(x[i] * x[i]))(x, np.asarray(i, dtype=np.int64))
        assert v == pytest.approx(float(np.sum(x[i] ** 2)), rel=1e-13)
        want = np.zeros_like(x)
        want[i] = 2 * x[i]
        np.testing.assert_allclose(g, want, rtol=1e-13)


# ------------------------------------------------------------------ functional updates (JAX's .at)

UFUNC = {"add": np.add, "multiply": np.multiply, "max": np.maximum, "min": np.minimum}
UPDATE_KEYS = [(1, slice(None, 3)), (np.array([0, 2, 0]),), (slice(None), np.array([1, 1, 3]), 0), (Ellipsis, 1),
               (slice(None, None, -1), None, 2), (np.array([0, 2]), slice(1, 3), np.array([4, 4]))]


def _updated(x, key, v, mode):
    r = x.copy()
    if mode == "set":
        r[key] = v
    else:
        UFUNC[mode].at(r, key, v)
    return r



@pytest.mark.parametrize("mode", ["set", "add", "multiply", "max", "min"])
@pytest.mark.parametrize("key", UPDATE_KEYS, ids=_show)
def test_at_updates_value_and_gradients_against_finite_differences(key, mode):
    x = RNG.normal(size=(3, 4, 5))
    v = RNG.normal(size=x[key].shape)
    W = RNG.normal(size=x.shape)

    def f(x, v, W):
        return gnp.sum(getattr(x.at[key], mode)(v) * W)

    val, (gx, gv) = graphc.value_and_grad(f, argnums=(0, 1), target="numpy")(x, v, W)

    def ref(x, v):
        return float(np.sum(_updated(x, key, v, mode) * W))

    assert val == pytest.approx(ref(x, v), rel=1e-13)
    np.testing.assert_allclose(gx, fd_grad(lambda a: ref(a, v), x), atol=1e-7)
    np.testing.assert_allclose(gv, fd_grad(lambda a: ref(x, a), v), atol=1e-7)


def test_at_updates_broadcast_scalars_and_keep_x():
    x = RNG.normal(size=(4, 3))

    def f(x):
        y = x.at[1:3].set(0.0).at[:, 0].add(2.0).at[np.array([0, 0, 3])].multiply(3.0)
        return gnp.sum(y * x), y

    (v, y), g = graphc.value_and_grad(f, has_aux=True)(x)
    want = x.copy()
    want[1:3] = 0.0
    want[:, 0] += 2.0
    np.multiply.at(want, [0, 0, 3], 3.0)
    np.testing.assert_allclose(y, want, rtol=1e-14)
    assert v == pytest.approx(float(np.sum(want * x)), rel=1e-13)
    v, g = graphc.value_and_grad(lambda x: gnp.sum(x.at[0].get() * x.at[0].set(1.0)[0]))(x)
    assert v == pytest.approx(float(np.sum(x[0])), rel=1e-14)
    np.testing.assert_array_equal(g, np.eye(4, 3)[:1].repeat(4, 0) * 0 + np.where(np.arange(4)[:, None] == 0, 1.0, 0.0))


def test_at_with_traced_indices_drops_out_of_range_updates():
    """JAX's rule: an update whose (data) index is out of range is dropped, and gets no gradient."""
    x, v = RNG.normal(size=5), RNG.normal(size=5)
    idx = np.array([1, 1, -1, 5, -6])

    def f(x, v, idx):
        return gnp.sum(x.at[idx].add(v) ** 2) + gnp.sum(x.at[idx].set(v) * 3.0) + gnp.sum(x.at[idx].max(v))

    val, (gx, gv) = graphc.value_and_grad(f, argnums=(0, 1))(x, v, idx)
    keep = (idx >= -5) & (idx < 5)
    k = np.where(idx < 0, idx + 5, idx)[keep]

    def ref(x, v):
        vk = v[keep]
        return float(np.sum(_updated(x, k, vk, "add") ** 2) + np.sum(_updated(x, k, vk, "set") * 3.0)
                     + np.sum(_updated(x, k, vk, "max")))

    assert val == pytest.approx(ref(x, v), rel=1e-13)
    np.testing.assert_allclose(gx, fd_grad(lambda a: ref(a, v), x), atol=1e-6)
    np.testing.assert_allclose(gv, fd_grad(lambda a: ref(x, a), v), atol=1e-6)
    assert gv[3] == 0.0 and gv[4] == 0.0


def test_set_with_duplicates_the_last_update_wins_and_gets_the_gradient():
    x, v = np.zeros(3), np.array([1.0, 2.0, 3.0])
    (val, y), gv = graphc.value_and_grad(lambda v, x: (gnp.sum(x.at[np.array([1, 1, 2])].set(v) * 10.0),
                                                       x.at[np.array([1, 1, 2])].set(v)), has_aux=True)(v, x)
    np.testing.assert_array_equal(y, [0.0, 2.0, 3.0])
    np.testing.assert_array_equal(gv, [0.0, 10.0, 10.0])


# ------------------------------------------------------------------ float32, SymPy


def test_float32_within_tolerance():
    x = X.astype(np.float32)
    C = RNG.normal(size=X[ADVANCED[1]].shape).astype(np.float32)
    for target in ("numpy", "llvm"):
        v, g = graphc.value_and_grad(lambda x, C: gnp.sum(x[0, :, I] * C) + gnp.sum(x[:, ::-2] ** 2),
                                     target=target)(x, C)
        x64 = x.astype(np.float64)
        want = np.sum(x64[0, :, I] * C) + np.sum(x64[:, ::-2] ** 2)
        assert g.dtype == np.float32 and v == pytest.approx(float(want), rel=1e-5)
        G = _scatter_ref(x.shape, (0, slice(None), I), C) + _scatter_ref(x.shape, (slice(None), slice(None, None, -2)),
                                                                         2 * x64[:, ::-2])
        np.testing.assert_allclose(g, G, rtol=1e-5, atol=1e-5)


def _compiled(f, *args):
    return graphc.compile(graphc.value_and_grad(f, argnums=tuple(range(len(args)))).lower(*args))


@pytest.mark.parametrize("case", ["basic", "gather", "updates"])
def test_against_sympy(case):
    x, v = RNG.normal(size=(3, 4)), RNG.normal(size=(3,))
    idx = np.array([2, 0, 2])
    if case == "basic":
        fn = graphc.compile(graphc.value_and_grad(lambda x: gnp.sum(x[1:, ::-2] ** 3) + gnp.sum(x[None, -1, 1:3] *
                                                                                              x[0, :2])).lower(x))
        values = [{"x": x}]
    elif case == "gather":
        fn = graphc.compile(graphc.value_and_grad(
            lambda x, v, idx: gnp.sum(gnp.tanh(x[idx]) * v[:, None]) + gnp.sum(x[idx, np.array([1, 1, 3])] ** 2),
            argnums=(0, 1)).lower(x, v, idx))
        values = [{"x": x, "v": v, "idx": idx}]
    else:
        fn = graphc.compile(graphc.value_and_grad(
            lambda x, v, idx: gnp.sum(x.at[idx, 1].max(v) ** 2) + gnp.sum(x.at[idx].multiply(x[0]) * x)
            + gnp.sum(x.at[1:, idx].set(2.0 * x[:2, :3]) ** 2) + gnp.sum(gnp.sin(x.at[idx, 0].add(v))),
            argnums=(0, 1)).lower(x, v, idx))
        values = [{"x": x, "v": v, "idx": idx}]
    report = check_tensor(fn, values=values)
    assert report.ok, str(report)


# ------------------------------------------------------------------ property tests


@st.composite
def _slices(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    key = []
    for d in shape:
        kind = draw(st.sampled_from(["slice", "int", "none", "full"]))
        if kind == "int":
            key.append(draw(st.integers(-d, d - 1)))
        elif kind == "none":
            key += [None, slice(None)]
        elif kind == "full":
            key.append(slice(None))
        else:
            b = st.one_of(st.none(), st.integers(-d - 2, d + 2))
            key.append(slice(draw(b), draw(b), draw(st.one_of(st.none(), st.integers(-3, 3).filter(bool)))))
    return shape, tuple(key)


@settings(FUZZ, max_examples=40)
@given(_slices())
def test_random_static_slices_match_numpy(case):
    shape, key = case
    x = np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape)
    want = x[key]
    C = np.arange(want.size, dtype=float).reshape(want.shape) - 1.5
    v, g = graphc.value_and_grad(lambda x, C: gnp.sum(x[key] * C), target="numpy")(x, C)
    assert v == float(np.sum(want * C))
    np.testing.assert_array_equal(g, _scatter_ref(shape, key, C))


@settings(FUZZ, max_examples=30)
@given(st.integers(1, 4), st.integers(1, 3), st.lists(st.integers(-4, 3), min_size=1, max_size=8), st.booleans())
def test_random_gathers_with_repeated_indices(n, m, raw, traced):
    x = np.arange(1.0, 1.0 + n * m).reshape(n, m) / 7
    idx = np.array([i % n - (n if i < 0 else 0) for i in raw])  # in range, negatives included, repeats likely
    C = np.linspace(-1, 2, idx.size * m).reshape(idx.size, m)
    if traced:
        v, g = graphc.value_and_grad(lambda x, i, C: gnp.sum(x[i] * C), target="numpy")(x, idx, C)
    else:
        v, g = graphc.value_and_grad(lambda x, C: gnp.sum(x[idx] * C), target="numpy")(x, C)
    assert v == pytest.approx(float(np.sum(x[idx] * C)), rel=1e-13)
    np.testing.assert_allclose(g, _scatter_ref(x.shape, idx, C), rtol=1e-13)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("key,match", [
    ((3,), "index 3 is out of bounds for axis 0 with size 3"),
    ((0, -5), "index -5 is out of bounds for axis 1 with size 4"),
    ((np.array([0, 7]),), "index 7 is out of bounds for axis 0 with size 3"),
    ((slice(None), [1, -9]), "index -9 is out of bounds for axis 1 with size 4"),
    ((0, 0, 0, 0), "too many indices"),
    ((Ellipsis, 0, Ellipsis), "single ellipsis"),
    ((np.array([0, 1]), np.array([0, 1, 2])), "could not be broadcast"),
    ((np.array([True, False]),), "boolean index"),
    ((slice(None, None, 0),), "step cannot be zero"),
])
def test_static_index_out_of_range_is_a_shape_error_naming_it(key, match):
    with pytest.raises(IndexRangeError, match=match) as exc:
        graphc.value_and_grad(lambda W: gnp.sum(W[key]))(X)
    assert isinstance(exc.value, ShapeError) and isinstance(exc.value, IndexError)
    if "out of bounds" in match:
        assert "W of shape (3, 4, 5)" in str(exc.value)


@pytest.mark.parametrize("make_key,err,match", [
    (lambda x, i: (1.5,), GraphcError, "valid indices"),
    (lambda x, i: (x[0, 0, 0],), GraphcError, "traced float"),
    (lambda x, i: (x > 0,), UnsupportedError, "where"),
    (lambda x, i: (slice(i, None),), GraphcError, "slice bound is a traced value"),
    (lambda x, i: (True,), UnsupportedError, "bool"),
])
def test_indices_that_cannot_be_traced_are_refused(make_key, err, match):
    with pytest.raises(err, match=match):
        graphc.value_and_grad(lambda x, i: gnp.sum(x[make_key(x, i)]))(X, np.int64(1))


def test_update_shape_mismatch_and_bad_mode():
    with pytest.raises(ShapeError, match=r"update of shape \(3,\) does not broadcast to the indexed shape \(4, 5\)"):
        graphc.value_and_grad(lambda x, v: gnp.sum(x.at[0].set(v)))(X, np.ones(3))
    with pytest.raises(IndexRangeError, match="index 9"):
        graphc.value_and_grad(lambda x: gnp.sum(x.at[9].add(1.0)))(X)
    from graphc.numpy_shape import index_update

    with pytest.raises(UnsupportedError, match="not an update"):
        graphc.value_and_grad(lambda x: gnp.sum(index_update(x, 0, 1.0, "divide")))(X)
