"""Tracing: Python functions over pytrees of arrays -> value and gradients.

References: hand-written NumPy forward+backward, formula-text spellings of the
same function (identical optimised IR), finite differences, SymPy via check.
"""

import numpy as np
import pytest
from conftest import TENSOR_TARGETS

import graphc
import graphc.nn as nn
import graphc.numpy as gnp
from graphc import ArgumentError, GraphcError, ShapeError, TracingError


def mlp_loss(params, X, y, reg=1e-3):
    h = nn.relu(X @ params["W1"] + params["b1"])
    scores = h @ params["W2"] + params["b2"]
    return nn.cross_entropy(scores, y) + 0.5 * reg * (gnp.sum(params["W1"] ** 2) + gnp.sum(params["W2"] ** 2))


def mlp_by_hand(params, X, y, reg=1e-3):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    n = X.shape[0]
    z = X @ W1 + b1
    h = np.maximum(z, 0)
    s = h @ W2 + b2
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(n), y])) + 0.5 * reg * (np.sum(W1**2) + np.sum(W2**2))
    ds = p.copy()
    ds[np.arange(n), y] -= 1
    ds /= n
    dh = ds @ W2.T
    dh[z <= 0] = 0
    return loss, {"W1": X.T @ dh + reg * W1, "b1": dh.sum(0), "W2": h.T @ ds + reg * W2, "b2": ds.sum(0)}


def _data(rng, n=40, d=3, h=8, c=4, dtype=np.float64):
    params = {"W1": rng.normal(size=(d, h)), "b1": rng.normal(size=h) * 0.1, "W2": rng.normal(size=(h, c)),
              "b2": np.zeros(c)}
    params = {k: v.astype(dtype) for k, v in params.items()}
    return params, rng.normal(size=(n, d)).astype(dtype), rng.integers(0, c, n)


@pytest.mark.parametrize("target", TENSOR_TARGETS)
def test_value_and_grad_of_an_mlp_equals_hand_written_numpy(target):
    rng = np.random.default_rng(0)
    params, X, y = _data(rng)
    vg = graphc.value_and_grad(mlp_loss, target=target)
    value, grads = vg(params, X, y)
    want, wgrads = mlp_by_hand(params, X, y)
    assert value == pytest.approx(want, rel=1e-12)
    assert set(grads) == set(params)
    for k in params:
        np.testing.assert_allclose(grads[k], wgrads[k], rtol=1e-10, atol=1e-12)
    assert mlp_loss(params, X, y) == pytest.approx(want, rel=1e-12)  # the same code runs eagerly


def test_signatures_compile_once_and_structures_round_trip():
    rng = np.random.default_rng(1)
    params, X, y = _data(rng)
    vg = graphc.value_and_grad(mlp_loss, argnums=(0, 1))
    vg(params, X, y)
    vg(params, X + 1, y)
    assert vg.cache_info() == {"hits": 1, "misses": 1, "signatures": 1}
    vg(params, X[:10], y[:10])  # a new shape: a new signature
    assert vg.cache_info()["signatures"] == 2
    (_, (gp, gx)) = vg(params, X, y)
    assert isinstance(gp, dict) and gx.shape == X.shape
    g = graphc.grad(lambda ws, x: gnp.sum(ws[0] * x + ws[1][0] * x ** 2))([np.ones(3), (2.0,)], np.arange(3.0))
    assert isinstance(g, list) and isinstance(g[1], tuple)
    np.testing.assert_allclose(g[0], [0, 1, 2])
    assert g[1][0] == pytest.approx(5.0)


def test_traced_and_formula_spellings_give_the_same_ir():
    def f(X, w, b, y):
        return gnp.mean(nn.softplus(-y * (X @ w + b)))

    shapes = {"X": (5, 3), "w": (3,), "b": (), "y": (5,)}
    traced = graphc.value_and_grad(f, argnums=(0, 1, 2, 3)).lower(
        np.zeros((5, 3)), np.zeros(3), 0.0, np.zeros(5))
    text = graphc.Program("mean(softplus(-y * (X @ w + b)))", shapes=shapes, inputs=["X", "w", "b", "y"])
    assert traced.ir == text.ir


def test_has_aux_static_argnames_and_jit():
    def loss(w, x, scale):
        pred = x * w * scale
        return gnp.sum(pred ** 2), {"pred": pred, "n": gnp.sum(x * 0 + 1)}

    vg = graphc.value_and_grad(loss, has_aux=True, static_argnames="scale")
    (value, aux), g = vg(np.array([1.0, 2.0]), np.array([3.0, 4.0]), scale=2)
    assert value == pytest.approx(36 + 256)
    np.testing.assert_allclose(aux["pred"], [6.0, 16.0])
    assert aux["n"] == 2.0
    np.testing.assert_allclose(g, 2 * np.array([6.0, 16.0]) * np.array([3.0, 4.0]) * 2)
    vg(np.array([1.0, 2.0]), np.array([3.0, 4.0]), scale=3)
    assert vg.cache_info()["signatures"] == 2  # a static value is part of the signature
    f = graphc.jit(lambda a, b: (a @ b, {"s": gnp.sum(a)}))
    out, extra = f(np.eye(2), np.array([1.0, 2.0]))
    np.testing.assert_allclose(out, [1.0, 2.0])
    assert extra["s"] == 2.0


def test_numpy_functions_route_to_graphc_on_tracers():
    def f(x):
        return np.sum(np.exp(x) * np.tanh(x)) + np.mean(np.maximum(x, 0.0))

    v, g = graphc.value_and_grad(f)(np.array([0.5, -1.0, 2.0]))
    x = np.array([0.5, -1.0, 2.0])
    assert v == pytest.approx(f(x))
    want = np.exp(x) * np.tanh(x) + np.exp(x) / np.cosh(x) ** 2 + (x > 0) / 3
    np.testing.assert_allclose(g, want, rtol=1e-13)


def test_float32_arguments_trace_a_float32_program():
    rng = np.random.default_rng(2)
    params, X, y = _data(rng, dtype=np.float32)
    v, g = graphc.value_and_grad(mlp_loss)(params, X, y)
    want, wg = mlp_by_hand({k: a.astype(np.float64) for k, a in params.items()}, X.astype(np.float64), y)
    assert v == pytest.approx(want, rel=1e-5)
    assert g["W1"].dtype == np.float32
    np.testing.assert_allclose(g["W1"], wg["W1"], rtol=1e-4, atol=1e-5)


def test_finite_differences_on_a_traced_model():
    def f(p, x):
        return gnp.sum(nn.softmax(gnp.tanh(x @ p["A"]) * p["c"], axis=1) ** 2)

    rng = np.random.default_rng(3)
    p = {"A": rng.normal(size=(3, 4)), "c": rng.normal(size=4)}
    x = rng.normal(size=(5, 3))
    v, g = graphc.value_and_grad(f)(p, x)
    h = 1e-6
    for k in p:
        flat = p[k].reshape(-1)
        for i in range(flat.size):
            up, down = flat.copy(), flat.copy()
            up[i] += h
            down[i] -= h
            fd = (f({**p, k: up.reshape(p[k].shape)}, x) - f({**p, k: down.reshape(p[k].shape)}, x)) / (2 * h)
            assert g[k].reshape(-1)[i] == pytest.approx(fd, rel=1e-5, abs=1e-8)


# ------------------------------------------------------------------ errors, each with its phrase


def test_python_control_flow_on_a_traced_value():
    def f(x):
        if gnp.sum(x) > 0:
            return gnp.sum(x)
        return -gnp.sum(x)

    with pytest.raises(TracingError, match="use graphc.numpy.where"):
        graphc.value_and_grad(f)(np.ones(3))
    with pytest.raises(TracingError, match="no truth value"):
        graphc.grad(lambda x: gnp.sum(x) if bool(gnp.sum(x) > 0) else 0.0)(np.ones(2))
    with pytest.raises(TracingError, match="no truth value"):
        graphc.grad(lambda x: gnp.sum(x) if (gnp.sum(x) > 0 and True) else 0.0)(np.ones(2))


def test_numpy_function_without_a_graphc_counterpart():
    with pytest.raises(TracingError, match="numpy.convolve is not traced by graphc: use graphc.numpy"):
        graphc.grad(lambda x: np.sum(np.convolve(x, x)))(np.ones(3))


def test_non_scalar_output_for_grad():
    with pytest.raises(ShapeError, match="a gradient needs a scalar; reduce it with sum"):
        graphc.grad(lambda x: x * 2)(np.ones(3))


def test_bad_arguments():
    with pytest.raises(ArgumentError, match="is a Python str"):
        graphc.grad(lambda x: gnp.sum(x))("abc")
    with pytest.raises(ArgumentError, match="is a bool"):
        graphc.grad(lambda x: x * 2)(True)
    with pytest.raises(ArgumentError, match="argnums=3"):
        graphc.grad(lambda x: gnp.sum(x), argnums=3)(np.ones(2))
    with pytest.raises(ArgumentError, match="mix float dtypes"):
        graphc.grad(lambda a, b: gnp.sum(a * b))(np.ones(2), np.ones(2, np.float32))


def test_in_place_mutation_and_indexing():
    def f(x):
        x[0] = 1.0
        return gnp.sum(x)

    with pytest.raises(TracingError, match=r"in-place mutation.*x\.at\[idx\]\.set\(v\)"):
        graphc.grad(f)(np.ones(3))
    assert graphc.grad(lambda x: x[0] * 2)(np.ones(3)).tolist() == [2.0, 0.0, 0.0]  # indexing traces (issue 26)


def test_captured_arrays_and_conversions():
    data = np.array([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(graphc.grad(lambda w: gnp.sum(w * data))(np.ones(3)), data)  # a constant
    big = np.ones(1 << 17)
    big[0] = 2.0  # not uniform (a uniform one is one broadcast number, whatever its size)
    with pytest.raises(GraphcError, match="constants hold at most 65536 entries; pass it as an argument"):
        graphc.grad(lambda w: gnp.sum(w * big))(np.ones(1 << 17))
    np.testing.assert_array_equal(graphc.grad(lambda w: gnp.sum(w * np.ones(1 << 17)))(np.ones(1 << 17)), 1.0)
    with pytest.raises(TracingError, match="float\\(\\) of a traced value"):
        graphc.grad(lambda w: float(gnp.sum(w)))(np.ones(3))


def test_check_traces_a_function_against_sympy():
    def f(W, x):
        return gnp.sum(nn.sigmoid(W @ x)) + gnp.mean(gnp.exp(-x) * x)

    report = graphc.check(f, np.ones((2, 3)), np.array([0.5, -1.0, 2.0]))
    assert report.ok, str(report)


def test_an_argument_returned_as_aux_as_it_is():
    """Regression: an output that is an input node itself (aux = x) crashed the rewriter
    with a KeyError (found by benchmarks/peer_suites.py)."""
    assert graphc.grad(lambda x: (x * 2.0, x), has_aux=True)(3.5) == (2.0, 3.5)
    (v, aux), g = graphc.value_and_grad(lambda x: (gnp.sum(x * x), x), has_aux=True)(np.array([1.0, 2.0]))
    assert v == 5.0 and aux.tolist() == [1.0, 2.0] and g.tolist() == [2.0, 4.0]


def test_unflatten_keeps_no_reference_to_the_leaves():
    """Regression: unflatten's recursive closure was a reference cycle holding the leaves (a
    step's results) until the garbage collector ran, so their memory could not be recycled."""
    import sys

    from graphc.trace import flatten, unflatten

    x = np.zeros(3)
    tree = flatten({"a": [x, 1.0], "b": (x,)}, "p")[2]
    before = sys.getrefcount(x)
    y = unflatten(tree, [x, 1.0, x])
    assert sys.getrefcount(x) == before + 2  # y["a"][0] and y["b"][0], nothing else
    del y
    assert sys.getrefcount(x) == before
