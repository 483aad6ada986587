"""Issue 24's no-regression check: graphc's benchmark cells on the old main and on
this tree, alternating in one process.

    python -m benchmarks.compare_main            # full run (~3 min quiet, ~5 loaded), writes benchmarks/RESULTS-refactor.md
    python -m benchmarks.compare_main --quick    # smoke run (~20 s), writes nothing

The old main (commit a58c659 by default, `--old-ref`) is unpacked with `git archive`
into a folder of its own (`--old-dir`, default /tmp/graphc-oldmain-<ref>) and renamed
to the package `graphc_old`: every string that is a whole dotted module path
("graphc.codegen.numba_cpu" in its target table) and every absolute `import graphc`
is rewritten to `graphc_old` (relative imports need nothing). Both packages are then
imported in this process; their disk caches key every kernel by a hash of their own
source, so one cache folder (a fresh temporary one) serves both without collisions.

Cells, the graphc ones of benchmarks/peers.py and benchmarks/mlp.py:

- the neuron `1/(1+exp(-(w0*x0 + w1*x1 + w2)))`, value + 5 gradients, float64, on
  targets llvm (the default), cpu and parallel, N = 1 (Python floats), 1e3, 1e5, 1e6,
  with and without `out=` (none at N = 1);
- the seed's training step (benchmarks/mlp.py: `graphc.compile(NET, shapes=...)`, value
  and the gradients of W1, b1, W2, b2) on the default target, sizes small, medium and
  large, float32 and float64;
- the neuron's first call on llvm (compile included) in a fresh process with a fresh
  cache folder, old and new processes alternating.

Method: every cell's results are checked old against new (and the step against the
NumPy step) first, both sides are warmed up, then each round times a batch of calls
of old and of new (the order flips every round; gc off during a batch; batches last
about `--budget` seconds, one call where a call is longer). A cell reports the median
seconds per call of each side and the median over rounds of the per-round new/old
ratio (with its interquartile range); a cell is within budget when that ratio is at
most 1.1. A cell over 1.1x is measured again with twice the rounds (`confirm`).

Numba's OpenMP workers sleep between parallel regions here (`OMP_WAIT_POLICY=PASSIVE`
unless set, or `--omp-default` given): spinning workers hold the second of two cores for milliseconds after a
prange call and slow whatever is timed next (benchmarks/RESULTS-threads.md), which in
an alternating run is the other side of the same cell.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import date
from io import BytesIO
from pathlib import Path

if "--omp-default" not in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before Numba starts its workers (see above)

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OLD_REF = "a58c659"
LIMIT = 1.1
RESULTS = Path(__file__).with_name("RESULTS-refactor.md")
READING = "<!-- reading: kept when the script rewrites the file -->"


# ------------------------------------------------------------------ the old tree


def prepare_old(ref: str, folder: Path) -> Path:
    """`git archive <ref> graphc` unpacked into `folder` as the package graphc_old."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", ref], capture_output=True, text=True,
                         check=True).stdout.strip()
    pkg = folder / "graphc_old"
    stamp = folder / "REF"
    if pkg.is_dir() and stamp.exists() and stamp.read_text().strip() == sha:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    tar = subprocess.run(["git", "-C", str(REPO), "archive", sha, "graphc"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(folder, filter="data")
    (folder / "graphc").rename(pkg)
    module_path = re.compile(r"""(["'])graphc((?:\.\w+)+)\1""")  # "graphc.codegen.numba_cpu": a whole literal
    statement = re.compile(r"^(\s*)(import graphc|from graphc)\b(?!_)(.*)$", re.M)

    def fix_statement(m: re.Match) -> str:
        indent, kind, rest = m.groups()
        if kind == "from graphc":
            return f"{indent}from graphc_old{rest}"
        if rest.startswith("."):  # import graphc.x as y
            return f"{indent}import graphc_old{rest}"
        return f"{indent}import graphc_old as graphc{rest}"

    for f in pkg.rglob("*.py"):
        text = f.read_text()
        new = statement.sub(fix_statement, module_path.sub(r"\1graphc_old\2\1", text))
        if new != text:
            f.write_text(new)
    stamp.write_text(sha + "\n")
    return folder


def import_both(old_folder: Path):
    """(graphc_old, graphc): the old main and this tree, in this process."""
    for p in (str(REPO), str(old_folder)):
        if p not in sys.path:
            sys.path.insert(0, p)
    for attempt in range(5):  # other people edit this tree: a half-written file may fail to import
        try:
            import graphc
            break
        except Exception as exc:  # noqa: BLE001
            for name in [m for m in sys.modules if m == "graphc" or m.startswith("graphc.")]:
                del sys.modules[name]
            if attempt == 4:
                raise
            print(f"graphc failed to import ({exc!r}); retrying in 60 s", flush=True)
            time.sleep(60)
    import graphc_old

    assert Path(graphc.__file__).resolve().parent == REPO / "graphc", graphc.__file__
    assert Path(graphc_old.__file__).resolve().parent == (old_folder / "graphc_old").resolve()
    for name, mod in list(sys.modules.items()):  # the old package never imported this tree's modules
        f = getattr(mod, "__file__", None) or str(list(getattr(mod, "__path__", [])))  # namespace packages
        if name.startswith("graphc.") or name == "graphc":
            assert str(REPO / "graphc") in f, (name, f)
    return graphc_old, graphc


# ---------------------------------------------------------------------- timing


class Side:
    """One side of a cell: a function, its arguments, optional setup/teardown around a batch."""

    def __init__(self, name, fn, args=(), kwargs=None, setup=None, teardown=None):
        self.name, self.fn, self.args, self.kwargs = name, fn, tuple(args), dict(kwargs or {})
        self.setup, self.teardown = setup, teardown

    def call(self):
        return self.fn(*self.args, **self.kwargs)

    def batch(self, reps: int) -> float:
        f, a, kw = self.fn, self.args, self.kwargs
        if self.setup:
            self.setup()
        gc.disable()
        try:
            t = time.perf_counter()
            if kw:
                for _ in range(reps):
                    f(*a, **kw)
            else:
                for _ in range(reps):
                    f(*a)
            t = time.perf_counter() - t
        finally:
            gc.enable()
            if self.teardown:
                self.teardown()
        return t / reps


def alternate(sides: list[Side], rounds: int, budget: float) -> dict:
    """Median seconds per call of each side and the median (and quartiles) over rounds of
    each side's time over the first side's (old) time in the same round."""
    for s in sides:  # warm up: compile, caches, thread pools
        for _ in range(3):
            s.call()
    one = max(s.batch(1) for s in sides)
    for _ in range(2):
        one = min(one, max(s.batch(1) for s in sides))
    reps = max(1, min(200_000, int(budget / max(one, 1e-8))))
    for s in sides:
        s.batch(reps)
    times = {s.name: [] for s in sides}
    ratios = {s.name: [] for s in sides[1:]}
    for r in range(rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        got = {s.name: s.batch(reps) for s in order}
        for s in sides:
            times[s.name].append(got[s.name])
        for s in sides[1:]:
            ratios[s.name].append(got[s.name] / got[sides[0].name])
    out = {"reps": reps, "rounds": rounds, "median": {k: statistics.median(v) for k, v in times.items()}}
    out["ratio"] = {k: statistics.median(v) for k, v in ratios.items()}
    out["iqr"] = {k: tuple(np.percentile(v, [25, 75]).tolist()) for k, v in ratios.items()}
    return out


# ----------------------------------------------------------------------- cells


def neuron_cells(quick: bool) -> list[dict]:
    sizes = [1, 1_000, 100_000] if quick else [1, 1_000, 100_000, 1_000_000]
    cells = []
    for target in ("llvm", "cpu", "parallel"):
        for n in sizes:
            for out in (False, True):
                if n == 1 and out:
                    continue
                cells.append({"kind": "neuron", "target": target, "n": n, "out": out})
    return cells


def mlp_cells(quick: bool, targets: list[str]) -> list[dict]:
    sizes = ["small", "medium"] if quick else ["small", "medium", "large"]
    return [{"kind": "mlp", "target": t, "size": s, "dtype": d} for t in targets for s in sizes
            for d in ("float32", "float64")]


def cell_name(c: dict) -> str:
    if c["kind"] == "neuron":
        n = {1: "1 (floats)", 1_000: "1e3", 100_000: "1e5", 1_000_000: "1e6"}[c["n"]]
        return f"neuron {c['target']}, N={n}{', out=' if c['out'] else ''}"
    t = "default (llvm)" if c["target"] is None else c["target"]
    return f"mlp step {c['size']} {c['dtype']}, {t}"


def rounds_for(c: dict, quick: bool) -> tuple[int, float]:
    """(rounds, seconds per batch)."""
    if c["kind"] == "neuron":
        return (7, 0.01) if quick else (61, 0.03)
    return {"small": (81, 0.03), "medium": (41, 0.03), "large": (15, 0.03)}[c["size"]] if not quick else (5, 0.01)


def build_sides(c: dict, old, new) -> list[Side]:
    if c["kind"] == "neuron":
        from benchmarks.peers import FORMULA, POINT

        n = c["n"]
        rng = np.random.default_rng(0)
        args = POINT if n == 1 else tuple(rng.standard_normal(n) for _ in range(5))
        sides = []
        for label, g in (("old", old), ("new", new)):
            fn = g.compile(FORMULA, target=c["target"])
            kw = {"out": [np.empty(n) for _ in range(6)]} if c["out"] else {}
            sides.append(Side(label, fn, args, kw))
        if c["target"] == "parallel" and 32_768 <= n < 131_072:
            # the new tree with the old Numba threshold, set around each of its batches only
            from graphc.backends import targets

            fn = new.compile(FORMULA, target="parallel")
            kw = {"out": [np.empty(n) for _ in range(6)]} if c["out"] else {}
            saved = []
            sides.append(Side("new, threshold 32,768", fn, args, kw,
                              setup=lambda: saved.append(targets.set_parallel_min(32_768)),
                              teardown=lambda: targets.set_parallel_min(saved.pop())))
        return sides
    from benchmarks.mlp import NET, REG, SHAPES, data

    args = data(c["size"], c["dtype"])
    sides = []
    for label, g in (("old", old), ("new", new)):
        opts = {} if c["target"] is None else {"target": c["target"]}
        fn = g.compile(NET, shapes=SHAPES, dtypes={"y": "int64"}, dtype=c["dtype"], wrt=["W1", "b1", "W2", "b2"],
                       **opts)
        sides.append(Side(label, fn, (), dict(args, reg=REG)))
    return sides


def _flat(result) -> list[np.ndarray]:
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        v, g = result
        return [np.asarray(v, float)] + [np.asarray(g[k], float) for k in sorted(g)]
    if isinstance(result, (tuple, list)):
        return [np.asarray(x, float) for x in result]
    return [np.asarray(result, float)]


def check(c: dict, sides: list[Side]) -> None:
    """Old and new agree (and the step agrees with the NumPy step) before anything is timed."""
    ref = _flat(sides[0].call())
    if c["kind"] == "mlp":
        from benchmarks.mlp import numpy_step

        step = numpy_step(**{k: np.array(v, copy=True) for k, v in sides[0].kwargs.items()})
        v, dW1, db1, dW2, db2 = step
        ref_np = [np.asarray(v, float), dW1, dW2, db1, db2]  # sorted gradient names: W1, W2, b1, b2
        tol = 1e-9 if c["dtype"] == "float64" else 1e-3
        for s in sides:
            got = _flat(s.call())
            assert s.fn.target == "llvm" or c["target"] is not None, (s.name, s.fn.target)
            for a, b in zip(got, ref_np):
                err = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
                assert err <= tol, (cell_name(c), s.name, err)
        return
    for s in sides[1:]:
        got = _flat(s.call())
        assert len(got) == len(ref), (cell_name(c), s.name)
        for a, b in zip(got, ref):
            assert np.allclose(a, b, rtol=1e-12, atol=1e-300), (cell_name(c), s.name)


def measure(c: dict, old, new, quick: bool, scale: int = 1) -> dict:
    sides = build_sides(c, old, new)
    check(c, sides)
    rounds, budget = rounds_for(c, quick)
    r = alternate(sides, rounds * scale, budget)
    r["cell"] = cell_name(c)
    return r


# --------------------------------------------------------------- compile latency

LATENCY = """
import json, sys, time
sys.path.insert(0, ROOT)
t0 = time.perf_counter()
import PKG as graphc
t1 = time.perf_counter()
fn = graphc.compile(FORMULA, target="llvm")
v = fn(2.0, -1.0, -3.0, -2.0, -3.0)
t2 = time.perf_counter()
x = __import__("numpy").ones(1000)
fn(x, x, x, x, x)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "array": t3 - t2}))
"""


def compile_latency(old_folder: Path, repeats: int, pycache: Path) -> dict:
    """The neuron's first call on llvm (compile + call) in a fresh process with a fresh cache
    folder, old and new processes alternating; bytecode caching on (into `pycache`, outside
    both trees), the .pyc files written by a first, untimed pair of runs."""
    from benchmarks.peers import FORMULA

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    codes = {label: LATENCY.replace("ROOT", repr(str(root))).replace("PKG", pkg).replace("FORMULA", repr(FORMULA))
             for label, root, pkg in (("old", old_folder, "graphc_old"), ("new", REPO, "graphc"))}
    res: dict[str, dict[str, list[float]]] = {k: {"import": [], "first": [], "array": [], "cached": []} for k in codes}
    for i in range(repeats + 1):
        for label in (("old", "new") if i % 2 == 0 else ("new", "old")):
            with tempfile.TemporaryDirectory() as d:
                e = dict(env, GRAPHC_CACHE_DIR=d)
                runs = []
                for _ in range(2):  # a fresh cache, then the same cache again
                    p = subprocess.run([sys.executable, "-c", codes[label]], capture_output=True, text=True, env=e,
                                       cwd=tempfile.gettempdir())
                    if p.returncode:
                        raise RuntimeError(p.stderr[-2000:])
                    runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
            if i == 0:
                continue  # writes the .pyc files
            for k in ("import", "first", "array"):
                res[label][k].append(runs[0][k])
            res[label]["cached"].append(runs[1]["first"])
    return {label: {k: statistics.median(v) for k, v in d.items()} for label, d in res.items()}


# --------------------------------------------------------------------- report


def fmt(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.2f} µs"
    if s < 1:
        return f"{s * 1e3:.3f} ms"
    return f"{s:.2f} s"


def machine() -> str:
    model, cpus = platform.processor() or "unknown", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "Model name":
                model = val.strip()
            if key.strip() == "CPU(s)":
                cpus = int(val.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    import llvmlite
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not started"
    return (f"{model}, {cpus} cores ({platform.machine()}); Python {platform.python_version()}, "
            f"NumPy {np.__version__}, Numba {numba.__version__} (threading layer {layer}), "
            f"llvmlite {llvmlite.__version__}")


def tree_state() -> str:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "graphc"], capture_output=True,
                           text=True).stdout.splitlines()
    return f"{head}" + (f" + uncommitted changes in {len(dirty)} files under graphc/" if dirty else "")


def table(rows: list[dict], lat: dict | None) -> list[str]:
    lines = ["| cell | old | new | new/old | IQR of new/old | within 1.1x |", "|---|---|---|---|---|---|"]
    for r in rows:
        for name, ratio in r["ratio"].items():
            lo, hi = r["iqr"][name]
            label = r["cell"] if name == "new" else f"{r['cell']} ({name})"
            verdict = "yes" if ratio <= LIMIT else "**no**"
            conf = r.get("confirm")
            if conf is not None and name in conf["ratio"]:
                c = conf["ratio"][name]
                verdict += f" (confirm, {conf['rounds']} rounds: {c:.2f}x)"
            lines.append(f"| {label} | {fmt(r['median']['old'])} | {fmt(r['median'][name])} | {ratio:.2f}x | "
                         f"{lo:.2f}–{hi:.2f} | {verdict} |")
    if lat:
        o, n = lat["old"], lat["new"]
        ratio = n["first"] / o["first"]
        lines.append(f"| neuron llvm, first call (compile + call, fresh process and cache) | {fmt(o['first'])} | "
                     f"{fmt(n['first'])} | {ratio:.2f}x | | {'yes' if ratio <= LIMIT else '**no**'} |")
        lines.append(f"| (same, import graphc) | {fmt(o['import'])} | {fmt(n['import'])} | "
                     f"{n['import'] / o['import']:.2f}x | | |")
        lines.append(f"| (same, first call with the cache warm) | {fmt(o['cached'])} | {fmt(n['cached'])} | "
                     f"{n['cached'] / o['cached']:.2f}x | | |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer sizes and rounds, writes nothing")
    ap.add_argument("--old-ref", default=OLD_REF)
    ap.add_argument("--old-dir", type=Path, help="where the old tree is unpacked (default /tmp/graphc-oldmain-REF)")
    ap.add_argument("--only", default="neuron,mlp,latency", help="comma-separated subset of neuron,mlp,latency")
    ap.add_argument("--cells", default="", help="only cells whose name contains this text")
    ap.add_argument("--mlp-targets", default="default", help="e.g. default,cpu,parallel (default: llvm only)")
    ap.add_argument("--scale", type=int, default=1, help="multiply every cell's rounds")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--omp-default", action="store_true", help="leave OMP_WAIT_POLICY unset (spinning workers)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    old_folder = prepare_old(args.old_ref, args.old_dir or Path(tempfile.gettempdir()) / f"graphc-oldmain-{args.old_ref}")
    cache = tempfile.mkdtemp(prefix="graphc-compare-cache-")
    atexit.register(shutil.rmtree, cache, True)  # also when a cell fails
    os.environ["GRAPHC_CACHE_DIR"] = cache  # both packages; keys differ by each one's source hash
    state = tree_state()  # before importing: what this run measures (other people commit meanwhile)
    old, new = import_both(old_folder)
    t_start = time.perf_counter()
    cells = []
    if "neuron" in only:
        cells += neuron_cells(args.quick)
    if "mlp" in only:
        cells += mlp_cells(args.quick, [None if t == "default" else t for t in args.mlp_targets.split(",")])
    cells = [c for c in cells if args.cells in cell_name(c)]
    rows = []
    for c in cells:
        r = measure(c, old, new, args.quick, args.scale)
        if not args.quick and any(v > LIMIT for v in r["ratio"].values()):
            r["confirm"] = measure(c, old, new, args.quick, 2 * args.scale)
        rows.append(r)
        extra = "".join(f", {k}: {v:.2f}x" for k, v in r["ratio"].items() if k != "new")
        conf = f" (confirm {r['confirm']['ratio']['new']:.2f}x)" if "confirm" in r else ""
        print(f"{r['cell']}: old {fmt(r['median']['old'])}, new {fmt(r['median']['new'])}, "
              f"{r['ratio']['new']:.2f}x{conf}{extra}  [{r['rounds']} rounds x {r['reps']}]", flush=True)
    lat = None
    if "latency" in only:
        with tempfile.TemporaryDirectory() as pyc:
            lat = compile_latency(old_folder, 2 if args.quick else 7, Path(pyc))
        print(f"first call llvm: old {fmt(lat['old']['first'])}, new {fmt(lat['new']['first'])}", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    lines = table(rows, lat)
    print("\n".join(lines))
    if args.quick or args.no_write:
        return
    head = [
        "# Issue 24: old main against the refactored tree (no-regression check)",
        "",
        f"Date: {date.today()}. Machine: {machine()}. Old: `{args.old_ref}` (package graphc/codegen/, imported as "
        f"`graphc_old`); new: the working tree at {state}. Command: `python -m benchmarks.compare_main` "
        f"({elapsed / 60:.1f} min). Environment: `OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}`, "
        f"`OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}`.",
        "",
        "**Method.** Both trees are imported in one process (the old one renamed `graphc_old`, see the script's "
        "docstring); each cell's old and new results are checked against each other (the training step also "
        "against the hand-written NumPy step), both are warmed up, then every round times a batch of old calls "
        "and a batch of new calls (order flipped every round, gc off in a batch, a batch ~30 ms or one call). "
        "'old' and 'new' are median seconds per call; 'new/old' is the median over rounds of the per-round "
        "ratio, the IQR its quartiles; 'within 1.1x' is that median ≤ 1.1. A cell over 1.1x is measured again "
        "with twice the rounds ('confirm'). Neuron cells: 61 rounds; step cells: 81 / 41 / 15 rounds "
        "(small / medium / large). The first-call rows are medians of 7 fresh processes per side "
        "(fresh `GRAPHC_CACHE_DIR` each, old and new alternating, bytecode cached outside both trees); "
        "'cache warm' is a second process on the same cache.",
        "",
        "The neuron is `1/(1+exp(-(w0*x0 + w1*x1 + w2)))`, value + 5 gradients, float64 "
        "(benchmarks/peers.py); the step is benchmarks/mlp.py's `NET`, value + gradients of W1, b1, W2, b2, "
        "on the default target (llvm in both trees).",
        "",
    ]
    text = "\n".join(head + lines) + "\n"
    reading = ""
    if RESULTS.exists() and READING in RESULTS.read_text():
        reading = RESULTS.read_text().split(READING, 1)[1]
    RESULTS.write_text(text + "\n" + READING + reading)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
