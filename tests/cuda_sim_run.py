"""Run under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set by the test
before numba is imported): target="cuda" against target="cpu" on the core
formula set, float32 and float64. Prints one JSON line of failures."""

import json
import os
import sys

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from formulas import CORE, FUNCTIONS, sample  # noqa: E402
from numba import cuda  # noqa: E402

import graphc  # noqa: E402

TOL = {"float64": 1e-13, "float32": 1e-5}
failures = []
checked = 0


def close(a, b, dtype):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype], equal_nan=True)


# every STRIDE-th formula: test_cuda picks 8 (the fast tier) or 1 (every formula, the slow tier)
STRIDE = int(os.environ.get("GRAPHC_CUDA_SIM_STRIDE", "2"))
for formula, ranges in (CORE + FUNCTIONS)[::STRIDE]:
    for dtype in ("float64", "float32"):
        gpu = graphc.compile(formula, target="cuda", dtype=dtype)
        cpu = graphc.compile(formula, target="cpu", dtype=dtype)
        rng = np.random.default_rng(len(formula))
        pt = sample(gpu.inputs, ranges, rng, n=37)
        pt = {k: v.astype(dtype) for k, v in pt.items()}
        v1, g1 = gpu(**pt)
        v0, g0 = cpu(**pt)
        ok = close(v1, v0, dtype) and all(close(g1[k], g0[k], dtype) for k in g0)
        checked += 1
        if not ok:
            failures.append(f"{formula} [{dtype}]")

# device arrays in -> device arrays out, out= device buffers, a stream, broadcast scalars
fn = graphc.compile("sigmoid(w0*x0 + w1*x1 + w2)", target="cuda")
ref = graphc.compile("sigmoid(w0*x0 + w1*x1 + w2)", target="cpu")
rng = np.random.default_rng(0)
host = [rng.standard_normal(50) for _ in range(5)]
dev = [cuda.to_device(h) for h in host]
v, g = fn(*dev)
rv, rg = ref(*host)
extra = {
    "device_out": hasattr(v, "copy_to_host") and close(v.copy_to_host(), rv, "float64"),
    "device_grads": all(close(g[k].copy_to_host(), rg[k], "float64") for k in rg),
}
bufs = [cuda.device_array(50) for _ in range(6)]
stream = cuda.stream()
v, g = fn(*dev, out=bufs, stream=stream)
extra["out_buffers"] = v is bufs[0] and close(bufs[5].copy_to_host(), rg["w2"], "float64")
v, g = fn(host[0], 0.5, host[2], -1.0, 2.0)
rv, rg = ref(host[0], 0.5, host[2], -1.0, 2.0)
extra["broadcast"] = close(v, rv, "float64") and close(g["x0"], rg["x0"], "float64")
extra["scalar"] = fn(2.0, -1.0, -3.0, -2.0, -3.0)[0] == ref(2.0, -1.0, -3.0, -2.0, -3.0)[0]
for k, ok in extra.items():
    if not ok:
        failures.append(k)
print(json.dumps({"checked": checked, "failures": failures, "extra": list(extra)}))
