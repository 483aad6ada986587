"""The reference oracle: IR -> SymPy, exact derivatives, high-precision values.

SymPy is used for checking only; compiling never waits on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..ir import Graph
from ..registry import REGISTRY

DIGITS = 40
MAXN = 3000  # the most digits evalf may use to resolve cancellation
ZERO_CHECK_DIGITS = 800  # a zero result is confirmed at this precision (exp(-700) next to 1 needs 305)


_EXACT: dict[float, object] = {}


def exact_constant(v: float):
    """SymPy value of a graph constant: an integer, a known irrational constant
    that derivative rules and constant folding produce (2/sqrt(pi), log(2),
    sqrt(2), ...: their float64 rounding maps back to the exact value), or the
    float itself at 40 digits."""
    import sympy as sp

    if v == v and abs(v) < 2**53 and v == int(v):
        return sp.Integer(int(v))
    if not _EXACT:
        pi, two = sp.pi, sp.Integer(2)
        for c in (pi, sp.E, sp.sqrt(two), 1 / sp.sqrt(two), 2 / sp.sqrt(pi), 1 / sp.sqrt(2 * pi), sp.log(two),
                  sp.log(10), 1 / sp.log(two), 1 / sp.log(10), pi / 2, pi / 4, sp.sqrt(pi)):
            _EXACT[float(c)] = c
            _EXACT[-float(c)] = -c
    hit = _EXACT.get(v)
    return hit if hit is not None else sp.Float(repr(v), DIGITS)


def to_sympy(graph: Graph, outputs: Sequence[str] | None = None) -> tuple[dict, dict]:
    """Returns ({output name: SymPy expr}, {input name: Symbol}); fused ops
    become their defining expressions. Iterative over the graph body."""
    import sympy as sp

    syms = {n.attr: sp.Symbol(n.attr, real=True) for n in graph.inputs}
    env: dict[int, object] = {id(n): syms[n.attr] for n in graph.inputs}
    for n in graph.body:
        if n.op == "const":
            env[id(n)] = exact_constant(n.value)
        else:
            spec = REGISTRY[n.op]
            args = [env[id(a)] for a in n.args]
            if spec.sympy is None and spec.symbolic is not None and not n.shape:  # a 0-d comparison or where
                env[id(n)] = np.asarray(spec.symbolic(*args), dtype=object).item()
            else:
                env[id(n)] = spec.sympy(*args)
    names = outputs if outputs is not None else graph.output_names
    return {name: env[id(graph.output(name))] for name in names}, syms


def derivative(expr, sym):
    """sympy.diff, with the derivatives SymPy leaves unevaluated for piecewise
    constant functions (floor, ceiling: `Derivative(floor(x), x)`) set to 0, as
    graphc defines them (the jumps themselves are a null set)."""
    import sympy as sp

    d = sp.diff(expr, sym)
    if d.has(sp.Derivative):
        d = d.replace(lambda a: isinstance(a, sp.Derivative) and isinstance(a.expr, (sp.floor, sp.ceiling)),
                      lambda a: sp.S.Zero).doit()
    return d


def exact(
    forward: Graph,
    point: Mapping[str, float],
    wrt: Sequence[str] | None = None,
    order: int = 1,
    digits: int = DIGITS,
) -> dict[str, float]:
    """Value and exact derivatives of the forward graph's first output at `point`,
    by sympy.diff and evaluation at `digits` significant digits.

    Keys follow graphc's output names: 'f', 'df/dx', 'd2f/dxdy' (for an output named f)."""
    import sympy as sp

    from ..passes.autodiff import grad_name

    exprs, syms = to_sympy(forward, [forward.output_names[0]])
    f = exprs[forward.output_names[0]]
    wrt = list(wrt) if wrt is not None else list(forward.input_names)
    # the binary value itself (exactly), not its shortest decimal: near asin(1) the two differ by 1e-11
    subs = {syms[k]: sp.Float(float(v), digits) for k, v in point.items() if k in syms}
    name = forward.output_names[0]
    out: dict[str, float] = {name: _ev(f, subs, digits)}
    for x in wrt:
        d = derivative(f, syms[x])
        out[grad_name(name, x)] = _ev(d, subs, digits)
        if order == 2:
            for y in wrt:
                out[grad_name(grad_name(name, x), y)] = _ev(derivative(d, syms[y]), subs, digits)
    return out


def _ev(expr, subs, digits: int) -> float:
    import sympy as sp

    # maxn lets evalf raise its working precision through cancellations such as
    # exp(x)/(1+exp(x)) - exp(2x)/(1+exp(x))**2 at x = 700 (about 900 digits)
    val = expr.evalf(digits, subs=subs, maxn=MAXN)
    if val.has(sp.zoo) or val is sp.nan:
        return float("nan")
    try:
        return float(val)
    except TypeError:  # complex result (e.g. log of a negative): not a real number
        c = complex(val)
        return c.real if c.imag == 0 else float("nan")


# ------------------------------------------------------------ fast references


def _mp_heaviside(x, h0=0.5):
    """SymPy's Heaviside(x, h0) for mpmath values (NaN outside the reals)."""
    import mpmath

    if isinstance(x, mpmath.mpc):
        if x.imag != 0:
            return mpmath.mpf("nan")
        x = x.real
    if mpmath.isnan(x):
        return x
    return mpmath.mpf(1) if x > 0 else mpmath.mpf(0) if x < 0 else mpmath.mpf(h0)


def _mp_funcs(exprs: Sequence, syms: Sequence):
    """lambdify to mpmath, with a Heaviside of our own (mpmath has none; rewriting
    it as Piecewise breaks on nested steps such as clip's)."""
    import sympy as sp

    # DiracDelta (the derivative of a step) is 0 away from the kink, where we evaluate
    fixed = [e.replace(sp.DiracDelta, lambda *a: sp.S.Zero) if e.has(sp.DiracDelta) else e for e in exprs]
    return sp.lambdify(list(syms), fixed, modules=[{"Heaviside": _mp_heaviside}, "mpmath"])


def to_float(v) -> float:
    import mpmath

    if isinstance(v, mpmath.mpc) or isinstance(v, complex):
        return float(v.real) if v.imag == 0 else float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def eval_adaptive(fn, args: Sequence[float], digits: int = DIGITS, max_digits: int = MAXN) -> list[float]:
    """Evaluate an mpmath function at increasing precision until two
    precisions agree to `digits` // 2 digits (catches cancellation)."""
    import mpmath

    prev = None
    dps = digits
    while True:
        with mpmath.workdps(dps):
            try:
                vals = fn(*(mpmath.mpf(a) for a in args))
            except (ZeroDivisionError, ValueError, OverflowError):
                vals = None
            if vals is None:
                return [float("nan")]
            vals = list(vals) if isinstance(vals, (list, tuple)) else [vals]
            cur = [mpmath.mpmathify(v) if not isinstance(v, (mpmath.mpf, mpmath.mpc)) else v for v in vals]
        if prev is not None:
            same = True
            for a, b in zip(prev, cur):
                if not (mpmath.isfinite(a) and mpmath.isfinite(b)):
                    same = same and str(a) == str(b)
                    continue
                if abs(a - b) > mpmath.mpf(10) ** (-(digits // 2)) * max(abs(a), abs(b), mpmath.mpf(10) ** -300):
                    same = False
            if same and dps < ZERO_CHECK_DIGITS and any(v == 0 for v in cur) and any(a != 0 for a in args):
                # an exact 0 may be a term absorbed at both precisions (log(1 + exp(-700)) is
                # 0 at 40 and 80 digits, 9.86e-305 in truth): once more, past exp(+-700)'s range
                prev, dps = cur, ZERO_CHECK_DIGITS
                continue
            if same or dps >= max_digits:
                return [to_float(v) for v in cur]
        prev = cur
        dps *= 2


def sympy_reference(forward: Graph, points: Sequence[Mapping[str, float]], wrt: Sequence[str],
                    digits: int = DIGITS, progress: Callable[[int], None] | None = None) -> list[list[float]]:
    """[f, df/dw...] at each point, from SymPy's exact derivatives evaluated with
    mpmath at adaptive precision."""

    exprs, syms = to_sympy(forward, [forward.output_names[0]])
    f = exprs[forward.output_names[0]]
    outs = [f] + [derivative(f, syms[w]) for w in wrt]
    order = list(forward.input_names)
    fn = _mp_funcs(outs, [syms[n] for n in order])
    rows = []
    for p in points:
        args = [p[n] for n in order]
        row = eval_adaptive(fn, args, digits)
        if args.count(0.0) == 1 and any(math.isnan(v) for v in row):
            # an output that is 0/0 or 0 * inf where an input is 0 (x**y's derivatives
            # y x**y / x and x**y log(x) at x = 0): each output on its own, then
            # its limit there if the value itself is finite and both sides agree or one exists
            if len(row) < len(outs):
                each = [_mp_funcs([e], [syms[n] for n in order]) for e in outs]
                row = [eval_adaptive(g, args, digits)[0] for g in each]
            if math.isfinite(row[0]):
                row = [lv if math.isnan(v) else v for v, lv in zip(row, limit(fn, args))]
        rows.append(row)
        if progress is not None:
            progress(len(rows))
    return rows


LIMIT_STEP = "1e-10000"  # mpmath has no exponent range: far below any float's resolution


def limit(fn, args: Sequence[float], dps: int = 60) -> list[float]:
    """fn's values as the one argument that is exactly 0 approaches 0 from above
    (or, where that side is undefined, from below), the others held (with two at
    0 the limit depends on the path: atan2 at the origin): the exact value
    where the formula is 0 * inf at the point itself, as x**y's derivative
    log(x) x**y at x = 0 (limit 0 for y > 0). NaN where the sides disagree or
    neither is defined."""
    import mpmath

    sides = []
    with mpmath.workdps(dps):
        step = mpmath.mpf(LIMIT_STEP)
        for sign in (1, -1):
            pt = [sign * step if a == 0 else mpmath.mpf(a) for a in args]
            try:
                vals = fn(*pt)
            except (ZeroDivisionError, ValueError, OverflowError):
                vals = None
            vals = list(vals) if isinstance(vals, (list, tuple)) else [vals] if vals is not None else None
            sides.append([to_float(v) for v in vals] if vals is not None else None)
    up, down = sides
    if up is None or down is None:
        return up or down or [math.nan]
    return [a if math.isnan(b) or a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b)) else
            (b if math.isnan(a) else math.nan) for a, b in zip(up, down)]


_MP_OPS: dict[str, object] = {}


def _mp_op(name: str):
    """An op's mpmath implementation, derived from its SymPy facet."""
    fn = _MP_OPS.get(name)
    if fn is None:
        import sympy as sp

        spec = REGISTRY[name]
        args = sp.symbols(f"a0:{spec.arity}", real=True)
        fn = _MP_OPS[name] = _mp_funcs([spec.sympy(*args)], args)
    return fn


def mpmath_eval_graph(forward: Graph, point: Mapping[str, object], all_outputs: bool = False):
    """Evaluate the graph's first output (or every output) in mpmath at the
    current precision: graphc's own graph, computed without rounding error."""
    import mpmath

    env: dict[int, object] = {id(n): mpmath.mpf(point[n.attr]) for n in forward.inputs}
    for n in forward.body:
        if n.op == "const":
            env[id(n)] = mpmath.mpf(n.value)
        else:
            env[id(n)] = _mp_op(n.op)(*(env[id(a)] for a in n.args))[0]
    if all_outputs:
        return [env[id(v)] for _, v in forward.outputs]
    return env[id(forward.outputs[0][1])]


def mpmath_reference(forward: Graph, points: Sequence[Mapping[str, float]], wrt: Sequence[str],
                     digits: int = DIGITS, progress: Callable[[int], None] | None = None) -> list[list[float]]:
    """[f, df/dw...] by evaluating the forward graph in mpmath and differentiating
    numerically at high precision (mpmath.diff): independent of graphc's
    derivative rules, and needs no symbolic expression (for when SymPy swells)."""
    import mpmath

    order = list(forward.input_names)
    idx = [order.index(w) for w in wrt]

    def f(*xs):
        return mpmath_eval_graph(forward, dict(zip(order, xs)))

    def value_and_grads(*x0):
        row = [f(*x0)]
        for k in idx:
            row.append(mpmath.diff(lambda t, k=k: f(*(x0[:k] + (t,) + x0[k + 1:])), x0[k]))
        return row

    rows = []
    for p in points:
        rows.append(eval_adaptive(value_and_grads, [p[n] for n in order], digits, max_digits=1200))
        if progress is not None:
            progress(len(rows))
    return rows


# ------------------------------------------------------------- time limits


class TimeLimit(Exception):
    """Work that did not finish within its time limit."""


def run_limited(fn, seconds: float):
    """fn() in a forked child, killed after `seconds`; raises TimeLimit then.
    SymPy cannot be interrupted in-process, and may take minutes on a large
    expression: a child process keeps `graphc check` responsive."""
    import multiprocessing as mp
    import pickle
    import traceback

    try:
        ctx = mp.get_context("fork")
    except ValueError:  # no fork on this platform: run in-process, unlimited
        return fn()
    recv, send = ctx.Pipe(duplex=False)

    def child():
        try:
            payload = ("ok", fn())
        except BaseException as exc:  # report, never hang the parent
            payload = ("err", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        try:
            send.send_bytes(pickle.dumps(payload))
        finally:
            send.close()

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(seconds):
            raise TimeLimit(f"did not finish within {seconds:g} s")
        status, value = pickle.loads(recv.recv_bytes())
    except EOFError:
        raise TimeLimit("the worker process died") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv.close()
    if status == "err":
        raise RuntimeError(value)
    return value
