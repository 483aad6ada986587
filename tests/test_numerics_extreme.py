"""Values and gradients at extreme points (issue 23, item 7): subnormal and huge
arguments, signed zeros, infinities and NaN. Every target is compared with the
exact value (mpmath at 4,000 bits, rounded to the dtype) within 1e-12 (float64)
or 2e-6 (float32) relative, or two subnormal steps, and with the exact sign,
inf and NaN; where the answer is a convention (the sign of a zero, NaN or inf
from pow, max, min), with NumPy's answer, bit for bit."""

import math

import mpmath as mp
import numpy as np
import pytest
from conftest import TARGETS_THREADS_SLOW

import graphc

DTYPES = ["float64", "float32"]
TOL = {"float64": 1e-12, "float32": 2e-6}
MAX64, MAX32 = float(np.finfo(np.float64).max), float(np.finfo(np.float32).max)
SUB64, SUB32 = 5e-324, float(np.finfo(np.float32).smallest_subnormal)
NAN, INF = math.nan, math.inf


def _round(v, dtype: str) -> float:
    """An mpmath (or float) value rounded to the dtype, keeping the sign of a zero."""
    if v is None:
        return None
    with np.errstate(over="ignore"):  # beyond float32's range: inf, as NumPy's cast
        return float(np.dtype(dtype).type(float(v)))


def _agrees(got, want: float, dtype: str) -> bool:
    got = float(got)
    if math.isnan(want):
        return math.isnan(got)
    if want == 0 or math.isinf(want):
        return got == want and math.copysign(1, got) == math.copysign(1, want)
    if not math.isfinite(got) or math.copysign(1, got) != math.copysign(1, want):
        return False
    sub = SUB64 if dtype == "float64" else SUB32
    return abs(got - want) <= TOL[dtype] * abs(want) + 2 * sub


def _run(fn, columns: dict, dtype: str):
    """(value, grads) per point, from one array call and from one call per point."""
    arrays = {k: np.array(v, dtype=dtype) for k, v in columns.items()}
    value, grads = fn(**arrays)
    n = len(next(iter(columns.values())))
    rows = [(value[i], {k: g[i] for k, g in grads.items()}) for i in range(n)]
    singles = []
    for i in range(n):
        v, g = fn(**{k: np.dtype(dtype).type(a[i]) for k, a in arrays.items()})
        singles.append((v, g))
    return rows, singles


def _check(fn, columns: dict, want: list[dict], dtype: str, target: str):
    """want[i]: {"f": value, "x": d/dx, ...}, None entries unchecked."""
    rows, singles = _run(fn, columns, dtype)
    bad = []
    for i, ref in enumerate(want):
        point = {k: v[i] for k, v in columns.items()}
        for how, (value, grads) in (("array", rows[i]), ("scalar", singles[i])):
            got = {"f": value, **grads}
            for name, w in ref.items():
                if w is not None and not _agrees(got[name], w, dtype):
                    bad.append(f"{target} {dtype} {how} {point} {name}: got {float(got[name])!r}, want {w!r}")
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------- x ** y


def _zero_pow(negative: bool, e_int, e_positive: bool) -> float:
    """(+-0.0) ** e by C's rules: e_int is e when e is an integer, else None."""
    mag = 0.0 if e_positive else INF
    return -mag if negative and e_int is not None and e_int % 2 else mag


def pow_exact(x: float, y: float) -> dict:
    """x**y, d/dx = y x**(y-1) and d/dy = x**y log(x), exactly (x, y finite), with
    graphc's conventions: d/dx = 0 where y = 0, d/dy = 0 at x = 0 (y > 0), NaN for
    x < 0 and a non-integer y, d/dy NaN for x < 0; (+-0)**e and its sign as in C."""
    yi = int(y) if y == int(y) else None
    if x == 0:
        neg = math.copysign(1, x) < 0
        if y == 0:
            return {"f": 1.0, "x": 0.0, "y": 0.0}
        dx = 1.0 if y == 1 else y * _zero_pow(neg, None if yi is None else yi - 1, y > 1)
        f = x if y == 0.5 else _zero_pow(neg, yi, y > 0)  # x**0.5 is sqrt(x): sqrt(-0.0) = -0.0
        return {"f": f, "x": dx, "y": f * 0.0 if y > 0 else None}  # x**y * 0, so -0.0 where x**y is
    with mp.workprec(4000):  # y - 1 exact for every float y
        X, Y = mp.mpf(x), mp.mpf(y)
        if y == 0:
            return {"f": 1.0, "x": 0.0, "y": float(mp.log(X)) if x > 0 else NAN}
        if x < 0:
            if yi is None:
                return {"f": NAN, "x": NAN, "y": NAN}
            return {"f": float(mp.power(X, yi)), "x": float(Y * mp.power(X, yi - 1)), "y": NAN}
        v = mp.power(X, Y)
        return {"f": float(v), "x": float(Y * mp.power(X, Y - 1)), "y": float(v * mp.log(X))}


# (x, y): where y*x**(y-1) overflows, underflows or rounds y - 1, zeros of both signs,
# x = 1, y = 0, 1, 2, negative x with integer y, and ordinary points that must stay exact
POW64 = [
    (SUB64, 1e-300),      # x**(y-1) = inf; exact 2.02e23
    (SUB64, -1e-300),     # -2.02e23
    (SUB64, 1e-17),       # 2.02e306
    (SUB64, 1.0), (SUB64, 2.0), (SUB64, 0.5),
    (-40.0, 1e300),       # y - 1 rounds to the even y: exact -inf, not +inf
    (-1.0, 1e300),        # -1e300, not +1e300
    (-1.0, 2.0**53 + 2),  # y - 1 = 2**53 + 1 (odd) rounds to 2**53
    (-0.5, 1e300),        # -0.0
    (-1e-10, 1e300),      # y/x overflows: y * (x**y / x) = -0.0
    (-40.0, 1e-300),      # non-integer y: NaN (y - 1 rounds to -1)
    (-40.0, 3.0), (-40.0, 2.0), (-2.0, -3.0), (-40.0, 1.0),
    (1.0, 1e300), (1.0, -1e300), (1.0, 0.0), (1.0, 2.0),
    (MAX64, 1.001),       # x**y = inf, x**(y-1) fine: 2.03
    (1e-300, 1.5), (1e-200, 3.0), (2.0, 1100.0), (0.5, 1100.0),
    (2.5e-206, -0.5),     # x**(y-1) = 2.5e308 overflows, y*x**(y-1) = -1.26e308 does not
    (0.0, 2.0), (0.0, 1.0), (0.0, 0.5), (0.0, 0.0), (0.0, 3.0), (0.0, 1e-300),
    (-0.0, 2.0), (-0.0, 3.0), (-0.0, 0.5), (-0.0, 1e-300), (-0.0, 1e300), (-0.0, 1.0),
    (3.0, 2.0), (0.3, -1.7), (2.5, 0.5), (7.0, 0.0), (10.0, -3.0),
]
POW32 = [
    (SUB32, 1e-30),       # x**(y-1) = inf in float32; exact 7.1e14
    (SUB32, -1e-30), (SUB32, 1.0), (SUB32, 2.0),
    (-40.0, 1e30),        # -inf
    (-1.0, 2.0**24 + 2),  # -16777218
    (-1.0, 1e30),
    (-0.5, 1e30), (-1e-10, 1e30),
    (-40.0, 3.0), (-40.0, 2.0), (-2.0, -3.0),
    (1.0, 1e30), (1.0, 0.0),
    (3e38, 1.01),
    (1.59e-26, -0.5),     # x**(y-1) = 5e38 overflows, y*x**(y-1) = -2.5e38 does not
    (0.0, 2.0), (0.0, 1.0), (0.0, 0.5), (0.0, 0.0), (-0.0, 2.0), (-0.0, 3.0), (-0.0, 1e-30),
    (3.0, 2.0), (2.5, 0.5), (0.3, -1.7),
]
# infinite arguments: the limits, with C's signs (-inf)**odd = -inf
POW_INF = [
    (INF, 2.0, {"f": INF, "x": INF}), (-INF, 2.0, {"f": INF, "x": -INF}), (-INF, 3.0, {"f": -INF, "x": INF}),
    (INF, 0.5, {"f": INF, "x": 0.0}), (-INF, 1e30, {"f": INF, "x": -INF}), (-INF, 1e-30, {"f": INF, "x": 0.0}),
    (INF, 0.0, {"f": 1.0, "x": 0.0}), (NAN, 0.0, {"f": 1.0, "x": 0.0}), (2.0, NAN, {"f": NAN, "x": NAN}),
]


def _pow_table(dtype: str):
    pts = POW64 if dtype == "float64" else POW32
    pts = [(_round(x, dtype), _round(y, dtype)) for x, y in pts]
    want = [{k: _round(v, dtype) for k, v in pow_exact(x, y).items()} for x, y in pts]
    pts += [(x, y) for x, y, _ in POW_INF]
    want += [w for _, _, w in POW_INF]
    return pts, want


@pytest.mark.parametrize("target", TARGETS_THREADS_SLOW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_value_and_gradients_at_extremes(dtype, target):
    pts, want = _pow_table(dtype)
    fn = graphc.compile("x**y", target=target, dtype=dtype)
    _check(fn, {"x": [p[0] for p in pts], "y": [p[1] for p in pts]}, want, dtype, target)


@pytest.mark.parametrize("target", TARGETS_THREADS_SLOW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_values_agree_with_numpy(dtype, target):
    # NumPy's answer, including the sign of zeros and where pow and sqrt differ
    pts, _ = _pow_table(dtype)
    dt = np.dtype(dtype).type
    x = np.array([p[0] for p in pts] + [-INF, -0.0, -1.0, -INF], dtype=dtype)
    y = np.array([p[1] for p in pts] + [0.5, 0.5, 0.5, 0.25], dtype=dtype)
    with np.errstate(all="ignore"):
        want = np.array([np.power(np.array([a]), dt(b))[0] for a, b in zip(x, y)], dtype=dtype)
    value, _ = graphc.compile("x**y", target=target, dtype=dtype)(x, y)
    num = ~np.isnan(want)  # the sign of a NaN is no convention
    np.testing.assert_array_equal(np.signbit(value[num]), np.signbit(want[num]), err_msg=f"{target}: {x} {y}")
    assert all(_agrees(g, float(w), dtype) for g, w in zip(value, want)), (target, value, want)


@pytest.mark.parametrize("target", TARGETS_THREADS_SLOW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_half_power_is_numpy_sqrt(dtype, target):
    # np.power(-inf, 0.5) is nan (C's pow: +inf) and np.power(-0.0, 0.5) is -0.0: a constant
    # exponent, a variable one (scalar or array) and sqrt all agree with NumPy
    x = np.array([-INF, -0.0, -1.0, 0.0, 4.0, INF, SUB64 if dtype == "float64" else SUB32], dtype=dtype)
    with np.errstate(all="ignore"):
        want = np.power(x, np.dtype(dtype).type(0.5))
    assert np.isnan(want[0]) and np.signbit(want[1])  # NumPy's convention, as documented
    half = np.full_like(x, 0.5)
    for fn, args in ((graphc.compile("x**0.5", target=target, dtype=dtype), (x,)),
                     (graphc.compile("x**y", target=target, dtype=dtype), (x, half)),
                     (graphc.compile("x**y", target=target, dtype=dtype), (x, 0.5)),
                     (graphc.compile("sqrt(x)", target=target, dtype=dtype), (x,))):
        value, _ = fn(*args)
        num = ~np.isnan(want)
        np.testing.assert_array_equal(np.isnan(value), ~num)
        np.testing.assert_array_equal(np.signbit(value[num]), np.signbit(want[num]))
        np.testing.assert_allclose(value, want, rtol=TOL[dtype])
        assert [float(fn(*(np.dtype(dtype).type(a[i]) if np.ndim(a) else a for a in args))[0])
                for i in range(2)] == pytest.approx([NAN, -0.0], nan_ok=True)


# constant exponents: b*x**(b-1) where it is safe, dpow where it is not
CONST = {
    "float64": ("a**1e-300 + b**1e300 + c**-0.5 + d**3 + h**0.5",
                {"a": [SUB64, 1.0, 2.0], "b": [-40.0, -1.0, 2.0], "c": [2.5e-206, 4.0, SUB64],
                 "d": [-0.0, 1e200, -2.0], "h": [SUB64, 4.0, 0.0]}),
    "float32": ("a**1e-30 + b**1e30 + c**-0.5 + d**3 + h**0.5",
                {"a": [SUB32, 1.0, 2.0], "b": [-40.0, -1.0, 2.0], "c": [1.59e-26, 4.0, SUB32],
                 "d": [-0.0, 1e20, -2.0], "h": [SUB32, 4.0, 0.0]}),
}


@pytest.mark.parametrize("target", TARGETS_THREADS_SLOW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_exponent_gradients_at_extremes(dtype, target):
    formula, cols = CONST[dtype]
    exps = dict(zip("abcdh", (1e-300, 1e300, -0.5, 3.0, 0.5) if dtype == "float64" else (1e-30, 1e30, -0.5, 3.0, 0.5)))
    cols = {k: [_round(v, dtype) for v in vs] for k, vs in cols.items()}
    want = [{k: _round(pow_exact(cols[k][i], _round(exps[k], dtype))["x"], dtype) for k in cols} for i in range(3)]
    _check(graphc.compile(formula, target=target, dtype=dtype), cols, want, dtype, target)


@pytest.mark.parametrize("target", TARGETS_THREADS_SLOW)
def test_pow_headline_points(target):
    # the points of the issue, and ordinary ones that must stay exact
    fn = graphc.compile("x**y", target=target)
    assert fn(5e-324, 1e-300)[1]["x"] == pytest.approx(2.0240225330731e23, rel=1e-12)  # was inf
    assert fn(-40.0, 1e300)[1]["x"] == -INF  # was +inf
    assert fn(-1.0, 1e300)[1]["x"] == -1e300
    for (x, y), d in {(0.0, 2.0): 0.0, (0.0, 1.0): 1.0, (0.0, 0.0): 0.0, (3.0, 2.0): 6.0, (-40.0, 2.0): -80.0,
                      (-2.0, -3.0): -0.1875, (5e-324, 2.0): 1e-323, (-1e-300, 2.0): -2e-300}.items():
        got = fn(x, y)[1]["x"]
        assert got == d and math.copysign(1, got) == math.copysign(1, d), (x, y, got, d)
    assert math.isnan(graphc.compile("x**0.5", target=target)(-INF)[0])  # was +inf on llvm and cpu
    _, g = graphc.compile("log10(x)", target=target, dtype="float32")(np.float32(3e38))
    assert g["x"] == pytest.approx(1.4476478e-39, rel=1e-5)  # was 0


# ------------------------------------------------------------ max, min, clip, relu

_NNAN = -np.float64(NAN)
PAIRS = [(0.0, -0.0), (-0.0, 0.0), (-0.0, -0.0), (NAN, 1.0), (1.0, NAN), (NAN, _NNAN), (_NNAN, NAN), (_NNAN, 1.0),
         (1.0, _NNAN), (-INF, INF), (INF, NAN), (1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (-5e-324, 5e-324)]


def _bits(a, dtype):
    return np.asarray(a, dtype=dtype).view(np.uint64 if dtype == "float64" else np.uint32)


@pytest.mark.parametrize("target", TARGETS_THREADS_SLOW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_min_are_numpy_bit_for_bit(dtype, target):
    # np.maximum(0.0, -0.0) = -0.0 (the second argument at a tie), the first NaN if any
    a = np.array([p[0] for p in PAIRS], dtype=dtype)
    b = np.array([p[1] for p in PAIRS], dtype=dtype)
    assert np.signbit(np.maximum(a, b)[0]) and not np.signbit(np.maximum(a, b)[1])
    for formula, ref in (("max(x, y)", np.maximum), ("min(x, y)", np.minimum)):
        fn = graphc.compile(formula, target=target, dtype=dtype)
        value, grads = fn(a, b)
        np.testing.assert_array_equal(_bits(value, dtype), _bits(ref(a, b), dtype), err_msg=f"{formula} {target}")
        for i in range(len(PAIRS)):
            v, _ = fn(a[i], b[i])
            assert _bits(v, dtype) == _bits(ref(a[i], b[i]), dtype), (formula, target, PAIRS[i], v)
        ties = a == b
        np.testing.assert_array_equal(grads["x"][ties], 0.5)  # ties split the gradient
        np.testing.assert_array_equal(grads["y"][ties], 0.5)
        nans = np.isnan(a) | np.isnan(b)
        assert np.isnan(grads["x"][nans]).all() and np.isnan(grads["y"][nans]).all()
    x = np.array([-0.0, 0.0, NAN, -1.0, 2.0, _NNAN], dtype=dtype)
    value, _ = graphc.compile("relu(x)", target=target, dtype=dtype)(x)
    np.testing.assert_array_equal(_bits(value, dtype), _bits(np.maximum(x, np.zeros_like(x)), dtype))
    lo = np.array([0.0, -0.0, 0.0, -0.0, NAN, 0.0], dtype=dtype)
    hi = np.array([0.0, 0.0, -0.0, 1.0, 3.0, -0.0], dtype=dtype)
    value, _ = graphc.compile("clip(x, lo, hi)", target=target, dtype=dtype)(x, lo, hi)
    np.testing.assert_array_equal(_bits(value, dtype), _bits(np.minimum(np.maximum(x, lo), hi), dtype))


# --------------------------------------------- derivatives that must not overflow


def _unary_table(dtype):
    big = MAX64 if dtype == "float64" else MAX32
    sub = SUB64 if dtype == "float64" else SUB32
    atan_pts = [1e155, -1e155, 1e160, 1.34e154, 1e300, 1.0, 0.0, -1.0, INF, 3.0] if dtype == "float64" else \
        [2e19, -2e19, 1e20, 1.85e19, 1e30, 1.0, 0.0, -1.0, INF, 3.0]
    cols = {"a": [big, 3e38, 1e300 if dtype == "float64" else 1e30, 1.0, sub, 10.0, 7.0, 2.0, 5.0, 1e-10],
            "b": [big, 3e38, 1.0, sub, 8.0, 0.5, 1e10, 2.0, 1.0, 3.0],
            "c": atan_pts}
    cols = {k: [_round(v, dtype) for v in vs] for k, vs in cols.items()}
    with mp.workprec(400):
        ln2, ln10 = mp.log(2), mp.log(10)
        want = [{"a": _round(1 / (mp.mpf(a) * ln10), dtype), "b": _round(1 / (mp.mpf(b) * ln2), dtype),
                 "c": 0.0 if math.isinf(c) else _round(1 / (1 + mp.mpf(c) ** 2), dtype)}
                for a, b, c in zip(cols["a"], cols["b"], cols["c"])]
    return cols, want


@pytest.mark.parametrize("target", TARGETS_THREADS_SLOW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_and_atan_gradients_do_not_overflow(dtype, target):
    # log10'(3e38) in float32 is 1.45e-39 (x ln 10 overflowed: 0); atan'(1e155) 1e-310 (x*x overflowed)
    cols, want = _unary_table(dtype)
    fn = graphc.compile("log10(a) + log2(b) + atan(c)", target=target, dtype=dtype)
    _check(fn, cols, want, dtype, target)
    _, g = fn(np.ones(1, dtype), np.ones(1, dtype), np.ones(1, dtype))
    assert g["c"][0] == 0.5  # the ordinary range keeps 1/(1 + x*x)


def _binary_table(dtype):
    big = MAX64 if dtype == "float64" else MAX32
    sub = SUB64 if dtype == "float64" else SUB32
    pairs = [(big, big), (-big, big), (big, -0.5 * big), (3.0, 4.0), (sub, sub), (1.0, 0.0), (-2.0, 1e-3),
             (1e300 if dtype == "float64" else 1e30, 1.0), (0.0, 0.0)]
    pairs = [(_round(p, dtype), _round(q, dtype)) for p, q in pairs]
    want = []
    with mp.workprec(400):
        for p, q in pairs:
            P, Q = mp.mpf(p), mp.mpf(q)
            if p == 0 and q == 0:  # atan2: NaN at the origin, hypot: 0
                want.append({"a": NAN, "b": NAN, "c": 0.0, "d": 0.0})
                continue
            r2 = P * P + Q * Q
            want.append({"a": _round(Q / r2, dtype), "b": _round(-P / r2, dtype),
                         "c": _round(P / mp.sqrt(r2), dtype), "d": _round(Q / mp.sqrt(r2), dtype)})
    cols = {"a": [p for p, _ in pairs], "b": [q for _, q in pairs], "c": [p for p, _ in pairs],
            "d": [q for _, q in pairs]}
    return cols, want


@pytest.mark.parametrize("target", TARGETS_THREADS_SLOW)
@pytest.mark.parametrize("dtype", DTYPES)
def test_atan2_and_hypot_gradients_where_hypot_overflows(dtype, target):
    # hypot'(max, max) = 0.707 (a/hypot = a/inf gave 0); atan2's b/(a^2+b^2) = 2.8e-309 (gave 0)
    cols, want = _binary_table(dtype)
    fn = graphc.compile("atan2(a, b) + hypot(c, d)", target=target, dtype=dtype)
    _check(fn, cols, want, dtype, target)
    if dtype == "float64":  # the ordinary range stays exact
        _, g = fn(3.0, 4.0, 3.0, 4.0)
        assert (float(g["c"]), float(g["d"])) == (0.6, 0.8)
