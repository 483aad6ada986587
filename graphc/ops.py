"""The op registry: everything about an op in one entry.

Each `OpSpec` holds the op's arity, NumPy evaluation, derivative rule (which
builds IR nodes), SymPy form, scalar code template, printed name and flags.
`tests/test_ops.py` walks the registry and fails when an op lacks a facet.

Numerical conventions (see README "Numerical semantics"):
- relu'(0) = 0, abs'(0) = sign(0) = 0, max/min ties split the gradient 1/2, 1/2.
- sigmoid, softplus, logaddexp and tanh use forms that never overflow, and
  their local gradients (`dsigmoid`, `dtanh`) are computed from exp(-|x|),
  never as s*(1-s) or 1-t*t, which lose all precision where s or t round to 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .ir import Node, const, make

GradRule = Callable[[Node, Node], tuple[Node | None, ...]]


@dataclass(frozen=True)
class OpSpec:
    """One op. `code` is a Python expression template over `{0}`, `{1}` (and
    `{p}`, the prelude's value); literals are written `F(1.0)` so float32
    kernels stay float32. Templates are plain expressions -- no helper
    functions -- so the same text compiles for the CPU and for CUDA."""

    name: str
    arity: int
    numpy: Callable[..., np.ndarray]
    grad: GradRule
    sympy: Callable[..., object]
    code: str
    doc: str
    commutative: bool = False
    domain: tuple[str, ...] = ()  # per argument: "real", "positive", "nonzero", "gt-1", "tan"
    # An expression of the arguments that several ops share, computed once per
    # element by the backends and passed to `code` as {p}: sigmoid, its
    # derivative and softplus all start from exp(-|x|).
    prelude: str = ""
    internal: bool = False  # produced by autodiff, not meant to be written by users
    nonsmooth: bool = False  # derivative is zero almost everywhere (kinks/steps)
    printed: str = field(default="")

    @property
    def printed_name(self) -> str:
        return self.printed or self.name


REGISTRY: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"op {spec.name!r} registered twice")
    if not spec.domain:
        object.__setattr__(spec, "domain", ("real",) * spec.arity)
    REGISTRY[spec.name] = spec
    return spec


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


def _np_relu(x):
    return np.where(x > 0, x, np.where(x <= 0, np.zeros_like(x), x))


def _np_step(x):
    return np.heaviside(x, np.zeros_like(x))


def _np_cmpw(a, b):
    half = np.asarray(0.5, dtype=np.result_type(a, b))
    return np.where(a > b, half * 2, np.where(a < b, half * 0, np.where(a == b, half, half * np.nan)))


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


def _g_pow(n, g):
    a, b = n.args
    if b.is_const:
        bm1 = _c(b.value - 1.0, b)
        da = make("mul", g, make("mul", b, make("pow", a, bm1)))
        return da, None
    da = make("mul", g, make("mul", b, make("pow", a, make("sub", b, _c(1.0, b)))))
    db = make("mul", g, make("mul", n, make("log", a)))
    return da, db


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


def _g_zero(n, g):
    return (None,) * len(n.args)


# ------------------------------------------------------------------- registry

EXP_NEG_ABS = "math.exp(-abs({0}))"
EXP_NEG_2ABS = "math.exp(F(-2.0) * abs({0}))"
C_SIGMOID = "(F(1.0) / (F(1.0) + {p}) if {0} >= F(0.0) else {p} / (F(1.0) + {p}))"
C_SOFTPLUS = "({0} if {0} != {0} else max({0}, F(0.0)) + math.log1p({p}))"
C_RELU = "({0} if {0} > F(0.0) else (F(0.0) if {0} <= F(0.0) else {0}))"
C_MAX = "(({0} + {1}) if ({0} != {0} or {1} != {1}) else ({0} if {0} >= {1} else {1}))"
C_MIN = "(({0} + {1}) if ({0} != {0} or {1} != {1}) else ({0} if {0} <= {1} else {1}))"
C_LOGADDEXP = ("({0} + F(0.6931471805599453) if {0} == {1} else "
               "({0} if {0} > {1} else {1}) + math.log1p(math.exp(-abs({0} - {1}))))")
C_DSIGMOID = "({p} / ((F(1.0) + {p}) * (F(1.0) + {p})))"
C_DTANH = "(F(4.0) * {p} / ((F(1.0) + {p}) * (F(1.0) + {p})))"
C_SIGN = "(F(1.0) if {0} > F(0.0) else (F(-1.0) if {0} < F(0.0) else (F(0.0) if {0} == F(0.0) else {0})))"
C_STEP = "(F(1.0) if {0} > F(0.0) else (F(0.0) if {0} <= F(0.0) else {0}))"
C_CMPW = "(F(1.0) if {0} > {1} else (F(0.0) if {0} < {1} else (F(0.5) if {0} == {1} else {0} + {1})))"

_O = OpSpec
for _spec in [
    _O("add", 2, np.add, _g_add, lambda a, b: a + b, "({0} + {1})", "a + b", commutative=True),
    _O("sub", 2, np.subtract, _g_sub, lambda a, b: a - b, "({0} - {1})", "a - b"),
    _O("mul", 2, np.multiply, _g_mul, lambda a, b: a * b, "({0} * {1})", "a * b", commutative=True),
    _O("div", 2, np.divide, _g_div, lambda a, b: a / b, "({0} / {1})", "a / b", domain=("real", "nonzero")),
    _O("neg", 1, np.negative, _g_neg, lambda a: -a, "(-{0})", "-a"),
    _O("pow", 2, np.power, _g_pow, lambda a, b: a**b, "({0} ** {1})", "a ** b",
       domain=("positive", "real")),
    _O("exp", 1, np.exp, _g_exp, lambda a: _sp().exp(a), "math.exp({0})", "e ** a"),
    _O("log", 1, np.log, _g_log, lambda a: _sp().log(a), "math.log({0})", "natural logarithm",
       domain=("positive",)),
    _O("sqrt", 1, np.sqrt, _g_sqrt, lambda a: _sp().sqrt(a), "math.sqrt({0})", "square root",
       domain=("positive",)),
    _O("sin", 1, np.sin, _g_sin, lambda a: _sp().sin(a), "math.sin({0})", "sine"),
    _O("cos", 1, np.cos, _g_cos, lambda a: _sp().cos(a), "math.cos({0})", "cosine"),
    _O("tan", 1, np.tan, _g_tan, lambda a: _sp().tan(a), "math.tan({0})", "tangent", domain=("tan",)),
    _O("tanh", 1, np.tanh, _g_tanh, lambda a: _sp().tanh(a), "math.tanh({0})", "hyperbolic tangent"),
    _O("sigmoid", 1, _np_sigmoid, _g_sigmoid, lambda a: 1 / (1 + _sp().exp(-a)), C_SIGMOID,
       "1 / (1 + exp(-a)), stable for any a", prelude=EXP_NEG_ABS),
    _O("softplus", 1, _np_softplus, _g_softplus, lambda a: _sp().log(1 + _sp().exp(a)), C_SOFTPLUS,
       "log(1 + exp(a)), never overflows", prelude=EXP_NEG_ABS),
    _O("relu", 1, _np_relu, _g_relu, lambda a: _sp().Max(0, a), C_RELU,
       "max(a, 0); relu'(0) = 0", nonsmooth=True),
    _O("abs", 1, np.abs, _g_abs, lambda a: _sp().Abs(a), "abs({0})", "|a|; abs'(0) = 0", nonsmooth=True),
    _O("max", 2, np.maximum, _g_max, lambda a, b: _sp().Max(a, b), C_MAX,
       "larger of a, b (NaN propagates); ties split the gradient", commutative=True, nonsmooth=True),
    _O("min", 2, np.minimum, _g_min, lambda a, b: _sp().Min(a, b), C_MIN,
       "smaller of a, b (NaN propagates); ties split the gradient", commutative=True, nonsmooth=True),
    _O("log1p", 1, np.log1p, _g_log1p, lambda a: _sp().log(1 + a), "math.log1p({0})", "log(1 + a), exact near 0",
       domain=("gt-1",)),
    _O("expm1", 1, np.expm1, _g_expm1, lambda a: _sp().exp(a) - 1, "math.expm1({0})", "exp(a) - 1, exact near 0"),
    _O("logaddexp", 2, np.logaddexp, _g_logaddexp, lambda a, b: _sp().log(_sp().exp(a) + _sp().exp(b)),
       C_LOGADDEXP, "log(exp(a) + exp(b)), never overflows", commutative=True),
    # Local-gradient ops: produced by autodiff; users may write them too.
    _O("dsigmoid", 1, _np_dsigmoid, _g_dsigmoid,
       lambda a: _sp().exp(-a) / (1 + _sp().exp(-a)) ** 2, C_DSIGMOID,
       "sigmoid'(a) = sigmoid(a)*sigmoid(-a), from one exp(-|a|)", internal=True,
       prelude=EXP_NEG_ABS),
    _O("dtanh", 1, _np_dtanh, _g_dtanh, lambda a: 1 - _sp().tanh(a) ** 2, C_DTANH,
       "tanh'(a) = 1 - tanh(a)**2, from one exp(-2|a|)", internal=True,
       prelude=EXP_NEG_2ABS),
    _O("sign", 1, np.sign, _g_zero, lambda a: _sp().sign(a), C_SIGN, "-1, 0 or 1 (abs')", internal=True, nonsmooth=True),
    _O("step", 1, _np_step, _g_zero, lambda a: _sp().Heaviside(a, 0), C_STEP,
       "1 where a > 0 else 0 (relu')", internal=True, nonsmooth=True),
    _O("cmpw", 2, _np_cmpw, _g_zero, lambda a, b: _sp().Heaviside(a - b, _sp().S.Half), C_CMPW,
       "1 where a > b, 1/2 where a == b, 0 where a < b (max/min')",
       internal=True, nonsmooth=True),
]:
    register(_spec)

# User-facing functions of the formula language: name -> op. pow(a, b) is `**`.
FUNCTIONS: dict[str, str] = {
    name: name
    for name, spec in REGISTRY.items()
    if spec.name not in ("add", "sub", "mul", "div", "neg")
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
