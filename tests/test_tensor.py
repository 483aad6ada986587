"""Tensor programs: shapes, matrix calculus, reductions, softmax family, masks.

References: the seed's vectorised worked examples, hand-derived NumPy
gradients (the CS231n way), SymPy's exact derivatives element by element
(graphc.verify.tensor), finite differences and 40-digit mpmath values.
"""

import json

import mpmath
import numpy as np
import pytest

import graphc
from graphc import ir
from graphc.errors import ArgumentError, GraphcError, ParseError, ShapeError, UnsupportedError
from graphc.verify.tensor import check_tensor

# ------------------------------------------------------------------ the seed


def test_seed_matrix_multiply_gradients():
    # the seed's x and W; its printed y = [[13, 9, -2, -6], [5, 2, 17, 1]] is an
    # arithmetic slip (x[0] . W[:, 0] = 2*3 + 1*2 - 3*3 = -1): NumPy's product is the reference
    x = np.array([[2, 1, -3], [-3, 4, 2.]])
    W = np.array([[3, 2, 1, -1], [2, 1, 3, 2], [3, 2, 1, -2.]])
    G = np.array([[2, 3, -3, 9], [-8, 1, 4, 6.]])  # upstream dL/dy
    fy = graphc.compile("sum(G * (x @ W))", shapes={"G": (2, 4), "x": (2, 3), "W": (3, 4)}, wrt=["x", "W"])
    value, grads = fy(G=G, x=x, W=W)
    np.testing.assert_array_equal(x @ W, [[-1, -1, 2, 6], [5, 2, 11, 7]])
    assert value == float(np.sum(G * (x @ W)))
    np.testing.assert_array_equal(grads["x"], G @ W.T)   # dL/dx = dL/dy . W^T
    np.testing.assert_array_equal(grads["W"], x.T @ G)   # dL/dW = x^T . dL/dy
    assert grads["x"].shape == (2, 3) and grads["W"].shape == (3, 4)


def test_seed_fully_connected_relu_layer():
    fn = graphc.compile("sum(relu(x @ W + b))", shapes={"x": (1, 2), "W": (2, 2), "b": (1, 2)})
    args = dict(x=[[1, 2]], W=[[0.5, -0.3], [0.8, 0.1]], b=[[0.1, -0.2]])
    value, g = fn(**args)
    assert value == pytest.approx(2.2, rel=1e-15)
    np.testing.assert_allclose(g["b"], [[1, 0]])
    np.testing.assert_allclose(g["W"], [[1, 0], [2, 0]])
    np.testing.assert_allclose(g["x"], [[0.5, 0.8]])
    np.testing.assert_allclose(fn.forward(**args), 2.2, rtol=1e-15)


def test_seed_two_layer_net_against_sympy():
    shapes = {"W2": (1, 2), "W1": (2, 2), "x": (2,), "b1": (2,), "b2": (1,)}
    fn = graphc.compile("sum(W2 @ relu(W1 @ x + b1) + b2)", shapes=shapes)
    point = dict(x=[1, -2], W1=[[2, 1], [-1, 3]], b1=[0, 0], W2=[[1, -1]], b2=[0])
    value, g = fn(**point)
    assert value == 0.0  # W1 x = [0, -7]: both units off
    # hand-derived: h = relu(W1 x + b1) = [0, 0]; dW2 = h; db2 = 1; relu'(0) = 0 stops the rest
    np.testing.assert_array_equal(g["W2"], [[0, 0]])
    np.testing.assert_array_equal(g["b2"], [1])
    np.testing.assert_array_equal(g["W1"], np.zeros((2, 2)))
    report = check_tensor(fn, points=3, seed=1)  # random points: away from the kink
    assert report.ok, str(report)


def test_seed_linear_svm_pipeline_against_sympy():
    formula = "sum(max(0, W @ x - pick(W @ x, y) + 1) * (1 - one_hot(y, 3))) + 0.1 * sum(W**2)"
    fn = graphc.compile(formula, shapes={"W": (3, 4), "x": (4,), "y": ()}, dtypes={"y": "int64"})
    W = np.array([[0.2, -0.5, 0.1, 2.0], [1.5, 1.3, 2.1, 0.0], [0, 0.25, 0.2, -0.3]])
    x = np.array([56, 231, 24, 2.0]) / 100
    value, g = fn(W=W, x=x, y=2)
    s = W @ x
    margins = np.maximum(0, s - s[2] + 1)
    margins[2] = 0
    assert value == pytest.approx(margins.sum() + 0.1 * np.sum(W**2), rel=1e-14)
    dW = 0.2 * W
    for j in range(3):
        if j != 2 and margins[j] > 0:
            dW[j] += x
            dW[2] -= x
    np.testing.assert_allclose(g["W"], dW, rtol=1e-14)
    assert check_tensor(fn, values=[{"W": W, "x": x, "y": np.int64(2)}]).ok


def test_bias_broadcast_over_rows_sums_the_upstream():
    rng = np.random.default_rng(3)
    x, W, b, G = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=(4,)), rng.normal(size=(5, 4))
    fn = graphc.compile("sum(G * (x @ W + b))", shapes={"x": ("N", 3), "W": (3, 4), "b": (4,), "G": ("N", 4)})
    _, g = fn(x=x, W=W, b=b, G=G)
    np.testing.assert_allclose(g["b"], np.sum(G, axis=0), rtol=1e-14)  # db = np.sum(dy, axis=0)
    assert g["b"].shape == (4,)


# ------------------------------------------------------------------ many programs vs SymPy

PROGRAMS = [
    ("sum(x * y)", {"x": (3,), "y": (3,)}, None),
    ("sum(x * y)", {"x": (2, 3), "y": (3,)}, None),
    ("sum(x * y)", {"x": (2, 1), "y": (1, 3)}, None),
    ("sum(sin(x) + b)", {"x": (2, 3), "b": ()}, None),
    ("mean(x)", {"x": ("N", 2)}, None),
    ("sum(mean(x, axis=0) ** 2)", {"x": (3, 2)}, None),
    ("sum(mean(x, axis=-1, keepdims=True) * x)", {"x": (2, 3)}, None),
    ("sum(sum(x, axis=(0, 2)) ** 3)", {"x": (2, 2, 2)}, None),
    ("sum(max(x, axis=1) * w)", {"x": (2, 3), "w": (2,)}, None),
    ("sum(min(x, axis=0, keepdims=True) - x)", {"x": (3, 2)}, None),
    ("logsumexp(x)", {"x": (2, 3)}, None),
    ("sum(logsumexp(x, axis=1) * w)", {"x": (2, 3), "w": (2,)}, None),
    ("sum(softmax(x) * y)", {"x": (2, 3), "y": (2, 3)}, None),
    ("sum(softmax(x, axis=0) * y)", {"x": (2, 3), "y": (2, 3)}, None),
    ("sum(log_softmax(x, 1) * y)", {"x": (2, 3), "y": (2, 3)}, None),
    ("cross_entropy(S, y)", {"S": ("N", 3), "y": ("N",)}, {"y": "int64"}),
    ("cross_entropy(S, y, reduction='sum')", {"S": (2, 3), "y": (2,)}, {"y": "int64"}),
    ("sum(cross_entropy(S, y, reduction='none') * w)", {"S": (2, 3), "y": (2,), "w": (2,)}, {"y": "int64"}),
    ("mean(pick(x, y) ** 2)", {"x": (3, 2), "y": (3,)}, {"y": "int64"}),
    ("sum(one_hot(y, 3) * x)", {"x": (2, 3), "y": (2,)}, {"y": "int64"}),
    ("a @ b", {"a": (3,), "b": (3,)}, None),
    ("sum(A @ v)", {"A": (2, 3), "v": (3,)}, None),
    ("sum(v @ A)", {"A": (3, 2), "v": (3,)}, None),
    ("sum(tanh(A @ B))", {"A": (2, 3), "B": (3, 2)}, None),
    ("sum(A @ B)", {"A": (2, 2, 3), "B": (3, 2)}, None),
    ("sum(A @ B)", {"A": (2, 3), "B": (2, 3, 2)}, None),
    ("sum(sigmoid(x.T @ x))", {"x": (3, 2)}, None),
    ("sum(transpose(x, axes=(1, 2, 0)) * y)", {"x": (2, 3, 2), "y": (3, 2, 2)}, None),
    ("sum(reshape(x, shape=(3, 2)) @ w)", {"x": (2, 3), "w": (2,)}, None),
    ("sum(broadcast_to(v, shape=(2, 3)) * x)", {"v": (3,), "x": (2, 3)}, None),
    ("sum(where(x > y, x * y, exp(x)))", {"x": (2, 3), "y": (3,)}, None),
    ("sum(where(x <= 0, 0, log1p(x)))", {"x": (4,)}, None),
    ("mean(softplus(-y * (X @ w + b)))", {"X": ("N", 3), "w": (3,), "b": (), "y": ("N",)}, None),
    ("sum(W2 @ relu(W1 @ x + b1) + b2)", {"W2": (2, 3), "W1": (3, 2), "x": (2,), "b1": (3,), "b2": (2,)}, None),
    ("cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y)",
     {"X": ("N", 2), "W1": (2, 3), "b1": (3,), "W2": (3, 2), "b2": (2,), "y": ("N",)}, {"y": "int64"}),
    ("sum(hypot(x, y) / (1 + x**2))", {"x": (2, 2), "y": (2,)}, None),
]


@pytest.mark.parametrize("formula,shapes,dtypes", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_programs_against_sympy_and_finite_differences(formula, shapes, dtypes):
    fn = graphc.compile(formula, shapes=shapes, dtypes=dtypes)
    report = check_tensor(fn, points=2, seed=len(formula))
    assert report.ok, str(report)
    fd_check(fn, seed=len(formula))


@pytest.mark.parametrize("formula,shapes,dtypes", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_programs_in_float32(formula, shapes, dtypes):
    fn = graphc.compile(formula, shapes=shapes, dtypes=dtypes, dtype="float32")
    report = check_tensor(fn, points=1, seed=7)
    assert report.ok, str(report)
    _, g = fn(**draw(fn, np.random.default_rng(0)))
    assert all(np.asarray(v).dtype == np.float32 for v in g.values() if np.ndim(v))


def draw(fn, rng, dim=3):
    out = {}
    for n in fn.forward_graph.inputs:
        shape = tuple(d if isinstance(d, int) else dim for d in n.shape)
        if n.type.is_float:
            out[n.attr] = rng.normal(size=shape)
        else:
            out[n.attr] = rng.integers(0, 2, size=shape)
    return out


def fd_check(fn, seed=0, h=1e-6):
    """Central differences of the value against every gradient entry."""
    rng = np.random.default_rng(seed)
    point = draw(fn, rng)
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


# ------------------------------------------------------------------ where never leaks NaN


@pytest.mark.parametrize("branch", ["sqrt(x)", "log(x)", "1/x", "x**0.5", "sqrt(log(x))"])
def test_where_gives_zero_gradient_in_the_branch_not_taken(branch):
    fn = graphc.compile(f"sum(where(x > 0, {branch}, 0))", shapes={"x": (4,)})
    x = np.array([-1.0, 0.0, 4.0, 9.0])
    value, g = fn(x=x)
    assert np.all(np.isfinite(g["x"])), g
    assert g["x"][0] == 0.0 and g["x"][1] == 0.0
    ref = graphc.compile(branch, target="numpy")
    np.testing.assert_allclose(g["x"][2:], ref(x[2:])[1]["x"], rtol=1e-15)


def test_where_in_pointwise_mode_and_through_both_branches():
    fn = graphc.compile("where(x > 0, sqrt(x), log(-x))", target="numpy")
    _, g = fn(np.array([-2.0, 4.0]))
    np.testing.assert_allclose(g["x"], [-0.5, 0.25])  # d/dx log(-x) = 1/x; d/dx sqrt(x) = 1/(2 sqrt(x))
    fn = graphc.compile("sum(where(x > 0, sqrt(x) * y, y / x))", shapes={"x": (3,), "y": (3,)})
    _, g = fn(x=[-1.0, 4.0, 1.0], y=[1.0, 2.0, 3.0])
    np.testing.assert_allclose(g["x"], [-1.0, 0.5, 1.5])
    np.testing.assert_allclose(g["y"], [-1.0, 2.0, 1.0])


# ------------------------------------------------------------------ stability at +-1000


def _mp_softmax_row(row):
    with mpmath.workdps(40):
        m = [mpmath.mpf(float(v)) for v in row]
        z = mpmath.fsum(mpmath.exp(v) for v in m)
        return [mpmath.exp(v) / z for v in m], mpmath.log(z)


def test_softmax_family_at_plus_minus_1000():
    x = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -1001.0, -999.5]])
    y = np.array([2, 1])
    soft = graphc.compile("sum(softmax(x) * w)", shapes={"x": (2, 3), "w": (2, 3)})
    w = np.arange(6.0).reshape(2, 3)
    value, g = soft(x=x, w=w)
    ref = [_mp_softmax_row(r) for r in x]
    want = float(sum(mpmath.fsum(p * wi for p, wi in zip(ps, ws)) for (ps, _), ws in zip(ref, w)))
    assert value == pytest.approx(want, rel=1e-14)
    assert np.all(np.isfinite(g["x"]))
    lse = graphc.compile("sum(logsumexp(x, axis=1))", shapes={"x": (2, 3)})
    v, g = lse(x=x)
    assert v == pytest.approx(float(sum(lse_ for _, lse_ in ref)), rel=1e-15)
    np.testing.assert_allclose(g["x"], [[float(p) for p in ps] for ps, _ in ref], rtol=1e-14, atol=1e-300)
    ce = graphc.compile("cross_entropy(x, y)", shapes={"x": (2, 3), "y": (2,)}, dtypes={"y": "int64"})
    v, g = ce(x=x, y=y)
    want = float((ref[0][1] - mpmath.mpf(999.0) + ref[1][1] - mpmath.mpf(-1001.0)) / 2)
    assert v == pytest.approx(want, rel=1e-14)
    expect = np.array([[float(p) for p in ps] for ps, _ in ref])
    expect[0, 2] -= 1
    expect[1, 1] -= 1
    np.testing.assert_allclose(g["x"], expect / 2, rtol=1e-13, atol=1e-300)
    ls = graphc.compile("sum(log_softmax(x) * w)", shapes={"x": (2, 3), "w": (2, 3)})
    v, g = ls(x=x, w=w)
    want = sum(float(mpmath.fsum((mpmath.mpf(float(a)) - lse_) * wi for a, wi in zip(r, ws)))
               for r, ws, (_, lse_) in zip(x, w, ref))
    assert v == pytest.approx(want, rel=1e-14)
    assert np.all(np.isfinite(g["x"]))


# ------------------------------------------------------------------ reductions


def test_max_reduction_ties_split_evenly():
    fn = graphc.compile("sum(max(x, axis=1))", shapes={"x": (2, 3)})
    _, g = fn(x=[[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(g["x"], [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    pair = graphc.compile("max(a, b)", target="numpy")  # the same convention as the elementwise max
    assert pair(3.0, 3.0)[1] == {"a": 0.5, "b": 0.5}


def test_reduction_axes_keepdims_and_errors():
    x = np.arange(24.0).reshape(2, 3, 4)
    for axis, keep in [(0, False), (-1, True), ((0, 2), False), (None, True), ((-1, 0), True)]:
        prog = graphc.Program(f"sum(x, axis={axis!r}, keepdims={keep})", shapes={"x": (2, 3, 4)}, grad=False)
        assert prog.graph.outputs[0][1].shape == np.sum(x, axis=axis, keepdims=keep).shape
        fn = graphc.compile(f"sum(sum(x, axis={axis!r}, keepdims={keep}) ** 2)", shapes={"x": (2, 3, 4)})
        s = np.sum(x, axis=axis, keepdims=True)
        np.testing.assert_allclose(fn(x=x)[1]["x"], np.broadcast_to(2 * s, x.shape))
    with pytest.raises(ShapeError, match="axis 3 is out of range") as info:
        graphc.compile("sum(x, axis=3)", shapes={"x": (2, 3, 4)})
    assert info.value.col == 0
    with pytest.raises(ShapeError, match="given twice"):
        graphc.compile("sum(x, axis=(1, -2))", shapes={"x": (2, 3, 4)})
    with pytest.raises(ParseError, match="no keyword argument axes="):
        graphc.compile("sum(x, axes=1)", shapes={"x": (2, 3, 4)})


# ------------------------------------------------------------------ shapes and errors


def test_shape_errors_name_both_shapes_with_a_caret():
    with pytest.raises(ShapeError) as info:
        graphc.compile("sum(X @ W)", shapes={"X": ("N", 3), "W": (4, 2)})
    assert "inner dimensions differ: X is (N, 3), W is (4, 2)" in str(info.value)
    assert info.value.col == 6
    with pytest.raises(ShapeError, match=r"\(2, 3\) and \(4,\) do not broadcast") as info:
        graphc.compile("sum(x + y)", shapes={"x": (2, 3), "y": (4,)})
    assert info.value.col == 6


def test_symbolic_dimensions_bind_per_call_and_must_agree():
    fn = graphc.compile("mean((X @ w - y) ** 2)", shapes={"X": ("N", 3), "w": (3,), "y": ("N",)})
    rng = np.random.default_rng(0)
    for n in (1, 5, 17):
        X, w, y = rng.normal(size=(n, 3)), rng.normal(size=3), rng.normal(size=n)
        v, g = fn(X=X, w=w, y=y)
        r = X @ w - y
        assert v == pytest.approx(np.mean(r**2), rel=1e-14)
        np.testing.assert_allclose(g["w"], 2 * X.T @ r / n, rtol=1e-13)
        np.testing.assert_allclose(g["y"], -2 * r / n, rtol=1e-13)
    with pytest.raises(ArgumentError, match=r"dimension N is 5 in 'X' but 4 in 'y'"):
        fn(X=np.ones((5, 3)), w=np.ones(3), y=np.ones(4))
    with pytest.raises(ArgumentError, match=r"'w' has shape \(4,\) but is declared \(3,\)"):
        fn(X=np.ones((5, 3)), w=np.ones(4), y=np.ones(5))
    with pytest.raises(ArgumentError, match=r"'X' has shape \(15,\) but is declared \(N, 3\)"):
        fn(X=np.ones(15), w=np.ones(3), y=np.ones(5))


def test_integer_labels():
    fn = graphc.compile("cross_entropy(S, y)", shapes={"S": ("N", 3), "y": ("N",)}, dtypes={"y": "int64"})
    assert fn.wrt == ("S",)
    with pytest.raises(ArgumentError, match="label 3 is out of range for 3 classes"):
        fn(S=np.zeros((2, 3)), y=[0, 3])
    with pytest.raises(ArgumentError, match="holds labels"):
        fn(S=np.zeros((2, 3)), y=np.array([0.0, 1.0]))
    with pytest.raises(ArgumentError, match="integer labels and masks have no gradient"):
        graphc.compile("cross_entropy(S, y)", shapes={"S": ("N", 3), "y": ("N",)}, dtypes={"y": "int64"}, wrt="y")
    with pytest.raises(ParseError, match="labels must be integers"):
        graphc.compile("cross_entropy(S, y)", shapes={"S": ("N", 3), "y": ("N",)})


def test_non_scalar_output_needs_a_reduction():
    with pytest.raises(ShapeError, match=r"shape \(N,\): a gradient needs a scalar; reduce it with sum"):
        graphc.compile("X @ w", shapes={"X": ("N", 3), "w": (3,)})
    prog = graphc.Program("X @ w", shapes={"X": ("N", 3), "w": (3,)}, grad=False)
    assert prog.graph.outputs[0][1].shape == ("N",)


def test_comparisons_are_masks_only():
    with pytest.raises(ParseError, match="a comparison gives a mask") as info:
        graphc.compile("x > 0")
    assert info.value.col == 2
    with pytest.raises(ParseError, match="mask"):
        graphc.compile("(x > 0) * y")
    with pytest.raises(ParseError, match="where: the first argument must be a comparison"):
        graphc.compile("where(x, y, 0)")


def test_undeclared_and_unused_shapes():
    with pytest.raises(ParseError, match="variable 'b' has no declared shape") as info:
        graphc.compile("sum(x) + b", shapes={"x": (3,)})
    assert info.value.col == 9
    with pytest.raises(ArgumentError, match="'q'"):
        graphc.compile("sum(x)", shapes={"x": (3,), "q": ()})


def test_cuda_takes_tensor_programs_and_says_when_it_has_no_gpu():
    from graphc.backends.cuda.pointwise import CudaUnavailableError, simulator

    if not simulator():
        with pytest.raises(CudaUnavailableError, match="NUMBA_ENABLE_CUDASIM"):  # not "unsupported": no GPU here
            graphc.compile("sum(x)", shapes={"x": (3,)}, target="cuda")
    assert "fused loop" in graphc.emit(graphc.Program("sum(exp(x) * x)", shapes={"x": (3,)}), target="cuda")
    assert graphc.compile("sum(x)", shapes={"x": (3,)}).target == "llvm"  # the default for tensors too


CPU_PROGRAMS = [PROGRAMS[i] for i in (1, 6, 12, 15, 23, 30, 34)]  # the fuzzer compiles more


# Numba compiles a kernel per fused region (~0.5 s each, more with prange): a sample, to keep the suite short;
# the fast tier runs half of the float64 sample and the parallel one, the slow tier the rest
@pytest.mark.parametrize("target,dtype,programs", [
    ("cpu", "float64", CPU_PROGRAMS[::2]), pytest.param("cpu", "float64", CPU_PROGRAMS[1::2], marks=pytest.mark.slow),
    pytest.param("cpu", "float32", CPU_PROGRAMS[::3], marks=pytest.mark.slow), ("parallel", "float64", CPU_PROGRAMS[1::4])])
def test_compiled_tensor_programs_equal_the_numpy_target(target, dtype, programs):
    for formula, shapes, dtypes in programs:
        for dt, tol in ((dtype, 1e-12 if dtype == "float64" else 1e-5),):
            fn = graphc.compile(formula, shapes=shapes, dtypes=dtypes, target=target, dtype=dt)
            ref = graphc.compile(formula, shapes=shapes, dtypes=dtypes, target="numpy", dtype=dt)
            pt = draw(fn, np.random.default_rng(5))
            v, g = fn(**pt)
            rv, rg = ref(**pt)
            assert v == pytest.approx(rv, rel=tol, abs=tol), formula
            for k in rg:
                np.testing.assert_allclose(g[k], rg[k], rtol=tol, atol=tol * 1e-3, err_msg=f"{formula} d/d{k}")
                assert np.asarray(g[k]).dtype == np.dtype(dt) or np.ndim(g[k]) == 0


def test_cpu_schedule_of_the_two_layer_net_fuses_and_calls_blas():
    shapes = {"X": ("N", "D"), "W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",), "y": ("N",)}
    fn = graphc.compile("cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y)", shapes=shapes, dtypes={"y": "int64"},
                        wrt=["W1", "b1", "W2", "b2"], target="cpu")
    text = graphc.emit(fn.program, target="cpu")
    assert text.count("gemm:") == 5 and "kernel 0: fused loop nest over (N, H)" in text
    assert "(add, relu, step)" in text  # the ReLU mask for the backward pass is made in the forward loop
    assert "folded: a view" in text
    assert "= cross_entropy, %" in text and "softmax - one_hot" in text  # loss and its gradient: one pass per row
    assert text.count("\nkernel ") <= 4, text  # four fused kernels beside the five GEMMs
    assert "sum %" in text and "in the same loop" in text  # bias gradients next to the values they sum


def test_fused_cross_entropy_pass_keeps_the_conventions():
    fn = graphc.compile("cross_entropy(s, y) + 0.5 * cross_entropy(s, y, reduction='sum')",
                        shapes={"s": (3, 4), "y": (3,)}, dtypes={"y": "int64"}, target="cpu")
    ref = graphc.compile("cross_entropy(s, y) + 0.5 * cross_entropy(s, y, reduction='sum')",
                         shapes={"s": (3, 4), "y": (3,)}, dtypes={"y": "int64"}, target="numpy")
    s = np.array([[1000.0, -1000.0, 999.0, 0.0], [np.inf, 1.0, 2.0, 3.0], [-1.0, 0.5, 2.0, -3.0]])
    y = np.array([2, 1, 0])
    v, g = fn(s=s, y=y)
    rv, rg = ref(s=s, y=y)
    assert (np.isnan(v) and np.isnan(rv)) or v == pytest.approx(rv, rel=1e-14)
    np.testing.assert_allclose(g["s"][[0, 2]], rg["s"][[0, 2]], rtol=1e-13)
    np.testing.assert_array_equal(np.isnan(g["s"]), np.isnan(rg["s"]))
    with pytest.raises(ArgumentError, match="label 4 is out of range for 4 classes"):
        fn(s=s, y=np.array([0, 4, 1]))


def test_pointwise_formulas_are_unchanged():
    fn = graphc.compile("x*y + sin(x)")
    assert not fn.tensor
    v, g = fn(np.linspace(0, 1, 5), 2.0)
    assert g["x"].shape == (5,)


# ------------------------------------------------------------------ IR


def test_ir_text_json_and_dot_carry_shapes_and_attributes():
    fn = graphc.compile("cross_entropy(relu(X @ W + b) @ V, y) + 0.5 * mean(max(X, axis=1, keepdims=True))",
                        shapes={"X": ("N", 3), "W": (3, 4), "b": (4,), "V": (4, 2), "y": ("N",)},
                        dtypes={"y": "int64"})
    text = fn.ir
    assert "matmul %X, %W : f64[N,4]" in text and "%y: i64[N]" in text and "{axis=(1,), keepdims=True}" in text
    g = ir.parse_graph(text)
    assert g == fn.graph and ir.print_graph(g) == text
    data = json.loads(ir.to_json(fn.graph))
    kinds = {(n["op"], n["type"]): n for n in data["nodes"]}
    assert ("matmul", "f64[N,4]") in kinds and kinds["amax", "f64[N,1]"]["attrs"] == {"axis": [1], "keepdims": True}
    assert ir.from_json(ir.to_json(fn.graph)) == fn.graph
    assert "f64[N,3]" in ir.to_dot(fn.graph)
    with pytest.raises(GraphcError, match="declared type f64\\[N\\] but the op gives f64\\[N,4\\]"):
        ir.parse_graph(text.replace("matmul %X, %W : f64[N,4]", "matmul %X, %W : f64[N]"))


def test_two_layer_net_gradient_graph_is_small_and_has_no_square_intermediates():
    seed = {"W2": ("C", "H"), "W1": ("H", "D"), "x": ("D",), "b1": ("H",), "b2": ("C",)}
    fn = graphc.compile("sum(W2 @ relu(W1 @ x + b1) + b2)", shapes=seed)
    assert fn.graph.op_count() <= 3 * fn.optimised_forward().op_count(), fn.ir
    shapes = {"X": ("N", "D"), "W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",), "y": ("N",)}
    fn = graphc.compile("cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y)", shapes=shapes, dtypes={"y": "int64"},
                        wrt=["W1", "b1", "W2", "b2"])
    for f in (fn,):
        for n in f.graph.body:
            assert n.shape.count("N") <= 1 and n.shape.count("C") <= 1, n  # no N x N or C x C


def test_fusion_leaves_tensor_programs_alone_where_shapes_differ():
    fn = graphc.compile("sum(x ** 0 + x)", shapes={"x": (3,)})  # x**0 -> 1 would drop the shape
    v, g = fn(x=[1.0, 2.0, 3.0])
    assert v == 9.0 and list(g["x"]) == [1.0, 1.0, 1.0]


# ------------------------------------------------------------------ tensor fusions

FUSIONS = [  # (formula, shapes, op expected after fusion)
    ("sum(exp(s) / sum(exp(s), axis=1, keepdims=True) * w)", {"s": (2, 3), "w": (2, 3)}, "softmax"),
    ("sum(exp(s) / sum(exp(s), axis=-2, keepdims=True) * w)", {"s": (2, 3), "w": (2, 3)}, "softmax"),
    ("sum(exp(v) / sum(exp(v)) * u)", {"v": (3,), "u": (3,)}, "softmax"),
    ("log(sum(exp(s)))", {"s": (2, 3)}, "logsumexp"),
    ("sum(log(sum(exp(s), axis=0)))", {"s": (2, 3)}, "logsumexp"),
    ("sum((s - logsumexp(s, axis=1, keepdims=True)) * w)", {"s": (2, 3), "w": (2, 3)}, "log_softmax"),
    ("sum((s - log(sum(exp(s), axis=1, keepdims=True))) * w)", {"s": (2, 3), "w": (2, 3)}, "log_softmax"),
    ("sum(log(softmax(s)) * w)", {"s": (2, 3), "w": (2, 3)}, "log_softmax"),
]

NOT_FUSED = [  # look alike, are not the op
    ("sum(exp(s) / sum(exp(s), axis=1) * w)", {"s": (3, 3), "w": (3, 3)}, "softmax"),  # no keepdims
    ("sum(exp(s) / sum(exp(s), axis=(0, 1), keepdims=True) * w)", {"s": (2, 3), "w": (2, 3)}, "softmax"),
    ("sum(exp(s) / sum(exp(t), axis=1, keepdims=True))", {"s": (2, 3), "t": (2, 3)}, "softmax"),
    ("log(sum(exp(s) + 1))", {"s": (2, 3)}, "logsumexp"),
    ("sum((s - logsumexp(s, axis=1)) * w)", {"s": (3, 3), "w": (3, 3)}, "log_softmax"),  # no keepdims
    ("sum((t - logsumexp(s, axis=1, keepdims=True)) * w)", {"s": (2, 3), "t": (2, 3), "w": (2, 3)},
     "log_softmax"),
]


@pytest.mark.parametrize("formula,shapes,op", FUSIONS, ids=[f for f, _, _ in FUSIONS])
def test_spelled_out_softmax_family_fuses_and_is_stable(formula, shapes, op):
    fn = graphc.compile(formula, shapes=shapes)
    assert op in {n.op for n in fn.optimised_forward().body}, fn.ir
    raw = graphc.compile(formula, shapes=shapes, passes=())
    rng = np.random.default_rng(1)
    pt = {k: rng.normal(size=v) for k, v in shapes.items()}
    v, g = fn(**pt)
    rv, rg = raw(**pt)
    assert v == pytest.approx(rv, rel=1e-13)
    for k in g:
        np.testing.assert_allclose(g[k], rg[k], rtol=1e-12, atol=1e-15)
    big = {k: (1000.0 * a if k in ("s", "v") else a) for k, a in pt.items()}  # overflows unfused
    v, g = fn(**big)
    assert np.isfinite(v) and all(np.all(np.isfinite(x)) for x in g.values())


@pytest.mark.parametrize("formula,shapes,op", NOT_FUSED, ids=[f for f, _, _ in NOT_FUSED])
def test_look_alikes_are_not_fused(formula, shapes, op):
    fn = graphc.compile(formula, shapes=shapes)
    assert op not in {n.op for n in fn.graph.body}, fn.ir
    raw = graphc.compile(formula, shapes=shapes, passes=())
    pt = {k: np.random.default_rng(2).normal(size=v) for k, v in shapes.items()}
    assert fn(**pt)[0] == pytest.approx(raw(**pt)[0], rel=1e-13)


# ------------------------------------------------------------------ the command line


def test_cli_tensor_eval_ir_and_check(capsys):
    from graphc.cli import main

    args = ["eval", "mean((X @ w - y)**2)", "--shape", "X=N,2", "--shape", "w=2", "--shape", "y=N",
            "X=[[1,2],[3,4]]", "w=[0.5,-1]", "y=[1,2]", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    X, w, y = np.array([[1, 2], [3, 4.0]]), np.array([0.5, -1]), np.array([1, 2.0])
    r = X @ w - y
    assert out["value"] == pytest.approx(np.mean(r**2))
    np.testing.assert_allclose(out["grad"]["w"], 2 * X.T @ r / 2)
    np.testing.assert_allclose(out["grad"]["X"], np.outer(r, w))
    assert main(["ir", "cross_entropy(S, y)", "--shape", "S=N,3", "--shape", "y=N", "--int", "y"]) == 0
    assert "%y: i64[N]" in capsys.readouterr().out
    assert main(["check", "cross_entropy(S @ W, y)", "--shape", "S=N,3", "--shape", "W=3,4", "--shape", "y=N",
                 "--int", "y", "--dims", "N=2", "--points", "2"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["eval", "sum(x @ y)", "--shape", "x=3", "--shape", "y=2"]) == 2
    err = capsys.readouterr().err
    assert "inner dimensions differ: x is (3,), y is (2,)" in err and "^" in err
    assert main(["eval", "sum(x)", "--shape", "x=2", "x=[1, 'a']"]) == 2
    assert "not a number or JSON nested lists" in capsys.readouterr().err


def test_readme_tensors_example_runs():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text[text.index("## Tensors"):text.index("## The formula language")]
    start = section.index("```python") + len("```python")
    code = section[start:section.index("```", start)]
    env: dict = {}
    exec(compile(code, "README-tensors", "exec"), env)  # our own README, not user input
    assert env["grads"]["W1"].shape == (2, 8) and np.isfinite(env["loss"])


def test_reductions_in_pointwise_formulas_are_refused():
    for formula in ("mean(x)", "sum(x * y)", "logsumexp(x) + 1", "max(x, axis=0)"):
        with pytest.raises(ParseError, match="declare shapes=") as info:
            graphc.compile(formula)
        assert info.value.col == formula.index("(") - len(formula.split("(")[0].split()[-1])
    assert graphc.compile("sum(b) + x", shapes={"b": (), "x": ()})(b=2.0, x=1.0)[0] == 3.0


def test_sympy_matrix_symbols_import_as_a_tensor_program():
    import sympy as sp

    W, x, y = sp.MatrixSymbol("W", 3, 2), sp.MatrixSymbol("x", 2, 1), sp.MatrixSymbol("y", 3, 1)
    r = W * x - y
    assert graphc.compile(r.T * r).forward_graph.outputs[0][1].shape == ()  # a 1x1 result is its one entry
    fn = graphc.compile(sp.Trace(r.T * r) + 0.5 * sp.Trace(x.T * x))
    rng = np.random.default_rng(0)
    Wv, xv, yv = rng.normal(size=(3, 2)), rng.normal(size=(2, 1)), rng.normal(size=(3, 1))
    v, g = fn(W=Wv, x=xv, y=yv)
    rv = Wv @ xv - yv
    assert v == pytest.approx((rv.T @ rv).item() + 0.5 * (xv.T @ xv).item(), rel=1e-14)
    np.testing.assert_allclose(g["W"], 2 * rv @ xv.T, rtol=1e-13)
    np.testing.assert_allclose(g["x"], 2 * Wv.T @ rv + xv, rtol=1e-13)
    n = sp.Symbol("n")
    X = sp.MatrixSymbol("X", n, 3)
    prog = graphc.Program(sp.HadamardProduct(X, X), grad=False)
    assert prog.forward.inputs[0].shape == ("n", 3)
    with pytest.raises(UnsupportedError, match="does not index SymPy matrices"):
        graphc.compile(r[0, 0] + r[1, 0])


def test_compiled_buffers_are_reused_but_results_are_never_overwritten():
    # df/dv is a transpose (a view) of a fused kernel's pooled output
    fn = graphc.compile("sum(transpose(exp(x) * 2 + x) * v)", shapes={"x": (3, 2), "v": (2, 3)},
                        target="cpu", wrt=["v"])
    x = np.arange(6.0).reshape(3, 2) / 6
    _, g1 = fn(x=x, v=np.ones((2, 3)))
    keep = g1["v"].copy()
    fn(x=x * 2, v=np.ones((2, 3)))  # a second call reuses the pool
    np.testing.assert_array_equal(g1["v"], keep)  # the first call's gradient is untouched
    np.testing.assert_allclose(keep, (np.exp(x) * 2 + x).T)
    assert fn.kernel.pool_bytes() > 0


MLP_SHAPES = {"X": ("N", "D"), "W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",), "y": ("N",),
              "reg": ()}
MLP_L2 = "cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y) + 0.5 * reg * (sum(W1 * W1) + sum(W2 * W2))"


def _mlp_args(n=64, d=12, h=16, c=5, seed=0):
    rng = np.random.default_rng(seed)
    return dict(X=rng.normal(size=(n, d)), W1=rng.normal(size=(d, h)) * 0.3, b1=rng.normal(size=h) * 0.1,
                W2=rng.normal(size=(h, c)) * 0.3, b2=rng.normal(size=c) * 0.1, y=rng.integers(0, c, n), reg=1e-2)


def _mlp_numpy(X, W1, b1, W2, b2, y, reg):
    """Hand-derived gradients of MLP_L2 (the seed's two-layer net, CS231n style)."""
    n = X.shape[0]
    z = X @ W1 + b1
    hid = np.maximum(z, 0)
    s = hid @ W2 + b2
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(n), y])) + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    ds = p.copy()
    ds[np.arange(n), y] -= 1
    ds /= n
    dh = ds @ W2.T * (z > 0)
    return loss, {"W1": X.T @ dh + reg * W1, "b1": dh.sum(0), "W2": hid.T @ ds + reg * W2, "b2": ds.sum(0)}


def assert_mlp_gradients(fn, args):
    """fn's value and gradients of MLP_L2 at args against the hand-derived ones."""
    v, g = fn(**args)
    rv, rg = _mlp_numpy(**args)
    assert v == pytest.approx(rv, rel=1e-13)
    for k in rg:
        np.testing.assert_allclose(g[k], rg[k], rtol=1e-12, atol=1e-15)


def test_l2_term_gradients_are_folded_after_their_gemm_and_beside_the_squares():
    fn = graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"],
                        target="cpu")
    text = fn.kernel.describe().split("# ----")[0]
    assert text.count("gemm:") == 5
    assert "= add (D, H)" not in text and "= add (H, C)" not in text, text  # X.T @ dh + reg*W1: one loop after it
    w1 = next(line for line in text.splitlines() if "over (D, H)" in line)
    assert "sum %" in w1 and "over axes (0, 1)" in w1  # sum(W1*W1) in the same pass over W1
    assert text.count("\nkernel ") <= 6, text
    args = _mlp_args()
    assert_mlp_gradients(fn, args)


def test_a_loop_never_waits_for_a_value_that_waits_for_it():
    # t = x*2 is a loop; u = sum(t) needs that loop done; t + u cannot join it (a cycle)
    for formula in ("sum(exp(x * 2 + sum(x * 2)))", "sum((x * 2) * mean(x * 2, axis=0) + x)"):
        fn = graphc.compile(formula, shapes={"x": (3, 4)}, target="cpu")
        ref = graphc.compile(formula, shapes={"x": (3, 4)}, target="numpy")
        x = np.linspace(-1, 1, 12).reshape(3, 4) * 0.1
        v, g = fn(x=x)
        rv, rg = ref(x=x)
        assert v == pytest.approx(rv, rel=1e-13)
        np.testing.assert_allclose(g["x"], rg["x"], rtol=1e-12)


@pytest.mark.parametrize("target", ["cpu", "numpy", "llvm"])  # not parallel: cpu's kernel, another Numba compile
def test_out_buffers_for_tensor_outputs(target):
    fn = graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"],
                        target=target)
    args = _mlp_args()
    rv, rg = _mlp_numpy(**args)
    out = {"f": np.empty(()), **{f"df/d{k}": np.full_like(args[k], np.nan) for k in rg}}
    for _ in range(2):  # the second call reuses the pool; the caller's buffers are filled again
        v, g = fn(**args, out=out)
        assert v == pytest.approx(rv, rel=1e-13) and float(out["f"]) == v
        for k in rg:
            assert g[k] is out[f"df/d{k}"]
            np.testing.assert_allclose(g[k], rg[k], rtol=1e-12, atol=1e-15)
    with pytest.raises(ArgumentError, match=r"df/dW1 must be a writable C-contiguous float64 array of shape \(12, 16\)"):
        fn(**args, out={**out, "df/dW1": np.empty((16, 12))})
    with pytest.raises(ArgumentError, match="overlaps argument 'W2'"):
        fn(**args, out={**out, "df/dW2": args["W2"]})
    two = graphc.compile("sum(a * b)", shapes={"a": (3,), "b": (3,)}, target=target)
    g = np.empty(3)
    with pytest.raises(ArgumentError, match="one buffer for both df/da and df/db"):
        two(a=np.ones(3), b=np.ones(3), out=[np.empty(()), g, g])


def test_the_memory_plan_shares_buffers_by_lifetime():
    fn = graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"],
                        target="cpu")
    n, d, h, c = 256, 12, 32, 5
    args = _mlp_args(n, d, h, c)
    plan = fn.planned_memory(**args)
    # hand count: of the five (N, H) values -- X@W1, relu, its mask, ds@W2.T, dh -- at most four are alive
    # at once (X@W1 is dead when ds@W2.T is made), plus X.T@dh (D, H) and the (N, C) scores' softmax and
    # gradient; a plan without sharing would hold all five
    nh, bound = n * h * 8, 4 * n * h * 8 + d * h * 8 + 4 * n * c * 8 + 64 * 16
    assert 3 * nh < plan["pool"] <= bound, plan
    assert plan["outputs"] == 8 * (1 + d * h + h + h * c + c)
    assert plan["peak"] == plan["pool"] + plan["outputs"] + plan["temporaries"]
    v, g = fn(**args)
    rv, rg = _mlp_numpy(**args)
    np.testing.assert_allclose(g["W1"], rg["W1"], rtol=1e-12, atol=1e-15)
    assert fn.kernel.pool_bytes() == plan["pool"]
    fn(**_mlp_args(8, d, h, c))  # a second signature gets its own pool
    assert fn.kernel.pool_bytes() > plan["pool"]
    with pytest.raises(UnsupportedError, match="plans no memory"):
        graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, target="numpy").planned_memory(**args)


@pytest.mark.slow  # a dozen programs compiled twice by Numba; test_fuzz_tensor compares the two forms quickly
def test_the_whole_step_runs_as_one_numba_function_and_agrees_with_the_step_wise_schedule(monkeypatch):
    from graphc.backends.numba import tensor as tensor_cpu

    fn = graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"],
                        target="cpu")
    assert "All steps run in one Numba function" in fn.kernel.source and "np.dot(" in fn.kernel.source
    args = _mlp_args()
    assert_mlp_gradients(fn, args)
    with pytest.raises(ArgumentError, match="label 5 is out of range for 5 classes"):
        fn(**{**args, "y": np.where(np.arange(64) == 7, 5, args["y"])})
    chosen = [p for p in PROGRAMS if "@" in p[0] or "where" in p[0] or "cross" in p[0]]
    wholes = [graphc.compile(f, shapes=sh, dtypes=dt, target="cpu") for f, sh, dt in chosen]
    assert sum(w.kernel._whole is not None for w in wholes) >= 5
    monkeypatch.setattr(tensor_cpu, "WHOLE_STEP", False)
    for (formula, shapes, dtypes), whole in zip(chosen, wholes):
        stepwise = graphc.compile(formula, shapes=shapes, dtypes=dtypes, target="cpu")
        assert stepwise.kernel._whole is None
        pt = draw(whole, np.random.default_rng(2))
        (a, ga), (b, gb) = whole(**pt), stepwise(**pt)
        assert a == pytest.approx(b, rel=1e-13), formula
        for k in ga:
            np.testing.assert_allclose(ga[k], gb[k], rtol=1e-12, atol=1e-14, err_msg=formula)


def test_in_place_loop_outputs_are_correct_and_smaller_when_switched_on(monkeypatch):
    # off by default (it stops LLVM's vectoriser); the option must still compute the same numbers
    # (step by step here: the whole-step function calls the same loops on the same buffers)
    from graphc.backends.numba import tensor as tensor_cpu

    monkeypatch.setattr(tensor_cpu, "WHOLE_STEP", False)
    args = _mlp_args(256, 12, 32, 5)
    plain = graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"],
                           target="cpu")
    monkeypatch.setattr(tensor_cpu, "IN_PLACE", True)
    inplace = graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"],
                             target="cpu")
    assert inplace.kernel._alias and not plain.kernel._alias
    assert inplace.planned_memory(**args)["pool"] < plain.planned_memory(**args)["pool"]
    rv, rg = _mlp_numpy(**args)
    for _ in range(2):
        v, g = inplace(**args)
        assert v == pytest.approx(rv, rel=1e-13)
        for k in rg:
            np.testing.assert_allclose(g[k], rg[k], rtol=1e-12, atol=1e-15)
