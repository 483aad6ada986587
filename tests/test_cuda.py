"""The CUDA target without a GPU: Numba's simulator (in a process of its own),
real PTX for cc 8.0 and 9.0 (assembled by ptxas where present), and a clean
error when CUDA is unusable. Tests that need a real GPU are marked `gpu`. The fast
tier runs a few formulas and programs in the simulator and PTX for one (cc, dtype);
the slow tier (-m slow) runs all of them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiers
from formulas import CORE, FUNCTIONS

import graphc
from graphc.backends.cuda import pointwise as numba_cuda

pytest.importorskip("numba.cuda")


def _gpu_present() -> bool:
    code = "from numba import cuda; print(cuda.is_available())"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return r.stdout.strip() == "True"


GPU = _gpu_present()
gpu = pytest.mark.skipif(not GPU, reason="needs an NVIDIA GPU")


# every 8th formula or program (the first included) in the fast tier, every one in the slow tier
@pytest.mark.parametrize("stride", tiers(8, 1))
def test_simulator_matches_cpu_on_core_set(stride):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", GRAPHC_CUDA_SIM_STRIDE=str(stride))
    script = Path(__file__).with_name("cuda_sim_run.py")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["checked"] == 2 * len((CORE + FUNCTIONS)[::stride])
    assert res["failures"] == []
    assert set(res["extra"]) == {"device_out", "device_grads", "out_buffers", "broadcast", "scalar"}


def _needs_nvvm():
    try:
        numba_cuda.ptx(graphc.compile("x*y", target="numpy").graph, (9, 0))
    except graphc.GraphcError as exc:
        pytest.fail(f"PTX compilation unavailable: {exc}")


# the fast tier: every fourth formula for one (cc, dtype); the slow tier: every formula for each
@pytest.mark.parametrize("cc,dtype,stride", [pytest.param((8, 0), "float64", 1, marks=pytest.mark.slow),
                                             pytest.param((9, 0), "float64", 1, marks=pytest.mark.slow),
                                             pytest.param((9, 0), "float32", 1, marks=pytest.mark.slow),
                                             ((9, 0), "float32", 4)])
def test_ptx_compiles_for_core_set(cc, dtype, stride):
    _needs_nvvm()
    for formula, _ in (CORE + FUNCTIONS)[::stride]:
        g = graphc.compile(formula, target="numpy", dtype=dtype).graph
        text = numba_cuda.ptx(g, cc)
        assert ".entry" in text and f".target sm_{cc[0]}{cc[1]}" in text, formula
        if dtype == "float32":
            # no float32 value is ever widened to float64 (libdevice's sinf/cosf
            # range reduction converts an integer to f64 internally; that is not ours)
            body = text.split(".entry", 1)[1]
            assert "cvt.f64.f32" not in body, f"{formula}: float32 promoted to float64"


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas is not on this machine")
def test_ptx_assembles_for_sm90(tmp_path):
    _needs_nvvm()
    for formula in ["sigmoid(w0*x0 + w1*x1 + w2)", "softplus(x*y) + logaddexp(x, y) * tanh(y)", "x ** y / (1 + abs(x))"]:
        ptx = tmp_path / "k.ptx"
        ptx.write_text(numba_cuda.ptx(graphc.compile(formula, target="numpy").graph, (9, 0)))
        r = subprocess.run(["ptxas", "-arch=sm_90", str(ptx), "-o", str(tmp_path / "k.cubin")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "k.cubin").stat().st_size > 0


@pytest.mark.slow  # two processes; test_cli covers the command, the rest of this file the emitted text
def test_cli_emit_cuda_source_and_ptx():
    r = subprocess.run([sys.executable, "-m", "graphc", "emit", "sigmoid(w0*x0 + w1*x1 + w2)", "--target", "cuda"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "cuda.grid(1)" in r.stdout and "cuda.gridsize(1)" in r.stdout
    r = subprocess.run([sys.executable, "-m", "graphc", "emit", "sigmoid(w0*x0 + w1*x1 + w2)", "--target", "cuda",
                        "--ptx", "--cc", "9.0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert ".entry" in r.stdout


def test_cpu_and_cuda_share_one_template_set():
    from graphc.backends.scalar import Body

    g = graphc.compile("sigmoid(x*y) + softplus(x)", target="numpy").graph
    cuda_src = numba_cuda.generate_source(g, (True, True))
    for line in Body(g).lines:
        assert line in cuda_src


@pytest.mark.skipif(GPU, reason="this machine has a GPU")
def test_no_gpu_gives_a_clean_graphc_error():
    code = (
        "import graphc\n"
        "try:\n"
        "    graphc.compile('x*y', target='cuda')\n"
        "except graphc.GraphcError as e:\n"
        "    print(type(e).__name__, '|', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("CudaUnavailableError |")
    for phrase in ("graphc[cuda]", "target='cpu'", "NUMBA_ENABLE_CUDASIM"):
        assert phrase in r.stdout
    assert issubclass(numba_cuda.CudaUnavailableError, graphc.BackendUnavailableError)


@gpu
def test_real_gpu_matches_cpu():
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(100_003) for _ in range(5)]
    for dtype in ("float64", "float32"):
        fn = graphc.compile("sigmoid(w0*x0 + w1*x1 + w2)", target="cuda", dtype=dtype)
        ref = graphc.compile("sigmoid(w0*x0 + w1*x1 + w2)", target="cpu", dtype=dtype)
        a = [x.astype(dtype) for x in args]
        v, g = fn(*a)
        rv, rg = ref(*a)
        tol = 1e-13 if dtype == "float64" else 1e-5
        np.testing.assert_allclose(v, rv, rtol=tol, atol=tol)
        for k in rg:
            np.testing.assert_allclose(g[k], rg[k], rtol=tol, atol=tol)


@gpu
def test_real_gpu_device_arrays_zero_copy():
    from numba import cuda

    fn = graphc.compile("x*y + exp(x)", target="cuda")
    d = [cuda.to_device(np.linspace(-1, 1, 1000)) for _ in range(2)]
    v, g = fn(*d)
    assert hasattr(v, "__cuda_array_interface__")
    np.testing.assert_allclose(g["y"].copy_to_host(), np.linspace(-1, 1, 1000))


@pytest.mark.parametrize("stride", tiers(8, 1))
def test_simulator_runs_tensor_programs_like_the_numpy_target(stride):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", GRAPHC_CUDA_SIM_STRIDE=str(stride),
               GRAPHC_CUDA_SIM_QUICK="1" if stride > 1 else "0")  # quick: the net called once, not four times
    script = Path(__file__).with_name("cuda_tensor_sim_run.py")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    from test_tensor import PROGRAMS

    n = len(PROGRAMS[::stride])
    assert res["extra"]["programs"] == n and res["checked"] == 2 * n + 1
    assert res["failures"] == []
    extra = res["extra"]
    calls = ("mlp", "schedule") if stride > 1 else ("mlp", "schedule", "out", "device", "pickle")
    assert all(extra.get(k) for k in calls), extra
    assert extra["domain_retries"] <= 2, extra  # only where(x <= 0, 0, log1p(x)): see the script


@gpu
def test_real_gpu_runs_tensor_programs_like_the_numpy_target():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(GRAPHC_CUDA_REAL="1")  # half the programs, the script's default stride (time on a lent GPU is short)
    script = Path(__file__).with_name("cuda_tensor_sim_run.py")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["failures"] == [] and res["extra"]["domain_retries"] == 0, res
    assert all(res["extra"][k] for k in ("mlp", "out", "device")), res


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)])
def test_ptx_of_a_tensor_program_has_every_kernel(cc):
    shapes = {"X": ("N", "D"), "W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",), "y": ("N",)}
    prog = graphc.Program("cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y)", shapes=shapes, dtypes={"y": "int64"},
                          wrt=["W1", "b1", "W2", "b2"])
    text = graphc.emit(prog, target="cuda", kind="ptx", cc=f"{cc[0]}.{cc[1]}")
    assert text.count(".entry") == 5, text.count(".entry")  # 3 fused loops, the cross_entropy rows, the GEMM
    assert f".target sm_{cc[0]}{cc[1]}" in text and "atom.global.add.f64" in text
    src = graphc.emit(prog, target="cuda")
    assert src.count("gemm (tiled 16x16 shared-memory kernel)") == 5 and "cuda.atomic.add" in src


@pytest.mark.slow  # a sweep: test_ptx_of_a_tensor_program_has_every_kernel is the fast tier's tensor PTX
def test_ptx_compiles_for_tensor_programs():
    from test_tensor import PROGRAMS

    for formula, shapes, dtypes in PROGRAMS[::3]:  # a third of them: NVVM takes ~0.25 s a module
        for dtype in ("float64", "float32"):
            text = graphc.emit(graphc.Program(formula, shapes=shapes, dtypes=dtypes, dtype=dtype), target="cuda",
                               kind="ptx")
            assert ".visible .entry" in text or "matmul" not in formula, formula


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas is not on this machine")
def test_tensor_ptx_assembles_for_sm90(tmp_path):
    from test_tensor import MLP_L2, MLP_SHAPES

    prog = graphc.Program(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"])
    text = graphc.emit(prog, target="cuda", kind="ptx")
    for k, module in enumerate(text.split("\n//\n// Generated by NVIDIA NVVM Compiler")):
        ptx = tmp_path / f"k{k}.ptx"
        ptx.write_text(module if k == 0 else "//\n// Generated by NVIDIA NVVM Compiler" + module)
        r = subprocess.run(["ptxas", "-arch=sm_90", str(ptx), "-o", str(tmp_path / f"k{k}.cubin")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
