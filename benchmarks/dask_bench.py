"""graphc over Dask: what the chunking and the scheduler cost.

    python -m benchmarks.dask_bench                  # writes benchmarks/RESULTS-dask.md
    python -m benchmarks.dask_bench --quick          # 10x fewer points and rows, no file

1. Pointwise: the sigmoid neuron (value + 5 gradients) over 10^8 points in
   chunks of 10^7, on a LocalCluster of 1 and 2 worker processes (one thread
   each). Every chunk's inputs are made on the worker (a cheap ramp) and each
   output is summed there, so only scalars travel; the reference is the same
   per-chunk work in a loop in this process. Reported: points per second per
   worker, and its ratio to the single process's (the rest is Dask's per-task
   cost and the workers sharing this machine's memory bandwidth).
2. The logistic-regression loss and its gradient over 10^8 rows (4 features,
   persisted on the workers in chunks of 10^6 rows): seconds per gradient step
   with 1 and 2 workers, graphc (one compiled call per chunk, tree-added)
   against the same step written with Dask array operations.
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

NEURON = "sigmoid(w0*x0 + w1*x1 + w2)"
LOSS = "mean(softplus(X @ w + b) - y * (X @ w + b)) + 0.5 * lam * sum(w * w)"
SHAPES = {"X": ("N", "D"), "y": ("N",), "w": ("D",), "b": (), "lam": ()}


def _ramp(block_id=None, n: int = 0, scale: float = 1.0):
    i = block_id[0]
    return np.linspace(-3.0, 3.0, n) * scale + 1e-3 * i


def _sums(fn, block_id=None, n: int = 0):
    x0, x1 = _ramp(block_id, n, 1.0), _ramp(block_id, n, -0.5)
    v, g = fn(0.7, x0, -1.3, x1, 0.1)
    return np.array([[v.sum(), *(a.sum() for a in g.values())]])


def pointwise(points: int, chunk: int, client) -> float:
    import dask.array as da

    fn = graphc.compile(NEURON, target="cpu")
    n_chunks = points // chunk
    t0 = time.perf_counter()
    sums = da.map_blocks(_sums, fn=fn, n=chunk, chunks=((1,) * n_chunks, (6,)), dtype=float)
    total = client.compute(sums.sum(axis=0), sync=True)
    took = time.perf_counter() - t0
    assert np.isfinite(total).all()
    return took


def pointwise_local(points: int, chunk: int) -> float:
    fn = graphc.compile(NEURON, target="cpu")
    _sums(fn, (0,), 1000)
    t0 = time.perf_counter()
    for i in range(points // chunk):
        _sums(fn, (i,), chunk)
    return time.perf_counter() - t0


def logistic_data(rows: int, chunk: int, features: int = 4):
    import dask.array as da

    rng = da.random.default_rng(1)
    X = rng.standard_normal((rows, features), chunks=(chunk, features))
    p = 1.0 / (1.0 + da.exp(-(X @ np.linspace(-1, 1, features) + 0.5)))
    y = (rng.random(rows, chunks=chunk) < p).astype(float)
    return X, y


def dask_step(X, y, w, b, lam):
    import dask.array as da

    z = X @ w + b
    p = 1.0 / (1.0 + da.exp(-z))
    loss = da.mean(da.logaddexp(0.0, z) - y * z) + 0.5 * lam * float(w @ w)
    r = (p - y) / X.shape[0]
    return loss, {"w": X.T @ r + lam * w, "b": r.sum()}


def logistic(rows: int, chunk: int, client, steps: int) -> dict:
    loss = graphc.compile(LOSS, shapes=SHAPES, wrt=["w", "b"], target="cpu")
    X, y = logistic_data(rows, chunk)
    X, y = client.persist([X, y])
    from distributed import wait

    wait([X, y])
    w, b, lam = np.full(4, 0.1), 0.2, 1e-4
    out = {}
    ref = None
    for name, step in (("graphc", lambda: loss(X=X, y=y, w=w, b=b, lam=lam)),
                       ("Dask array ops", lambda: dask_step(X, y, w, b, lam))):
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            v, g = client.compute(step(), sync=True)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
        got = np.array([float(v), *g["w"], float(g["b"])])
        if ref is None:
            ref = got
        else:
            out["agree"] = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS-dask.md")))
    args = ap.parse_args()
    import dask
    import distributed

    points, pchunk = (10**7, 10**6) if args.quick else (10**8, 10**7)
    rows, rchunk = (10**7, 10**6) if args.quick else (10**8, 10**6)
    steps = 2 if args.quick else 3
    single = pointwise_local(points, pchunk)
    print(f"pointwise, one process: {single:.2f} s", flush=True)
    res = {}
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                                      host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
            pointwise(4 * pchunk, pchunk, client)  # warm: every worker loads the kernel (pickled, from the cache)
            took = pointwise(points, pchunk, client)
            print(f"pointwise, {workers} worker(s): {took:.2f} s", flush=True)
            log = logistic(rows, rchunk, client, steps)
            print(f"logistic, {workers} worker(s): {log}", flush=True)
            res[workers] = (took, log)
    lines = ["# graphc over Dask", "",
             f"Date: {date.today().isoformat()}. Machine: {platform.machine()}, {os.cpu_count()} cores "
             f"({platform.processor() or 'unknown CPU'}). graphc {graphc.__version__}, dask {dask.__version__}, "
             f"distributed {distributed.__version__}, NumPy {np.__version__}. Command: "
             "`python -m benchmarks.dask_bench`. One run; medians of the gradient steps.", "",
             f"## Pointwise: `{NEURON}`, value + 5 gradients, {points:.0e} points in chunks of {pchunk:.0e}", "",
             "| where | seconds | points/s per worker | / one process |", "|---|---|---|---|",
             f"| one process, a loop over the chunks | {single:.2f} | {points / single / 1e6:.1f} M | 1.00 |"]
    for workers, (took, _) in res.items():
        per = points / took / workers
        lines.append(f"| LocalCluster, {workers} worker process(es) | {took:.2f} | {per / 1e6:.1f} M | "
                     f"{per / (points / single):.2f} |")
    lines += ["", f"## Logistic regression: loss and gradient over {rows:.0e} rows, 4 features, chunks of {rchunk:.0e} "
              "rows, persisted on the workers", "",
              "| workers | graphc (s per step) | Dask array ops (s per step) | graphc / Dask | largest relative "
              "difference |", "|---|---|---|---|---|"]
    for workers, (_, log) in res.items():
        lines.append(f"| {workers} | {log['graphc']:.2f} | {log['Dask array ops']:.2f} | "
                     f"{log['graphc'] / log['Dask array ops']:.2f} | {log['agree']:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
