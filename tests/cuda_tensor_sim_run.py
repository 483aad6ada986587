"""Run under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set by the test
before numba is imported): tensor programs on target="cuda" against the numpy
target, float64 and float32. Prints one JSON line of counts and failures."""

import json
import os
import sys

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.environ.get("GRAPHC_CUDA_REAL") == "1"
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from test_tensor import MLP_L2, MLP_SHAPES, PROGRAMS, _mlp_args, _mlp_numpy, draw  # noqa: E402

import graphc  # noqa: E402

TOL = {"float64": 1e-12, "float32": 1e-5}
failures: list[str] = []
checked = 0


def close(a, b, dtype):
    return np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=TOL[dtype], atol=TOL[dtype] * 1e-3,
                       equal_nan=True)


domain_retries = 0
# every STRIDE-th program: test_cuda picks 8 (the fast tier) or 1 (every program, the slow tier); half on a real GPU
programs = PROGRAMS[::int(os.environ.get("GRAPHC_CUDA_SIM_STRIDE", "2"))]
for formula, shapes, dtypes in programs:
    for dtype in ("float64", "float32"):
        try:
            gpu = graphc.compile(formula, shapes=shapes, dtypes=dtypes, target="cuda", dtype=dtype)
            ref = graphc.compile(formula, shapes=shapes, dtypes=dtypes, target="numpy", dtype=dtype)
            pt = draw(ref, np.random.default_rng(3))
            try:
                v, g = gpu(**pt)
            except ValueError as exc:
                # the simulator runs Python's math, which raises outside a function's domain where
                # the GPU gives NaN (e.g. both branches of a where): the same program, inside the domain
                if "math domain error" not in str(exc):
                    raise
                domain_retries += 1
                pt = {k: np.abs(a) + 0.1 if a.dtype.kind == "f" else a for k, a in pt.items()}
                v, g = gpu(**pt)
            rv, rg = ref(**pt)
            checked += 1
            bad = [k for k in rg if not close(g[k], rg[k], dtype)]
            if not close(v, rv, dtype) or bad:
                failures.append(f"{formula} {dtype}: value {v} vs {rv}; gradients {bad}")
        except Exception as exc:  # a failure to report, not to stop on
            failures.append(f"{formula} {dtype}: {type(exc).__name__}: {exc}")

# the seed's two-layer net with L2: every kernel kind (regions with sums, xent, GEMMs with folded transposes)
extra = {}
fn = graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"], target="cuda")
args = _mlp_args(n=40, d=5, h=18, c=3)  # 40 rows: more than the 32 threads the simulator launches
v, g = fn(**args)
rv, rg = _mlp_numpy(**args)
extra["mlp"] = bool(close(v, rv, "float64") and all(close(g[k], rg[k], "float64") for k in rg))
text = fn.kernel.source
extra["schedule"] = text.count("gemm (tiled") == 5 and "= transpose" not in text.split("# ----")[0]
checked += 1
# GRAPHC_CUDA_SIM_QUICK=1 (the fast tier): the net is called once, since each call of its five
# GEMMs runs ~5,000 simulated threads (seconds); cuda_sim_run.py covers out= and device arrays there
if os.environ.get("GRAPHC_CUDA_SIM_QUICK") != "1":
    out = [np.empty(())] + [np.empty_like(args[k]) for k in ("W1", "b1", "W2", "b2")]
    v2, g2 = fn(**args, out=out)
    extra["out"] = g2["W1"] is out[1] and close(out[1], rg["W1"], "float64")
    # GPU arrays in: nothing copied to the host and back, gradients left on the GPU
    from numba import cuda

    dev = {k: cuda.to_device(a) if np.ndim(a) else a for k, a in args.items()}
    v3, g3 = fn(**dev)
    extra["device"] = all(hasattr(g3[k], "copy_to_host") for k in rg) and close(v3, rv, "float64") and \
        all(close(g3[k].copy_to_host(), rg[k], "float64") for k in rg)
    import pickle

    back = pickle.loads(pickle.dumps(fn))  # the cuda target's function rebuilt from IR text and options
    v4, g4 = back(**args)
    extra["pickle"] = back.target == "cuda" and close(v4, rv, "float64") and \
        all(close(g4[k], rg[k], "float64") for k in rg)
extra["domain_retries"] = domain_retries
extra["programs"] = len(programs)
print(json.dumps({"checked": checked, "failures": failures, "extra": extra}))
