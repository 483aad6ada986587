"""graphc.numpy's joining, splitting, padding and axis-moving functions and the ops under
them (issue 26): concatenate, stack, hstack, vstack, split, array_split, expand_dims,
squeeze, flip, tile, repeat, pad, roll, swapaxes, moveaxis, ravel, take,
take_along_axis, diag, tril, triu, rot90, fliplr, flipud, column_stack, dstack, ndim,
shape, size, NumPy's r_ and c_ on traced values; the primitives slice / unslice / concatenate /
gather / scatter / index_array / index_mask / triangle.

References: NumPy's own functions (values, and central differences of them for
gradients), SymPy's exact derivatives on small shapes (graphc.verify.tensor).
"""

import numpy as np
import pytest
from conftest import FUZZ, TENSOR_TARGETS_THREADS_SLOW
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc
import graphc.numpy as gnp
from graphc import GraphcError, ShapeError, UnsupportedError, ir
from graphc.registry import REGISTRY, register_op
from graphc.verify.tensor import check_tensor

RNG = np.random.default_rng(2626)


def _a(*shape):
    return RNG.normal(size=shape)


# (name, function of (module, *arrays), arrays): the function runs with module = numpy on
# arrays (the reference), graphc.numpy on tracers, and numpy on tracers (NumPy's dispatch)
CASES = [
    ("concatenate-axis1", lambda m, a, b: m.concatenate([a, b], axis=1), [_a(2, 3), _a(2, 2)]),
    ("concatenate-three", lambda m, a, b, c: m.concatenate((a, b, c), axis=-2), [_a(2, 3), _a(1, 3), _a(0, 3)]),
    ("concatenate-None", lambda m, a, b: m.concatenate([a, b], axis=None), [_a(2, 3), _a(4)]),
    ("stack-0", lambda m, a, b, c: m.stack([a, b, c]), [_a(2, 3), _a(2, 3), _a(2, 3)]),
    ("stack-last", lambda m, a, b: m.stack([a, b], axis=-1), [_a(2, 3), _a(2, 3)]),
    ("hstack-1d", lambda m, a, b: m.hstack([a, b]), [_a(3), _a(2)]),
    ("hstack-2d", lambda m, a, b: m.hstack((a, b)), [_a(2, 3), _a(2, 1)]),
    ("vstack-1d", lambda m, a, b: m.vstack([a, b]), [_a(3), _a(3)]),
    ("vstack-2d", lambda m, a, b: m.vstack([a, b]), [_a(1, 3), _a(2, 3)]),
    ("split-3", lambda m, a: m.split(a, 3), [_a(6, 2)]),
    ("split-at", lambda m, a: m.split(a, [1, 3], axis=1), [_a(2, 5)]),
    ("array_split", lambda m, a: m.array_split(a, 3, axis=-1), [_a(2, 5)]),
    ("array_split-at", lambda m, a: m.array_split(a, [2, 10, 1]), [_a(4, 2)]),
    ("expand_dims-0", lambda m, a: m.expand_dims(a, 0), [_a(2, 3)]),
    ("expand_dims-tuple", lambda m, a: m.expand_dims(a, (0, -1, 2)), [_a(2, 3)]),
    ("squeeze-all", lambda m, a: m.squeeze(a), [_a(1, 3, 1)]),
    ("squeeze-axis", lambda m, a: m.squeeze(a, axis=(2,)), [_a(1, 3, 1)]),
    ("flip-all", lambda m, a: m.flip(a), [_a(2, 3)]),
    ("flip-axis", lambda m, a: m.flip(a, axis=(0, 2)), [_a(2, 3, 2)]),
    ("tile-int", lambda m, a: m.tile(a, 2), [_a(2, 3)]),
    ("tile-more", lambda m, a: m.tile(a, (2, 1, 3)), [_a(2, 3)]),
    ("tile-fewer", lambda m, a: m.tile(a, (2,)), [_a(2, 3)]),
    ("repeat-flat", lambda m, a: m.repeat(a, 2), [_a(2, 3)]),
    ("repeat-each", lambda m, a: m.repeat(a, [1, 0, 3], axis=0), [_a(3, 2)]),
    ("repeat-axis", lambda m, a: m.repeat(a, 3, axis=1), [_a(2, 2)]),
    ("pad-constant", lambda m, a: m.pad(a, ((1, 2), (0, 1)), constant_values=((1.5, -2), (3, 4))), [_a(2, 3)]),
    ("pad-zeros", lambda m, a: m.pad(a, 1), [_a(2, 3)]),
    ("pad-edge", lambda m, a: m.pad(a, 2, mode="edge"), [_a(2, 3)]),
    ("pad-reflect", lambda m, a: m.pad(a, ((2, 1), (3, 0)), mode="reflect"), [_a(3, 4)]),
    ("pad-reflect-long", lambda m, a: m.pad(a, (5, 4), mode="reflect"), [_a(3)]),
    ("pad-symmetric", lambda m, a: m.pad(a, ((1, 2),), mode="symmetric"), [_a(3, 2)]),
    ("pad-wrap", lambda m, a: m.pad(a, (1, 3), mode="wrap"), [_a(3, 2)]),
    ("roll-flat", lambda m, a: m.roll(a, 2), [_a(2, 3)]),
    ("roll-axis", lambda m, a: m.roll(a, -1, axis=0), [_a(3, 2)]),
    ("roll-axes", lambda m, a: m.roll(a, (1, 5), axis=(0, 1)), [_a(2, 3)]),
    ("swapaxes", lambda m, a: m.swapaxes(a, 0, -1), [_a(2, 3, 4)]),
    ("moveaxis", lambda m, a: m.moveaxis(a, 0, -1), [_a(2, 3, 4)]),
    ("moveaxis-many", lambda m, a: m.moveaxis(a, [0, 1], [2, 0]), [_a(2, 3, 4)]),
    ("ravel", lambda m, a: m.ravel(a), [_a(2, 3)]),
    ("take-flat", lambda m, a: m.take(a, [0, 2, 2, -1]), [_a(2, 3)]),
    ("take-axis", lambda m, a: m.take(a, np.array([[0, 1], [1, 1]]), axis=1), [_a(2, 3)]),
    ("take-wrap", lambda m, a: m.take(a, [5, -7], axis=0, mode="wrap"), [_a(3, 2)]),
    ("take-clip", lambda m, a: m.take(a, [5, -1, 1], axis=0, mode="clip"), [_a(3, 2)]),
    ("take_along_axis", lambda m, a: m.take_along_axis(a, np.array([[3, 0], [1, 1], [2, 2]]), axis=1), [_a(3, 4)]),
    ("take_along_axis-bcast", lambda m, a: m.take_along_axis(a, np.array([[2, 0, 0, 1]]), axis=0), [_a(3, 4)]),
    ("take_along_axis-None", lambda m, a: m.take_along_axis(a, np.array([5, 0, 5]), axis=None), [_a(2, 3)]),
    ("diag-1d", lambda m, a: m.diag(a), [_a(3)]),
    ("diag-1d-k", lambda m, a: m.diag(a, 2), [_a(3)]),
    ("diag-1d-negk", lambda m, a: m.diag(a, k=-1), [_a(2)]),
    ("diag-2d", lambda m, a: m.diag(a), [_a(3, 4)]),
    ("diag-2d-k", lambda m, a: m.diag(a, 1), [_a(3, 4)]),
    ("diag-2d-negk", lambda m, a: m.diag(a, -2), [_a(3, 4)]),
    ("diag-2d-empty", lambda m, a: m.diag(a, 5), [_a(3, 4)]),
    ("tril", lambda m, a: m.tril(a), [_a(3, 4)]),
    ("tril-k", lambda m, a: m.tril(a, -1), [_a(4, 3)]),
    ("triu-k", lambda m, a: m.triu(a, k=1), [_a(3, 4)]),
    ("triu-batched", lambda m, a: m.triu(a, -1), [_a(2, 3, 3)]),
    ("tril-1d", lambda m, a: m.tril(a), [_a(3)]),
    ("rot90", lambda m, a: m.rot90(a), [_a(2, 3)]),
    ("rot90-k2", lambda m, a: m.rot90(a, 2), [_a(2, 3)]),
    ("rot90-negk", lambda m, a: m.rot90(a, k=-1, axes=(2, 0)), [_a(2, 3, 2)]),
    ("rot90-k4", lambda m, a: m.rot90(a, 4, axes=[1, -1]), [_a(2, 3, 2)]),
    ("fliplr", lambda m, a: m.fliplr(a), [_a(2, 3, 2)]),
    ("flipud", lambda m, a: m.flipud(a), [_a(3)]),
    ("column_stack", lambda m, a, b, c: m.column_stack((a, b, c)), [_a(3), _a(3, 2), _a(3)]),
    ("dstack-1d", lambda m, a, b: m.dstack([a, b]), [_a(3), _a(3)]),
    ("dstack-2d-3d", lambda m, a, b: m.dstack([a, b]), [_a(2, 3), _a(2, 3, 2)]),
]
IDS = [c[0] for c in CASES]


def _pieces(out):
    return list(out) if isinstance(out, list) else [out]


def _weights(fn, arrays):
    return [RNG.normal(size=np.shape(p)) for p in _pieces(fn(np, *arrays))]


def _ref_loss(fn, arrays, Cs):
    return float(sum(np.sum(p * C) for p, C in zip(_pieces(fn(np, *arrays)), Cs)))


def _fd(fn, arrays, Cs, h=1e-6):
    out = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            up, dn = [b.copy() for b in arrays], [b.copy() for b in arrays]
            up[k][i] += h
            dn[k][i] -= h
            g[i] = (_ref_loss(fn, up, Cs) - _ref_loss(fn, dn, Cs)) / (2 * h)
        out.append(g)
    return out


def _loss(fn, module):
    def loss(arrays, Cs):
        return sum((gnp.sum(p * C) for p, C in zip(_pieces(fn(module, *arrays)), Cs)), 0.0)
    return loss


@pytest.mark.parametrize("name,fn,arrays", CASES, ids=IDS)
def test_eager_results_are_numpys(name, fn, arrays):
    for got, want in zip(_pieces(fn(gnp, *arrays)), _pieces(fn(np, *arrays))):
        assert type(got) is type(want) and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("via", ["graphc.numpy", "numpy dispatch"])
@pytest.mark.parametrize("name,fn,arrays", CASES, ids=IDS)
def test_traced_value_and_gradient_against_numpy_and_finite_differences(name, fn, arrays, via):
    Cs = _weights(fn, arrays)
    v, g = graphc.value_and_grad(_loss(fn, gnp if via == "graphc.numpy" else np), target="numpy")(tuple(arrays), Cs)
    assert v == pytest.approx(_ref_loss(fn, arrays, Cs), rel=1e-13, abs=1e-13)
    for got, want in zip(g, _fd(fn, arrays, Cs)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("target", TENSOR_TARGETS_THREADS_SLOW)
def test_every_case_in_one_program_on_each_target(target):
    """Every case summed into one traced program: each target's value and gradients against
    the NumPy reference target's (which the test above checks against finite differences)."""
    Cs = [_weights(fn, arrays) for _, fn, arrays in CASES]
    args = [tuple(arrays) for _, _, arrays in CASES]

    def loss(args, Cs):
        return sum((_loss(fn, gnp)(a, c) for (_, fn, _), a, c in zip(CASES, args, Cs)), 0.0)

    v, g = graphc.value_and_grad(loss, target=target)(args, Cs)
    assert v == pytest.approx(sum(_ref_loss(fn, a, c) for (_, fn, _), a, c in zip(CASES, args, Cs)), rel=1e-12)
    rv, rg = graphc.value_and_grad(loss, target="numpy")(args, Cs)
    for got, want in zip(g, rg):
        for x, y in zip(got, want):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-13)


def test_float32_within_tolerance():
    x = _a(3, 4).astype(np.float32)

    def f(x):
        y = gnp.concatenate([gnp.pad(x, ((0, 0), (1, 1)), mode="reflect"), gnp.tile(gnp.flip(x, 0), (1, 2))], axis=1)
        return gnp.sum(gnp.tril(gnp.roll(y, 1, axis=0)[:, :5]) ** 2) + gnp.sum(gnp.diag(x) * 3.0)

    for target in ("numpy", "llvm"):
        v, g = graphc.value_and_grad(f, target=target)(x)
        v64, g64 = graphc.value_and_grad(f, target="numpy")(x.astype(np.float64))
        assert g.dtype == np.float32
        assert v == pytest.approx(v64, rel=1e-5)
        np.testing.assert_allclose(g, g64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["joins", "moves", "pads"])
def test_against_sympy(case):
    a, b = _a(2, 3), _a(2, 3)
    fns = {
        "joins": lambda a, b: gnp.sum(gnp.concatenate([a, gnp.sin(b)], axis=1) ** 2 * gnp.hstack([b, a]))
        + gnp.sum(gnp.split(gnp.stack([a, b], axis=1), 2)[1] ** 3),
        "moves": lambda a, b: gnp.sum(gnp.roll(gnp.tile(a, (2, 1)), 1, axis=0)[:3] * gnp.repeat(b, [2, 1], axis=0))
        + gnp.sum(gnp.diag(a, 1) ** 2) + gnp.sum(gnp.triu(a @ b.T) * gnp.diag(b[0, :2])),
        "pads": lambda a, b: gnp.sum(gnp.pad(a, ((1, 2), (2, 1)), mode="reflect") ** 2)
        + gnp.sum(gnp.pad(b, 1, mode="edge") * gnp.pad(a, 1, constant_values=0.5)),
    }
    fn = graphc.compile(graphc.value_and_grad(fns[case], argnums=(0, 1)).lower(a, b))
    report = check_tensor(fn, values=[{"a": a, "b": b}])
    assert report.ok, str(report)


# ------------------------------------------------------------------ property tests


@settings(FUZZ, max_examples=25)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=4), st.integers(1, 3), st.integers(0, 1))
def test_random_joins(sizes, width, axis):
    arrays = [np.arange(1.0, 1.0 + s * width).reshape((s, width) if axis == 0 else (width, s)) + k
              for k, s in enumerate(sizes)]
    want = np.concatenate(arrays, axis=axis)
    C = np.arange(want.size, dtype=float).reshape(want.shape) * 0.5 - 1
    v, g = graphc.value_and_grad(lambda arrs, C: gnp.sum(gnp.concatenate(arrs, axis=axis) * C),
                                 target="numpy")(tuple(arrays), C)
    assert v == float(np.sum(want * C))
    for got, piece in zip(g, np.split(C, np.cumsum(sizes)[:-1], axis=axis)):
        np.testing.assert_array_equal(got, piece)


@settings(FUZZ, max_examples=25)
@given(st.integers(1, 4), st.integers(0, 5), st.integers(0, 5), st.sampled_from(["constant", "edge", "reflect",
                                                                                   "symmetric", "wrap"]))
def test_random_pads(n, before, after, mode):
    if mode == "reflect" and n == 1 and (before or after):
        before = after = 0  # NumPy reflects a single entry onto itself; nothing to test
    x = np.arange(1.0, n + 1.0)
    want = np.pad(x, (before, after), mode=mode)
    C = np.linspace(-1, 1, want.size)
    v, g = graphc.value_and_grad(lambda x, C: gnp.sum(gnp.pad(x, (before, after), mode=mode) * C),
                                 target="numpy")(x, C)
    assert v == pytest.approx(float(np.sum(want * C)), rel=1e-13, abs=1e-13)
    idx = np.pad(np.arange(n), (before, after), mode=mode) if mode != "constant" else \
        np.concatenate([np.full(before, -1), np.arange(n), np.full(after, -1)])
    G = np.zeros(n)
    np.add.at(G, idx[idx >= 0], C[idx >= 0])
    np.testing.assert_allclose(g, G, rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("fn,err,match", [
    (lambda a, b: gnp.concatenate([a, b]), ShapeError, r"arrays\[1\] of shape \(2, 2\) and arrays\[0\] of shape "
     r"\(2, 3\) differ on axis 1"),
    (lambda a, b: gnp.concatenate([a, b[0]]), ShapeError, r"arrays\[1\] .* has 1 dimension"),
    (lambda a, b: gnp.concatenate([a, b], axis=2), ShapeError, "axis 2 is out of bounds for an array of dimension 2"),
    (lambda a, b: gnp.concatenate([a, a[0, 0]]), ShapeError, r"arrays\[1\] is zero-dimensional"),
    (lambda a, b: gnp.stack([a, b]), ShapeError, r"arrays\[1\] has shape \(2, 2\)"),
    (lambda a, b: gnp.stack([a, a], axis=-4), ShapeError, "axis -4 is out of bounds"),
    (lambda a, b: gnp.vstack([a, b]), ShapeError, r"tup\[1\]"),
    (lambda a, b: gnp.split(a, 2, axis=1), ShapeError, "equal division"),
    (lambda a, b: gnp.split(a, 0), ShapeError, "larger than 0"),
    (lambda a, b: gnp.squeeze(a, axis=1), ShapeError, "size not equal to one: axis 1 of a"),
    (lambda a, b: gnp.expand_dims(a, (0, 0)), ShapeError, "repeated axis"),
    (lambda a, b: gnp.swapaxes(a, 0, 5), ShapeError, "axis2 5 is out of bounds"),
    (lambda a, b: gnp.moveaxis(a, [0, 1], [0]), ShapeError, "same number of elements"),
    (lambda a, b: gnp.pad(a, 1, mode="median"), UnsupportedError, "mode='median'"),
    (lambda a, b: gnp.pad(a, ((1, 2), (3, 4), (5, 6))), ShapeError, "pad_width"),
    (lambda a, b: gnp.pad(a, -1), ShapeError, "negative"),
    (lambda a, b: gnp.pad(a, 1, mode="reflect", reflect_type="odd"), UnsupportedError, "reflect_type"),
    (lambda a, b: gnp.take(a, [6]), ShapeError, "index 6 is out of bounds for axis 0 with size 6"),
    (lambda a, b: gnp.take(a, [0], axis=1, out=np.empty(2)), UnsupportedError, "out="),
    (lambda a, b: gnp.take_along_axis(a, np.array([0]), axis=1), ShapeError, "same number of dimensions"),
    (lambda a, b: gnp.diag(gnp.stack([a, a])), ShapeError, "1- or 2-d"),
    (lambda a, b: gnp.repeat(a, [1, 2, 3]), ShapeError, "6 \\(?.*|3 repeats"),
    (lambda a, b: gnp.repeat(a, -1), ShapeError, "negative"),
    (lambda a, b: gnp.ravel(a, order="F"), UnsupportedError, "order='F'"),
    (lambda a, b: gnp.concatenate([a, np.array([["x", "y", "z"]])]), GraphcError, "dtype <U1: graphc computes"),
    (lambda a, b: gnp.fliplr(a[0]), ShapeError, ">= 2-d"),
    (lambda a, b: gnp.rot90(a, axes=(0, 0)), ValueError, "Axes must be different"),
    (lambda a, b: gnp.rot90(a, axes=(0, 3)), ShapeError, "axes 3 is out of bounds"),
    (lambda a, b: gnp.column_stack([a, a[0]]), ShapeError, r"tup\[1\]"),
    (lambda a, b: gnp.vstack(a[0, 0]), TypeError, "0-d"),
])
def test_bad_arguments_are_graphc_errors_naming_them(fn, err, match):
    with pytest.raises(err, match=match):
        graphc.value_and_grad(fn)(_a(2, 3), _a(2, 2))


# ------------------------------------------------------------------ the ops themselves

NEW_OPS = ("slice", "unslice", "concatenate", "gather", "scatter", "index_mask", "index_array", "triangle")


def test_every_new_op_has_every_tensor_facet():
    for name in NEW_OPS:
        spec = REGISTRY[name]
        assert spec.infer is not None and spec.symbolic is not None and callable(spec.grad), name
        assert spec.code == "" and spec.doc and spec.internal, name


def test_ir_text_and_json_round_trip_with_every_new_op():
    x, v, idx = _a(3, 4), _a(3), np.array([2, 0, 2])

    def f(x, v, idx):
        y = gnp.concatenate([x[idx], x[::-1, 1:3]], axis=1)
        return gnp.sum(y ** 2) + gnp.sum(x.at[idx, 1].set(v) * gnp.tril(x)) + gnp.sum(x.at[0].max(1.0))

    g = graphc.value_and_grad(f, argnums=(0, 1)).lower(x, v, idx).graph
    ops = {n.op for n in g.body}
    assert set(NEW_OPS) <= ops, set(NEW_OPS) - ops
    assert ir.parse_graph(ir.print_graph(g)) == g
    assert ir.from_json(ir.to_json(g)) == g


@pytest.mark.parametrize("op,args,attrs,match", [
    ("slice", [(3, 4)], {"start": (0, 3), "step": (1, 1), "shape": (3, 2)}, r"positions 3, 4, \.\.\., 4 on axis 1"),
    ("slice", [(3, 4)], {"start": (0,), "step": (1,), "shape": (3,)}, "tuple of 2 ints"),
    ("unslice", [(2,)], {"start": (1,), "step": (2,), "shape": (3,)}, "out of range"),
    ("concatenate", [(2, 3), (3, 2)], {"axis": 0}, r"differ on axis 1"),
    ("concatenate", [("N", 3), ("N", 3)], {"axis": 0}, "symbolic size"),
    ("gather", [(3, 4), (5, 3)], {}, "address 3 axes"),
    ("triangle", [(3,)], {}, "at least two dimensions"),
])
def test_op_shape_rules_name_the_shapes(op, args, attrs, match):
    nodes = [ir.input_node(f"a{k}", "i64" if op == "gather" and k == 1 else "f64", s) for k, s in enumerate(args)]
    with pytest.raises(GraphcError, match=match):
        ir.make(op, *nodes, **attrs)


def test_a_broken_gather_gradient_is_caught_by_the_sympy_checker():
    """A gather VJP that writes instead of accumulating (scatter 'set': duplicate indices
    lose all but one contribution) is caught element by element."""
    good = REGISTRY["gather"]

    def wrong(n, g):
        x, idx = n.args
        from graphc.shape_ops import zeros

        return ir.make("scatter", zeros(x.shape, x.dtype), g, idx, update="set", clip=n.attrs["clip"]), None

    x, idx = _a(3, 2), np.array([1, 1, 0])
    import dataclasses

    register_op(dataclasses.replace(good, grad=wrong), replace=True)
    try:
        fn = graphc.compile(graphc.value_and_grad(lambda x, idx: gnp.sum(gnp.sin(x[idx]))).lower(x, idx))
        assert not check_tensor(fn, values=[{"x": x, "idx": idx}]).ok
    finally:
        register_op(good, replace=True)
    fn = graphc.compile(graphc.value_and_grad(lambda x, idx: gnp.sum(gnp.sin(x[idx]))).lower(x, idx))
    assert check_tensor(fn, values=[{"x": x, "idx": idx}]).ok


# ------------------------------------------------------------------ one array's rows; r_ and c_; sizes

ROWS = [  # (name, function of (module, array), array): NumPy joins the array's rows x[0], x[1], ...
    ("vstack-1d", lambda m, x: m.vstack(x), _a(3)),
    ("vstack-2d", lambda m, x: m.vstack(x), _a(3, 2)),
    ("vstack-3d", lambda m, x: m.vstack(x), _a(2, 3, 2)),
    ("hstack-1d", lambda m, x: m.hstack(x), _a(3)),
    ("hstack-2d", lambda m, x: m.hstack(x), _a(3, 2)),
    ("hstack-3d", lambda m, x: m.hstack(x), _a(2, 3, 4)),
    ("column_stack-2d", lambda m, x: m.column_stack(x), _a(3, 2)),
    ("dstack-2d", lambda m, x: m.dstack(x), _a(3, 2)),
]
# NumPy's own r_ / c_ (their items through numpy.ndim and numpy.array, then np.concatenate)
CONCATENATORS = [
    ("r_-one", lambda x: np.r_[x], _a(3, 2)),
    ("r_-double", lambda x: np.r_[x, x], _a(3, 2)),
    ("r_-scalars", lambda x: np.r_[-1, x[0], 2.5, 3 * x[1]], _a(3, 2)),
    ("r_-directive", lambda x: np.r_["0,2", x[0], x[1]], _a(3, 2)),
    ("r_-axis", lambda x: np.r_["-1", x, x[:, :1]], _a(3, 2)),
    ("c_", lambda x: np.c_[x, 2 * x, x], _a(3, 2)),
    ("c_-1d", lambda x: np.c_[x[:, 0], x, x[:, 1]], _a(3, 2)),
]


def _check_one(f, x):
    want = f(x)
    C = RNG.normal(size=want.shape)
    v, g = graphc.value_and_grad(lambda x, C: gnp.sum(f(x) * C), target="numpy")(x, C)
    assert v == pytest.approx(float(np.sum(want * C)), rel=1e-13, abs=1e-13)
    fd = _fd(lambda m, x: f(x), [x], [C])[0]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,fn,x", ROWS, ids=[r[0] for r in ROWS])
def test_joins_of_one_arrays_rows(name, fn, x):
    assert np.array_equal(fn(gnp, x), fn(np, x))
    _check_one(lambda x: fn(gnp, x), x)


@pytest.mark.parametrize("name,fn,x", CONCATENATORS, ids=[c[0] for c in CONCATENATORS])
def test_numpys_r_and_c_on_traced_values(name, fn, x):
    _check_one(fn, x)


def test_r_and_c_without_traced_values_are_numpys():
    assert np.array_equal(np.r_[1:4, [7, 8], 0.5], [1, 2, 3, 7, 8, 0.5])
    assert np.r_["0,2,0", [1, 2], [3, 4]].shape == (4, 1)
    assert np.array_equal(np.c_[np.ones(2), np.zeros(2)], [[1, 0], [1, 0]])
    assert isinstance(np.r_["r", [1, 2]], np.matrix)


def test_captured_arrays_join_traced_ones_as_constants():
    c, x = _a(3, 2), _a(3, 2)
    cc = np.concatenate([c, c], 1)
    v, g = graphc.value_and_grad(lambda x: gnp.sum(np.r_[x, c] ** 2) + gnp.sum(gnp.concatenate([c, x], 1) * cc))(x)
    assert v == pytest.approx(np.sum(np.r_[x, c] ** 2) + np.sum(np.concatenate([c, x], 1) * cc))
    np.testing.assert_allclose(g, 2 * x + c)


def test_ndim_shape_size_of_traced_values_are_ints():
    seen = {}

    def f(x):
        for m in (np, gnp):  # NumPy dispatches on a traced value, not on a list holding some
            seen[m.__name__] = (m.ndim(x), m.shape(x), m.size(x), m.size(x, 1), m.size(x, (0, -1)))
        seen["lists"] = (gnp.ndim([x, x]), gnp.shape([x, x]), gnp.size([x, x]))
        return gnp.sum(x)

    x = _a(2, 3)
    graphc.value_and_grad(f)(x)
    want = (2, (2, 3), 6, 3, 6)
    assert seen == {"numpy": want, "graphc.numpy": want, "lists": (3, (2, 2, 3), 12)}
    assert all(type(v) is int for v in seen["numpy"][:1] + seen["numpy"][2:] + seen["numpy"][1])
    assert (gnp.ndim(x), gnp.shape(x), gnp.size(x), gnp.size(x, 0)) == (2, (2, 3), 6, 2)
    assert (gnp.ndim(1.5), gnp.shape([[1], [2]]), gnp.size([1, 2, 3])) == (0, (2, 1), 3)
