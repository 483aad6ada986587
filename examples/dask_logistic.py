"""Logistic regression by gradient descent over more rows than fit in memory.

    python examples/dask_logistic.py                 # 10^8 rows, 10 features, in chunks of 10^6
    python examples/dask_logistic.py --fast          # 10^6 rows (what CI runs)
    python examples/dask_logistic.py --workers 2     # on a dask.distributed LocalCluster

The data is generated lazily, chunk by chunk, from a known model (Dask's random
arrays are deterministic: every step regenerates the same rows, none is ever
held whole). graphc compiles the loss once; called with Dask arrays it proves
the loss separable over the rows (a mean of per-row terms plus an L2 term that
reads no data), runs one compiled call per chunk and adds the chunks' losses
and gradients in a tree. Needs `pip install 'graphc[dask]'`.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import graphc

LOSS = "mean(softplus(X @ w + b) - y * (X @ w + b)) + 0.5 * lam * sum(w * w)"
SHAPES = {"X": ("N", "D"), "y": ("N",), "w": ("D",), "b": (), "lam": ()}


def data(rows: int, features: int, chunk: int, seed: int = 0):
    """X ~ N(0, 1) and labels from a known logistic model, as lazy Dask arrays."""
    import dask.array as da

    rng = da.random.default_rng(seed)
    X = rng.standard_normal((rows, features), chunks=(chunk, features))
    w_true = np.linspace(-1.0, 1.0, features)
    p = 1.0 / (1.0 + da.exp(-(X @ w_true + 0.5)))
    y = (rng.random(rows, chunks=chunk) < p).astype(np.float64)
    return X, y, w_true


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=float, default=1e8)
    ap.add_argument("--chunk", type=float, default=1e6)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=0, help="0: Dask's threads in this process")
    ap.add_argument("--fast", action="store_true", help="10^6 rows in chunks of 2.5*10^5, 15 steps")
    args = ap.parse_args(argv)
    try:
        import dask
        from dask.diagnostics import ProgressBar
    except ImportError:
        print("this example needs Dask: pip install 'graphc[dask]'", file=sys.stderr)
        return 2
    rows, chunk, steps = (10**6, 250_000, 15) if args.fast else (int(args.rows), int(args.chunk), args.steps)
    X, y, w_true = data(rows, args.features, chunk)
    loss = graphc.compile(LOSS, shapes=SHAPES, wrt=["w", "b"], target="cpu")
    client = None
    if args.workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
    w, b = np.zeros(args.features), 0.0
    print(f"{rows:,} rows x {args.features} features in chunks of {chunk:,}; "
          f"{f'{args.workers} worker processes' if client else 'threads'}")
    t0 = time.perf_counter()
    for step in range(steps):
        value, grads = loss(X=X, y=y, w=w, b=b, lam=1e-4)  # lazy: nothing computed yet
        if client is not None:
            from distributed import progress

            futures = client.compute([value, grads])
            if not args.fast:
                progress(futures)  # the cluster's progress bar
            value, grads = client.gather(futures)
        elif args.fast:
            value, grads = dask.compute(value, grads)
        else:
            with ProgressBar():
                value, grads = dask.compute(value, grads)
        w = w - args.lr * grads["w"]
        b = b - args.lr * grads["b"]
        print(f"step {step + 1:3d}  loss {float(value):.6f}  |grad| {np.linalg.norm(grads['w']):.2e}", flush=True)
    took = time.perf_counter() - t0
    err = np.max(np.abs(w - w_true))
    print(f"{steps} steps in {took:.1f} s ({took / steps:.2f} s a step); "
          f"largest weight error against the true model {err:.3f}; bias {b:.3f} (true 0.5)")
    if client is not None:
        client.close()
        cluster.close()
    return 0 if err < 0.2 and abs(b - 0.5) < 0.2 else 1


if __name__ == "__main__":
    sys.exit(main())
