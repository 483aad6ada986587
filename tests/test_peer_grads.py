"""Gradient cases ported from autograd's and JAX's own test suites, in graphc's terms.

Each case is a function fun(m, *args) written once for m = numpy (the reference)
and m = graphc.numpy (traced); `check_vjp` (tests/test_dot_matmul.py) checks the
traced value (and its shape) against NumPy's and the gradient of
sum(fun(...) * W), W random -- a vector-Jacobian product, as autograd's
check_grads and JAX's check_grads(modes=["rev"]) do -- against central finite
differences of the NumPy reference. Only first derivatives are checked (the
originals also go to order 2 or 3); complex inputs are left out (graphc is real).

Where each case comes from:

- autograd tests/test_systematic.py: `test_dot` (combo_check of np.dot over
  [1.5, R(3), R(2,3), R(2,2,3)] x [0.3, R(3), R(3,4), R(2,3,4)]), `test_matmul`
  ([R(3), R(2,3), R(2,2,3)] x [R(3), R(3,4), R(2,3,4)]), `test_matmul_broadcast`
  ((1,2,2) @ (3,2,1)), and `stat_check` as used by `test_sum`, `test_mean`,
  `test_max`, `test_min` (tests/numpy_utils.py: a Python float, a 0-d array,
  B (3,), C (2,3), D (1,3) with axis None/0 and keepdims; C, D with axis 1 too).
- autograd tests/test_numpy.py: `test_dot`, `test_dot_with_floats`, `test_max`,
  `test_max_axis`, `test_max_axis_keepdims`, `test_min*`, `test_sum_1..3`,
  `test_sum_with_axis_tuple`, `test_mean_1..3`.
- JAX tests/lax_numpy_test.py: `testDot` and `testMatmul` (their shape lists;
  JAX checks values there, here the gradients too), and `NumpyGradTests.testOpGrad`
  for jnp.logaddexp over every pair (with repetition) of `nonempty_shapes`
  (broadcasting, Python scalars included), inputs uniform in (-0.9, 0.9).
- JAX tests/lax_autodiff_test.py: `testDotGrad`, `testReduceGrad` (add, max and
  min over its shape/dims list; max/min with distinct values, as rand_unique_int;
  max/min over the empty axis of (3, 0, 5) is left out there too, graphc refuses
  it), `testBroadcastGrad` (lax.broadcast(x, sizes) is broadcast_to(x, sizes +
  shape)), `testBroadcastInDimGrad` (a reshape to size-1 axes, then broadcast_to).

Not ported (graphc has no counterpart yet; issue 26): np.inner, np.outer,
np.tensordot, np.kron, einsum, dot_general with batch dimensions.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_dot_matmul import check_vjp

TARGETS = ["numpy", "llvm"]  # a subset on purpose, as in test_dot_matmul: the reference and the default


def _r(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def _args(spec, seed):
    """Arguments from a spec: a float stays a Python float, a tuple is a random array."""
    return [s if isinstance(s, float) else _r(*s, seed=seed + k) for k, s in enumerate(spec)]


# ------------------------------------------------------------------ products

DOT_CASES = (
    # autograd test_systematic.test_dot
    [("autograd-systematic", a, b) for a, b in itertools.product(
        [1.5, (3,), (2, 3), (2, 2, 3)], [0.3, (3,), (3, 4), (2, 3, 4)])]
    # autograd test_numpy.test_dot and test_dot_with_floats
    + [("autograd-numpy", a, b) for a, b in [
        ((10, 11), (11,)), ((10, 11), (11, 10)), ((10,), (10, 11)), ((11,), (11,)),
        ((10, 11), 0.7), (0.7, (10, 11)), ((10,), 0.7), (0.7, (10,))]]
    # JAX lax_numpy_test.testDot
    + [("jax-testDot", a, b) for a, b in [
        ((3, 3), ()), ((), (3, 3)), ((4, 5), (5,)), ((6,), (6, 4)), ((3, 4), (4, 5)), ((4, 3, 2), (2,)),
        ((2,), (3, 2, 4)), ((4, 3, 2), (2, 5)), ((5, 2), (3, 2, 4)), ((2, 3, 4), (5, 4, 1))]]
    # JAX lax_autodiff_test.testDotGrad
    + [("jax-testDotGrad", a, b) for a, b in itertools.product([(2,), (3, 2)], [(2,), (2, 4)])]
)

MATMUL_CASES = (
    # autograd test_systematic.test_matmul and test_matmul_broadcast
    [("autograd-systematic", a, b) for a, b in itertools.product(
        [(3,), (2, 3), (2, 2, 3)], [(3,), (3, 4), (2, 3, 4)])]
    + [("autograd-systematic-broadcast", (1, 2, 2), (3, 2, 1))]
    # JAX lax_numpy_test.testMatmul
    + [("jax-testMatmul", a, b) for a, b in [
        ((3,), (3,)), ((3, 3), (3,)), ((3,), (3, 3)), ((3, 3), (3, 3)), ((3,), (5, 3, 2)), ((5, 3, 2), (2,)),
        ((5, 2), (3, 2, 4)), ((5, 2, 3), (3, 2)), ((5, 3, 4), (5, 4, 1)), ((3, 1, 3, 4), (5, 4, 1)),
        ((1, 5, 4), (1, 4, 3))]]
)


def _ids(cases):
    return [f"{src}:{a}x{b}".replace(" ", "") for src, a, b in cases]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("src, sa, sb", DOT_CASES, ids=_ids(DOT_CASES))
def test_dot(src, sa, sb, target):
    check_vjp(lambda m, a, b: m.dot(a, b), _args([sa, sb], seed=1), target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("src, sa, sb", MATMUL_CASES, ids=_ids(MATMUL_CASES))
def test_matmul(src, sa, sb, target):
    check_vjp(lambda m, a, b: m.matmul(a, b), _args([sa, sb], seed=2), target)


# ------------------------------------------------------------------ reductions


def _stat_check_cases():
    """autograd tests/numpy_utils.py stat_check, real part."""
    x, A, B, C, D = 3.5, (), (3,), (2, 3), (1, 3)
    out = [(s, None, False) for s in (x, A)]
    out += [(s, ax, kd) for s in (B, C, D) for ax in (None, 0) for kd in (True, False)]
    out += [(s, ax, kd) for s in (C, D) for ax in (None, 0, 1) for kd in (True, False)]
    return out


STAT_CASES = _stat_check_cases()
REDUCERS = {"sum": "sum", "mean": "mean", "max": "max", "min": "min"}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(REDUCERS))
@pytest.mark.parametrize("shape, axis, keepdims", STAT_CASES,
                         ids=[f"{s}-axis={a}-keepdims={k}".replace(" ", "") for s, a, k in STAT_CASES])
def test_autograd_stat_check(name, shape, axis, keepdims, target):
    def fun(m, x):
        return getattr(m, name)(x, axis=axis, keepdims=keepdims)

    check_vjp(fun, _args([shape], seed=3), target)


AUTOGRAD_NUMPY_REDUCTIONS = [  # autograd tests/test_numpy.py
    ("max", (10, 11), None, False), ("max", (3, 4, 5), 1, False), ("max", (3, 4, 5), 1, True),
    ("min", (10, 11), None, False), ("min", (3, 4, 5), 1, False), ("min", (3, 4, 5), 1, True),
    ("sum", (10, 11), None, False), ("sum", (10, 11), 0, False), ("sum", (10, 11), 0, True),
    ("sum", (10, 11, 7), (1, 2), False),
    ("mean", (10, 11), None, False), ("mean", (10, 11), 0, False), ("mean", (10, 11), 0, True),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name, shape, axis, keepdims", AUTOGRAD_NUMPY_REDUCTIONS)
def test_autograd_numpy_reductions(name, shape, axis, keepdims, target):
    def fun(m, x):
        return getattr(m, name)(x, axis=axis, keepdims=keepdims)

    check_vjp(fun, _args([shape], seed=4), target)


JAX_REDUCE = [((), ()), ((3, 4, 5), ()), ((3, 4, 5), (0,)), ((3, 4, 5), (1, 2)), ((3, 4, 5), (0, 2)),
              ((3, 4, 5), (0, 1, 2)), ((3, 1), (1,)), ((3, 0, 5), (1,))]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["sum", "max", "min"])
@pytest.mark.parametrize("shape, dims", JAX_REDUCE)
def test_jax_reduce_grad(name, shape, dims, target):
    """JAX lax_autodiff_test.testReduceGrad: lax.reduce over dims with add / max / min."""
    if name != "sum" and 0 in shape:
        return  # JAX skips it too: the max of no entries (graphc: a ShapeError, tests/test_dot_matmul.py)
    n = int(np.prod(shape))
    x = np.random.default_rng(5).permutation(n).reshape(shape).astype(np.float64) - n / 2  # distinct values
    check_vjp(lambda m, x: getattr(m, name)(x, axis=dims), [x], target)


# ------------------------------------------------------------------ broadcasting

_NONEMPTY = [0.4, (), (4,), (3, 4), (3, 1), (1, 4), (2, 1, 4), (2, 3, 4)]  # JAX's nonempty_shapes
LOGADDEXP_CASES = list(itertools.combinations_with_replacement(range(len(_NONEMPTY)), 2))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("i, j", LOGADDEXP_CASES,
                         ids=[f"{_NONEMPTY[i]}-{_NONEMPTY[j]}".replace(" ", "") for i, j in LOGADDEXP_CASES])
def test_jax_logaddexp_broadcasting(i, j, target):
    rng = np.random.default_rng(6)
    args = [s if isinstance(s, float) else rng.uniform(-0.9, 0.9, size=s) for s in (_NONEMPTY[i], _NONEMPTY[j])]
    if all(isinstance(a, float) for a in args):
        return  # two Python floats: nothing is traced as an array (covered by the scalar formula tests)
    check_vjp(lambda m, a, b: m.logaddexp(a, b), args, target)


BROADCAST_CASES = [(shape, sizes) for shape in [(), (2, 3)] for sizes in [(), (2,), (1, 2)]]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape, sizes", BROADCAST_CASES)
def test_jax_broadcast_grad(shape, sizes, target):
    """JAX lax_autodiff_test.testBroadcastGrad: lax.broadcast prepends sizes."""
    check_vjp(lambda m, x: m.broadcast_to(x, sizes + shape), _args([shape], seed=7), target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("inshape, outshape, dims", [
    ((2,), (2, 2), (0,)), ((2,), (2, 2), (1,)), ((2,), (2, 3), (0,)), ((), (2, 3), ())])
def test_jax_broadcast_in_dim_grad(inshape, outshape, dims, target):
    """JAX lax_autodiff_test.testBroadcastInDimGrad: operand axes land on `dims` of the output."""
    kept = tuple(outshape[d] if d in dims else 1 for d in range(len(outshape)))

    def fun(m, x):
        return m.broadcast_to(m.reshape(x, kept), outshape)

    check_vjp(fun, _args([inshape], seed=8), target)
