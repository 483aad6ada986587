"""Tensor programs on the llvm target: the cpu schedule with its fused loops and
cross_entropy rows compiled by llvmlite. References: the numpy target (every
program of the tensor set, float64 and float32), the hand-derived NumPy
gradients of the seed's two-layer net, and NumPy itself for broadcasts, strides
and sums along each axis."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_tensor import MLP_L2, MLP_SHAPES, PROGRAMS, _mlp_args, assert_mlp_gradients, draw

import graphc
from graphc.backends.llvm import pointwise as llvm_cpu
from graphc.backends.llvm import tensor as llvm_tensor
from graphc.errors import ArgumentError, GraphcError

TOL = {"float64": 1e-12, "float32": 1e-5}


def _agree(fn, ref, pt, tol):
    v, g = fn(**pt)
    rv, rg = ref(**pt)
    assert v == pytest.approx(rv, rel=tol, abs=tol)
    for k in rg:
        np.testing.assert_allclose(g[k], rg[k], rtol=tol, atol=tol * 1e-3, err_msg=f"d/d{k}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_tensor_program_agrees_with_the_numpy_target(dtype):
    for formula, shapes, dtypes in PROGRAMS:
        fn = graphc.compile(formula, shapes=shapes, dtypes=dtypes, target="llvm", dtype=dtype)
        ref = graphc.compile(formula, shapes=shapes, dtypes=dtypes, target="numpy", dtype=dtype)
        for seed in range(2):
            pt = draw(fn, np.random.default_rng(seed))
            try:
                _agree(fn, ref, pt, TOL[dtype])
            except AssertionError as e:
                raise AssertionError(f"{formula} {shapes}: {e}") from None
            v, g = fn(**pt)
            assert all(np.asarray(a).dtype == np.dtype(dtype) for a in g.values() if np.ndim(a))


def test_the_seeds_two_layer_net_equals_hand_derived_gradients():
    fn = graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"],
                        target="llvm")
    text = fn.kernel.source
    assert text.count("gemm:") == 5 and "cross_entropy" in text and "_xent" in text and "_region" in text
    assert "numba" not in text.lower()
    for n in (1, 7, 64, 301):  # odd row counts: the masked last vector in every loop
        assert_mlp_gradients(fn, _mlp_args(n=n, seed=n))
    with pytest.raises(ArgumentError, match="label 9 is out of range for 5 classes"):
        fn(**{**_mlp_args(), "y": np.full(64, 9)})


@pytest.mark.parametrize("inner", [1, 3, 4, 5, 8, 9, 17])
def test_broadcasts_strides_and_sums_along_each_axis(inner):
    """Operands read in place through their strides: a row (bias), a column, a 0-d
    value, a transposed view; sums over the inner axis, the outer one, and both."""
    formula = ("sum(exp(x * b + c) * s) + sum(sum(tanh(x + c), axis=1, keepdims=True) * c)"
               " + sum(sum(x * x * b, axis=0) * b)")
    shapes = {"x": ("n", "m"), "b": ("m",), "c": ("n", 1), "s": ()}
    fn = graphc.compile(formula, shapes=shapes, target="llvm")
    ref = graphc.compile(formula, shapes=shapes, target="numpy")
    rng = np.random.default_rng(inner)
    xt = rng.normal(size=(inner, 6))
    pt = dict(x=xt.T, b=rng.normal(size=inner), c=rng.normal(size=(6, 1)), s=0.7)  # x: a transposed view
    assert not pt["x"].flags.c_contiguous or inner == 1
    _agree(fn, ref, pt, 1e-12)
    _agree(fn, ref, {**pt, "x": np.asfortranarray(pt["x"]), "b": rng.normal(size=2 * inner)[::2]}, 1e-12)


def test_masks_and_where_in_a_fused_loop():
    formula = "sum(where(x > y, x * y, exp(-x)) + where(x <= 0, 0, log1p(x * x)))"
    shapes = {"x": ("n", 5), "y": (5,)}
    fn = graphc.compile(formula, shapes=shapes, target="llvm")
    ref = graphc.compile(formula, shapes=shapes, target="numpy")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(11, 5))
    x[0, :3] = [0.0, np.nan, np.inf]  # the branch not taken leaks no NaN; NaN propagates as in NumPy
    pt = dict(x=x, y=rng.normal(size=5))
    v, g = fn(**pt)
    rv, rg = ref(**pt)
    assert (np.isnan(v) and np.isnan(rv)) or v == pytest.approx(rv, rel=1e-12)
    np.testing.assert_allclose(g["x"], rg["x"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(g["y"], rg["y"], rtol=1e-12, equal_nan=True)


def test_the_emitted_loops_use_vector_math():
    h = llvm_cpu.host()
    text = graphc.emit(graphc.Program("sum(exp(x) * y)", shapes={"x": ("n", 7), "y": (7,)}), target="llvm")
    assert "fused loop nest over (n, 7)" in text
    if h.mvec is not None:
        assert f"_ZGV{h.isa}N{h.width('f64')}v_exp" in text
    assert "broadcast_to" not in text.split("# ----")[0] or "numpy: " in text  # y is read through stride 0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_vector_loop_tails_are_right_for_every_length(dtype):
    """Every row length and row count from 0 to two vectors and one lane past them: the
    last partial vector of a loop reads and writes only its own lanes. x is a view whose
    rows are followed by NaN, so a lane read past a row's end would show in the sum."""
    width = llvm_cpu.host().width("f64" if dtype == "float64" else "f32")
    formula, shapes = "sum(exp(x) * y) + sum(x * x, axis=1) @ z", {"x": ("n", "m"), "y": ("m",), "z": ("n",)}
    fn = graphc.compile(formula, shapes=shapes, target="llvm", dtype=dtype)
    ref = graphc.compile(formula, shapes=shapes, target="numpy", dtype=dtype)
    rng = np.random.default_rng(0)
    for n in range(2 * width + 2):
        for m in range(2 * width + 2):
            padded = np.full((n, m + width), np.nan, dtype=dtype)
            padded[:, :m] = rng.normal(size=(n, m))
            pt = {"x": padded[:, :m], "y": rng.normal(size=m).astype(dtype), "z": rng.normal(size=n).astype(dtype)}
            v, g = fn(**pt)
            rv, rg = ref(**pt)
            tol = TOL[dtype] * (1 + n * m)  # sums of n*m terms, in another order than NumPy's
            assert np.isfinite(v) and v == pytest.approx(rv, rel=tol, abs=tol), (n, m, v, rv)
            for k in rg:
                assert g[k].shape == pt[k].shape, (n, m, k)
                np.testing.assert_allclose(g[k], rg[k], rtol=tol, atol=tol, err_msg=f"d/d{k} at n={n}, m={m}")


def test_a_region_the_lowering_refuses_runs_as_its_numpy_form(monkeypatch):
    formula, shapes = "sum(exp(x) * x + sum(x * x, axis=0))", {"x": (4, 3)}
    ref = graphc.compile(formula, shapes=shapes, target="numpy")
    pt = {"x": np.random.default_rng(0).normal(size=(4, 3))}
    used = []
    real = llvm_tensor._numpy_region
    monkeypatch.setattr(llvm_tensor, "_numpy_region", lambda r: used.append(r) or real(r))
    fn = graphc.compile(formula, shapes=shapes, target="llvm")
    _agree(fn, ref, pt, 1e-12)
    assert not used  # lowered: the fallback is not taken

    def refuse(self, name, expr):
        raise GraphcError("not lowered here")
    monkeypatch.setattr(llvm_cpu.Lower, "line", refuse)
    monkeypatch.setattr(llvm_tensor, "_key", lambda h, *parts: "refused" + str(hash(parts) & 0xFFFFFF))
    fn = graphc.compile(formula, shapes=shapes, target="llvm")
    _agree(fn, ref, pt, 1e-12)
    assert used


def test_a_tensor_program_runs_and_loads_from_cache_without_numba(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "numba" or name.startswith("numba."):
                    raise ImportError("numba is blocked in this test")
        sys.meta_path.insert(0, Block())
        import numpy as np, graphc
        fn = graphc.compile({MLP_L2!r}, shapes={MLP_SHAPES!r}, dtypes={{"y": "int64"}}, target="llvm")
        rng = np.random.default_rng(0)
        args = dict(X=rng.normal(size=(9, 4)), W1=rng.normal(size=(4, 6)), b1=rng.normal(size=6),
                    W2=rng.normal(size=(6, 3)), b2=rng.normal(size=3), y=rng.integers(0, 3, 9), reg=0.1)
        v, g = fn(**args)
        assert "numba" not in sys.modules
        print(repr(v), repr(float(g["b1"][0])))
    """)
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout  # the second run: machine code from the cache
    assert len(list(tmp_path.glob("graphc_*.o"))) >= 1  # the whole step (llvm_step.py), or its fused loops and rows
