"""The llvmlite backend (target "llvm"): the formula sets against the NumPy
reference in float64 and float32, one kernel for every scalar/array mix,
vector math from libmvec (and the same results without it), the object-code
cache, and a cached kernel loaded in a process where Numba cannot be imported."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from formulas import CORE, FUNCTIONS, sample

import graphc
from graphc.backends import cache
from graphc.backends.llvm import pointwise as llvm_cpu
from graphc.errors import ArgumentError

NEURON = "sigmoid(w0*x0 + w1*x1 + w2)"
TOL = {"float64": 1e-12, "float32": 2e-5}


def _close(a, b, dtype):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype], equal_nan=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_formula_sets_agree_with_the_numpy_target(dtype):
    rng = np.random.default_rng(1)
    bad = []
    for formula, ranges in CORE + FUNCTIONS:
        fn = graphc.compile(formula, target="llvm", dtype=dtype)
        ref = graphc.compile(formula, target="numpy", dtype=dtype)
        pts = sample(fn.inputs, ranges, rng, n=37)  # 37: vector body and a scalar tail
        v, g = fn(*pts.values())
        rv, rg = ref(*pts.values())
        if not _close(v, rv, dtype) or any(not _close(g[k], rg[k], dtype) for k in rg):
            bad.append(formula)
        one = {k: float(a[0]) for k, a in pts.items()}
        sv, sg = fn(**one)
        if not _close(sv, rv[0], dtype) or any(not _close(sg[k], rg[k][0], dtype) for k in rg):
            bad.append(f"{formula} (scalar)")
    assert bad == []


def test_ieee_specials_match_the_numba_target():
    formula = "x / y + relu(x) * sigmoid(y) + max(x, y) + sqrt(x) + log(y) + softplus(x) + x ** y"
    fn = graphc.compile(formula, target="llvm")
    ref = graphc.compile(formula, target="cpu")
    x = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 2.0, 0.5, 3.0])
    y = np.array([0.0, 1.0, -0.0, np.nan, 2.0, np.inf, 1.0, -np.inf, 0.0, -2.0])
    v, g = fn(x, y)
    rv, rg = ref(x, y)
    for a, b in [(v, rv)] + [(g[k], rg[k]) for k in rg]:
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))  # NaN, +-inf and signed zeros where Numba has them
        np.testing.assert_array_equal(a[np.isinf(b)], b[np.isinf(b)])
        np.testing.assert_array_equal(np.signbit(a[b == 0]), np.signbit(b[b == 0]))
        np.testing.assert_allclose(a, b, rtol=4e-16, atol=0)  # libmvec's exp/log: a few ULP from libm's


def test_one_kernel_serves_every_mix_of_scalars_arrays_and_broadcasts():
    fn = graphc.compile(NEURON, target="llvm")
    ref = graphc.compile(NEURON, target="numpy")
    compiled = fn.kernel.compiled
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 10))
    cases = [
        (a, a, a, a, a),
        (a[:, ::2], 0.5, a[:, 1::2], -1.0, 0.25),  # strided arrays and scalars
        (a[:, :1], a[0], 0.3, a, np.float32(2.0)),  # (6,1) x (10,) -> (6,10)
        (0.1, 0.2, 0.3, 0.4, 0.5),
        (np.array([]), 1.0, 2.0, 3.0, 4.0),
    ]
    for args in cases:
        v, g = fn(*args)
        rv, rg = ref(*args)
        np.testing.assert_allclose(v, rv, rtol=1e-14)
        for k in rg:
            np.testing.assert_allclose(g[k], rg[k], rtol=1e-13, atol=1e-300)
    assert fn.kernel.compiled is compiled  # nothing recompiled for a new mix


def test_out_buffers_and_overlap_refusal():
    fn = graphc.compile("x*y + sin(x)", target="llvm")
    x, y = np.linspace(-1, 1, 1000), np.linspace(2, 3, 1000)
    out = [np.empty(1000) for _ in range(3)]
    v, g = fn(x, y, out=out)
    assert v is out[0] and g["y"] is out[2]
    np.testing.assert_allclose(g["x"], y + np.cos(x), rtol=1e-15)
    with pytest.raises(ArgumentError, match="overlaps argument 'x'"):
        fn(x, y, out=[x, out[1], out[2]])


def test_large_calls_split_over_threads_and_agree():
    fn = graphc.compile(NEURON, target="llvm")
    n = (1 << 17) * 2 + 13
    rng = np.random.default_rng(3)
    args = [rng.normal(size=n) for _ in range(5)]
    v, g = fn(*args)
    rv, rg = graphc.compile(NEURON, target="numpy")(*args)
    np.testing.assert_allclose(v, rv, rtol=1e-14)
    np.testing.assert_allclose(g["w1"], rg["w1"], rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kernels_cut_into_parts_agree_with_the_numpy_target(dtype, monkeypatch):
    # every formula as a big kernel would be built: parts of 3 lines, values between them in
    # scratch slots (reused), the last partial vector staged, outputs that are inputs or constants
    monkeypatch.setattr(llvm_cpu, "INLINE_MAX", 0)
    monkeypatch.setattr(llvm_cpu, "WIDE", 0)
    monkeypatch.setattr(llvm_cpu, "CHUNK", 3)
    rng = np.random.default_rng(5)
    bad = []
    for formula, ranges in (CORE + FUNCTIONS)[::3] + [("x0 + x1 + x2 + x3 + x4", {}), ("x * 2 + y", {})]:
        fn = graphc.compile(formula, target="llvm", dtype=dtype)
        ref = graphc.compile(formula, target="numpy", dtype=dtype)
        pts = sample(fn.inputs, ranges, rng, n=37)
        cases = [list(pts.values()), [float(a[0]) for a in pts.values()]]  # a tail of 1 or 5 lanes, one point
        if len(pts) > 1:
            cases.append([float(a[0]) if k == 0 else a for k, a in enumerate(pts.values())])  # a broadcast
        for args in cases:
            v, g = fn(*args)
            rv, rg = ref(*args)
            if not _close(v, rv, dtype) or any(not _close(g[k], rg[k], dtype) for k in rg):
                bad.append(formula)
    assert bad == []


def test_a_sum_of_thousands_of_inputs_compiles_in_linear_time_on_the_cpu_target():
    # on target cpu Numba's limit was ~1,490 inputs (RecursionError): past its sizes the cpu target
    # hands the formula to the llvm backend, which cuts a big kernel into parts, so compile time
    # grows linearly (250 -> 2,000 inputs: 3x the CPU time in parts, 17x as one LLVM block)
    def compile_sum(n, name):  # a name of its own per size: no cache hit
        start = time.process_time()  # CPU time: other processes on a busy machine do not count
        fn = graphc.compile(" + ".join(f"{name}{i}" for i in range(n)), target="cpu")
        return fn, time.process_time() - start

    graphc.compile("x + y", target="llvm")  # the backend's one-time start-up is not the small sum's
    _, t_small = compile_sum(250, "a")
    fn, t_big = compile_sum(n := 2000, "b")
    assert t_big < 10 * t_small, (t_small, t_big)  # 8x the inputs
    xs = np.random.default_rng(0).normal(size=(n, 11))
    v, g = fn(*xs)
    np.testing.assert_allclose(v, xs.sum(axis=0), rtol=1e-12)
    assert all(np.array_equal(g[f"b{i}"], np.ones(11)) for i in (0, 777, n - 1))
    # the llvm backend's kernel: the cpu target emits what the llvm target does (Numba source below its sizes)
    prog = graphc.Program(" + ".join(f"a{i}" for i in range(250)))
    assert graphc.emit(prog, target="cpu") == graphc.emit(prog, target="llvm")
    assert "numba" in graphc.emit(graphc.Program("a0 + a1"), target="cpu")


def test_the_neuron_calls_vector_exp_and_the_scalar_fallback_agrees(tmp_path):
    h = llvm_cpu.host()
    ir_text = graphc.emit(graphc.Program(NEURON), target="llvm", kind="source")
    if h.mvec is not None:
        assert f"_ZGV{h.isa}N{h.width('f64')}v_exp" in ir_text
    else:  # no libmvec here: the vector body calls libm lane by lane
        assert "_ZGV" not in ir_text and "@\"exp\"" in ir_text
    code = textwrap.dedent(f"""
        import numpy as np, graphc
        fn = graphc.compile({NEURON!r}, target="llvm")
        x = np.linspace(-30, 30, 1001)
        v, g = fn(x, 0.7, x[::-1].copy(), -0.3, 0.1)
        np.save({str(tmp_path / "r.npy")!r}, np.stack([v, g["w0"], g["x1"]]))
        print("_ZGV" in fn.source)
    """)
    env = dict(os.environ, GRAPHC_NO_LIBMVEC="1", GRAPHC_CACHE_DIR=str(tmp_path / "c"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "False"  # the fallback emits no vector math calls
    fallback = np.load(tmp_path / "r.npy")
    fn = graphc.compile(NEURON, target="llvm")
    x = np.linspace(-30, 30, 1001)
    v, g = fn(x, 0.7, x[::-1].copy(), -0.3, 0.1)
    mine = np.stack([v, g["w0"], g["x1"]])
    ulp = np.abs(mine - fallback) / np.spacing(np.maximum(np.abs(fallback), 1e-300))
    assert np.nanmax(ulp) <= 8, np.nanmax(ulp)  # libmvec: up to 4 ULP per call, two calls apart at most


def test_object_code_is_cached_checked_and_loaded_without_numba(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    env = dict(os.environ)
    warm = "import graphc; print(graphc.compile('tanh(x*y) + x', target='llvm')(0.5, 2.0)[0])"
    r = subprocess.run([sys.executable, "-c", warm], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    graph = graphc.Program('tanh(x*y) + x').graph
    key = llvm_cpu.cache_key(graph, llvm_cpu.host())
    objs, lls = [tmp_path / f"graphc_{key}.o"], [tmp_path / f"graphc_{key}.ll"]
    assert objs[0].exists() and "define" in lls[0].read_text()
    # the kernel and, where the interpreter allows them, the Python entries (compiled once per dtype)
    assert len(list(tmp_path.glob("graphc_*.o"))) == 1 + bool(llvm_cpu.host().pyapi)
    guard = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "numba" or name.startswith("numba."):
                    raise ImportError("numba is blocked in this test")
        sys.meta_path.insert(0, Block())
        import graphc
        fn = graphc.compile('tanh(x*y) + x', target='llvm')
        v, g = fn(0.5, 2.0)
        assert "numba" not in sys.modules
        print(v, g["x"])
    """)
    r = subprocess.run([sys.executable, "-c", guard], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    v, gx = map(float, r.stdout.split())
    assert v == pytest.approx(np.tanh(1.0) + 0.5, rel=1e-15)
    assert gx == pytest.approx(2.0 * (1 - np.tanh(1.0) ** 2) + 1.0, rel=1e-15)
    # a corrupted object file is detected and rebuilt, not loaded
    assert cache.load_blob(objs[0].stem.split("_", 1)[1], ".o") is not None
    objs[0].write_bytes(objs[0].read_bytes()[:-100] + b"\0" * 100)
    assert cache.load_blob(objs[0].stem.split("_", 1)[1], ".o") is None
    r = subprocess.run([sys.executable, "-c", warm], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and float(r.stdout) == pytest.approx(np.tanh(1.0) + 0.5, rel=1e-15)
    assert cache.load_blob(objs[0].stem.split("_", 1)[1], ".o") is not None


def test_cli_emits_llvm_ir_and_assembly():
    run = [sys.executable, "-m", "graphc.cli", "emit", NEURON, "--target", "llvm"]
    ir_text = subprocess.run(run, capture_output=True, text=True).stdout
    assert "_kernel" in ir_text and "fadd" in ir_text and "fast" not in ir_text
    opt = subprocess.run(run + ["--llvm"], capture_output=True, text=True).stdout
    assert "define" in opt
    asm = subprocess.run(run + ["--asm"], capture_output=True, text=True).stdout
    assert "_kernel" in asm and ("xmm" in asm or "v0" in asm)
