"""Array programs at 10^6 elements (issue 26): value and gradient through
`graphc.value_and_grad` on the default target, against hand-written NumPy and
JAX `jit(value_and_grad)` on the CPU.

    python -m benchmarks.array_ops            # writes benchmarks/RESULTS-array-ops.md
    python -m benchmarks.array_ops --quick    # small sizes, few rounds, no file

Six rows, each a scalar loss and its gradient:

- embedding bag: table (10_000, 100), 10_000 int64 indices with repeats,
  loss = sum(table[idx] * w); gradient of table (a gather, then a scatter-add;
  NumPy's hand form uses `np.add.at`)
- concatenate + slice: a, b (1000, 500), loss = sum(concatenate([a, b], 1)[:, 250:750] ** 2); gradients of a, b
- var/std over rows: x (1000, 1000), loss = sum(var(x, 1)) + sum(std(x, 1))
- cumsum along rows: x, w (1000, 1000), loss = sum(cumsum(x, 1) * w); gradient of x
- batched einsum: a, b (100, 100, 100), loss = sum(einsum('bij,bjk->bik', a, b) ** 2); gradients of a, b
  (NumPy's hand form uses matmul, as a hand-writer would)
- sort-based loss: x (1000, 1000), loss = sum(sort(x, 1)[:, -10:]) (the top 10 of each row)

graphc's and JAX's values and gradients are checked against the NumPy ones
before any timing. The first call of each (trace + compile + run) is reported
separately (graphc's from an empty disk cache unless --warm-cache). Then, per row, the three contenders run alternately, round after
round, in one process (the order rotates each round); a round times a block of
calls per contender; cells are medians over rounds, and the ratios are the
medians of the per-round ratios. JAX runs on the CPU (JAX_PLATFORMS=cpu) with
x64 enabled (float32 rows keep float32 arrays).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

import graphc  # noqa: E402
import graphc.numpy as gnp  # noqa: E402

K_TOP = 10


# ---------------------------------------------------------------- sizes and data

def sizes(quick: bool) -> dict:
    if quick:
        return dict(V=500, E=20, B=500, R=40, C=50, NB=8, M=20, K_CUT=(10, 40))
    return dict(V=10_000, E=100, B=10_000, R=1000, C=1000, NB=100, M=100, K_CUT=(250, 750))


def data(row: str, s: dict, dtype: str, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)

    def normal(*shape):
        return rng.normal(size=shape).astype(dt)

    R, C = s["R"], s["C"]
    if row == "embedding bag":
        return normal(s["V"], s["E"]), rng.integers(0, s["V"], s["B"]), normal(s["B"], s["E"])
    if row == "concatenate + slice":
        return normal(R, C // 2), normal(R, C // 2)
    if row in ("var/std", "sort top-10"):
        return (normal(R, C),)
    if row == "cumsum":
        return normal(R, C), normal(R, C)
    if row == "batched einsum":
        return normal(s["NB"], s["M"], s["M"]), normal(s["NB"], s["M"], s["M"])
    raise KeyError(row)


ROWS = ["embedding bag", "concatenate + slice", "var/std", "cumsum", "batched einsum", "sort top-10"]
ARGNUMS = {"embedding bag": 0, "concatenate + slice": (0, 1), "var/std": 0, "cumsum": 0,
           "batched einsum": (0, 1), "sort top-10": 0}
FUSED = {"embedding bag", "var/std"}  # issue 26's "fused ones": target <= 0.5x hand NumPy


# ---------------------------------------------------------------- the losses, written once for graphc and JAX

def losses(np_mod, cut: tuple[int, int]) -> dict:
    """The six losses in terms of a NumPy-like module (graphc.numpy or jax.numpy)."""
    lo, hi = cut

    def emb(table, idx, w):
        return np_mod.sum(table[idx] * w)

    def cat(a, b):
        return np_mod.sum(np_mod.concatenate([a, b], 1)[:, lo:hi] ** 2)

    def varstd(x):
        return np_mod.sum(np_mod.var(x, axis=1)) + np_mod.sum(np_mod.std(x, axis=1))

    def cums(x, w):
        return np_mod.sum(np_mod.cumsum(x, axis=1) * w)

    def ein(a, b):
        return np_mod.sum(np_mod.einsum("bij,bjk->bik", a, b) ** 2)

    def top(x):
        return np_mod.sum(np_mod.sort(x, axis=1)[:, -K_TOP:])

    return dict(zip(ROWS, [emb, cat, varstd, cums, ein, top]))


# ---------------------------------------------------------------- hand-written NumPy value + gradient

def numpy_steps(cut: tuple[int, int]) -> dict:
    lo, hi = cut

    def emb(table, idx, w):
        v = np.sum(table[idx] * w)
        g = np.zeros_like(table)
        np.add.at(g, idx, w)
        return v, g

    def cat(a, b):
        c = np.concatenate([a, b], 1)
        s = c[:, lo:hi]
        v = np.sum(s * s)
        g = np.zeros_like(c)
        g[:, lo:hi] = 2 * s
        n = a.shape[1]
        return v, (g[:, :n], g[:, n:])

    def varstd(x):
        n = x.shape[1]
        d = x - x.mean(axis=1, keepdims=True)
        var = np.einsum("ij,ij->i", d, d) / n
        std = np.sqrt(var)
        v = var.sum() + std.sum()
        g = d * (2 / n + 1 / (n * std))[:, None]
        return v, g

    def cums(x, w):
        v = np.sum(np.cumsum(x, axis=1) * w)
        g = np.cumsum(w[:, ::-1], axis=1)[:, ::-1]
        return v, g

    def ein(a, b):
        c = a @ b
        v = np.sum(c * c)
        gc = 2 * c
        return v, (gc @ b.transpose(0, 2, 1), a.transpose(0, 2, 1) @ gc)

    def top(x):
        order = np.argsort(x, axis=1)[:, -K_TOP:]
        v = np.take_along_axis(x, order, axis=1).sum()
        g = np.zeros_like(x)
        np.put_along_axis(g, order, 1, axis=1)
        return v, g

    return dict(zip(ROWS, [emb, cat, varstd, cums, ein, top]))


# ---------------------------------------------------------------- contenders

def graphc_step(row: str, cut):
    vg = graphc.value_and_grad(losses(gnp, cut)[row], argnums=ARGNUMS[row])
    step = lambda *a: vg(*a)  # noqa: E731
    step.traced = vg
    return step


def jax_step(row: str, cut):
    import jax
    import jax.numpy as jnp

    vg = jax.jit(jax.value_and_grad(losses(jnp, cut)[row], argnums=ARGNUMS[row]))

    def step(*a):
        return jax.block_until_ready(vg(*a))

    return step


def _flat(out) -> list[np.ndarray]:
    v, g = out
    return [np.asarray(v)] + [np.asarray(x) for x in (g if isinstance(g, (tuple, list)) else (g,))]


def check(name: str, got, ref, dtype: str) -> float:
    """The largest error of value and gradients, each relative to its reference's norm."""
    tol = 1e-10 if dtype == "float64" else 1e-4
    worst = 0.0
    for a, b in zip(_flat(got), _flat(ref), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert a.shape == b.shape, (name, a.shape, b.shape)
        err = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
        assert err <= tol, (name, dtype, err)
        worst = max(worst, err)
    return worst


def time_block(fn, args, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - t0) / calls


def measure(row: str, dtype: str, s: dict, rounds: int, block_s: float) -> dict:
    args = data(row, s, dtype)
    cut = s["K_CUT"]
    ref = numpy_steps(cut)[row](*args)
    contenders = {"graphc": lambda: graphc_step(row, cut), "NumPy": lambda: numpy_steps(cut)[row],
                  "JAX": lambda: jax_step(row, cut)}
    fns, first, err = {}, {}, {}
    for name, make in contenders.items():
        t0 = time.perf_counter()
        fn = make()
        got = fn(*args)
        first[name] = time.perf_counter() - t0
        err[name] = check(f"{row} {name}", got, ref, dtype)
        fns[name] = fn
    names = list(fns)
    calls = {}
    for name in names:  # calls per block: about block_s of work each
        t = time_block(fns[name], args, 1)
        calls[name] = max(1, int(block_s / max(t, 1e-6)))
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % 3:] + names[:r % 3]
        for name in order:
            times[name].append(time_block(fns[name], args, calls[name]))
    ratio = {other: statistics.median(g / o for g, o in zip(times["graphc"], times[other]))
             for other in ("NumPy", "JAX")}
    schedule = fns["graphc"].traced._sigs[0].fn.describe().split("\n\n# ---- kernel 0")[0]
    return dict(row=row, dtype=dtype, ms={n: 1e3 * statistics.median(t) for n, t in times.items()},
                ratio=ratio, first=first, err=err, schedule=schedule.strip())


# ---------------------------------------------------------------- report

def versions() -> str:
    import jax

    return (f"Python {platform.python_version()}, NumPy {np.__version__}, graphc {graphc.__version__} "
            f"(default target `llvm`), JAX {jax.__version__} (jaxlib CPU)")


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{info['Model name'].strip()}, {info['CPU(s)'].strip()} cores ({platform.machine()}, shared, noisy)"
    except (OSError, subprocess.CalledProcessError, KeyError):
        return f"{platform.machine()}, {os.cpu_count()} cores"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


METHOD = """\
Six losses at ~10^6 elements, value and gradient: embedding bag (table (10000, 100), 10000 int64 indices with
repeats, `sum(table[idx] * w)`, gradient of table: gather + scatter-add), concatenate + slice (a, b (1000, 500),
`sum(concatenate([a, b], 1)[:, 250:750] ** 2)`, gradients of a and b), var/std over rows (x (1000, 1000),
`sum(var(x, 1)) + sum(std(x, 1))`), cumsum (x, w (1000, 1000), `sum(cumsum(x, 1) * w)`, gradient of x), batched
einsum (a, b (100, 100, 100), `sum(einsum('bij,bjk->bik', a, b) ** 2)`, gradients of a and b), sort top-10
(x (1000, 1000), `sum(sort(x, 1)[:, -10:])`). The same Python function runs through `graphc.value_and_grad`
(graphc.numpy, default target) and `jax.jit(jax.value_and_grad)` (jax.numpy, CPU, x64 enabled); the hand-written
NumPy peer derives each gradient by hand (`np.add.at` for the scatter, a reversed cumsum, matmul for the einsum,
one `argsort` + `put_along_axis` for the sort). graphc's and JAX's values and gradients are checked against the
hand NumPy ones first (relative error 1e-10 float64, 1e-4 float32). The first call of each is timed alone,
graphc's from an empty disk cache. Then the three run alternately in one process, the order rotating each round;
a round times a block of about 0.1 s of calls per contender. Targets (issue 26): graphc ≤ 1.0× hand NumPy on every
row, ≤ 0.5× on the fused ones (embedding bag's scatter-add, var/std), and ahead of JAX on half the rows."""


def verdict(r: dict) -> str:
    bound = 0.5 if r["row"] in FUSED else 1.0
    rn, rj = r["ratio"]["NumPy"], r["ratio"]["JAX"]
    vs_np = f"{'met' if rn <= bound else 'missed'} (≤ {bound}×)"
    return f"{vs_np}; {'ahead of' if rj < 1 else 'behind'} JAX"


def table(results: list[dict]) -> str:
    lines = ["| row | dtype | graphc ms | NumPy ms | JAX ms | graphc/NumPy | graphc/JAX | target |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ms = r["ms"]
        lines.append(f"| {r['row']} | {r['dtype']} | {ms['graphc']:.2f} | {ms['NumPy']:.2f} | {ms['JAX']:.2f} | "
                     f"{r['ratio']['NumPy']:.2f}× | {r['ratio']['JAX']:.2f}× | {verdict(r)} |")
    return "\n".join(lines)


def first_table(results: list[dict]) -> str:
    lines = ["| row | dtype | graphc first call (s) | JAX first call (s) | graphc error | JAX error |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['row']} | {r['dtype']} | {r['first']['graphc']:.3f} | {r['first']['JAX']:.3f} | "
                     f"{r['err']['graphc']:.1e} | {r['err']['JAX']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 3 rounds, print only")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--dtype", action="append", choices=["float64", "float32"], default=None)
    p.add_argument("--rows", nargs="*", default=None, help=f"a subset of: {ROWS}")
    p.add_argument("--warm-cache", action="store_true",
                   help="use graphc's usual disk cache (default: a new empty one, so first calls compile)")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS-array-ops.md"))
    a = p.parse_args()
    if not a.warm_cache:  # first calls compile from nothing; graphc's two Python-call functions compiled first
        os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp(prefix="graphc-array-ops-")
        graphc.value_and_grad(lambda x: gnp.sum(x * x))(np.ones(3))
    import jax

    jax.config.update("jax_enable_x64", True)
    s = sizes(a.quick)
    rounds = a.rounds or (3 if a.quick else 21)
    block_s = 0.01 if a.quick else 0.1
    load0 = _load()
    results = []
    for dtype in a.dtype or ["float64", "float32"]:
        for row in a.rows or ROWS:
            r = measure(row, dtype, s, rounds, block_s)
            results.append(r)
            print(f"{row:20s} {dtype}: graphc {r['ms']['graphc']:8.3f} ms  NumPy {r['ms']['NumPy']:8.3f} ms  "
                  f"JAX {r['ms']['JAX']:8.3f} ms  graphc/NumPy {r['ratio']['NumPy']:.2f}x  "
                  f"graphc/JAX {r['ratio']['JAX']:.2f}x  first {r['first']['graphc']:.2f} s", flush=True)
    print()
    print(table(results))
    print()
    print(first_table(results))
    if a.quick:
        return
    schedules = "\n\n".join(f"{r['row']}:\n\n```\n{r['schedule']}\n```" for r in results
                            if r["dtype"] == results[0]["dtype"])
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    text = (f"# graphc array programs at 10^6 elements (issue 26)\n\n"
            f"Date: {date.today().isoformat()}. Machine: {machine()}. {versions()}; OpenBLAS threads: {blas}. "
            f"Command: `python -m benchmarks.array_ops` ({rounds} rounds). "
            f"Load average before / after: {load0} / {_load()}.\n\n"
            f"## Method\n\n{METHOD}\n\n"
            f"## Value + gradient, ms per call (median of rounds) and graphc's ratios (median of per-round ratios)"
            f"\n\n{table(results)}\n\n"
            f"## First call (trace + compile + run) and the largest relative error against hand NumPy\n\n"
            f"{first_table(results)}\n\n"
            f"## graphc's schedules (float64; `fn._sigs[0].fn.describe()`: `numpy:` lines are host steps)\n\n"
            f"{schedules}\n")
    a.out.write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
