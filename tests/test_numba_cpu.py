"""The Numba CPU backend: generated source, float32 purity, broadcasting variants,
out= buffers, the scalar fast path, and agreement with the NumPy reference."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import TARGETS

import graphc
from graphc.backends import targets
from graphc.errors import ArgumentError

NEURON = "1/(1+exp(-(w0*x0 + w1*x1 + w2)))"
MIXED = "sigmoid(a*b + 0.1) + softplus(a) * logaddexp(a, b) + tanh(b) + a**2 + max(a, b) + relu(a) + abs(b)"


def test_source_is_one_fused_loop():
    fn = graphc.compile(NEURON, target="cpu")
    src = fn.source
    assert src.count("for i0 in range(n0):") == 1
    assert "error_model=\"numpy\"" in src and "fastmath" not in src
    assert "# sigmoid" in src and "# dsigmoid" in src
    loop = src.split("def kernel(")[1].split("def scalar(")[0]
    assert loop.count("math.exp(") == 1  # one exp(-|z|) shared by sigmoid and its derivative
    assert fn.graph.output_names == ("f", "df/dw0", "df/dx0", "df/dw1", "df/dx1", "df/dw2")
    par = graphc.compile(NEURON, target="parallel").source
    assert "prange(n0)" in par and "def kernel_parallel(" in par


def test_float32_kernels_compute_in_float32():
    fn = graphc.compile(MIXED, target="cpu", dtype="float32")
    llvm = fn.emit("llvm")
    assert "double" not in llvm, [ln for ln in llvm.splitlines() if "double" in ln][:5]
    f64 = graphc.compile(MIXED, target="cpu", dtype="float64").emit("llvm")
    assert "double" in f64


# the Numba targets, this file's subject (test_llvm runs llvm's kernel over every scalar/array mix)
@pytest.mark.parametrize("target,dtype", [("cpu", "float64"), ("cpu", "float32"),
                                          pytest.param("parallel", "float64", marks=pytest.mark.slow)])
def test_broadcast_variants_match_reference(target, dtype):
    fn = graphc.compile(MIXED, target=target, dtype=dtype)
    ref = graphc.compile(MIXED, target="numpy", dtype=dtype)
    rng = np.random.default_rng(0)
    base = rng.uniform(-3, 3, (6, 10))
    cases = [
        (base, base.T.copy().T),                    # same shape, one Fortran-ordered
        (base[:, ::2], 0.7),                        # strided array + Python scalar
        (np.float32(0.3), base[0]),                 # scalar + 1-d
        (base[:, :1], base[0]),                     # (6,1) x (10,) -> (6,10)
        (np.array([1.5]), base),                    # size-1 array broadcast
        (base.reshape(2, 3, 10), base[0]),          # 3-d
        (np.empty((0, 3)), 1.0),                    # empty
    ]
    tol = 1e-12 if dtype == "float64" else 2e-6
    for a, b in cases:
        v, g = fn(a, b)
        rv, rg = ref(a, b)
        assert np.shape(v) == np.shape(rv) and v.dtype == np.dtype(dtype)
        np.testing.assert_allclose(v, rv, rtol=tol, atol=tol)
        for k in g:
            np.testing.assert_allclose(g[k], rg[k], rtol=tol, atol=tol)


def test_parallel_large_n_matches_serial():
    n = 100_003
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(n) for _ in range(5)]
    old = targets.set_parallel_min(32_768)
    try:
        vp, gp = graphc.compile(NEURON, target="parallel")(*args)
    finally:
        targets.set_parallel_min(old)
    vs, gs = graphc.compile(NEURON, target="cpu")(*args)
    np.testing.assert_array_equal(vp, vs)
    for k in gs:
        np.testing.assert_array_equal(gp[k], gs[k])


@pytest.mark.parametrize("target", TARGETS)
def test_out_buffers_are_filled_and_returned(target):
    fn = graphc.compile(NEURON, target=target)
    rng = np.random.default_rng(2)
    args = [rng.standard_normal(1000) for _ in range(5)]
    bufs = [np.empty(1000) for _ in range(6)]
    v, g = fn(*args, out=bufs)
    assert v is bufs[0] and g["w0"] is bufs[1] and g["w2"] is bufs[5]
    rv, rg = fn(*args)
    np.testing.assert_array_equal(v, rv)
    named = {name: np.empty(1000) for name in fn.graph.output_names}
    v2, g2 = fn(*args, out=named)
    assert v2 is named["f"] and g2["x1"] is named["df/dx1"]
    with pytest.raises(ArgumentError, match="needs 6 buffers"):
        fn(*args, out=bufs[:3])
    with pytest.raises(ArgumentError, match="C-contiguous float64 array of shape"):
        fn(*args, out=[np.empty(1000, dtype=np.float32)] + bufs[1:])
    with pytest.raises(ArgumentError, match="shape"):
        fn(*args, out=[np.empty(999)] + bufs[1:])
    with pytest.raises(ArgumentError, match="lacks buffers"):
        fn(*args, out={"f": bufs[0]})


def test_scalar_fast_path():
    fn = graphc.compile(NEURON, target="cpu")
    v, g = fn(2.0, -1.0, -3.0, -2.0, -3.0)
    assert type(v) is float and all(type(x) is float for x in g.values())
    arr_v, arr_g = fn(*(np.array([x]) for x in (2.0, -1.0, -3.0, -2.0, -3.0)))
    assert v == arr_v[0] and g == {k: x[0] for k, x in arr_g.items()}
    # ints and keywords take the general path and agree
    assert fn(w0=2, x0=-1, w1=-3, x1=-2, w2=-3) == (v, g)
    f32 = graphc.compile(NEURON, target="cpu", dtype="float32")
    v32, _ = f32(2.0, -1.0, -3.0, -2.0, -3.0)
    assert v32 == float(np.float32(v32)) and v32 == pytest.approx(v, rel=1e-6)


def test_forward_only_kernel():
    fn = graphc.compile(NEURON, target="cpu")
    x = np.linspace(-2, 2, 7)
    np.testing.assert_allclose(fn.forward(x, x, x, x, x), fn(x, x, x, x, x)[0], rtol=0, atol=0)
    assert fn.forward(2.0, -1.0, -3.0, -2.0, -3.0) == fn(2.0, -1.0, -3.0, -2.0, -3.0)[0]


def test_ieee_inside_kernels():
    fn = graphc.compile("x / y + log(y)", target="cpu")
    v, g = fn(np.array([1.0, 0.0, -1.0]), np.array([0.0, 0.0, -1.0]))
    assert v[0] == -np.inf or np.isnan(v[0])
    assert np.isnan(v[1]) and np.isnan(v[2])


def test_cli_emit():
    r = subprocess.run([sys.executable, "-m", "graphc", "emit", NEURON, "--target", "parallel"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "def kernel_parallel(" in r.stdout and "prange" in r.stdout
    r = subprocess.run([sys.executable, "-m", "graphc", "emit", "x*y", "--llvm"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "define" in r.stdout
