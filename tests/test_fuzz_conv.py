"""Property tests of graphc.nn's conv2d, max_pool2d and avg_pool2d (issue 27): random shapes,
kernels, stride, padding ('same' and 'valid' too), dilation, groups and bias, run eagerly and
through graphc.value_and_grad. The value against the hand-written NumPy reference of
test_conv.py (explicit loops over output pixels), the gradient against central differences of
that reference along random directions, and on a sample of tiny cases against SymPy's exact
derivatives element by element. The quick sweep runs on the numpy and default targets; the long
one (-m slow) on every tensor target (GRAPHC_CONV_FUZZ_EXAMPLES cases, default 200; 20 for the
Numba targets, which compile per case).

A deliberately broken unfold VJP (the kernel's entries read back in reverse: right only for a
one-entry kernel) is caught and shrunk to a conv2d with a two-entry kernel on a tiny image.
"""

import dataclasses
import math
import os
import zlib

import numpy as np
import pytest
from conftest import TENSOR_TARGETS, fuzz, tiers
from hypothesis import assume, find, given, settings
from hypothesis import strategies as st
from test_conv import ref_conv2d, ref_pool

import graphc
import graphc.nn as gnn
import graphc.numpy as gnp
from graphc import ir
from graphc.backends.targets import DEFAULT_TARGET
from graphc.registry import REGISTRY, register_op
from graphc.verify.tensor import check_tensor

QUICK = {"numpy": 25, DEFAULT_TARGET: 10}
LONG = int(os.environ.get("GRAPHC_CONV_FUZZ_EXAMPLES", "200"))
LONG_CPU = 20
H = 1e-6


@dataclasses.dataclass(frozen=True)
class Case:
    """One call: kind, the argument shapes (input, weight, bias; None where absent) and keywords."""

    kind: str
    x: tuple
    w: tuple | None = None
    b: tuple | None = None
    kwargs: tuple = ()

    @property
    def kw(self) -> dict:
        return dict(self.kwargs)

    def arrays(self):
        """Entries at least 0.05 apart (no ties, and no max kink within a central difference)."""
        rng = np.random.default_rng(zlib.crc32(repr(self).encode()))
        out = []
        for s in (self.x, self.w, self.b):
            if s is not None:
                n = math.prod(s)
                out.append((rng.permutation(n).reshape(s) * 0.05 - 0.025 * n) + rng.uniform(0, 0.01, size=s))
        return out

    def reference(self, *arrays):
        if self.kind == "conv2d":
            x, w, *b = arrays
            return ref_conv2d(x, w, b[0] if b else None, **self.kw)
        return ref_pool(arrays[0], kind="max" if self.kind == "max_pool2d" else "avg", **self.kw)

    def call(self, module, *arrays):
        if self.kind == "conv2d":
            x, w, *b = arrays
            return module.conv2d(x, w, b[0] if b else None, **self.kw)
        return getattr(module, self.kind)(arrays[0], **self.kw)


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["conv2d", "max_pool2d", "avg_pool2d"]))
    mode = draw(st.sampled_from(["ints", "valid", "same"])) if kind == "conv2d" else "ints"
    n = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (1, 1) if mode == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))  # as PyTorch
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if kind != "avg_pool2d" else (1, 1)
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if kind == "conv2d":
        groups = draw(st.integers(1, 2))
        c, o = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2))) if mode == "ints" else mode
        pads = (0, 0) if padding == "valid" else tuple(s - 1 for s in span) if padding == "same" else \
            tuple(2 * p for p in padding)
    else:
        c = draw(st.integers(1, 2))
        padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)  # PyTorch: at most half the kernel
        pads = tuple(2 * p for p in padding)
    size = tuple(max(1, s - p + draw(st.integers(0, 3))) for s, p in zip(span, pads))
    kwargs = {"stride": stride, "padding": padding}
    if kind == "conv2d":
        kwargs.update(dilation=dilation, groups=groups)
        bias = (o,) if draw(st.booleans()) else None
        return Case(kind, (n, c) + size, (o, c // groups) + kernel, bias, tuple(sorted(kwargs.items())))
    kwargs["kernel_size"] = kernel
    if kind == "max_pool2d":
        kwargs["dilation"] = dilation
        # a dilated window may hold padding only: its max is -inf (as PyTorch's), and a loss of it NaN;
        # test_conv.test_a_max_pool_window_of_padding_only_is_minus_infinity checks that case
        assume(all(_every_window_reads_the_image(*a) for a in zip(size, kernel, stride, padding, dilation)))
    return Case(kind, (n, c) + size, kwargs=tuple(sorted(kwargs.items())))


def _every_window_reads_the_image(size, k, s, p, d):
    windows = (size + 2 * p - d * (k - 1) - 1) // s + 1
    return all(any(p <= o * s + i * d < p + size for i in range(k)) for o in range(windows))


def _loss(case):
    """sum(sin(C * f(args))), with C an argument (a traced function captures no arrays)."""
    def loss(*args):
        *arrays, C = args
        return gnp.sum(gnp.sin(case.call(gnn, *arrays) * C))

    return [lambda x, C: loss(x, C), lambda x, w, C: loss(x, w, C), lambda x, w, b, C: loss(x, w, b, C)][
        sum(s is not None for s in (case.x, case.w, case.b)) - 1]


def _close(got, want, tol):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= tol * (1 + np.abs(want))))


def disagreements(case, target="numpy", sympy=False):
    """Where graphc (eager, and value_and_grad on `target`) disagrees with the NumPy reference's
    value, with central differences of the reference along random directions, or (sympy=True)
    with SymPy's exact derivatives."""
    arrays = case.arrays()
    want = case.reference(*arrays)
    bad = []
    eager = case.call(gnn, *arrays)
    if not _close(eager, want, 1e-12):
        bad.append(f"eager value differs from the reference (shapes {np.shape(eager)}, {want.shape})")
    C = np.random.default_rng(len(repr(case))).normal(size=want.shape)
    argnums = tuple(range(len(arrays)))
    v, grads = graphc.value_and_grad(_loss(case), argnums=argnums, target=target)(*arrays, C)
    if not _close(v, np.sum(np.sin(want * C)), 1e-12):
        bad.append(f"value {v} but the reference gives {np.sum(np.sin(want * C))}")
    rng = np.random.default_rng(7)
    for k, (a, g) in enumerate(zip(arrays, grads)):
        if np.shape(g) != a.shape:
            bad.append(f"gradient {k} has shape {np.shape(g)}, not {a.shape}")
            continue
        for _ in range(2):
            d = rng.normal(size=a.shape)
            up, down = list(arrays), list(arrays)
            up[k], down[k] = a + H * d, a - H * d
            num = (np.sum(np.sin(case.reference(*up) * C)) - np.sum(np.sin(case.reference(*down) * C))) / (2 * H)
            got = float(np.sum(np.asarray(g) * d))
            if abs(got - num) > 1e-6 * (1 + abs(num)):
                bad.append(f"gradient {k} along a direction: {got} but central differences give {num}")
    if sympy and not bad:
        fn = graphc.compile(graphc.value_and_grad(_loss(case), argnums=argnums).lower(*arrays, C))
        names = [n.attr for n in fn.forward_graph.inputs]
        report = check_tensor(fn, values=[dict(zip(names, [*arrays, C]))])
        if not report.ok:
            bad.append(str(report))
    return bad


def _sympy_sample(case) -> bool:
    """A quarter of the cases with few entries and small windows (SymPy's expressions grow with
    each entry, and its Max of many entries takes seconds to differentiate)."""
    entries = sum(math.prod(s) for s in (case.x, case.w, case.b) if s is not None)
    window = math.prod(case.w[2:] if case.w else case.kw["kernel_size"])
    return entries <= 12 and window <= 4 and zlib.crc32(repr(case).encode()) % 4 == 0


def _check(target):
    def check(case):
        bad = disagreements(case, target, sympy=target == "numpy" and _sympy_sample(case))
        assert not bad, (case, bad)

    return check


@pytest.mark.parametrize("target", ["numpy", DEFAULT_TARGET])
def test_random_convolutions_and_pools(target):
    fuzz("quick", QUICK[target])(given(conv_cases())(_check(target)))()


@pytest.mark.slow
@pytest.mark.parametrize("target", TENSOR_TARGETS)
def test_random_convolutions_and_pools_long(target):
    n = LONG if target in ("numpy", DEFAULT_TARGET) else LONG_CPU
    fuzz("long", n)(given(conv_cases())(_check(target)))()


@pytest.mark.parametrize("tier", tiers("quick", "long"))
def test_cases_cover_every_kind_and_option(tier):
    """The strategy reaches what it claims: each kind, strides, dilations, groups, bias, 'same'
    and 'valid' padding (so a passing sweep means something)."""
    seen = set()

    @fuzz(tier, 100 if tier == "quick" else 500)
    @given(conv_cases())
    def collect(case):
        kw = case.kw
        seen.add(case.kind)
        seen.update(k for k in ("stride", "dilation") if max(kw.get(k, (1, 1))) > 1)
        seen.update(f"padding={p}" for p in ("same", "valid") if kw.get("padding") == p)
        seen.update(["groups"] if kw.get("groups", 1) > 1 else [])
        seen.update(["bias"] if case.b is not None else [])

    collect()
    assert seen >= {"conv2d", "max_pool2d", "avg_pool2d", "stride", "dilation", "groups", "bias", "padding=same",
                    "padding=valid"}, seen


# ------------------------------------------------------------------ a broken rule is found and shrunk


def _reversed_kernel_vjp(good):
    """unfold's VJP reading each window's kernel entries back in reverse order before the fold
    (an im2col whose backward pass disagrees with its forward layout)."""
    def grad(n, g):
        kh, kw = n.attrs["kernel"]
        size = tuple(g.shape)
        g5 = ir.make("reshape", g, shape=(size[0], size[1] // (kh * kw), kh, kw, size[2]))
        flipped = ir.make("slice", g5, start=(0, 0, kh - 1, kw - 1, 0), step=(1, 1, -1, -1, 1), shape=g5.shape)
        return good.grad(n, ir.make("reshape", flipped, shape=size))
    return grad


def test_a_broken_unfold_vjp_is_found_and_shrunk():
    good = REGISTRY["unfold"]
    register_op(dataclasses.replace(good, grad=_reversed_kernel_vjp(good)), replace=True)
    try:
        shrunk = find(conv_cases(), lambda c: bool(disagreements(c)),
                      settings=settings(max_examples=200, deadline=None, derandomize=True, database=None))
    finally:
        register_op(good, replace=True)
    kernel = shrunk.w[2:] if shrunk.kind == "conv2d" else shrunk.kw["kernel_size"]
    assert math.prod(kernel) == 2, shrunk  # the simplest kernel it is wrong for
    assert shrunk.x[:2] == (1, 1) and math.prod(shrunk.x) <= 4 and shrunk.b is None, shrunk  # on a tiny image
    assert not disagreements(shrunk), shrunk  # the real rule: right again
