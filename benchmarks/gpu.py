"""GPU benchmark: the seed's sigmoid neuron, value + 5 gradients, on one GPU.

    python -m benchmarks.gpu            # writes benchmarks/RESULTS-gpu.md (needs a GPU)

Peers, each only when installed: graphc target=cuda (device arrays in and out,
preallocated out= buffers), a hand-written fused CuPy ElementwiseKernel (the
practical roofline), PyTorch CUDA autograd and torch.compile, JAX on the GPU.
Reports µs per call, GB/s (88 bytes per element in float64, 44 in float32),
the fraction of a device-to-device copy's bandwidth, and per-call overhead at
small N against a bare numba-cuda launch of an empty kernel with the same
arguments. Runs in well under 3 minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

FORMULA = "1/(1+exp(-(w0*x0 + w1*x1 + w2)))"
SIZES = [10_000, 100_000, 1_000_000, 10_000_000, 100_000_000]


def timeit(fn, sync, budget=0.3, rounds=5) -> float:
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-6)
    reps = max(3, min(2000, int(budget / one)))
    res = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        res.append((time.perf_counter() - t0) / reps)
    return statistics.median(res)


def gpu_name() -> str | None:
    """The GPU's name (Numba's simulator names itself), or None (and a line on
    stderr) when there is none to measure."""
    from numba import cuda

    if not cuda.is_available():
        print("no GPU: nothing to measure", file=sys.stderr)
        return None
    name = getattr(cuda.get_current_device(), "name", "Numba's CUDA simulator")
    return name.decode() if isinstance(name, bytes) else str(name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS-gpu.md")))
    args = ap.parse_args(argv)
    from numba import cuda

    import graphc

    name = gpu_name()
    if name is None:
        return 2
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    rows = []
    sync = cuda.synchronize

    try:
        import cupy as cp
    except ImportError:
        cp = None
    try:
        import torch

        torch_ok = torch.cuda.is_available()
    except ImportError:
        torch, torch_ok = None, False
    try:
        import jax
        import jax.numpy as jnp

        jax_ok = any(d.platform == "gpu" for d in jax.devices())
    except Exception:
        jax, jnp, jax_ok = None, None, False

    @cuda.jit
    def empty(n, a, b, c, d, e, o0, o1, o2, o3, o4, o5):
        pass

    @cuda.jit
    def copy(n, a, o):
        i = cuda.grid(1)
        if i < n:
            o[i] = a[i]

    for dtype in ("float64", "float32"):
        isz = np.dtype(dtype).itemsize
        bpe = 11 * isz
        fn = graphc.compile(FORMULA, target="cuda", dtype=dtype)
        for n in sizes:
            rng = np.random.default_rng(0)
            host = [rng.standard_normal(n).astype(dtype) for _ in range(5)]
            d_in = [cuda.to_device(h) for h in host]
            d_out = [cuda.device_array(n, dtype=dtype) for _ in range(6)]
            big_a = cuda.device_array(n * 11 // 2, dtype=dtype)
            big_o = cuda.device_array(n * 11 // 2, dtype=dtype)
            m = big_a.size
            t_copy = timeit(lambda: copy[(m + 255) // 256, 256](m, big_a, big_o), sync)
            copy_bw = 2 * m * isz / t_copy
            res = {"dtype": dtype, "n": n, "copy_GBs": copy_bw / 1e9}
            res["graphc"] = timeit(lambda: fn(*d_in, out=d_out), sync)
            res["graphc_alloc"] = timeit(lambda: fn(*d_in), sync)
            blocks = (n + 255) // 256
            res["empty_launch"] = timeit(lambda: empty[blocks, 256](n, *d_in, *d_out), sync)
            if cp is not None:
                kern = cp.ElementwiseKernel(
                    "T w0, T x0, T w1, T x1, T w2", "T f, T g0, T g1, T g2, T g3, T g4",
                    "T z = w0*x0 + w1*x1 + w2; T e = exp(-fabs(z)); T s = z >= 0 ? 1/(1+e) : e/(1+e);"
                    "T d = e/((1+e)*(1+e)); f = s; g0 = x0*d; g1 = w0*d; g2 = x1*d; g3 = w1*d; g4 = d;",
                    "neuron")
                c_in = [cp.asarray(h) for h in host]
                c_out = [cp.empty(n, dtype=dtype) for _ in range(6)]
                res["cupy"] = timeit(lambda: kern(*c_in, *c_out), cp.cuda.Device().synchronize)
            if torch_ok:
                t_in = [torch.as_tensor(h, device="cuda") for h in host]

                def torch_step(t_in=t_in):
                    ts = [t.detach().requires_grad_(True) for t in t_in]
                    w0, x0, w1, x1, w2 = ts
                    f = 1 / (1 + torch.exp(-(w0 * x0 + w1 * x1 + w2)))
                    f.backward(torch.ones_like(f))
                    return f, [t.grad for t in ts]

                res["torch"] = timeit(torch_step, torch.cuda.synchronize)
                try:
                    compiled = torch.compile(torch_step)
                    res["torch_compile"] = timeit(compiled, torch.cuda.synchronize)
                except Exception:
                    pass
            if jax_ok:
                def f(w0, x0, w1, x1, w2):
                    return 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2)))

                jf = jax.jit(jax.vmap(jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4))))
                j_in = [jnp.asarray(h) for h in host]
                res["jax"] = timeit(lambda: jax.block_until_ready(jf(*j_in)), lambda: None)
            res["bpe"] = bpe
            rows.append(res)
            print({k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in res.items()}, flush=True)

    peers = [("graphc", "graphc cuda, out= device buffers"), ("graphc_alloc", "graphc cuda, allocating"),
             ("cupy", "CuPy ElementwiseKernel (hand-written, fused)"), ("torch", "PyTorch CUDA autograd"),
             ("torch_compile", "torch.compile"), ("jax", "JAX jit(vmap(value_and_grad))"),
             ("empty_launch", "empty numba-cuda kernel, same arguments")]
    lines = [
        "# graphc GPU benchmark results", "",
        f"Date: {date.today().isoformat()}. GPU: {name}. graphc {graphc.__version__}. "
        "Command: `python -m benchmarks.gpu`.", "",
        f"Formula `{FORMULA}`, value + 5 gradients. Cells: µs per call (GB/s; fraction of the measured "
        "device-to-device copy bandwidth).", "",
    ]
    for dtype in ("float64", "float32"):
        sub = [r for r in rows if r["dtype"] == dtype]
        lines += [f"## {dtype}", "", "| peer | " + " | ".join(f"N = {r['n']:.0e}" for r in sub) + " |",
                  "|---|" + "---|" * len(sub)]
        for key, label in peers:
            cells = []
            for r in sub:
                t = r.get(key)
                if t is None:
                    cells.append("not installed")
                    continue
                gbs = r["bpe"] * r["n"] / t / 1e9
                cells.append(f"{t * 1e6:.1f} µs ({gbs:.0f} GB/s; {gbs / r['copy_GBs']:.2f})")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("| device-to-device copy bandwidth | " + " | ".join(f"{r['copy_GBs']:.0f} GB/s" for r in sub) + " |")
        small = sub[0]
        lines += ["", f"Per-call overhead at N = {small['n']:.0e}: graphc {small['graphc'] * 1e6:.1f} µs vs an empty "
                  f"kernel launch {small['empty_launch'] * 1e6:.1f} µs "
                  f"({small['graphc'] / small['empty_launch']:.2f}×; target <= 1.5×).", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
