"""One training step of the seed's 2-layer network, graphc's compiled tensor path
against hand-written NumPy and the BLAS floor.

    python -m benchmarks.mlp            # writes benchmarks/RESULTS-mlp.md
    python -m benchmarks.mlp --quick    # small rounds, no file

Loss (softmax cross-entropy + L2) and the four parameter gradients at three
sizes: small N=300, D=2, H=100, C=3 (the spiral); medium N=1024, D=784, H=256,
C=10; large N=8192, D=784, H=1024, C=10; float32 and float64. Every peer runs
alternately with the hand-written NumPy step (CS231n style) in this process; the
ratio is the median over rounds of peer/NumPy. The BLAS floor is the step's five
matrix products alone (NumPy matmul, same shapes). Each peer's loss and
gradients are checked against the NumPy step first. PyTorch and JAX run when
installed (pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np

import graphc

NET = "cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y) + 0.5 * reg * (sum(W1 * W1) + sum(W2 * W2))"
SHAPES = {"X": ("N", "D"), "W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",), "y": ("N",), "reg": ()}
SIZES = {"small": (300, 2, 100, 3), "medium": (1024, 784, 256, 10), "large": (8192, 784, 1024, 10)}
REG = 1e-3


def data(size: str, dtype: str, seed: int = 0):
    n, d, h, c = SIZES[size]
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    return dict(X=rng.normal(size=(n, d)).astype(dt), y=rng.integers(0, c, n),
                W1=(rng.normal(size=(d, h)) * 0.05).astype(dt), b1=np.zeros(h, dt),
                W2=(rng.normal(size=(h, c)) * 0.05).astype(dt), b2=np.zeros(c, dt))


def numpy_step(X, y, W1, b1, W2, b2, reg=REG):
    """The CS231n forward and backward."""
    n = X.shape[0]
    z = X @ W1 + b1
    hid = np.maximum(z, 0)
    s = hid @ W2 + b2
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(n), y])) + 0.5 * reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    ds = p
    ds[np.arange(n), y] -= 1
    ds /= n
    dW2 = hid.T @ ds + reg * W2
    db2 = ds.sum(axis=0)
    dh = ds @ W2.T
    dh[z <= 0] = 0
    dW1 = X.T @ dh + reg * W1
    db1 = dh.sum(axis=0)
    return loss, dW1, db1, dW2, db2


def blas_floor(X, y, W1, b1, W2, b2):
    hid = X @ W1
    s = hid @ W2
    s @ W2.T
    X.T @ hid
    hid.T @ s


def graphc_peer(target: str, dtype: str):
    fn = graphc.compile(NET, shapes=SHAPES, dtypes={"y": "int64"}, dtype=dtype, wrt=["W1", "b1", "W2", "b2"],
                        target=target)

    def step(X, y, W1, b1, W2, b2):
        v, g = fn(X=X, y=y, W1=W1, b1=b1, W2=W2, b2=b2, reg=REG)
        return v, g["W1"], g["b1"], g["W2"], g["b2"]

    step.fn = fn
    return step


def torch_loss(X, y, W1, b1, W2, b2):
    """The net's loss in PyTorch (CPU here, CUDA in gpu_mlp)."""
    import torch

    s = torch.relu(X @ W1 + b1) @ W2 + b2
    return torch.nn.functional.cross_entropy(s, y) + 0.5 * REG * ((W1 * W1).sum() + (W2 * W2).sum())


def jax_loss(params, X, y):
    """The net's loss in JAX (CPU here, GPU in gpu_mlp)."""
    import jax
    import jax.numpy as jnp

    W1, b1, W2, b2 = params
    s = jax.nn.relu(X @ W1 + b1) @ W2 + b2
    lp = jax.nn.log_softmax(s)
    return -jnp.mean(lp[jnp.arange(X.shape[0]), y]) + 0.5 * REG * (jnp.sum(W1 * W1) + jnp.sum(W2 * W2))


def torch_peer(compiled: bool):
    import torch

    fn = torch.compile(torch_loss) if compiled else torch_loss

    def step(X, y, W1, b1, W2, b2):
        ts = [torch.from_numpy(a).requires_grad_(True) for a in (W1, b1, W2, b2)]
        loss = fn(torch.from_numpy(X), torch.from_numpy(y), *ts)
        loss.backward()
        return (float(loss), *(t.grad.numpy() for t in ts))

    return step


def jax_peer():
    import jax

    jax.config.update("jax_enable_x64", True)
    vg = jax.jit(jax.value_and_grad(jax_loss))

    def step(X, y, W1, b1, W2, b2):
        v, g = vg((W1, b1, W2, b2), X, y)
        return (float(v), *(np.asarray(x) for x in g))

    return step


def peers(dtype: str) -> dict:
    out = {"graphc cpu": lambda: graphc_peer("cpu", dtype), "graphc parallel": lambda: graphc_peer("parallel", dtype),
           "graphc llvm": lambda: graphc_peer("llvm", dtype), "graphc numpy target": lambda: graphc_peer("numpy", dtype)}
    try:
        import torch  # noqa: F401

        out["PyTorch eager"] = lambda: torch_peer(False)
        out["torch.compile"] = lambda: torch_peer(True)
    except ImportError:
        pass
    try:
        import jax  # noqa: F401

        out["JAX jit(value_and_grad)"] = jax_peer
    except ImportError:
        pass
    return out


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure_peer(name: str, size: str, dtype: str, rounds: int, memory: bool = False) -> dict:
    """One peer, in this process (main() gives each its own): checked against the
    NumPy step, then timed alternately with it; with `memory`, only the resident
    memory one warm step adds (VmHWM after a reset; 0 where Linux's
    /proc/self/clear_refs is missing)."""
    args = data(size, dtype)
    ref = numpy_step(**{k: v.copy() for k, v in args.items()})
    tol = 1e-9 if dtype == "float64" else 1e-3
    if name == "BLAS floor (the five GEMMs)":
        def make():
            return lambda **a: blas_floor(**a)
    elif name == "hand-written NumPy":
        def make():
            return lambda **a: numpy_step(**a)
    else:
        make = peers(dtype)[name]
        if name.startswith("PyTorch") or name.startswith("torch"):
            import torch  # noqa: F401  (imported before the baseline below)
        if name.startswith("JAX"):
            import jax  # noqa: F401
    t0 = time.perf_counter()
    step = make()
    got = step(**args)
    first = time.perf_counter() - t0
    if not name.startswith("BLAS"):
        for a, b in zip(got, ref):  # relative to the whole gradient: float32 sums of 8192 terms differ by BLAS
            err = np.linalg.norm(np.asarray(a, float) - b) / max(np.linalg.norm(np.asarray(b, float)), 1e-30)
            assert err <= tol, (name, size, dtype, err)
    step(**args)
    if memory:
        # resident memory one warm step adds to what the process holds before it (pools and caches kept
        # between calls are not in it); main() runs this with glibc returning blocks of 64 KB and more to
        # the system on free (MALLOC_MMAP_THRESHOLD_), so a freed temporary is not resident any more
        del got
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            base = _status("VmRSS")
            step(**args)
            return dict(peak=_status("VmHWM") - base)
        except OSError:
            return dict(peak=0)
    mine, ratio = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        step(**args)
        a = time.perf_counter() - t
        t = time.perf_counter()
        numpy_step(**args)
        b = time.perf_counter() - t
        mine.append(a)
        ratio.append(a / b)
    fn = getattr(step, "fn", None)
    planned = fn.planned_memory(**args, reg=REG)["peak"] if fn is not None and fn.target != "numpy" else None
    return dict(time=statistics.median(mine), ratio=statistics.median(ratio), first=first, planned=planned)


NAMES = ["graphc cpu", "graphc parallel", "graphc llvm", "graphc numpy target", "PyTorch eager", "torch.compile",
         "JAX jit(value_and_grad)", "hand-written NumPy", "BLAS floor (the five GEMMs)"]


def measure(size: str, dtype: str, rounds: int) -> dict:
    """Every available peer, each in a process of its own."""
    import json
    import subprocess
    import sys

    have = set(peers(dtype)) | {"hand-written NumPy", "BLAS floor (the five GEMMs)"}
    rows = {}
    for name in NAMES:
        if name not in have:
            continue
        row = {}
        for extra, env in (([], os.environ), (["--memory"], dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536"))):
            r = subprocess.run([sys.executable, "-m", "benchmarks.mlp", "--peer", name, "--sizes", size, "--dtype",
                                dtype, "--rounds", str(rounds), *extra], capture_output=True, text=True,
                               cwd=Path(__file__).parent.parent, env=env)
            if r.returncode:
                raise RuntimeError(f"{name} {size} {dtype}: {r.stderr[-2000:]}")
            row.update(json.loads(r.stdout.strip().splitlines()[-1]))
        rows[name] = row
        print(f"{size} {dtype} {name}: {rows[name]['time'] * 1e3:.3f} ms", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="small,medium,large")
    ap.add_argument("--peer", help="measure one peer in this process and print JSON (used by main)")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memory", action="store_true", help="with --peer: the step's peak memory only")
    args = ap.parse_args()
    if args.peer:
        import json

        print(json.dumps(measure_peer(args.peer, args.sizes, args.dtype, args.rounds, args.memory)))
        return
    rounds = {"small": 5, "medium": 5, "large": 3} if args.quick else {"small": 101, "medium": 21, "large": 7}
    results = {(s, dt): measure(s, dt, rounds[s]) for s in args.sizes.split(",") for dt in ("float32", "float64")}
    import numba

    blas = "OpenBLAS" if "openblas" in str(np.__config__.show(mode="dicts")).lower() else "see numpy.show_config()"
    lines = [
        "# graphc benchmark results: a 2-layer network's training step",
        "",
        f"Date: {date.today()}. Machine: {platform.machine()}, {os.cpu_count()} cores. python "
        f"{platform.python_version()}, numpy {np.__version__} ({blas}, default threads), numba {numba.__version__}, "
        f"graphc {graphc.__version__}. Command: `python -m benchmarks.mlp`. Every peer alternates with the "
        "hand-written NumPy step in a process of its own (one per peer); cells are median times and the "
        "median ratio to NumPy; 'first' is the first call (compile) time; 'step memory' the resident memory "
        "(VmHWM) a warm step adds to what its process holds before it, measured in another process with "
        "MALLOC_MMAP_THRESHOLD_=65536 (freed blocks leave the resident set): outputs and temporaries, not "
        "buffers kept between calls (graphc's pool: 'planned' is graphc's own plan, pool + outputs + "
        "temporaries).",
        "",
        f"`{NET}`, value and gradients of W1, b1, W2, b2.",
        "",
    ]
    for (size, dt), rows in results.items():
        n, d, h, c = SIZES[size]
        lines += [f"## {size} (N={n}, D={d}, H={h}, C={c}), {dt}", "",
                  "| peer | step | vs NumPy | first call | step memory | planned |", "|---|---|---|---|---|---|"]
        for name, r in rows.items():
            planned = f"{r['planned'] / 1e6:.1f} MB" if r.get("planned") else ""
            lines.append(f"| {name} | {r['time'] * 1e3:.3f} ms | {r['ratio']:.2f}x | "
                         f"{r['first']:.2f} s | {r['peak'] / 1e6:.1f} MB | {planned} |")
        mine = rows["graphc cpu"]["time"]
        vs = [f"graphc cpu / {k}: {mine / rows[k]['time']:.2f}x" for k in
              ("BLAS floor (the five GEMMs)", "PyTorch eager", "torch.compile", "JAX jit(value_and_grad)") if k in rows]
        lines += ["", "; ".join(vs), ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        Path(__file__).with_name("RESULTS-mlp.md").write_text(text)


if __name__ == "__main__":
    main()
