"""GPU benchmark: one training step of the seed's 2-layer network (loss + the four
parameter gradients) on one GPU, graphc target="cuda" against PyTorch CUDA
(eager and torch.compile) and JAX on the GPU.

    python -m benchmarks.gpu_mlp        # writes benchmarks/RESULTS-gpu-mlp.md (needs a GPU)

Every peer gets its data already on the GPU and leaves its gradients there; each
returns the loss as a host float (one synchronisation per step, the same for
all). Each peer's loss and gradients are checked against the NumPy step of
benchmarks/mlp.py first. Peers run round-robin in one process, each round timing
a few steps of each; cells are the median per step. Rows are printed as they
are measured, so a run cut short still reports what it finished.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from .mlp import NET, REG, SHAPES, data, jax_loss, numpy_step, torch_loss

SIZES = {"tiny": (64, 8, 16, 3), "medium": (1024, 784, 256, 10), "large": (8192, 784, 1024, 10)}
KEYS = ("X", "y", "W1", "b1", "W2", "b2")


def graphc_peer(dtype: str, dev: dict):
    import graphc

    fn = graphc.compile(NET, shapes=SHAPES, dtypes={"y": "int64"}, dtype=dtype, wrt=["W1", "b1", "W2", "b2"],
                        target="cuda")

    def step():
        v, g = fn(**dev["numba"], reg=REG)
        return v, [g[k] for k in ("W1", "b1", "W2", "b2")]

    return step, lambda a: np.asarray(a.copy_to_host())


def torch_peer(dtype: str, dev: dict, compiled: bool):
    import torch

    fn = torch.compile(torch_loss) if compiled else torch_loss
    t = dev["torch"]

    def step():
        ps = [t[k].detach().requires_grad_(True) for k in ("W1", "b1", "W2", "b2")]
        loss = fn(t["X"], t["y"], *ps)
        loss.backward()
        return float(loss), [p.grad for p in ps]

    return step, lambda a: a.cpu().numpy()


def jax_peer(dtype: str, dev: dict):
    import jax

    vg = jax.jit(jax.value_and_grad(jax_loss))
    j = dev["jax"]

    def step():
        v, g = vg((j["W1"], j["b1"], j["W2"], j["b2"]), j["X"], j["y"])
        return float(v), list(g)

    return step, np.asarray


def device_data(args: dict, have: set) -> dict:
    from numba import cuda

    dev = {"numba": {k: cuda.to_device(v) for k, v in args.items()}}
    if "torch" in have:
        import torch

        dev["torch"] = {k: torch.as_tensor(v, device="cuda") for k, v in args.items()}
    if "jax" in have:
        import jax.numpy as jnp

        dev["jax"] = {k: jnp.asarray(v) for k, v in args.items()}
    return dev


def available() -> set:
    have = set()
    try:
        import torch

        if torch.cuda.is_available():
            have.add("torch")
    except ImportError:
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        if any(d.platform == "gpu" for d in jax.devices()):
            have.add("jax")
    except Exception:
        pass
    return have


def measure(size: str, dtype: str, rounds: int, have: set) -> dict:
    from numba import cuda

    import benchmarks.mlp as mlp

    mlp.SIZES.setdefault(size, SIZES[size])
    args = data(size, dtype)
    ref = numpy_step(**{k: v.copy() for k, v in args.items()})
    dev = device_data(args, have)
    makers = {"graphc cuda": lambda: graphc_peer(dtype, dev)}
    if "torch" in have:
        makers["PyTorch eager"] = lambda: torch_peer(dtype, dev, False)
        makers["torch.compile"] = lambda: torch_peer(dtype, dev, True)
    if "jax" in have:
        makers["JAX jit(value_and_grad)"] = lambda: jax_peer(dtype, dev)
    steps, row = {}, {}
    tol = 1e-9 if dtype == "float64" else 2e-3
    for name, make in makers.items():
        t0 = time.perf_counter()
        try:
            step, host = make()
            v, grads = step()
        except Exception as exc:  # a peer that fails is reported, not fatal
            row[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            print(f"{size} {dtype} {name}: {row[name]['error']}", flush=True)
            continue
        cuda.synchronize()
        first = time.perf_counter() - t0
        errs = [abs(v - ref[0]) / max(abs(ref[0]), 1e-30)]
        for a, b in zip(grads, ref[1:]):
            a = host(a)
            errs.append(np.linalg.norm(a.astype(float) - b) / max(np.linalg.norm(b), 1e-30))
        row[name] = {"first": first, "err": max(errs), "times": []}
        if max(errs) > tol:
            row[name]["error"] = f"gradients differ from NumPy by {max(errs):.2e}"
        steps[name] = step
    n, d, h, c = SIZES[size]
    for _ in range(rounds):
        for name, step in steps.items():
            step()
            reps = 10
            t0 = time.perf_counter()
            for _ in range(reps):
                step()
            row[name]["times"].append((time.perf_counter() - t0) / reps)
    for name in steps:
        row[name]["time"] = statistics.median(row[name]["times"])
        print(f"{size} {dtype} {name}: {row[name]['time'] * 1e3:.3f} ms (first call {row[name]['first']:.2f} s, "
              f"error {row[name]['err']:.1e})", flush=True)
    flops = 2 * n * h * (d + c) * 3 - 2 * n * d * h  # 5 GEMMs: forward 2, backward 3 (dX is not needed)
    row["_gflop"] = flops / 1e9
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="medium,large")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS-gpu-mlp.md")))
    args = ap.parse_args(argv)
    import graphc

    from .gpu import gpu_name

    name = gpu_name()
    if name is None:
        return 2
    have = available()
    try:
        import cupy  # noqa: F401

        gemm = "CuPy's cuBLAS"
    except ImportError:
        gemm = "graphc's tiled kernel (CuPy not installed)"
    lines = ["# graphc GPU training-step benchmark", "",
             f"Date: {date.today().isoformat()}. GPU: {name}. graphc {graphc.__version__}. GEMMs through {gemm}. "
             "Command: `python -m benchmarks.gpu_mlp`.", "",
             f"Loss `{NET}` and its four parameter gradients; data and parameters on the GPU, gradients left "
             "there, the loss returned as a host float. Cells: ms per step, median of rounds "
             "(ratio to PyTorch eager; first-call seconds; largest relative error against the NumPy step).", ""]
    for dtype in args.dtypes.split(","):
        for size in args.sizes.split(","):
            n, d, h, c = SIZES[size]
            row = measure(size, dtype, args.rounds, have)
            base = row.get("PyTorch eager", {}).get("time")
            lines += [f"## {size} (N={n}, D={d}, H={h}, C={c}), {dtype}", "",
                      "| peer | ms per step | / PyTorch eager | GFLOP/s (the 5 GEMMs) | first call (s) | error |",
                      "|---|---|---|---|---|---|"]
            for peer, r in row.items():
                if peer.startswith("_"):
                    continue
                if "time" not in r:
                    lines.append(f"| {peer} | {r['error']} | | | | |")
                    continue
                ratio = f"{r['time'] / base:.2f}×" if base else "—"
                lines.append(f"| {peer} | {r['time'] * 1e3:.3f} | {ratio} | {row['_gflop'] / r['time']:.0f} | "
                             f"{r['first']:.2f} | {r['err']:.1e}{' ' + r['error'] if 'error' in r else ''} |")
            lines.append("")
            Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
