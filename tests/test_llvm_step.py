"""The LLVM whole step (codegen/llvm_step.py): a tensor plan as one LLVM function on
the default target, against the numpy target and the step-wise llvm plan."""

import threading

import numpy as np
import pytest
from test_tensor import PROGRAMS, draw

import graphc
from graphc import ArgumentError
from graphc.backends.llvm import step as llvm_step

MLP_SHAPES = {"X": ("N", "D"), "W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",), "y": ("N",),
              "reg": ()}
MLP = "cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y) + 0.5 * reg * (sum(W1 * W1) + sum(W2 * W2))"
WRT = ["W1", "b1", "W2", "b2"]


def mlp(dtype="float64", whole=True, monkeypatch=None, **kw):
    if not whole:
        monkeypatch.setattr(llvm_step, "WHOLE_STEP", False)
    fn = graphc.compile(MLP, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=WRT, dtype=dtype, **kw)
    if not whole:
        monkeypatch.setattr(llvm_step, "WHOLE_STEP", True)
    return fn


def mlp_args(n=300, d=2, h=100, c=3, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    return dict(X=rng.normal(size=(n, d)).astype(dt), W1=(rng.normal(size=(d, h)) * 0.5).astype(dt),
                b1=(rng.normal(size=h) * 0.1).astype(dt), W2=(rng.normal(size=(h, c)) * 0.5).astype(dt),
                b2=(rng.normal(size=c) * 0.1).astype(dt), y=rng.integers(0, c, n), reg=1e-3)


def whole_taken(fn) -> bool:
    step = fn.kernel._step
    return step is not None and step.entry is not None and bool(step._prepared)


def same(a, b, tol=0.0):
    """Equal values, NaN where NaN (tol: relative, for results through another BLAS)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    if tol:  # relative to the array's scale too: a GEMM's small entries carry its large ones' rounding
        scale = np.max(np.abs(b[np.isfinite(b)]), initial=0.0)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True)
    else:
        np.testing.assert_array_equal(a, b)


def agree(got, want, tol=0.0):
    (v, g), (rv, rg) = got, want
    same(v, rv, tol)
    assert set(g) == set(rg)
    for k in rg:
        same(g[k], rg[k], tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_mlp_step_is_one_llvm_function_equal_to_numpy_and_the_step_wise_plan(dtype, monkeypatch):
    tol = 1e-12 if dtype == "float64" else 2e-5
    fn, stepwise = mlp(dtype), mlp(dtype, whole=False, monkeypatch=monkeypatch)
    ref = graphc.compile(MLP, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=WRT, dtype=dtype, target="numpy")
    assert stepwise.kernel._step is None
    for n, d, h, c in ((300, 2, 100, 3), (64, 12, 32, 5), (33, 3, 17, 40), (1, 1, 1, 1)):
        args = mlp_args(n, d, h, c, dtype)
        got = fn(**args)
        assert whole_taken(fn)
        assert all(np.asarray(x).dtype == np.dtype(dtype) for x in got[1].values())
        agree(got, ref(**args), tol)
        agree(got, stepwise(**args), 1e-13 if dtype == "float64" else 1e-6)  # the same loops; BLAS: SciPy's


@pytest.mark.parametrize("formula,shapes,dtypes", PROGRAMS, ids=[p[0] for p in PROGRAMS])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_programs_agree_with_the_numpy_target_and_the_step_wise_plan(formula, shapes, dtypes, dtype, monkeypatch):
    tol = 1e-12 if dtype == "float64" else 1e-5
    fn = graphc.compile(formula, shapes=shapes, dtypes=dtypes, dtype=dtype)
    ref = graphc.compile(formula, shapes=shapes, dtypes=dtypes, dtype=dtype, target="numpy")
    monkeypatch.setattr(llvm_step, "WHOLE_STEP", False)
    stepwise = graphc.compile(formula, shapes=shapes, dtypes=dtypes, dtype=dtype)
    for dim in (3, 19):
        pt = draw(fn, np.random.default_rng(dim), dim)
        got = fn(**pt)
        agree(got, ref(**pt), tol)
        agree(got, stepwise(**pt), tol)


def test_most_programs_take_the_whole_step():
    taken = []
    for formula, shapes, dtypes in PROGRAMS:
        fn = graphc.compile(formula, shapes=shapes, dtypes=dtypes)
        fn(**draw(fn, np.random.default_rng(0)))
        taken.append(whole_taken(fn))
        step = fn.kernel._step
        assert step is None or step.reason is None or isinstance(step.reason, llvm_step.Refused), step.reason
    assert sum(taken) >= 20, [p[0] for p, t in zip(PROGRAMS, taken) if not t]


def test_whole_step_off_runs_the_plan_step_by_step(monkeypatch):
    monkeypatch.setattr(llvm_step, "WHOLE_STEP", False)
    assert mlp().kernel._step is None
    monkeypatch.setattr(llvm_step, "WHOLE_STEP", True)
    fn = mlp()
    assert "all steps run as one LLVM function" in fn.kernel.source and "_entry" in fn.kernel.source


@pytest.mark.parametrize("c", [3, 8, 16, 37])  # fewer classes than lanes (a block of rows at a time) and more
def test_cross_entropy_rows_are_the_step_wise_plan_bit_for_bit(c, monkeypatch):
    shapes = {"S": ("N", "C"), "y": ("N",), "w": ("N",)}
    for dtype, formula in (("float64", "cross_entropy(S, y) * sum(w)"), ("float32", "cross_entropy(S, y) * sum(w)"),
                           ("float64", "sum(cross_entropy(S, y, reduction='none') * w)"),
                           ("float32", "cross_entropy(S, y, reduction='sum') * sum(w)")):
        fn = graphc.compile(formula, shapes=shapes, dtypes={"y": "int64"}, dtype=dtype)
        monkeypatch.setattr(llvm_step, "WHOLE_STEP", False)
        stepwise = graphc.compile(formula, shapes=shapes, dtypes={"y": "int64"}, dtype=dtype)
        monkeypatch.setattr(llvm_step, "WHOLE_STEP", True)
        for n in (1, 7, 16, 17, 33, 300, 1000, 4099):  # partial blocks; NumPy's pairwise mean past 8 and 128
            rng = np.random.default_rng(n)
            S = rng.normal(size=(n, c)) * 5
            S[0, 0] = 1e4  # a row far from the others: the max shift
            pt = dict(S=S, y=rng.integers(0, c, n), w=rng.normal(size=n))
            agree(fn(**pt), stepwise(**pt))
            assert whole_taken(fn)


def test_full_sums_and_means_are_numpys_pairwise_sum_bit_for_bit(monkeypatch):
    formula, shapes = "mean(x) + sum(exp(x)) * 2", {"x": ("N", "M")}
    fn = graphc.compile(formula, shapes=shapes)
    monkeypatch.setattr(llvm_step, "WHOLE_STEP", False)
    stepwise = graphc.compile(formula, shapes=shapes)
    for n, m in ((1, 1), (3, 5), (17, 9), (300, 129), (7, 1000)):
        x = np.random.default_rng(n).normal(size=(n, m)) * 10
        agree(fn(x=x), stepwise(x=x))
        assert whole_taken(fn)


def test_a_label_out_of_range_raises_as_the_step_wise_plan():
    for c in (3, 37):  # both row forms check the labels before anything is written
        fn = mlp()
        args = mlp_args(50, 4, 8, c)
        fn(**args)
        for bad in (c, -1, 10**9):
            y = args["y"].copy()
            y[7] = bad
            with pytest.raises(ArgumentError, match=f"label {bad} is out of range for {c} classes"):
                fn(**{**args, "y": y})
        agree(fn(**args), mlp()(**args))  # and the next call is right


def test_strided_odd_and_foreign_arguments_are_taken_or_copied():
    fn = mlp()
    args = mlp_args(40, 3, 8, 4)
    args["X"] = args["X"].astype(np.float32).astype(np.float64)  # passed as float32 below too
    want = fn(**args)
    big = np.zeros((80, 6))
    big[::2, ::2] = args["X"]
    fortran = np.asfortranarray(args["X"])
    readonly = args["W1"].copy()
    readonly.flags.writeable = False
    for X, W1 in ((big[::2, ::2], args["W1"]), (fortran, args["W1"]), (args["X"], readonly),
                  (args["X"].astype(np.float32), args["W1"].tolist()), (args["X"], args["W1"].T.copy().T)):
        agree(fn(**{**args, "X": X, "W1": W1}), want)
    agree(fn(**{**args, "y": args["y"].astype(np.int32), "reg": np.float32(0.5)}), fn(**{**args, "reg": 0.5}))


def test_a_big_gemm_runs_step_wise_and_small_ones_again_after(monkeypatch):
    fn = mlp()
    small, big = mlp_args(30, 2, 10, 3), mlp_args(3000, 20, 64, 3)  # 3000 * 20 * 64 > WHOLE_MNK
    ref = mlp(whole=False, monkeypatch=monkeypatch)
    agree(fn(**big), ref(**big))
    assert not whole_taken(fn) and fn.kernel._step.entry is None  # not even built
    agree(fn(**small), ref(**small), 1e-13)
    assert whole_taken(fn)
    agree(fn(**big), ref(**big))
    monkeypatch.setattr(llvm_step, "WHOLE_MNK", 10)  # a kernel built before keeps its decisions per size
    fresh = mlp()
    agree(fresh(**small), ref(**small))
    assert not whole_taken(fresh)


def test_outputs_into_given_buffers_and_pools_between_signatures():
    fn = mlp()
    args = mlp_args(20, 3, 5, 4)
    v, g = fn(**args)
    out = {"f": np.empty(()), **{f"df/d{k}": np.empty_like(g[k]) for k in WRT}}
    rv, rg = fn(**args, out=out)
    assert all(rg[k] is out[f"df/d{k}"] for k in WRT) and rv == out["f"]
    agree((rv, rg), (v, g))
    for n in (7, 20, 300, 7, 1):  # signatures come and go; pools are dropped and remade
        a = mlp_args(n, 3, 5, 4, seed=n)
        agree(fn(**a), mlp()(**a), 1e-13)
        fn.kernel.release_pools()
    assert fn.kernel.pool_bytes() == 0


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_empty_sizes_and_special_values_as_the_step_wise_plan(monkeypatch):
    fn, ref = mlp(), mlp(whole=False, monkeypatch=monkeypatch)
    with np.errstate(all="ignore"):
        for n, d, h, c in ((0, 2, 5, 3), (6, 0, 5, 3), (6, 2, 0, 3)):  # no rows; k = 0 GEMMs; empty hidden layer
            args = mlp_args(n, d, h, c)
            agree(fn(**args), ref(**args))
            assert whole_taken(fn)
        args = mlp_args(16, 3, 8, 4)
        args["X"][1, 0], args["X"][2, 1], args["W2"][0, 0] = np.nan, np.inf, -np.inf
        args["b2"][1] = 1e308
        agree(fn(**args), ref(**args))


def test_calls_from_threads_agree():
    fn = mlp()
    cases = [mlp_args(n, 3, 16, 5, seed=n) for n in (10, 40, 10, 90)]
    want = [mlp()(**a) for a in cases]
    errors = []

    def work(k):
        try:
            for _ in range(25):
                agree(fn(**cases[k]), want[k], 1e-13)
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_without_scipys_blas_a_plan_with_gemms_runs_step_wise(monkeypatch):
    monkeypatch.setattr(llvm_step, "gemm_address", lambda dtype: 0)
    fn = mlp()
    args = mlp_args(20, 3, 5, 4)
    agree(fn(**args), mlp(whole=False, monkeypatch=monkeypatch)(**args))
    assert fn.kernel._step.refused and isinstance(fn.kernel._step.reason, llvm_step.Refused)
    loop = graphc.compile("sum(tanh(x) * y)", shapes={"x": ("N",), "y": ("N",)})  # no GEMM: still one function
    x = np.linspace(-2, 2, 50)
    v, g = loop(x=x, y=x)
    assert whole_taken(loop) and v == pytest.approx(np.sum(np.tanh(x) * x), rel=1e-14)
