"""`graphc.check`: every compiled output against exact references.

For each output (value, every gradient) two verdicts:
- symbolic: graphc's gradient graph, converted to SymPy, minus SymPy's own
  derivative simplifies to 0 ("proved"), or provably does not ("differs"), or
  SymPy could not decide within the time limit ("undecided");
- numeric: max relative and ULP error of the compiled kernel against the exact
  value (SymPy's derivative evaluated with mpmath at adaptive precision, 40+
  digits) at random points in each variable's domain plus adversarial points.
When SymPy cannot even build the derivatives in time, the numeric reference
falls back to evaluating the graph in mpmath and differentiating numerically
at high precision (independent of graphc's derivative rules).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphcError
from ..ir import Graph
from ..passes.autodiff import grad_name
from ..progress import Progress
from ..registry import REAL, REGISTRY, Domain
from . import oracle

ADVERSARIAL = [0.0, 1e-8, -1e-8, 1.0, -1.0, 40.0, -40.0, 700.0, -700.0]
TOLERANCE = {  # relative error, ULP error: an output passes if either is met
    "float64": (1e-10, 4.0),
    "float32": (1e-4, 64.0),
}


@dataclass
class OutputVerdict:
    name: str
    symbolic: str  # proved | differs | undecided | skipped
    symbolic_note: str
    max_rel: float
    max_ulp: float
    worst_point: dict[str, float] | None
    worst_got: float | None
    worst_exact: float | None
    checked: int
    ok: bool


@dataclass
class CheckReport:
    formula: str
    target: str
    dtype: str
    reference: str
    points: int
    skipped_points: int
    outputs: list[OutputVerdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    ill_conditioned: int = 0  # (point, output) pairs that miss only by the formula's own rounding

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.to_dict()), indent=1)

    def __str__(self) -> str:
        rel, ulp = TOLERANCE[self.dtype]
        lines = [
            f"graphc check: {self.formula}",
            f"target {self.target}, {self.dtype}; reference: {self.reference}; "
            f"{self.points} points ({self.skipped_points} outside the domain, skipped)",
            "",
            f"{'output':<14} {'symbolic':<10} {'max rel err':>12} {'max ulp':>10}  worst at",
        ]
        for o in self.outputs:
            where = ", ".join(f"{k}={v:.6g}" for k, v in (o.worst_point or {}).items())
            mark = "" if o.ok else "   <-- FAILS"
            lines.append(f"{o.name:<14} {o.symbolic:<10} {o.max_rel:>12.3g} {o.max_ulp:>10.3g}  {where}{mark}")
        for o in self.outputs:
            if o.symbolic_note:
                lines.append(f"  {o.name}: {o.symbolic_note}")
        worst = max(self.outputs, key=lambda o: o.max_rel, default=None)
        if worst is not None and worst.worst_point is not None:
            lines.append(f"worst point: {worst.name} = {worst.worst_got!r} (exact {worst.worst_exact!r}) at "
                         + ", ".join(f"{k}={v!r}" for k, v in worst.worst_point.items()))
        lines += [f"note: {n}" for n in self.notes]
        verdict = "OK: every output agrees" if self.ok else "FAILED: some output disagrees"
        if self.ill_conditioned:
            verdict += f" (where the formula itself is ill-conditioned, {self.ill_conditioned} case(s): see the notes)"
        lines.append(f"{verdict} (tolerance: {rel:g} relative or {ulp:g} ulp; {self.seconds:.1f} s)")
        return "\n".join(lines)


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


# ------------------------------------------------------------------ domains


def infer_domains(graph: Graph) -> dict[str, Domain]:
    """Per input: the intersection of the domains of every op argument it is
    fed to directly (log(x): x > 0; asin(x): -1 < x < 1; x**3: any x), read
    from the registry's domain facet."""
    dom = {n.attr: REAL for n in graph.inputs}
    for n in graph.body:
        if not n.args:
            continue
        for a, d in zip(n.args, REGISTRY[n.op].arg_domains(n.args)):
            if a.op == "input":
                dom[a.attr] = dom[a.attr].intersect(d)
    return dom


def _random_value(rng: np.random.Generator, d: Domain) -> float:
    if rng.random() < 0.5:
        v = rng.uniform(-3, 3)
    else:
        v = rng.choice([-1.0, 1.0]) * 10 ** rng.uniform(-3, 2)
    return float(d.take(float(v), rng))


def sample_points(graph: Graph, n: int, seed: int, dtype: str) -> list[dict[str, float]]:
    """n random points in the inferred domains, then adversarial ones: every
    variable at each adversarial value, and each variable alone at it, and
    each variable just inside each finite edge of its domain."""
    rng = np.random.default_rng(seed)
    dom = infer_domains(graph)
    names = list(graph.input_names)
    pts = [{k: _random_value(rng, dom[k]) for k in names} for _ in range(n)]
    for v in ADVERSARIAL:
        if all(v in dom[k] for k in names):
            pts.append({k: v for k in names})
        if len(names) > 1:
            for k in names:
                if v in dom[k]:
                    p = {j: _random_value(rng, dom[j]) for j in names}
                    p[k] = v
                    pts.append(p)
    for k in names:
        for v in dom[k].edges():
            p = {j: _random_value(rng, dom[j]) for j in names}
            p[k] = v
            pts.append(p)
    pts += _zero_base_points(graph, rng, dom, names)
    cast = getattr(np, dtype)
    return [{k: float(cast(v)) for k, v in p.items()} for p in pts]


def _zero_base_points(graph: Graph, rng: np.random.Generator, dom: dict[str, Domain],
                      names: list[str]) -> list[dict[str, float]]:
    """x**y at x = 0 with y > 0, where 0**y = 0 is defined but log(0) sits in d/dy's
    formula (0 * -inf unless handled): y = 1.5 and 2 when y is a variable. Not
    (0, 0), where the derivative does not exist."""
    pts = []
    for n in graph.body:
        if n.op != "pow" or n.args[0].op != "input":
            continue
        base, expo = n.args
        if expo.op == "input":
            exps = [{expo.attr: 1.5}, {expo.attr: 2.0}]
        elif expo.is_const and expo.value > 0:
            exps = [{}]
        else:
            continue
        for e in exps:
            p = {j: _random_value(rng, dom[j]) for j in names}
            p.update(e)
            p[base.attr] = 0.0
            pts.append(p)
    return pts


def _fmt_point(p: dict[str, float]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in p.items())


class _Conditioning:
    """Why an output misses the exact value at a point: graphc's fault, or the
    formula's own rounding. It is the formula's when (a) graphc's value+gradient
    graph evaluated at 60 digits equals the exact value (so every derivative
    rule is right there) and (b) graphc's kernel is no further from the exact
    value than the formula evaluated naively in the working precision (the
    unoptimised graph, autodiff alone, on the NumPy reference) allows."""

    def __init__(self, fn: Any, pts: list[dict[str, float]], dtype: str):
        self.fn, self.pts, self.dtype = fn, pts, dtype
        self._rows: dict[int, tuple[list[float], list[float]]] = {}
        self._naive: Graph | None = None

    def _rows_at(self, i: int) -> tuple[list[float], list[float]]:
        if i not in self._rows:
            import mpmath

            from ..backends.numpy_ref import evaluate
            from ..program import Program

            pt = self.pts[i]
            with mpmath.workdps(60):
                try:
                    exact_graph = [oracle.to_float(v) for v in oracle.mpmath_eval_graph(self.fn.graph, pt, True)]
                except (ZeroDivisionError, ValueError, OverflowError):
                    exact_graph = [math.nan] * len(self.fn.graph.outputs)
            if self._naive is None:  # the formula as written, autodiff alone: built once, not per point
                self._naive = Program(self.fn.forward_graph, wrt=self.fn.wrt, passes=(), dtype=self.dtype).graph
            naive = [float(v) for v in evaluate(self._naive, [np.asarray(pt[k], dtype=self.dtype)
                                                              for k in self.fn.inputs])]
            self._rows[i] = (exact_graph, naive)
        return self._rows[i]

    def explain(self, i: int, j: int, got: float, exact: float) -> str:
        exact_graph, naive = self._rows_at(i)
        eg, nv = exact_graph[j], naive[j]
        if not (math.isfinite(eg) and math.isfinite(exact) and math.isfinite(nv) and math.isfinite(got)):
            return ""
        if abs(eg - exact) > 1e-12 * max(abs(exact), 1e-300):
            return ""  # graphc's graph itself is off: a real disagreement
        err_naive, err_got = abs(nv - exact), abs(got - exact)
        if err_got > max(4 * err_naive, ulp_error(0.0, 0.0, self.dtype)):
            return ""  # worse than the formula's own rounding: graphc's fault
        eps = float(np.finfo(getattr(np, self.dtype)).eps)
        lost = math.log10(max(rel_error(nv, exact), eps) / eps)
        return (f"the formula loses {lost:.0f} digits here (evaluated naively in {self.dtype}: {nv!r}, exact "
                f"{exact!r}); graphc's kernel gives {got!r} (relative error {_reported_error(got, exact, 1.0):.2g}, "
                f"naive {_reported_error(nv, exact, 1.0):.2g}) and its derivative graph is exact at 60 digits: "
                "the formula's conditioning, not a graphc error")


def kink_points(graph: Graph, columns: list[np.ndarray]) -> dict[str, list[int]]:
    """op name -> indices of the points where one of its nodes sits on a kink
    (the registry's `kink` facet: relu at 0, a max tie, floor at an integer)."""
    from ..backends.numpy_ref import node_values

    kinked = [n for n in graph.body if n.args and REGISTRY[n.op].kink is not None]
    if not kinked:
        return {}
    env = node_values(graph, columns, kinked)
    out: dict[str, list[int]] = {}
    with np.errstate(all="ignore"):
        for n in kinked:
            args = [np.broadcast_to(env[id(a)], columns[0].shape) for a in n.args]
            hit = np.flatnonzero(np.asarray(REGISTRY[n.op].kink(*args), dtype=bool))
            if hit.size:
                out.setdefault(n.op, [])
                out[n.op] = sorted(set(out[n.op]) | set(hit.tolist()))
    return out


# ------------------------------------------------------------------- errors


def ulp_error(got: float, exact: float, dtype: str) -> float:
    if got == exact or (math.isnan(got) and math.isnan(exact)):
        return 0.0
    if not (math.isfinite(got) and math.isfinite(exact)):
        return math.inf
    t = getattr(np, dtype)
    spacing = float(np.spacing(t(abs(exact)))) if abs(exact) < float(np.finfo(t).max) else math.inf
    return abs(got - exact) / spacing


def _reported_error(got: float, exact: float, scale: float) -> float:
    """The relative error, or where the exact value is 0 the error relative to
    the point's scale: a report shows `inf` only for a real failure."""
    if exact == 0 and math.isfinite(got):
        return abs(got) / scale
    return rel_error(got, exact)


def rel_error(got: float, exact: float) -> float:
    if got == exact or (math.isnan(got) and math.isnan(exact)):
        return 0.0
    if not (math.isfinite(got) and math.isfinite(exact)):
        return math.inf
    if exact == 0:
        return math.inf if got != 0 else 0.0
    return abs(got - exact) / abs(exact)


def output_passes(got: float, exact: float, scale: float, dtype: str) -> tuple[bool, float, float]:
    """(passes, relative error, ulp error). An output passes within the relative
    or the ULP tolerance, or -- where the exact value cancels to (near) zero --
    within the relative tolerance of the point's largest output (`scale`)."""
    rel_tol, ulp_tol = TOLERANCE[dtype]
    tmax = float(np.finfo(getattr(np, dtype)).max)
    if abs(exact) > tmax and math.isinf(got) and (got > 0) == (exact > 0):
        return True, 0.0, 0.0  # exact overflows the dtype: inf is the right answer
    r, u = rel_error(got, exact), ulp_error(got, exact, dtype)
    if r <= rel_tol or u <= ulp_tol:
        return True, r, u
    if math.isfinite(got) and abs(got - exact) <= rel_tol * scale:
        return True, r, u
    tiny = float(np.finfo(getattr(np, dtype)).tiny)
    if abs(exact) < tiny and abs(got) < tiny * 2**24:  # both underflow to (sub)normal noise
        return True, r, u
    return False, r, u


# ------------------------------------------------------------------- check


def _symbolic_verdicts(forward: Graph, optimised: Graph, wrt: Sequence[str], seconds: float) -> dict[str, tuple]:
    def work():
        import sympy as sp

        f_exprs, syms = oracle.to_sympy(forward, [forward.output_names[0]])
        f = f_exprs[forward.output_names[0]]
        ours, _ = oracle.to_sympy(optimised)
        name = forward.output_names[0]
        theirs = {name: f, **{grad_name(name, w): oracle.derivative(f, syms[w]) for w in wrt}}
        out = {}
        for name, ref in theirs.items():
            diff = ours[name] - ref
            simplified = sp.simplify(diff)
            if simplified != 0 and simplified.has(sp.erfc):  # erfc(-z) = 1 + erf(z) is not found otherwise
                simplified = sp.simplify(simplified.rewrite(sp.erf))
            if simplified == 0:
                out[name] = ("proved", "")
                continue
            # not reduced to 0: look for a witness point at 30 digits. The bar is
            # relative: graphc's constants (2/sqrt(pi), ...) are float64 roundings
            vals = []
            for k in range(3):
                sub = {s: sp.Rational(7 + 3 * k + i, 5 + k) * (-1) ** (i + k) for i, s in enumerate(syms.values())}
                try:
                    d = abs(complex(simplified.evalf(30, subs=sub, maxn=400)))
                    r = abs(complex(ref.evalf(30, subs=sub, maxn=400)))
                    vals.append(d / (r + 1e-300) if r > 1e-250 else d)
                except (TypeError, ValueError):
                    pass
            if any(v > 1e-12 for v in vals if math.isfinite(v)):
                out[name] = ("differs", "SymPy finds graphc's expression and its own derivative different")
            else:
                out[name] = ("undecided", "SymPy's simplify did not reduce the difference to 0")
        return out

    try:
        return oracle.run_limited(work, seconds)
    except oracle.TimeLimit as exc:
        return {"*": ("undecided", f"SymPy gave no verdict: it {exc} (time limit)")}
    except RuntimeError as exc:
        return {"*": ("undecided", f"SymPy failed: {str(exc).splitlines()[0]}")}


MAX_POINTS = 20_000  # the reference is evaluated at 40+ digits, point by point (~0.3 ms each)


def _check_traced(f: Any, args: tuple, dtype: Any, points: int, seed: int):
    from ..api import CompiledFunction
    from ..trace import value_and_grad
    from .tensor import check_tensor

    program = value_and_grad(f, argnums=tuple(range(len(args)))).lower(*args)
    fn = CompiledFunction(program, "numpy")
    names = program.inputs
    from ..trace import flatten

    leaves = [leaf for a in args for leaf in flatten(a)[0]]
    given = {n: np.asarray(v) for n, v in zip(names, leaves)}
    report = check_tensor(fn, points=points, seed=seed, adversarial=True)
    at_example = check_tensor(fn, values=[given])
    for k, v in at_example.max_rel.items():
        if v >= report.max_rel.get(k, -1.0):
            report.max_rel[k], report.worst[k] = v, at_example.worst[k]
    report.points += 1
    report.formula = getattr(f, "__name__", "function")
    return report


MAX_TIME_LIMIT = 86_400.0  # seconds: a SymPy task limit above a day is refused (a timer that large overflows)


def _check_numbers(points: Any, seed: Any, time_limit: Any) -> None:
    """Every numeric option in range, or a GraphcError saying which is not."""
    if not isinstance(points, int) or not 1 <= points <= MAX_POINTS:
        raise GraphcError(f"points must be an integer from 1 to {MAX_POINTS:,} (each is evaluated at 40+ digits), "
                          f"got {points!r}")
    if not isinstance(seed, int) or seed < 0:
        raise GraphcError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit) and 0 < time_limit <= MAX_TIME_LIMIT):
        raise GraphcError(f"time limit must be a positive number of seconds, at most {MAX_TIME_LIMIT:,.0f} "
                          f"(a day), got {time_limit!r}")


def check(
    formula: Any,
    *example_args: Any,
    target: str | None = None,
    dtype: Any = "float64",
    points: int = 64,
    seed: int = 0,
    wrt: Sequence[str] | str | None = None,
    time_limit: float = 20.0,
    symbolic: bool = True,
    passes: Sequence[str] | str | None = None,
) -> CheckReport:
    """Compile `formula` and check every output against exact references.

    A Python function with example arguments (`check(f, W, x)`) is traced at
    their shapes and checked element by element against SymPy (the tensor check)."""
    from ..api import compile

    _check_numbers(points, seed, time_limit)
    if callable(formula) and not isinstance(formula, str):
        return _check_traced(formula, example_args, dtype, min(points, 4), seed)
    t0 = time.perf_counter()
    fn = compile(formula, wrt=wrt, target=target, dtype=dtype, passes=passes)
    forward, dt = fn.forward_graph, fn.dtype
    pts = sample_points(forward, points, seed, dt)
    notes: list[str] = []
    try:
        ref = oracle.run_limited(lambda: oracle.sympy_reference(forward, pts, fn.wrt,
                                                                progress=Progress("reference values", len(pts))),
                                 time_limit)
        reference = "SymPy's exact derivatives, evaluated with mpmath at 40+ digits"
    except (oracle.TimeLimit, RuntimeError) as exc:
        notes.append(f"SymPy could not produce reference values ({str(exc).splitlines()[0]}); "
                     "used mpmath numerical differentiation of the graph instead")
        reference = "mpmath high-precision numerical differentiation (SymPy timed out)"
        ref = oracle.mpmath_reference(forward, pts, fn.wrt, progress=Progress("numerical references", len(pts)))
    names = list(fn.graph.output_names)  # the value, then d(value)/d(w) for each w: named by the graph
    cols = [np.array([p[k] for p in pts], dtype=dt) for k in fn.inputs]
    value, grads = fn(*cols)
    got = [np.asarray(value, dtype=np.float64)] + [np.asarray(grads[w], dtype=np.float64) for w in fn.wrt]

    # points outside the domain (exact value undefined) are skipped
    usable = [i for i, row in enumerate(ref) if not any(math.isnan(v) for v in row)]
    report = CheckReport(str(formula), fn.target, dt, reference, len(pts), len(pts) - len(usable), notes=notes)
    kinks = kink_points(forward, [np.array([p[k] for p in pts]) for k in fn.inputs])
    on_kink = sorted({i for ids in kinks.values() for i in ids} & set(usable))
    if on_kink:
        what = ", ".join(f"{op} ({len(set(ids) & set(usable))})" for op, ids in sorted(kinks.items()))
        report.notes.append(f"{len(on_kink)} point(s) sit on a kink or jump: {what}; there the reference is "
                            "graphc's documented convention (README, Numerical semantics)")
    if symbolic:
        verdicts = _symbolic_verdicts(forward, fn.graph, fn.wrt, time_limit)
    else:
        verdicts = {"*": ("skipped", "symbolic check not requested")}
    scales = {i: max([1.0] + [abs(v) for v in ref[i] if math.isfinite(v)]) for i in usable}
    conditioning = _Conditioning(fn, pts, dt)
    for j, name in enumerate(names):
        wi, worst_key = None, (-1, -1.0)
        max_ulp, ok, checked = 0.0, True, 0
        for i in usable:
            exact = ref[i][j]
            g = float(got[j][i])
            passed, r, u = output_passes(g, exact, scales[i], dt)
            if not passed:
                explained = conditioning.explain(i, j, g, exact)
                if explained:
                    passed = True
                    report.ill_conditioned += 1
                    report.notes.append(f"{name} at {_fmt_point(pts[i])}: {explained}")
            if exact == 0 and math.isfinite(g):  # ulp of the point's scale, not of 0's subnormal spacing
                r, u = abs(g) / scales[i], abs(g) / float(np.spacing(getattr(np, dt)(scales[i])))
            checked += 1
            ok &= passed
            max_ulp = max(max_ulp, u)
            key = (0 if passed else 1, r if r < 1e308 else 1e308)  # failures first, then largest error
            if key > worst_key:
                worst_key, wi = key, i
        sym, note = verdicts.get(name) or verdicts.get("*", ("undecided", ""))
        if sym == "differs":
            ok = False
        max_rel = max((_reported_error(float(got[j][i]), ref[i][j], scales[i]) for i in usable), default=0.0)
        report.outputs.append(OutputVerdict(
            name, sym, note, max_rel, max_ulp,
            pts[wi] if wi is not None else None,
            float(got[j][wi]) if wi is not None else None,
            ref[wi][j] if wi is not None else None,
            checked, ok,
        ))
    if not usable:
        report.notes.append("no point inside the domain: nothing was checked numerically")
        for o in report.outputs:
            o.ok = False
    report.seconds = time.perf_counter() - t0
    return report


# ------------------------------------------------------------------- swell


def swell(formula: Any, time_limit: float = 30.0) -> dict[str, Any]:
    """graphc's op count for value+gradient beside SymPy's count_ops of its raw
    derivatives and after sympy.cse, with the time each took."""
    from ..api import compile

    t = time.perf_counter()
    fn = compile(formula, target="numpy")
    t_graphc = time.perf_counter() - t
    res: dict[str, Any] = {
        "formula": str(formula),
        "graphc": {"forward_ops": fn.optimised_forward().op_count(), "value_grad_ops": fn.graph.op_count(),
                   "seconds": t_graphc},
    }
    forward, wrt = fn.forward_graph, fn.wrt

    def diff_work():
        import sympy as sp

        t = time.perf_counter()
        exprs, syms = oracle.to_sympy(forward, [forward.output_names[0]])
        f = exprs[forward.output_names[0]]
        ds = [oracle.derivative(f, syms[w]) for w in wrt]
        t_diff = time.perf_counter() - t
        raw = sum(sp.count_ops(e) for e in [f, *ds])
        return {"ops": int(raw), "seconds": t_diff}

    def cse_work():
        import sympy as sp

        exprs, syms = oracle.to_sympy(forward, [forward.output_names[0]])
        f = exprs[forward.output_names[0]]
        ds = [oracle.derivative(f, syms[w]) for w in wrt]
        t = time.perf_counter()
        repl, reduced = sp.cse([f, *ds])
        t_cse = time.perf_counter() - t
        ops = sum(sp.count_ops(e) for _, e in repl) + sum(sp.count_ops(e) for e in reduced)
        return {"ops": int(ops), "seconds": t_cse}

    for key, work in (("sympy_diff", diff_work), ("sympy_cse", cse_work)):
        try:
            res[key] = oracle.run_limited(work, time_limit)
        except (oracle.TimeLimit, RuntimeError) as exc:
            res[key] = {"skipped": f"SymPy {str(exc).splitlines()[0]} (time limit {time_limit:g} s)"}
    return res


def format_swell(res: dict[str, Any]) -> str:
    g = res["graphc"]
    lines = [f"expression swell: {res['formula']}",
             f"{'':<28} {'ops':>10} {'seconds':>10}",
             f"{'graphc forward':<28} {g['forward_ops']:>10}",
             f"{'graphc value+gradient':<28} {g['value_grad_ops']:>10} {g['seconds']:>10.3f}"]
    for key, label in (("sympy_diff", "SymPy raw derivatives"), ("sympy_cse", "SymPy after cse")):
        r = res[key]
        if "skipped" in r:
            lines.append(f"{label:<28} {'-':>10} {'-':>10}  {r['skipped']}")
        else:
            lines.append(f"{label:<28} {r['ops']:>10} {r['seconds']:>10.3f}")
    return "\n".join(lines)
