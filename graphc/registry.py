"""The op registry: the one place an op lives, open at any time.

An `OpSpec` holds everything about an op -- arity, NumPy evaluation,
derivative rule (which builds IR nodes), SymPy form, per-element code
template(s), domain of each argument -- and `register_op` adds one. Every
other part of graphc (the IR builder and verifier, the formula parser, the
SymPy importer, the checker's sampling, the backends, the fuzzer) reads the
registry when it runs, never a copy made at import, so an op registered after
graphs exist is usable everywhere at once.

This module imports nothing else of graphc's but its errors: the IR and the
built-in ops (`ops.py`) both build on it.
"""

from __future__ import annotations

import keyword
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import IRError

_OP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # what the IR text format accepts as an op name


@dataclass(frozen=True)
class Domain:
    """Where an op's argument is defined: the open interval (lo, hi) minus
    `excluded` points. It is data, so the checker samples it, the fuzzer keeps
    random arguments inside it (`wrap`) and tests pick points in it, with no
    table of domain names anywhere else."""

    name: str
    lo: float = -math.inf
    hi: float = math.inf
    excluded: tuple[float, ...] = ()
    wrap: str = "{}"  # formula text taking any real `{}` into the domain (used by the fuzzer)
    included: tuple[float, ...] = ()  # bounds that belong to it (x**y is defined at x = 0)

    def __contains__(self, v: float) -> bool:
        return (self.lo < v < self.hi or v in self.included) and v not in self.excluded

    @property
    def empty(self) -> bool:
        return not self.lo < self.hi

    def intersect(self, other: Domain) -> Domain:
        if other == REAL or self == other:
            return self
        if self == REAL:
            return other
        names = sorted({self.name, other.name})
        both = tuple(p for p in sorted(set(self.included) | set(other.included)) if p in self and p in other)
        return Domain(" & ".join(names), max(self.lo, other.lo), min(self.hi, other.hi),
                      tuple(sorted(set(self.excluded) | set(other.excluded))), included=both)

    def take(self, v: float, rng: Any) -> float:
        """Map a real v into the domain: kept if inside, reflected at a
        half-open bound, drawn uniformly inside a bounded interval."""
        if v in self or self.empty:
            return v
        lo, hi = self.lo, self.hi
        if math.isfinite(lo) and math.isfinite(hi):
            v = lo + (hi - lo) * float(rng.uniform(0.001, 0.999))
        elif math.isfinite(lo) and v <= lo:
            v = 2 * lo - v if v < lo else lo + 1e-3
        elif math.isfinite(hi) and v >= hi:
            v = 2 * hi - v if v > hi else hi - 1e-3
        while v in self.excluded:
            v += 1.0
        return v

    def edges(self) -> list[float]:
        """Points just inside each finite bound, where derivatives are steepest."""
        out = []
        for b, sgn in ((self.lo, 1.0), (self.hi, -1.0)):
            if math.isfinite(b):
                out.append(b + sgn * 1e-8 * max(1.0, abs(b)))
        return out

    def examples(self) -> list[float]:
        """Three fixed interior points, for facet tests."""
        rng = random.Random(7)
        return [self.take(v, rng) for v in (0.3, -1.7, 2.2)]


REAL = Domain("real")
POSITIVE = Domain("positive", lo=0.0, wrap="(abs({}) + 0.5)")
NONZERO = Domain("nonzero", excluded=(0.0,), wrap="(abs({}) + 0.5)")
GT_MINUS_1 = Domain("> -1", lo=-1.0, wrap="abs({})")
GT_1 = Domain("> 1", lo=1.0, wrap="(abs({}) + 1.5)")
UNIT = Domain("(-1, 1)", lo=-1.0, hi=1.0, wrap="(0.875 * tanh({}))")
HALF_PI = Domain("(-pi/2, pi/2)", lo=-math.pi / 2, hi=math.pi / 2, wrap="tanh({})")

GradRule = Callable[..., tuple[Any, ...]]  # (node, upstream gradient) -> one contribution per argument


@dataclass(frozen=True)
class OpSpec:
    """One op, every facet.

    `code` is a Python expression template over `{0}`, `{1}`, ... (and `{p}`,
    the prelude's value); literals are written `F(1.0)` so float32 kernels stay
    float32. Templates are plain expressions -- no helper functions -- so one
    text serves the CPU and CUDA backends; `codes` overrides it for one backend
    (e.g. {"cuda": "math.floor({0})"}). `grad(node, g)` returns one IR node (or
    None for zero) per argument. `domain_rule(args)` may narrow `domain` from the
    actual argument nodes (x**3 takes any real base)."""

    name: str
    arity: int
    numpy: Callable[..., Any]
    grad: GradRule
    sympy: Callable[..., Any]
    code: str
    doc: str
    commutative: bool = False
    domain: tuple[Domain, ...] = ()
    domain_rule: Callable[[tuple[Any, ...]], tuple[Domain, ...]] | None = None
    prelude: str = ""  # an expression shared by several ops, computed once per element ({p})
    codes: Mapping[str, str] = field(default_factory=dict)
    internal: bool = False  # made by autodiff only: not accepted, suggested or listed for users
    # NumPy predicate over the arguments: True where the op has a kink or jump (relu at 0, a
    # max tie); there its derivative is graphc's documented convention (the checker says so)
    kink: Callable[..., Any] | None = None
    operator: str = ""  # written as an operator ("+"), not called by name
    # Tensor facets. `infer(op, args, attrs) -> (attrs, Type)` checks argument types and
    # shapes (ShapeError) and normalises attributes (axis=-1 -> (1,)); None means
    # elementwise over floats with NumPy broadcasting. `symbolic(*object_arrays,
    # **attrs)` is the SymPy form over arrays of expressions (None: `sympy` applied
    # per element). An op whose `code` is "" has no per-element form: the Numba
    # backends refuse graphs that use it.
    infer: Callable[..., Any] | None = None
    symbolic: Callable[..., Any] | None = None
    keywords: tuple[str, ...] = ()  # keyword arguments a formula may pass (axis=, keepdims=)

    @property
    def per_element(self) -> bool:
        """Has a per-element code template (elementwise float ops, comparisons,
        where): the Numba and CUDA kernels compute it inside their loops."""
        return bool(self.code)

    @property
    def pointwise(self) -> bool:
        """A float function of float scalars with a per-element code template: usable
        in pointwise formulas on every target, by the fuzzer and the SymPy importer."""
        return self.infer is None and bool(self.code)

    def code_for(self, backend: str) -> str:
        return self.codes.get(backend, self.code)

    def arg_domains(self, args: tuple[Any, ...]) -> tuple[Domain, ...]:
        return self.domain_rule(args) if self.domain_rule is not None else self.domain

    @property
    def callable(self) -> bool:
        """Written `name(...)` in formulas."""
        return not self.internal and not self.operator


_REGISTRY: dict[str, OpSpec] = {}
REGISTRY: Mapping[str, OpSpec] = MappingProxyType(_REGISTRY)  # read-only live view
_version = [0]


def version() -> int:
    """Bumped by every registration: derived tables (SymPy import) rebuild on change."""
    return _version[0]


def _check(spec: OpSpec) -> None:
    where = f"op {spec.name!r}"
    if not isinstance(spec.name, str) or not _OP_NAME.match(spec.name) or keyword.iskeyword(spec.name):
        raise IRError(f"{where}: an op name is lowercase letters, digits and '_', starting with a letter")
    if spec.name in ("pi", "e", "input", "const", "graph", "return"):
        raise IRError(f"{where}: the name is reserved")
    if not isinstance(spec.arity, int) or spec.arity < 1:
        raise IRError(f"{where}: arity must be a positive integer")
    for facet in ("numpy", "grad", "sympy" if spec.symbolic is None else "symbolic"):
        if not callable(getattr(spec, facet)):
            raise IRError(f"{where}: the {facet} facet must be callable")
    if spec.kink is not None and not callable(spec.kink):
        raise IRError(f"{where}: the kink facet must be callable (a NumPy predicate over the arguments)")
    if not spec.doc:
        raise IRError(f"{where}: needs a one-line doc (it is shown to users)")
    if len(spec.domain) != spec.arity or not all(isinstance(d, Domain) for d in spec.domain):
        raise IRError(f"{where}: domain needs one Domain per argument")
    names = [f"a{i}" for i in range(spec.arity)]
    if spec.infer is not None and not callable(spec.infer):
        raise IRError(f"{where}: the infer facet must be callable")
    templates = {"": spec.code, **spec.codes} if spec.code or spec.codes else {}
    for backend, template in templates.items():
        try:
            text = template.format(*names, p="p")
            compile(text, spec.name, "eval")
        except (IndexError, KeyError, SyntaxError, ValueError) as exc:
            raise IRError(f"{where}: code template{' for ' + backend if backend else ''} is not an "
                          f"expression over {{0}}..{{{spec.arity - 1}}}: {exc}") from None
    if ("{p}" in spec.code) != bool(spec.prelude):
        raise IRError(f"{where}: a template uses {{p}} exactly when the op has a prelude")


def register_op(spec: OpSpec, replace: bool = False) -> OpSpec:
    """Add an op to the registry; usable at once by every part of graphc.
    `replace=True` swaps an existing entry (to try another derivative rule, say).

    Raises IRError for a malformed spec or a name already taken."""
    if not spec.domain:
        object.__setattr__(spec, "domain", (REAL,) * spec.arity)
    _check(spec)
    if spec.name in _REGISTRY and not replace:
        raise IRError(f"op {spec.name!r} is already registered (replace=True swaps it)")
    _REGISTRY[spec.name] = spec
    _version[0] += 1
    return spec


def unregister_op(name: str) -> None:
    """Remove an op (for tests and interactive experiments). Graphs that use it
    stop verifying; kernels already compiled keep working."""
    if _REGISTRY.pop(name, None) is None:
        raise IRError(f"unknown op {name!r}")
    _version[0] += 1


def get(name: str) -> OpSpec:
    spec = _REGISTRY.get(name)
    if spec is None:
        raise IRError(f"unknown op {name!r}")
    return spec


def user_function(name: str) -> OpSpec | None:
    """The op a formula's `name(...)` calls, or None."""
    spec = _REGISTRY.get(name)
    return spec if spec is not None and spec.callable else None


def pointwise_functions() -> list[OpSpec]:
    """The functions of scalars (no tensor ops, masks or labels), sorted by name:
    what the fuzzer draws from and SymPy imports to."""
    return [s for s in user_functions() if s.pointwise]


def user_functions() -> list[OpSpec]:
    """Every function a formula may call, sorted by name."""
    return sorted((s for s in _REGISTRY.values() if s.callable), key=lambda s: s.name)
