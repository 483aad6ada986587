"""The built-in ops: one `OpSpec` entry each, registered in `registry.py`.

Each entry holds the op's arity, NumPy evaluation, derivative rule (which
builds IR nodes), SymPy form, per-element code template, domain and flags.
`tests/test_ops.py` walks the registry and fails when an op lacks a facet.

Numerical conventions (see README "Numerical semantics"):
- relu'(0) = 0, abs'(0) = sign(0) = 0, max/min ties split the gradient 1/2, 1/2,
  hypot'(0, 0) = 0, clip passes the gradient to x on [lo, hi] (bounds included),
  floor, ceil and sign have derivative 0 everywhere.
- sigmoid, softplus, logaddexp and tanh use forms that never overflow, and
  their local gradients (`dsigmoid`, `dtanh`) are computed from exp(-|x|),
  never as s*(1-s) or 1-t*t, which lose all precision where s or t round to 1.
- Every target agrees with NumPy: x**y is C's pow except that y = 0.5 gives
  sqrt(x) (as np.power with a scalar exponent: (-inf)**0.5 = nan, (-0)**0.5 = -0);
  max/min propagate the first NaN and return the second argument at a tie
  (np.maximum(0.0, -0.0) = -0.0). d/dx x**y is y*x**(y-1) where that is safe,
  else (y/x)*x**y (`dpow`); no derivative multiplies before it divides where
  the product can overflow (log2, log10, atan), and atan2's and hypot's scale
  by max(|a|, |b|) rather than divide by hypot(a, b), which overflows first.
"""

from __future__ import annotations

import math

import numpy as np

from .ir import Node, const, make
from .registry import GT_1, GT_MINUS_1, HALF_PI, NONZERO, POSITIVE, REAL, UNIT, OpSpec, register_op


def _c(value: float, like: Node) -> Node:
    return const(value, like.dtype)


def _sp():
    import sympy

    return sympy


# --------------------------------------------------------- NumPy reference forms


def _np_sigmoid(x):
    e = np.exp(-np.abs(x))
    one = np.ones_like(e)
    return np.where(x >= 0, one / (one + e), e / (one + e))


def _np_dsigmoid(x):
    e = np.exp(-np.abs(x))
    return e / ((1 + e) * (1 + e))


def _np_softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _np_dtanh(x):
    e = np.exp(-2 * np.abs(x))
    return 4 * e / ((1 + e) * (1 + e))


def _np_pow(x, y):
    # np.power, with y = 0.5 always sqrt(x): NumPy takes that path only for a scalar
    # exponent ((-inf)**0.5 = nan, (-0.0)**0.5 = -0.0), C's pow for an array of 0.5s
    r = np.power(x, y)
    if np.ndim(y) == 0:
        return np.sqrt(x) if y == 0.5 else r
    half = np.equal(y, 0.5)
    return np.where(half, np.sqrt(x), r) if half.any() else r


def _np_dpow(x, y, n):
    """d/dx x**y = y x**(y-1), given n = x**y (the template C_DPOW, step for step):
    - y = 0: y (x**0 = 1; 0, not 0 * inf, at x = 0);
    - x = +-0, +-inf or NaN: y p, p = x**(y-1), but where x is -0.0 or -inf and y - 1
      rounded, the sign p has for the exact y - 1: + for a non-integer y (y = 1e-300:
      y - 1 = -1), - for |y| >= 2**53 (y even, y - 1 odd);
    - p finite and nonzero, |y| < 2**53, and y - 1 exact or x > 0: y p (exact where it was);
    - else (p overflows or underflows: x = 5e-324, y = 1e-300 -> 2e23, not inf; or y - 1
      rounds: x = -40, y = 1e300 -> -inf, not +inf): (y/x) n, or y (n/x) where y/x overflows."""
    t = _np_pow(x, y - 1)
    ym1 = y - 1
    exact = (ym1 + 1) - y == 0
    small = np.abs((ym1 - y) + 1) < 0.5
    neg = (x < 0) | (1 / x < 0)
    edge = np.where(~neg | (exact & small), y * t, np.where(small, y * np.abs(t), -(y * np.abs(t))))
    fine = (t - t == 0) & (t != 0) & small & (exact | (x > 0))
    q = y / x
    r = np.where(fine, y * t, np.where(q - q == 0, q * n, y * (n / x)))
    r = np.where((x == 0) | (x - x != 0), edge, r)
    return np.where(y == 0, y, r)


def _np_relu(x):
    # np.maximum propagates NaN and, at a tie, returns its second argument: relu(-0.0) = +0.0
    return np.maximum(x, np.zeros((), dtype=np.result_type(x)))


def _np_step(x):
    # 1 where x > 0, 0 where x <= 0, NaN for NaN (np.heaviside and np.sign are 10x slower)
    x = np.asarray(x)
    out = np.asarray(np.greater(x, 0), dtype=np.result_type(x))
    nan = np.isnan(x)
    if nan.any():
        out[nan] = np.nan
    return out if out.ndim else out[()]


def _np_cmpw(a, b):
    half = np.asarray(0.5, dtype=np.result_type(a, b))
    return np.where(a > b, half * 2, np.where(a < b, half * 0, np.where(a == b, half, half * np.nan)))


def _np_erf(x):
    from scipy.special import erf

    return erf(x)


def _np_erfc(x):
    from scipy.special import erfc

    return erfc(x)


def _np_gelu(x):
    from scipy.special import erfc

    return 0.5 * x * erfc(-x * np.sqrt(0.5).astype(np.result_type(x)))


def _sympy_clip(x, lo, hi):
    # min(max(x, lo), hi) written with steps H(., 0), so that SymPy's derivative at
    # the bounds follows graphc's convention (x keeps the gradient at x == lo or
    # x == hi; hi takes it when lo > hi), not Max/Min's Heaviside(0) = 1/2. The
    # DiracDelta terms of the derivative are multiplied by 0 at their kinks.
    sp = _sp()
    m = x + sp.Heaviside(lo - x, 0) * (lo - x)  # max(x, lo)
    return m + sp.Heaviside(m - hi, 0) * (hi - m)


def _np_clip(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


# ---------------------------------------------------------------- derivatives
# Each rule gets the node n and the upstream gradient g and returns one
# contribution per argument (None = zero). Rules build ordinary IR nodes.


def _g_add(n, g):
    return g, g


def _g_sub(n, g):
    return g, make("neg", g)


def _g_mul(n, g):
    a, b = n.args
    return make("mul", g, b), make("mul", g, a)


def _g_div(n, g):
    a, b = n.args
    gb = make("div", g, b)
    return gb, make("neg", make("mul", gb, n))


def _g_neg(n, g):
    return (make("neg", g),)


def _is_zero(x: Node) -> Node:
    """1 where x == 0, else 0 (NaN stays NaN): 1 - step(x) - step(-x)."""
    return make("sub", make("sub", _c(1.0, x), make("step", x)), make("step", make("neg", x)))


# a constant exponent b for which b * a**(b-1) is right for every a (b - 1 exact, no spurious
# overflow of a**(b-1) that b < 1 would scale back): 1 <= |b| < 2**mantissa, or b in
# [lo, 1) where a**(b-1) <= tiniest**(b-1) stays finite (lo = 1 - log(max)/-log(tiniest))
_POW_PLAIN = {"f64": (0.05, 2.0**53), "f32": (0.15, 2.0**24)}


def _g_pow(n, g):
    a, b = n.args
    if b.is_const:
        if b.value == 0.0:
            return None, None  # a**0 = 1
        lo, big = _POW_PLAIN[b.dtype]
        if 1.0 <= abs(b.value) < big or lo <= b.value < 1.0:
            bm1 = _c(b.value - 1.0, b)
            return make("mul", g, make("mul", b, make("pow", a, bm1))), None
        return make("mul", g, make("dpow", a, b, n)), None
    # d/da = b a**(b-1) where that is safe, (b/a) a**b where a**(b-1) overflows or underflows
    # (a = 5e-324, b = 1e-300: 2e23, not inf) or b - 1 rounds (a = -40, b = 1e300: -inf, not
    # +inf); 0 where b = 0 (not 0 * inf at a = 0): the internal op dpow(a, b, a**b)
    da = make("mul", g, make("dpow", a, b, n))
    # d/db = a**b log(a), 0 at a = 0 (the limit for b > 0), not 0 * -inf: log(a + [a == 0])
    db = make("mul", g, make("mul", n, make("log", make("add", a, _is_zero(a)))))
    return da, db


def _g_dpow(n, g):
    # dpow(x, y, .) = y x**(y-1); its third argument (x**y, a shortcut) has no derivative of its own
    x, y, _ = n.args
    ym1 = make("sub", y, _c(1.0, y))
    t = make("pow", x, ym1)
    dx = make("mul", g, make("mul", y, make("dpow", x, ym1, t)))
    # d/dy = x**(y-1) (1 + y log x), with log(x + [x == 0]) as pow's d/db: at x = 0 the limit
    # (0 for y > 1: the Hessian's xy entry of x**y at (0, 2)), not 0 * -inf
    logx = make("log", make("add", x, _is_zero(x)))
    dy = make("mul", g, make("mul", t, make("add", _c(1.0, y), make("mul", y, logx))))
    return dx, dy, None


def _g_exp(n, g):
    return (make("mul", g, n),)


def _g_log(n, g):
    return (make("div", g, n.args[0]),)


def _g_sqrt(n, g):
    return (make("div", g, make("mul", _c(2.0, n), n)),)


def _g_sin(n, g):
    return (make("mul", g, make("cos", n.args[0])),)


def _g_cos(n, g):
    return (make("neg", make("mul", g, make("sin", n.args[0]))),)


def _g_tan(n, g):
    return (make("mul", g, make("add", _c(1.0, n), make("mul", n, n))),)


def _g_tanh(n, g):
    return (make("mul", g, make("dtanh", n.args[0])),)


def _g_dtanh(n, g):
    x = n.args[0]
    return (make("mul", g, make("mul", _c(-2.0, n), make("mul", make("tanh", x), n))),)


def _g_sigmoid(n, g):
    return (make("mul", g, make("dsigmoid", n.args[0])),)


def _g_dsigmoid(n, g):
    # d/dx [s(x) s(-x)] = s(x) s(-x) (s(-x) - s(x)) = -dsigmoid(x) * tanh(x/2)
    x = n.args[0]
    return (make("neg", make("mul", g, make("mul", n, make("tanh", make("mul", _c(0.5, x), x))))),)


def _g_softplus(n, g):
    return (make("mul", g, make("sigmoid", n.args[0])),)


def _g_relu(n, g):
    return (make("mul", g, make("step", n.args[0])),)


def _g_abs(n, g):
    return (make("mul", g, make("sign", n.args[0])),)


def _g_max(n, g):
    a, b = n.args
    return make("mul", g, make("cmpw", a, b)), make("mul", g, make("cmpw", b, a))


def _g_min(n, g):
    a, b = n.args
    return make("mul", g, make("cmpw", b, a)), make("mul", g, make("cmpw", a, b))


def _g_log1p(n, g):
    x = n.args[0]
    return (make("div", g, make("add", _c(1.0, x), x)),)


def _g_expm1(n, g):
    return (make("mul", g, make("exp", n.args[0])),)


def _g_logaddexp(n, g):
    a, b = n.args
    return make("mul", g, make("sigmoid", make("sub", a, b))), make("mul", g, make("sigmoid", make("sub", b, a)))


def _g_atan(n, g):
    # 1/(1 + x*x) as (r/(r*r + s*s))*r, r = 1/max(|x|, 1), s = min(|x|, 1): the same
    # operations for |x| <= 1, and no overflow of x*x (f64 |x| > 1.3e154, f32 > 1.8e19)
    x = n.args[0]
    one = _c(1.0, x)
    ax = make("abs", x)
    r = make("div", one, make("max", ax, one))
    s = make("min", ax, one)
    d = make("add", make("mul", r, r), make("mul", s, s))
    return (make("mul", g, make("mul", make("div", r, d), r)),)


def _one_minus_sq(x: Node) -> Node:
    """(1 - x)(1 + x): 1 - x*x without its cancellation near |x| = 1."""
    return make("mul", make("sub", _c(1.0, x), x), make("add", _c(1.0, x), x))


def _g_asin(n, g):
    return (make("div", g, make("sqrt", _one_minus_sq(n.args[0]))),)


def _g_acos(n, g):
    return (make("neg", make("div", g, make("sqrt", _one_minus_sq(n.args[0])))),)


def _scaled(a: Node, b: Node, floor: float | None = None) -> tuple[Node, Node, Node, Node]:
    """(s, a/s, b/s, q): s = max(|a|, |b|) (at least `floor`), q = 1 + (min/max)**2,
    so that hypot(a, b) = s sqrt(q) and a*a + b*b = s*s q without forming either:
    no overflow where they exceed the largest float, as hypot(1e308, 1e308) does."""
    s = make("max", make("abs", a), make("abs", b))
    if floor is not None:
        s = make("max", s, _c(floor, a))
    u, v = make("div", a, s), make("div", b, s)
    r = make("min", make("abs", u), make("abs", v))  # one of |u|, |v| is 1 (or both 0)
    return s, u, v, make("add", _c(1.0, a), make("mul", r, r))


def _g_atan2(n, g):
    # d/da atan2(a, b) = b / (a^2 + b^2) = ((b/s)(1/q))/s: no overflow of a^2 + b^2 or of
    # hypot(a, b) (atan2'(1e308, 1e308) = 2.8e-309, not 0); NaN at the origin (0/0)
    a, b = n.args
    s, u, v, q = _scaled(a, b)
    k = make("div", _c(1.0, a), q)
    da = make("div", make("mul", v, k), s)
    db = make("div", make("mul", u, k), s)
    return make("mul", g, da), make("neg", make("mul", g, db))


def _g_sinh(n, g):
    return (make("mul", g, make("cosh", n.args[0])),)


def _g_cosh(n, g):
    return (make("mul", g, make("sinh", n.args[0])),)


def _g_asinh(n, g):
    x = n.args[0]
    return (make("div", g, make("hypot", x, _c(1.0, x))),)


def _g_acosh(n, g):
    x = n.args[0]
    one = _c(1.0, x)
    return (make("div", g, make("mul", make("sqrt", make("sub", x, one)), make("sqrt", make("add", x, one)))),)


def _g_atanh(n, g):
    return (make("div", g, _one_minus_sq(n.args[0])),)


def _gauss(x: Node, scale: float) -> Node:
    """scale * exp(-x*x)"""
    return make("mul", _c(scale, x), make("exp", make("neg", make("mul", x, x))))


def _g_erf(n, g):
    return (make("mul", g, _gauss(n.args[0], 2.0 / math.sqrt(math.pi))),)


def _g_erfc(n, g):
    return (make("mul", g, _gauss(n.args[0], -2.0 / math.sqrt(math.pi))),)


def _g_log2(n, g):
    # (g / ln 2) / x, not g / (x ln 2), whose product overflows near the largest x
    x = n.args[0]
    return (make("div", make("mul", g, _c(1.0 / math.log(2.0), x)), x),)


def _g_log10(n, g):
    # (g / ln 10) / x: x ln 10 overflows for float32 x > 1.5e38 (float64: 7.8e307)
    x = n.args[0]
    return (make("div", make("mul", g, _c(1.0 / math.log(10.0), x)), x),)


def _g_exp2(n, g):
    return (make("mul", g, make("mul", n, _c(math.log(2.0), n))),)


def _g_hypot(n, g):
    # a/h = (a/s)/sqrt(q), s = max(|a|, |b|, tiniest subnormal): right where h overflows
    # (hypot(1e308, 1e308): 0.707, not a/inf = 0), 0 (not 0/0) at the origin, like abs'(0) = 0
    a, b = n.args
    _, u, v, q = _scaled(a, b, _TINY[n.dtype])
    root = make("sqrt", q)
    return make("mul", g, make("div", u, root)), make("mul", g, make("div", v, root))


def _g_clip(n, g):
    # value = hi where max(x, lo) > hi; else lo where x < lo; else x (bounds included, as PyTorch)
    x, lo, hi = n.args
    one = _c(1.0, x)
    to_hi = make("step", make("sub", make("max", x, lo), hi))
    to_lo = make("mul", make("step", make("sub", lo, x)), make("sub", one, to_hi))
    to_x = make("mul", make("sub", one, make("step", make("sub", lo, x))), make("sub", one, to_hi))
    return make("mul", g, to_x), make("mul", g, to_lo), make("mul", g, to_hi)


def _g_gelu(n, g):
    # gelu'(x) = Phi(x) + x phi(x), Phi(x) = erfc(-x/sqrt 2)/2 (no cancellation for x << 0)
    x = n.args[0]
    phi_cdf = make("mul", _c(0.5, x), make("erfc", make("mul", x, _c(-math.sqrt(0.5), x))))
    pdf = make("mul", _c(1.0 / math.sqrt(2.0 * math.pi), x),
               make("exp", make("mul", _c(-0.5, x), make("mul", x, x))))
    return (make("mul", g, make("add", phi_cdf, make("mul", x, pdf))),)


def _g_fmax(n, g):
    # as max's: ties split 1/2, 1/2 (a NaN argument gives NaN gradients)
    return _g_max(n, g)


def _g_fmin(n, g):
    return _g_min(n, g)


def _g_logaddexp2(n, g):
    a, b = n.args
    ln2 = _c(math.log(2.0), a)
    return (make("mul", g, make("sigmoid", make("mul", make("sub", a, b), ln2))),
            make("mul", g, make("sigmoid", make("mul", make("sub", b, a), ln2))))


def _g_reciprocal(n, g):
    return (make("neg", make("mul", g, make("mul", n, n))),)


# sinc'(x) = sum_k>=1 (-1)^k pi^2k 2k x^(2k-1) / (2k+1)!: its first 8 terms, as x * P(x^2)
_SINC_SERIES = [(-1) ** k * math.pi ** (2 * k) * 2 * k / math.factorial(2 * k + 1) for k in range(1, 9)]
SINC_SERIES_BELOW = 0.1  # |x| below it: the series (error < 1e-17); above, the closed form (< 1e-14)


def _g_sinc(n, g):
    # sinc'(x) = (cos(pi x) - sinc(x)) / x loses digits as x -> 0 (cancellation) and says nothing of
    # the higher derivatives there; near 0 the derivative is its Taylor series, selected by where, so
    # grad(grad(sinc))(0) = -pi^2/3 as every derivative of the series is right at 0
    x = n.args[0]
    closed = make("div", make("sub", make("cos", make("mul", _c(math.pi, x), x)), n), make("add", x, _is_zero(x)))
    u = make("mul", x, x)
    p = _c(_SINC_SERIES[-1], x)
    for c in reversed(_SINC_SERIES[:-1]):
        p = make("add", make("mul", p, u), _c(c, x))
    near = make("lt", make("abs", x), _c(SINC_SERIES_BELOW, x))
    return (make("mul", g, make("where", near, make("mul", x, p), closed)),)


def _g_deg2rad(n, g):
    return (make("mul", g, _c(math.pi / 180.0, n)),)


def _g_rad2deg(n, g):
    return (make("mul", g, _c(180.0 / math.pi, n)),)


def _g_mod(n, g):
    # JAX's: d/da = 1, d/db = -floor(a / b) (the jumps at a/b integer contribute nothing)
    a, b = n.args
    return g, make("neg", make("mul", g, make("floor", make("div", a, b))))


def _np_sinc(x):
    return np.sinc(x)


def _multiple(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.divide(a, b)
    return np.floor(q) == q


_TINY = {"f64": 5e-324, "f32": float(np.finfo(np.float32).smallest_subnormal)}


def _g_zero(n, g):
    return (None,) * len(n.args)


# ------------------------------------------------------------------- registry

EXP_NEG_ABS = "math.exp(-abs({0}))"
EXP_NEG_2ABS = "math.exp(F(-2.0) * abs({0}))"
C_SIGMOID = "(F(1.0) / (F(1.0) + {p}) if {0} >= F(0.0) else {p} / (F(1.0) + {p}))"
C_SOFTPLUS = "({0} if {0} != {0} else max({0}, F(0.0)) + math.log1p({p}))"
C_RELU = "({0} if {0} > F(0.0) else (F(0.0) if {0} <= F(0.0) else {0}))"
# as np.maximum/np.minimum bit for bit: the first NaN, else the second argument at a tie
C_MAX = "({0} if ({0} > {1} or {0} != {0}) else {1})"
C_MIN = "({0} if ({0} < {1} or {0} != {0}) else {1})"
C_POW = "(math.sqrt({0}) if {1} == F(0.5) else {0} ** {1})"  # as _np_pow
# dpow(x, y, n = x**y) = y x**(y-1) with p = x**(y-1), in the steps of _np_dpow
_E = "((({1} - F(1.0)) + F(1.0)) - {1} == F(0.0))"  # y - 1 is exact (or |y| >= 2**53)
_H = "(abs((({1} - F(1.0)) - {1}) + F(1.0)) < F(0.5))"  # |y| < 2**53: y - 1 did not round to y or y - 2
_NEG = "({0} < F(0.0) or F(1.0) / {0} < F(0.0))"  # x < 0 or x = -0.0
C_DPOW = ("({1} if {1} == F(0.0) else "
          f"(({{1}} * {{p}} if (not {_NEG} or ({_E} and {_H})) else "
          f"({{1}} * abs({{p}}) if {_H} else -({{1}} * abs({{p}})))) "
          "if ({0} == F(0.0) or {0} - {0} != F(0.0)) else "
          f"({{1}} * {{p}} if ({{p}} - {{p}} == F(0.0) and {{p}} != F(0.0) and {_H} and ({_E} or {{0}} > F(0.0))) "
          "else (({1} / {0}) * {2} if ({1} / {0}) - ({1} / {0}) == F(0.0) else {1} * ({2} / {0})))))")
C_LOGADDEXP = ("({0} + F(0.6931471805599453) if {0} == {1} else "
               "({0} if {0} > {1} else {1}) + math.log1p(math.exp(-abs({0} - {1}))))")
C_DSIGMOID = "({p} / ((F(1.0) + {p}) * (F(1.0) + {p})))"
C_DTANH = "(F(4.0) * {p} / ((F(1.0) + {p}) * (F(1.0) + {p})))"
C_SIGN = "(F(1.0) if {0} > F(0.0) else (F(-1.0) if {0} < F(0.0) else (F(0.0) if {0} == F(0.0) else {0})))"
C_STEP = "(F(1.0) if {0} > F(0.0) else (F(0.0) if {0} <= F(0.0) else {0}))"
C_CLIP = C_MIN.replace("{0}", "{p}").replace("{1}", "{2}")  # min(max(x, lo), hi); max is the prelude
C_GELU = "(F(0.5) * {0} * math.erfc({0} * F(-0.7071067811865476)))"
C_CMPW = "(F(1.0) if {0} > {1} else (F(0.0) if {0} < {1} else (F(0.5) if {0} == {1} else {0} + {1})))"
C_FMAX = "({0} if ({0} >= {1} or {1} != {1}) else {1})"  # np.fmax: the non-NaN one; the first at a tie
C_FMIN = "({0} if ({0} <= {1} or {1} != {1}) else {1})"
C_LOGADDEXP2 = ("({0} + F(1.0) if {0} == {1} else "
                "({0} if {0} > {1} else {1}) + math.log1p(F(2.0) ** (-abs({0} - {1}))) * F(1.4426950408889634))")
C_SINC = ("(F(1.0) if {0} == F(0.0) else "
          "math.sin(F(3.141592653589793) * {0}) / (F(3.141592653589793) * {0}))")
C_MOD = "({0} - np.floor({0} / {1}) * {1})"

def _pow_domains(args: tuple[Node, ...]):
    """x**3 takes any real base; x**y and x**0.5 a positive one. (x = 0 is in the
    domain for y > 0, but at (0, 0) the derivative does not exist and SymPy's
    -inf disagrees with the 0 that graphc, JAX and PyTorch give: the checker
    does not sample it yet.)"""
    b = args[1]
    if b.is_const and float(b.value).is_integer():
        return (REAL, REAL)
    return (POSITIVE, REAL)


def _at_zero(a):
    return a == 0


def _tie(a, b):
    return a == b


def _origin(a, b):
    return (a == 0) & (b == 0)


def _integer(a):
    return np.floor(a) == a


_O = OpSpec
for _spec in [
    _O("add", 2, np.add, _g_add, lambda a, b: a + b, "({0} + {1})", "a + b", commutative=True, operator="+"),
    _O("sub", 2, np.subtract, _g_sub, lambda a, b: a - b, "({0} - {1})", "a - b", operator="-"),
    _O("mul", 2, np.multiply, _g_mul, lambda a, b: a * b, "({0} * {1})", "a * b", commutative=True, operator="*"),
    _O("div", 2, np.divide, _g_div, lambda a, b: a / b, "({0} / {1})", "a / b", domain=(REAL, NONZERO),
       operator="/"),
    _O("neg", 1, np.negative, _g_neg, lambda a: -a, "(-{0})", "-a", operator="-"),
    _O("pow", 2, _np_pow, _g_pow, lambda a, b: a**b, C_POW,
       "a ** b (also written a**b); a ** 0.5 is sqrt(a), as NumPy's", domain=(POSITIVE, REAL),
       domain_rule=_pow_domains),
    _O("exp", 1, np.exp, _g_exp, lambda a: _sp().exp(a), "math.exp({0})", "e ** a"),
    _O("log", 1, np.log, _g_log, lambda a: _sp().log(a), "math.log({0})", "natural logarithm",
       domain=(POSITIVE,)),
    _O("sqrt", 1, np.sqrt, _g_sqrt, lambda a: _sp().sqrt(a), "math.sqrt({0})", "square root",
       domain=(POSITIVE,)),
    _O("sin", 1, np.sin, _g_sin, lambda a: _sp().sin(a), "math.sin({0})", "sine"),
    _O("cos", 1, np.cos, _g_cos, lambda a: _sp().cos(a), "math.cos({0})", "cosine"),
    _O("tan", 1, np.tan, _g_tan, lambda a: _sp().tan(a), "math.tan({0})", "tangent", domain=(HALF_PI,)),
    _O("tanh", 1, np.tanh, _g_tanh, lambda a: _sp().tanh(a), "math.tanh({0})", "hyperbolic tangent"),
    _O("sigmoid", 1, _np_sigmoid, _g_sigmoid, lambda a: 1 / (1 + _sp().exp(-a)), C_SIGMOID,
       "1 / (1 + exp(-a)), stable for any a", prelude=EXP_NEG_ABS),
    _O("softplus", 1, _np_softplus, _g_softplus, lambda a: _sp().log(1 + _sp().exp(a)), C_SOFTPLUS,
       "log(1 + exp(a)), never overflows", prelude=EXP_NEG_ABS),
    _O("relu", 1, _np_relu, _g_relu, lambda a: a * _sp().Heaviside(a, 0), C_RELU, "max(a, 0); relu'(0) = 0", kink=_at_zero),
    _O("abs", 1, np.abs, _g_abs, lambda a: _sp().Abs(a), "abs({0})", "|a|; abs'(0) = 0", kink=_at_zero),
    _O("sign", 1, np.sign, _g_zero, lambda a: _sp().sign(a), C_SIGN, "-1, 0 or 1 (NaN propagates); derivative 0",
       kink=_at_zero),
    _O("max", 2, np.maximum, _g_max, lambda a, b: _sp().Max(a, b), C_MAX,
       "larger of a, b (NaN propagates); ties split the gradient", commutative=True, kink=_tie),
    _O("min", 2, np.minimum, _g_min, lambda a, b: _sp().Min(a, b), C_MIN,
       "smaller of a, b (NaN propagates); ties split the gradient", commutative=True, kink=_tie),
    _O("log1p", 1, np.log1p, _g_log1p, lambda a: _sp().log(1 + a), "math.log1p({0})", "log(1 + a), exact near 0",
       domain=(GT_MINUS_1,)),
    _O("expm1", 1, np.expm1, _g_expm1, lambda a: _sp().exp(a) - 1, "math.expm1({0})", "exp(a) - 1, exact near 0"),
    _O("logaddexp", 2, np.logaddexp, _g_logaddexp, lambda a, b: _sp().log(_sp().exp(a) + _sp().exp(b)),
       C_LOGADDEXP, "log(exp(a) + exp(b)), never overflows", commutative=True),
    # inverse trigonometric and hyperbolic functions
    _O("atan", 1, np.arctan, _g_atan, lambda a: _sp().atan(a), "math.atan({0})", "arc tangent"),
    _O("asin", 1, np.arcsin, _g_asin, lambda a: _sp().asin(a), "math.asin({0})", "arc sine", domain=(UNIT,)),
    _O("acos", 1, np.arccos, _g_acos, lambda a: _sp().acos(a), "math.acos({0})", "arc cosine", domain=(UNIT,)),
    _O("atan2", 2, np.arctan2, _g_atan2, lambda a, b: _sp().atan2(a, b), "math.atan2({0}, {1})",
       "angle of the point (b, a), as numpy.arctan2(a, b); gradient NaN at the origin", kink=_origin),
    _O("sinh", 1, np.sinh, _g_sinh, lambda a: _sp().sinh(a), "math.sinh({0})", "hyperbolic sine"),
    _O("cosh", 1, np.cosh, _g_cosh, lambda a: _sp().cosh(a), "math.cosh({0})", "hyperbolic cosine"),
    _O("asinh", 1, np.arcsinh, _g_asinh, lambda a: _sp().asinh(a), "math.asinh({0})", "inverse hyperbolic sine"),
    _O("acosh", 1, np.arccosh, _g_acosh, lambda a: _sp().acosh(a), "math.acosh({0})", "inverse hyperbolic cosine",
       domain=(GT_1,)),
    _O("atanh", 1, np.arctanh, _g_atanh, lambda a: _sp().atanh(a), "math.atanh({0})", "inverse hyperbolic tangent",
       domain=(UNIT,)),
    # error function, logarithms and powers of 2 and 10
    _O("erf", 1, _np_erf, _g_erf, lambda a: _sp().erf(a), "math.erf({0})", "error function"),
    _O("erfc", 1, _np_erfc, _g_erfc, lambda a: _sp().erfc(a), "math.erfc({0})",
       "1 - erf(a), exact where erf(a) is near 1"),
    _O("log2", 1, np.log2, _g_log2, lambda a: _sp().log(a, 2), "math.log2({0})", "base-2 logarithm",
       domain=(POSITIVE,)),
    _O("log10", 1, np.log10, _g_log10, lambda a: _sp().log(a, 10), "math.log10({0})", "base-10 logarithm",
       domain=(POSITIVE,)),
    _O("exp2", 1, np.exp2, _g_exp2, lambda a: 2**a, "(F(2.0) ** {0})", "2 ** a"),
    _O("hypot", 2, np.hypot, _g_hypot, lambda a, b: _sp().sqrt(a**2 + b**2), "math.hypot({0}, {1})",
       "sqrt(a*a + b*b) without overflow; gradient 0 at the origin", commutative=True,
       kink=_origin),
    _O("clip", 3, _np_clip, _g_clip, _sympy_clip, C_CLIP,
       "min(max(x, lo), hi) as numpy.clip; d/dx = 1 on [lo, hi], bounds included", prelude=C_MAX,
       kink=lambda x, lo, hi: (x == lo) | (x == hi) | (lo >= hi)),
    _O("gelu", 1, _np_gelu, _g_gelu, lambda a: a / 2 * (1 + _sp().erf(a / _sp().sqrt(2))), C_GELU,
       "x * Phi(x), the exact (erf) GELU; stable for large negative x"),
    _O("floor", 1, np.floor, _g_zero, lambda a: _sp().floor(a), "np.floor({0})",
       "largest integer <= a; derivative 0 (also at the jumps)", codes={"cuda": "math.floor({0})"},
       kink=_integer),
    _O("ceil", 1, np.ceil, _g_zero, lambda a: _sp().ceiling(a), "np.ceil({0})",
       "smallest integer >= a; derivative 0 (also at the jumps)", codes={"cuda": "math.ceil({0})"},
       kink=_integer),
    # NumPy's other elementwise functions (issue 26; numpy.fmax, ..., JAX's gradients)
    _O("fmax", 2, np.fmax, _g_fmax, lambda a, b: _sp().Max(a, b), C_FMAX,
       "larger of a, b ignoring a NaN (numpy.fmax); ties split the gradient", commutative=True, kink=_tie),
    _O("fmin", 2, np.fmin, _g_fmin, lambda a, b: _sp().Min(a, b), C_FMIN,
       "smaller of a, b ignoring a NaN (numpy.fmin); ties split the gradient", commutative=True, kink=_tie),
    _O("logaddexp2", 2, np.logaddexp2, _g_logaddexp2,
       lambda a, b: _sp().log(2**a + 2**b) / _sp().log(2), C_LOGADDEXP2,
       "log2(2**a + 2**b), never overflows (numpy.logaddexp2)", commutative=True),
    _O("reciprocal", 1, np.reciprocal, _g_reciprocal, lambda a: 1 / a, "(F(1.0) / {0})", "1 / a (numpy.reciprocal)",
       domain=(NONZERO,)),
    _O("sinc", 1, _np_sinc, _g_sinc, lambda a: _sp().sinc(_sp().pi * a), C_SINC,
       "sin(pi a) / (pi a), 1 at 0 (numpy.sinc, the normalised sinc)"),
    _O("deg2rad", 1, np.deg2rad, _g_deg2rad, lambda a: a * _sp().pi / 180, "({0} * F(0.017453292519943295))",
       "degrees to radians (numpy.deg2rad)"),
    _O("rad2deg", 1, np.rad2deg, _g_rad2deg, lambda a: a * 180 / _sp().pi, "({0} * F(57.29577951308232))",
       "radians to degrees (numpy.rad2deg)"),
    _O("mod", 2, np.mod, _g_mod, lambda a, b: a - b * _sp().floor(a / b), C_MOD,
       "a - floor(a / b) b, the sign of b (numpy.mod, a % b; compiled targets compute this formula, which can "
       "differ from NumPy's fmod-based value by rounding next to a jump); d/db = -floor(a/b) as JAX's",
       domain=(REAL, NONZERO), kink=_multiple, codes={"cuda": "({0} - math.floor({0} / {1}) * {1})"}),
    _O("floor_divide", 2, np.floor_divide, _g_zero, lambda a, b: _sp().floor(a / b), "np.floor({0} / {1})",
       "floor(a / b) (numpy.floor_divide, a // b; compiled targets floor the rounded quotient); derivative 0",
       domain=(REAL, NONZERO), kink=_multiple, codes={"cuda": "math.floor({0} / {1})"}),
    # Local-gradient ops: made by autodiff, not written by users.
    _O("dsigmoid", 1, _np_dsigmoid, _g_dsigmoid,
       lambda a: _sp().exp(-a) / (1 + _sp().exp(-a)) ** 2, C_DSIGMOID,
       "sigmoid'(a) = sigmoid(a)*sigmoid(-a), from one exp(-|a|)", internal=True,
       prelude=EXP_NEG_ABS),
    _O("dtanh", 1, _np_dtanh, _g_dtanh, lambda a: 1 - _sp().tanh(a) ** 2, C_DTANH,
       "tanh'(a) = 1 - tanh(a)**2, from one exp(-2|a|)", internal=True,
       prelude=EXP_NEG_2ABS),
    _O("dpow", 3, _np_dpow, _g_dpow, lambda a, b, n: b * a ** (b - 1), C_DPOW,
       "d/da a**b = b a**(b-1), given n = a**b: (b/a) n where a**(b-1) overflows or b - 1 rounds; "
       "0 where b = 0", internal=True, domain=(POSITIVE, REAL, POSITIVE),
       prelude=C_POW.format("{0}", "({1} - F(1.0))")),
    _O("step", 1, _np_step, _g_zero, lambda a: _sp().Heaviside(a, 0), C_STEP,
       "1 where a > 0 else 0 (relu')", internal=True),
    _O("cmpw", 2, _np_cmpw, _g_zero, lambda a, b: _sp().Heaviside(a - b, _sp().S.Half), C_CMPW,
       "1 where a > b, 1/2 where a == b, 0 where a < b (max/min')", internal=True),
]:
    register_op(_spec)
