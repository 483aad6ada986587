"""graphc.nn's convolutions and pools (issue 27) and the unfold/fold ops they lower to: values
against hand-written NumPy (explicit loops over output pixels) always and against PyTorch when it
is installed, gradients against SymPy's exact derivatives element by element (check_tensor), central
finite differences in float64 and torch's autograd, float32 within tolerance, every tensor target,
PyTorch's own semantics cases (stride, padding, dilation, groups, 'same'/'valid', output_padding),
and the errors, which name the argument."""

import pickle

import numpy as np
import pytest
from conftest import fd_grad, on_every_target

import graphc
import graphc.nn as gnn
import graphc.numpy as gnp
from graphc import ir
from graphc.backends.targets import DEFAULT_TARGET
from graphc.errors import ArgumentError, IRError, ShapeError, UnsupportedError
from graphc.registry import REGISTRY
from graphc.verify.tensor import check_tensor

# ------------------------------------------------------------------ hand-written NumPy references


def _pads(padding, kernel=None, dilation=(1, 1)):
    """(top, bottom, left, right) from an int, a pair, 'valid' or 'same' (extra at the end)."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        out = []
        for k, d in zip(kernel, dilation):
            out += [d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2]
        return tuple(out)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (ph, ph, pw, pw)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _padded(x, pads, fill=0.0):
    pt, pb, pl, pr = pads
    n, c, h, w = x.shape
    xp = np.full((n, c, h + pt + pb, w + pl + pr), fill)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    return xp


def ref_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation by its definition: one output pixel of one channel at a time."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    o, cg, kh, kw = w.shape
    xp = _padded(np.asarray(x, dtype=float), _pads(padding, (kh, kw), (dh, dw)))
    n, _, hp, wp = xp.shape
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for oc in range(o):
        g = oc // (o // groups)
        for i in range(oh):
            for j in range(ow):
                for ci in range(cg):
                    for a in range(kh):
                        for bb in range(kw):
                            out[:, oc, i, j] += xp[:, g * cg + ci, i * sh + a * dh, j * sw + bb * dw] * w[oc, ci, a, bb]
    return out if b is None else out + np.asarray(b)[None, :, None, None]


def _one(v):
    return v if isinstance(v, int) else v[0]


def ref_conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d's reference over a (N, C, 1, L) image."""
    pad = padding if isinstance(padding, str) else (0, _one(padding))
    return ref_conv2d(x[:, :, None], w[:, :, None], b, (1, _one(stride)), pad, (1, _one(dilation)), groups)[:, :, 0]


def ref_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Each input pixel scatters its weighted kernel into the output (the transpose's definition)."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = map(_pair, (stride, padding, output_padding, dilation))
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    hout = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wout = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, og * groups, hout + 2 * ph + kh * dh + sh, wout + 2 * pw + kw * dw + sw))
    for ci in range(c):
        g = ci // cg
        for i in range(h):
            for j in range(wd):
                for oc in range(og):
                    for a in range(kh):
                        for bb in range(kw):
                            full[:, g * og + oc, i * sh + a * dh, j * sw + bb * dw] += x[:, ci, i, j] * w[ci, oc, a, bb]
    out = full[:, :, ph:ph + hout, pw:pw + wout]
    return out if b is None else out + np.asarray(b)[None, :, None, None]


def ref_pool(x, kernel_size, stride=None, padding=0, dilation=1, kind="max"):
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(stride) if stride is not None else (kh, kw)
    (dh, dw) = _pair(dilation)
    pads = _pads(padding)
    xp = _padded(np.asarray(x, dtype=float), pads, -np.inf if kind == "max" else 0.0)
    n, c, hp, wp = xp.shape
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            out[:, :, i, j] = win.max(axis=(2, 3)) if kind == "max" else win.sum(axis=(2, 3)) / (kh * kw)
    return out


def ref_unfold(x, kernel, stride, pads, dilation, fill=0.0):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    xp = _padded(x, pads, fill)
    n, c, hp, wp = xp.shape
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c * kh * kw, oh * ow))
    for ch in range(c):
        for a in range(kh):
            for bb in range(kw):
                for i in range(oh):
                    for j in range(ow):
                        out[:, (ch * kh + a) * kw + bb, i * ow + j] = xp[:, ch, i * sh + a * dh, j * sw + bb * dw]
    return out


def ref_fold(cols, size, kernel, stride, pads, dilation):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    pt, pb, pl, pr = pads
    n, d, L = cols.shape
    c = d // (kh * kw)
    hp, wp = size[0] + pt + pb, size[1] + pl + pr
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c, hp, wp))
    for ch in range(c):
        for a in range(kh):
            for bb in range(kw):
                for i in range(oh):
                    for j in range(ow):
                        out[:, ch, i * sh + a * dh, j * sw + bb * dw] += cols[:, (ch * kh + a) * kw + bb, i * ow + j]
    return out[:, :, pt:pt + size[0], pl:pl + size[1]]


# ------------------------------------------------------------------ cases

# name -> (graphc function, reference, torch function name, argument shapes, keyword arguments); the weights of
# the transposed convolution are (in, out/groups, kH, kW). Ported from PyTorch's conv/pool tests and OpInfo
# samples: plain, stride, padding, dilation, groups (depthwise too), 'same' (odd and even kernels, dilated),
# 'valid', 1x1 kernels, a kernel the size of the input, output_padding, unbatched inputs.
CASES = {
    "conv2d": ("conv2d", [(2, 3, 5, 5), (4, 3, 3, 3), (4,)], {}),
    "conv2d-stride": ("conv2d", [(1, 2, 7, 6), (3, 2, 3, 2), (3,)], {"stride": (2, 3)}),
    "conv2d-padding": ("conv2d", [(2, 2, 4, 5), (3, 2, 3, 3), None], {"padding": (2, 1)}),
    "conv2d-dilation": ("conv2d", [(1, 2, 7, 7), (2, 2, 3, 2), (2,)], {"dilation": (2, 3), "padding": 1}),
    "conv2d-groups": ("conv2d", [(2, 4, 5, 4), (6, 2, 2, 3), (6,)], {"groups": 2, "stride": 2, "padding": 1}),
    "conv2d-depthwise": ("conv2d", [(1, 3, 5, 5), (6, 1, 3, 3), None], {"groups": 3, "padding": 1}),
    "conv2d-same-odd": ("conv2d", [(1, 2, 5, 6), (3, 2, 3, 5), (3,)], {"padding": "same"}),
    "conv2d-same-even": ("conv2d", [(1, 1, 6, 5), (2, 1, 4, 2), None], {"padding": "same"}),
    "conv2d-same-dilated": ("conv2d", [(1, 2, 7, 7), (2, 2, 2, 3), None], {"padding": "same", "dilation": (3, 2)}),
    "conv2d-valid": ("conv2d", [(1, 2, 4, 4), (1, 2, 2, 2), (1,)], {"padding": "valid"}),
    "conv2d-1x1": ("conv2d", [(2, 3, 3, 4), (5, 3, 1, 1), (5,)], {}),
    "conv2d-full-kernel": ("conv2d", [(2, 2, 3, 3), (2, 2, 3, 3), None], {}),
    "conv2d-unbatched": ("conv2d", [(2, 4, 4), (3, 2, 2, 2), (3,)], {"stride": 2}),
    "conv1d": ("conv1d", [(2, 3, 9), (4, 3, 3), (4,)], {"stride": 2, "padding": 1}),
    "conv1d-dilated-groups": ("conv1d", [(1, 4, 10), (2, 2, 3), None], {"dilation": 2, "groups": 2}),
    "conv1d-same-even": ("conv1d", [(2, 1, 7), (2, 1, 4), (2,)], {"padding": "same", "dilation": 3}),
    "conv1d-unbatched": ("conv1d", [(2, 6), (3, 2, 2), None], {}),
    "convT": ("conv_transpose2d", [(2, 3, 3, 4), (3, 2, 3, 3), (2,)], {}),
    "convT-stride": ("conv_transpose2d", [(1, 2, 3, 3), (2, 3, 2, 3), None], {"stride": (2, 3), "padding": (0, 1)}),
    "convT-output-padding": ("conv_transpose2d", [(1, 2, 3, 2), (2, 2, 3, 3), (2,)],
                             {"stride": 2, "padding": 1, "output_padding": 1}),
    "convT-output-padding-past-padding": ("conv_transpose2d", [(1, 1, 2, 2), (1, 1, 2, 2), None],
                                          {"stride": 3, "padding": 1, "output_padding": 2}),
    "convT-output-in-padding-only": ("conv_transpose2d", [(1, 1, 1, 1), (1, 1, 1, 1), (1,)],
                                     {"stride": 3, "padding": 1, "output_padding": 2}),  # the bias alone
    "convT-dilation-groups": ("conv_transpose2d", [(1, 4, 3, 3), (4, 1, 2, 2), (2,)],
                              {"groups": 2, "dilation": 2, "output_padding": 1}),
    "convT-unbatched": ("conv_transpose2d", [(2, 2, 3), (2, 1, 2, 2), None], {"stride": 2}),
    "max_pool2d": ("max_pool2d", [(2, 3, 4, 4)], {"kernel_size": 2}),
    "max_pool2d-overlap-padding": ("max_pool2d", [(1, 2, 5, 6)], {"kernel_size": 3, "stride": (1, 2), "padding": 1}),
    "max_pool2d-dilation": ("max_pool2d", [(1, 1, 7, 6)], {"kernel_size": (2, 3), "stride": 2, "padding": (1, 0),
                                                           "dilation": 2}),
    "max_pool2d-unbatched": ("max_pool2d", [(2, 5, 5)], {"kernel_size": 2, "stride": 1}),
    "avg_pool2d": ("avg_pool2d", [(2, 2, 4, 6)], {"kernel_size": (2, 3)}),
    "avg_pool2d-padding": ("avg_pool2d", [(1, 3, 5, 5)], {"kernel_size": 3, "stride": 2, "padding": 1}),
    "avg_pool2d-unbatched": ("avg_pool2d", [(1, 4, 5)], {"kernel_size": 2, "stride": (1, 2), "padding": (1, 0)}),
}

REFS = {"conv2d": ref_conv2d, "conv1d": ref_conv1d, "conv_transpose2d": ref_conv_transpose2d,
        "max_pool2d": lambda x, **k: ref_pool(x, kind="max", **k),
        "avg_pool2d": lambda x, **k: ref_pool(x, kind="avg", **k)}


def _arrays(name, seed=0):
    rng = np.random.default_rng(seed + len(name))
    _, shapes, _ = CASES[name]
    out = []
    for s in shapes:
        if s is None:
            out.append(None)
            continue
        # distinct entries, at least 0.05 apart: no ties and no kink of max within a central difference
        out.append((rng.permutation(int(np.prod(s))).reshape(s) * 0.05 - 1.0) + rng.uniform(0, 0.01, size=s))
    return out


def _unbatch(fn, arrays, kwargs, ref):
    """The reference on an unbatched input: add the batch axis and take it off again."""
    x = arrays[0]
    if x.ndim == (3 if fn == "conv1d" else 4):
        return ref(*arrays, **kwargs)
    return ref(x[None], *arrays[1:], **kwargs)[0]


def reference(name, arrays):
    fn, _, kwargs = CASES[name]
    return _unbatch(fn, list(arrays), kwargs, REFS[fn])


def _call(name, module, arrays):
    fn, _, kwargs = CASES[name]
    return getattr(module, fn)(*arrays, **kwargs)


def _loss_weights(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape)


def _traced_loss(name, arrays, outer=lambda y: y):
    """loss(*present arrays, C) = sum(outer(C * f(arrays))); C weighs every output entry differently
    (with outer the identity, the gradient is f's VJP of C). None arguments (no bias) stay None."""
    def loss(*args):
        *present, C = args
        return gnp.sum(outer(_call(name, gnn, _with(arrays, present)) * C))

    # value_and_grad reads the function's parameters: one per array, then C
    return [lambda a, C: loss(a, C), lambda a, b, C: loss(a, b, C), lambda a, b, c, C: loss(a, b, c, C)][
        len(_present(arrays)) - 1]


def _present(arrays):
    return [a for a in arrays if a is not None]


def _with(arrays, present):
    it = iter(present)
    return [None if a is None else next(it) for a in arrays]


# ------------------------------------------------------------------ values


def test_the_references_are_right_on_hand_computed_cases():
    # a 2x2 kernel of ones is the sum of each 2x2 block; stride 2 leaves disjoint blocks
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(ref_conv2d(x, np.ones((1, 1, 2, 2)), stride=2)[0, 0], [[10, 18], [42, 50]])
    np.testing.assert_array_equal(ref_pool(x, 2)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(ref_pool(x, 2, kind="avg")[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    # the transposed convolution of one pixel is the kernel, scaled, at stride offsets
    y = ref_conv_transpose2d(np.array([[[[2.0, 3.0]]]]), np.arange(1.0, 5.0).reshape(1, 1, 2, 2), stride=3)
    np.testing.assert_array_equal(y[0, 0], [[2, 4, 0, 3, 6], [6, 8, 0, 9, 12]])
    # and it is conv2d's adjoint: <conv(x), g> = <x, convT(g)>
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 4, 6, 5)), rng.normal(size=(6, 2, 3, 2))
    kw = {"stride": 2, "padding": 1, "dilation": (1, 2), "groups": 2}
    y = ref_conv2d(x, w, **kw)
    g = rng.normal(size=y.shape)
    back = ref_conv_transpose2d(g, w, output_padding=(1, 0), **kw)
    assert back.shape == x.shape
    assert np.sum(y * g) == pytest.approx(np.sum(x * back), rel=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_eager_and_traced_values_against_the_numpy_reference(name):
    arrays = _arrays(name)
    want = reference(name, arrays)
    got = _call(name, gnn, arrays)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    C = _loss_weights(want.shape)
    present = _present(arrays)
    v = graphc.jit(_traced_loss(name, arrays), target="numpy")(*present, C)  # llvm & co: test_on_every_target
    assert v == pytest.approx(float(np.sum(want * C)), rel=1e-12)


def _sample(names, every):
    """Every `every`-th name in the fast tier, the rest marked slow."""
    return [pytest.param(n, marks=[] if k % every == 0 else [pytest.mark.slow]) for k, n in enumerate(names)]


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch: its even-kernel 'same' pads a copy
@pytest.mark.parametrize("name", list(CASES))
def test_values_against_torch(name):
    torch = pytest.importorskip("torch")
    fn, _, kwargs = CASES[name]
    arrays = _arrays(name)
    want = getattr(torch.nn.functional, fn)(*[None if a is None else torch.tensor(a) for a in arrays], **kwargs)
    np.testing.assert_allclose(_call(name, gnn, arrays), want.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", _sample(list(CASES), 3))
def test_values_and_gradients_against_torch(name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    fn, _, kwargs = CASES[name]
    arrays = _arrays(name)
    t = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    ty = getattr(F, fn)(*t, **kwargs)
    C = _loss_weights(tuple(ty.shape))
    (ty * torch.tensor(C)).sum().backward()
    np.testing.assert_allclose(_call(name, gnn, arrays), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    present = _present(arrays)
    argnums = tuple(range(len(present)))
    v, grads = graphc.value_and_grad(_traced_loss(name, arrays), argnums=argnums, target="numpy")(*present, C)
    assert v == pytest.approx(float((ty.detach() * torch.tensor(C)).sum()), rel=1e-12)
    for g, tt in zip(grads, [a for a in t if a is not None]):
        np.testing.assert_allclose(g, tt.grad.numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ gradients


FD_CASES = ["conv2d-groups", "conv2d-same-even", "conv1d-dilated-groups", "convT-output-padding",
            "convT-output-padding-past-padding", "max_pool2d-overlap-padding", "max_pool2d-dilation",
            "avg_pool2d-padding"]


@pytest.mark.parametrize("name", _sample(FD_CASES, 2))
def test_gradients_against_central_differences(name):
    arrays = _arrays(name)
    C = _loss_weights(reference(name, arrays).shape)
    present = _present(arrays)
    argnums = tuple(range(len(present)))
    # a nonlinear loss of the output: sum(sin(C * f)), so the cotangent varies with the point
    _, grads = graphc.value_and_grad(_traced_loss(name, arrays, gnp.sin), argnums=argnums, target="numpy")(*present, C)
    for k, g in enumerate(grads):
        def f(a, k=k):
            args = list(present)
            args[k] = a
            return float(np.sum(np.sin(reference(name, _with(arrays, args)) * C)))
        np.testing.assert_allclose(g, fd_grad(f, present[k]), rtol=1e-6, atol=1e-7)


SYMPY = [
    ("conv2d", lambda x, w, b: gnp.sum(gnp.sin(gnn.conv2d(x, w, b, stride=(1, 2), padding=1, dilation=(2, 1),
                                                         groups=2))), [(1, 2, 3, 3), (2, 1, 2, 2), (2,)]),
    ("conv2d-same", lambda x, w: gnp.sum(gnn.conv2d(x, w, padding="same") ** 3), [(1, 1, 3, 3), (2, 1, 2, 2)]),
    ("conv1d", lambda x, w: gnp.sum(gnp.sin(gnn.conv1d(x, w, padding="same", dilation=2))), [(2, 2, 4), (1, 2, 2)]),
    ("convT", lambda x, w: gnp.sum(gnp.sin(gnn.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1))),
     [(1, 2, 2, 2), (2, 1, 2, 2)]),
    ("max_pool2d", lambda x: gnp.sum(gnp.sin(gnn.max_pool2d(x, 2, 1, 1))), [(1, 1, 3, 3)]),
    ("avg_pool2d", lambda x: gnp.sum(gnp.sin(gnn.avg_pool2d(x, (2, 3), (1, 2), (1, 1)))), [(1, 2, 3, 4)]),
]


# the fast tier: every op in float64 (conv1d and 'same' padding are conv2d's code), conv2d in float32
SYMPY_SLOW = {"float64": {"conv2d-same", "conv1d"}, "float32": {s[0] for s in SYMPY} - {"conv2d"}}


@pytest.mark.parametrize("name,f,shapes,dtype", [
    pytest.param(*case, dt, id=f"{case[0]}-{dt}", marks=[pytest.mark.slow] if case[0] in SYMPY_SLOW[dt] else [])
    for dt in ("float64", "float32") for case in SYMPY])
def test_gradients_against_sympy(name, f, shapes, dtype):
    rng = np.random.default_rng(len(name))
    args = [rng.normal(size=s).astype(dtype) for s in shapes]
    fn = graphc.compile(graphc.value_and_grad(f, argnums=tuple(range(len(args)))).lower(*args))
    assert fn.dtype == dtype
    assert {"unfold", "fold"} <= {n.op for n in fn.program.graph.body}
    names = [n.attr for n in fn.forward_graph.inputs]
    report = check_tensor(fn, values=[dict(zip(names, args))])
    assert report.ok, str(report)


def test_max_pool_gradient_goes_to_the_maximum_and_ties_split_evenly():
    # every window of a constant image is all ties: each entry gets 1/4 per window it is in
    x = np.ones((1, 1, 3, 3))
    _, g = graphc.value_and_grad(lambda x: gnp.sum(gnn.max_pool2d(x, 2, stride=1)))(x)
    np.testing.assert_array_equal(g[0, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    # distinct entries: the maximum of each window takes all (the centre is the maximum of all four)
    x = np.array([[[[1.0, 2.0, 0.0], [3.0, 9.0, 4.0], [0.0, 5.0, 1.0]]]])
    _, g = graphc.value_and_grad(lambda x: gnp.sum(gnn.max_pool2d(x, 2, stride=1)))(x)
    np.testing.assert_array_equal(g[0, 0], [[0, 0, 0], [0, 4, 0], [0, 0, 0]])
    # padding is -inf: a window of padding and one entry picks the entry, even a negative one
    x = -np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    y = gnn.max_pool2d(x, 2, stride=1, padding=1)
    np.testing.assert_array_equal(y[0, 0], [[-1, -1, -2], [-1, -1, -2], [-3, -3, -4]])


def test_a_max_pool_window_of_padding_only_is_minus_infinity():
    """A dilated window can hold padding only (PyTorch allows the padding): its max is -inf, as
    PyTorch's, and no gradient reaches the image from it."""
    x = np.array([[[[5.0, -2.0, 4.0], [3.0, 1.0, 0.5]]]])
    kw = {"kernel_size": (2, 1), "stride": 1, "padding": (1, 0), "dilation": (3, 1)}
    # padded rows: pad, x0, x1, pad; the one window of each column reads rows 0 and 3
    y = gnn.max_pool2d(x, **kw)
    np.testing.assert_array_equal(y, np.full((1, 1, 1, 3), -np.inf))
    np.testing.assert_array_equal(y, ref_pool(x, kind="max", **kw))
    _, g = graphc.value_and_grad(lambda x: gnp.sum(gnp.maximum(gnn.max_pool2d(x, **kw), -10.0) ** 2)
                                 + gnp.sum(gnn.max_pool2d(x, 2, padding=1)))(x)
    np.testing.assert_array_equal(g, [[[[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]]])  # only the other pool's maxima
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(y, torch.nn.functional.max_pool2d(torch.tensor(x), **kw).numpy())


def test_hessian_vector_products_run_through_unfold_and_fold():
    """fold and unfold are each other's VJPs, so the gradient is differentiable again."""
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(1, 2, 4, 4)), rng.normal(size=(2, 2, 2, 2))
    v = rng.normal(size=x.shape)

    def f(x, w):
        return gnp.sum(gnp.sin(gnn.conv2d(x, w, stride=1, padding=1)))

    hv = graphc.hvp(f)(x, v, w)
    grad = graphc.grad(f)
    h = 1e-5
    fd = (np.asarray(grad(x + h * v, w)) - np.asarray(grad(x - h * v, w))) / (2 * h)
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ float32, targets, batch sizes


@pytest.mark.parametrize("name", _sample(["conv2d-groups", "convT-dilation-groups", "max_pool2d-overlap-padding",
                                          "avg_pool2d-padding", "conv1d"], 2))
def test_float32_within_tolerance(name):
    arrays = _arrays(name)
    f32 = [None if a is None else a.astype(np.float32) for a in arrays]
    got = _call(name, gnn, f32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference(name, arrays), rtol=1e-5, atol=1e-5)
    C = _loss_weights(got.shape)
    present = _present(arrays)
    argnums = tuple(range(len(present)))

    v64, g64 = graphc.value_and_grad(_traced_loss(name, arrays), argnums=argnums)(*present, C)
    v32, g32 = graphc.value_and_grad(_traced_loss(name, arrays), argnums=argnums)(*_present(f32), C.astype(np.float32))
    assert v32 == pytest.approx(v64, rel=1e-4, abs=1e-4)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


TARGET_CASES = ["conv2d-groups", "convT-output-padding", "max_pool2d-overlap-padding", "avg_pool2d-padding"]


@pytest.mark.parametrize("name,target", on_every_target([(n,) for n in TARGET_CASES], TARGET_CASES))
def test_on_every_target(name, target):
    arrays = _arrays(name)
    want = reference(name, arrays)
    C = _loss_weights(want.shape)
    present = _present(arrays)
    argnums = tuple(range(len(present)))
    loss = _traced_loss(name, arrays, gnp.sin)
    v, grads = graphc.value_and_grad(loss, argnums=argnums, target=target)(*present, C)
    rv, rgrads = graphc.value_and_grad(loss, argnums=argnums, target="numpy")(*present, C)
    assert v == pytest.approx(float(np.sum(np.sin(want * C))), rel=1e-12)
    assert v == pytest.approx(rv, rel=1e-12)
    for g, r in zip(grads, rgrads):
        np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-12)


def test_one_program_serves_every_batch_size():
    rng = np.random.default_rng(5)
    w, b = rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)

    def f(x, w, b):
        y = gnn.max_pool2d(gnn.relu(gnn.conv2d(x, w, b, padding=1)), 2)
        return gnp.sum(gnn.avg_pool2d(y, 2) ** 2)

    vg = graphc.value_and_grad(f, argnums=(0, 1, 2))
    for n in (2, 3, 5, 1):
        x = rng.normal(size=(n, 2, 8, 8))
        v, _ = vg(x, w, b)
        y = ref_pool(np.maximum(ref_conv2d(x, w, b, padding=1), 0), 2)
        assert v == pytest.approx(float(np.sum(ref_pool(y, 2, kind="avg") ** 2)), rel=1e-12)
    assert vg.cache_info()["signatures"] == 2  # the first size, then one program with a named batch axis
    assert any(s.pattern is not None and s.pattern[0][0][0] == "N" for s in vg._sigs)
    # image sizes fix the windows: a new size is traced for that size (and is right)
    for size in (6, 7):
        x = rng.normal(size=(2, 2, size, size))
        v, (gx, _, _) = vg(x, w, b)
        y = ref_pool(np.maximum(ref_conv2d(x, w, b, padding=1), 0), 2)
        assert v == pytest.approx(float(np.sum(ref_pool(y, 2, kind="avg") ** 2)), rel=1e-12) and gx.shape == x.shape


def test_schedule_shows_unfold_fold_and_gemms():
    """A traced conv2d's schedule: unfold and its gradient's fold as host steps (compiled ones, into the
    plan's buffers), the products as GEMMs (one per image: nn_conv.MERGED is off), the elementwise work
    fused (what benchmarks/RESULTS-cnn.md shows)."""
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(4, 3, 8, 8)), rng.normal(size=(5, 3, 3, 3)), rng.normal(size=5)
    vg = graphc.value_and_grad(lambda x, w, b: gnp.sum(gnn.relu(gnn.conv2d(x, w, b, padding=1)) ** 2),
                               argnums=(0, 1, 2))
    fn = graphc.compile(vg.lower(x, w, b))
    text = fn.kernel.describe().split("# ----")[0]
    assert "numpy: %" in text and "= unfold (4, 27, 64)" in text and "= fold (4, 3, 8, 8)" in text, text
    assert text.count("gemm: ") >= 3, text  # the forward product, and the two of its gradient
    assert "fused loop nest" in text, text
    host = {s.node.op: s.into for s in fn.kernel.plan.steps if s.kind == "host"}
    assert host["unfold"] and host["fold"], host  # host_kernels' compiled forms
    np.testing.assert_allclose(fn(x=x, w=w, b=b)[0], np.sum(np.maximum(ref_conv2d(x, w, b, padding=1), 0) ** 2),
                               rtol=1e-12)


def test_ir_text_json_and_pickles_round_trip():
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(1, 2, 5, 5)), rng.normal(size=(2, 3, 2, 2))

    def f(x, w):
        return gnp.sum(gnn.max_pool2d(gnn.conv_transpose2d(x, w, stride=2, output_padding=1), 3, 2, 1) ** 2)

    prog = graphc.value_and_grad(f, argnums=(0, 1)).lower(x, w)
    g = prog.graph
    assert {"unfold", "fold"} <= {n.op for n in g.body}
    text = ir.print_graph(g)
    assert "pad_value='-inf'" in text
    assert ir.parse_graph(text) == g
    assert ir.from_json(ir.to_json(g)) == g
    fn = graphc.compile(prog)
    v, grads = fn(x=x, w=w)
    v2, grads2 = pickle.loads(pickle.dumps(fn))(x=x, w=w)
    assert v == v2
    np.testing.assert_array_equal(grads["x"], grads2["x"])


# ------------------------------------------------------------------ the ops


def test_unfold_and_fold_have_every_tensor_facet():
    for name in ("unfold", "fold"):
        spec = REGISTRY[name]
        assert spec.infer is not None and spec.symbolic is not None and callable(spec.grad), name
        assert spec.code == "" and spec.doc and spec.internal and "torch.nn.functional" in spec.doc, name
        assert {"kernel", "stride", "padding", "dilation"} <= set(spec.keywords), name


# fold's three forms: overlapping windows on narrow images (channels-last adds), on wide ones
# (NARROW windows a row or more), and windows that do not overlap (one copy)
OP_GEOMETRIES = [((2, 3, 5, 6), (2, 2), (1, 1), (0, 0, 0, 0), (1, 1)),
                 ((1, 2, 6, 5), (3, 2), (2, 1), (1, 1, 2, 2), (1, 2)),
                 ((2, 1, 4, 7), (2, 3), (1, 3), (1, 0, 0, 2), (2, 1)),
                 ((1, 2, 3, 3), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
                 ((1, 2, 4, 12), (2, 3), (1, 1), (0, 1, 1, 0), (1, 1)),
                 ((2, 2, 6, 6), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)),
                 ((1, 2, 5, 7), (2, 2), (3, 3), (1, 0, 1, 1), (1, 1)),
                 ((1, 1, 7, 8), (2, 2), (3, 4), (0, 1, 0, 0), (2, 3))]


@pytest.mark.parametrize("shape,kernel,stride,pads,dilation", OP_GEOMETRIES)
def test_unfold_and_fold_numpy_forms_against_loops_torch_and_each_other(shape, kernel, stride, pads, dilation):
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape)
    geo = {"kernel": kernel, "stride": stride, "padding": pads, "dilation": dilation}
    cols = REGISTRY["unfold"].numpy(x, **geo)
    np.testing.assert_array_equal(cols, ref_unfold(x, kernel, stride, pads, dilation))
    assert not np.shares_memory(cols, x)  # a new array: the memory plan treats unfold as allocating
    filled = REGISTRY["unfold"].numpy(x, pad_value="-inf", **geo)
    np.testing.assert_array_equal(filled, ref_unfold(x, kernel, stride, pads, dilation, fill=-np.inf))
    g = rng.normal(size=cols.shape)
    back = REGISTRY["fold"].numpy(g, output_size=shape[2:], **geo)
    assert back.flags.c_contiguous and back.shape == shape
    np.testing.assert_allclose(back, ref_fold(g, shape[2:], kernel, stride, pads, dilation), rtol=1e-14, atol=1e-14)
    assert np.sum(cols * g) == pytest.approx(np.sum(x * back), rel=1e-12)  # each the other's transpose
    sym = REGISTRY["unfold"].symbolic(x.astype(object), **geo)
    np.testing.assert_array_equal(sym.astype(float), cols)
    sym = REGISTRY["fold"].symbolic(g.astype(object), output_size=shape[2:], **geo)
    np.testing.assert_allclose(sym.astype(float), back, rtol=1e-14, atol=1e-14)
    torch = pytest.importorskip("torch")
    if pads[0] == pads[1] and pads[2] == pads[3]:  # torch's unfold pads symmetrically
        tkw = {"kernel_size": kernel, "stride": stride, "padding": (pads[0], pads[2]), "dilation": dilation}
        np.testing.assert_array_equal(cols, torch.nn.functional.unfold(torch.tensor(x), **tkw).numpy())
        np.testing.assert_allclose(back, torch.nn.functional.fold(torch.tensor(g), shape[2:], **tkw).numpy(),
                                   rtol=1e-14, atol=1e-14)


def test_op_nodes_normalise_their_attributes():
    x = ir.input_node("x", "f64", ("N", 2, 5, 5))
    u = ir.make("unfold", x, kernel=3, padding=(1, 2), pad_value=float("-inf"))
    assert u.type == ir.Type("f64", ("N", 18, 35))  # (5 + 2 - 2) * (5 + 4 - 2) windows
    assert u.attrs == {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1, 2, 2), "dilation": (1, 1),
                       "pad_value": "-inf"}
    assert "pad_value" not in ir.make("unfold", x, kernel=3, pad_value=0.0).attrs
    f = REGISTRY["unfold"].grad(u, u)[0]
    assert f.op == "fold" and f.type == x.type and f.attrs["output_size"] == (5, 5)
    assert REGISTRY["fold"].grad(f, x)[0].op == "unfold"


@pytest.mark.parametrize("op,shape,attrs,err,match", [
    ("unfold", (2, 3, 4), {"kernel": 2}, ShapeError, r"x of shape \(2, 3, 4\) is not \(N, C, H, W\)"),
    ("unfold", (1, 1, 3, 3), {"kernel": 4}, ShapeError, r"kernel \(4, 4\) .* bigger than x of shape"),
    ("unfold", (1, 1, 3, 3), {"kernel": 2, "stride": 0}, ShapeError, r"stride=\(0, 0\) must be positive"),
    ("unfold", (1, 1, 3, 3), {"kernel": 2, "padding": -1}, ShapeError, "must be non-negative"),
    ("unfold", (1, 1, 3, 3), {}, IRError, "needs kernel="),
    ("unfold", (1, 1, 3, 3), {"kernel": 2, "size": 3}, IRError, "unknown attribute size="),
    ("unfold", (1, "C", 3, 3), {"kernel": 2}, ShapeError, "must be known while tracing"),
    ("fold", (1, 6, 4), {"kernel": 2, "output_size": (3, 3)}, ShapeError, "not a multiple"),
    ("fold", (1, 4, 5), {"kernel": 2, "output_size": (3, 3)}, ShapeError, r"hold 5 windows.* 2\*2 = 4"),
    ("fold", (1, 4, 4), {"kernel": 2}, IRError, "needs output_size="),
    ("fold", (4, 4), {"kernel": 2, "output_size": (3, 3)}, ShapeError, r"not \(N, C\*kh\*kw, L\)"),
])
def test_op_shape_rules_name_the_argument(op, shape, attrs, err, match):
    with pytest.raises(err, match=match):
        ir.make(op, ir.input_node("x", "f64", shape), **attrs)


# ------------------------------------------------------------------ errors


def _a(*shape):
    return np.arange(float(np.prod(shape))).reshape(shape) / 10


ERRORS = [
    (lambda: gnn.conv2d(_a(1, 1, 2, 2), _a(1, 1, 3, 3)), ShapeError,
     r"conv2d: the kernel of size \(3, 3\) .* bigger than input of shape \(1, 1, 2, 2\) padded to \(2, 2\)"),
    (lambda: gnn.conv2d(_a(1, 1, 2, 2), _a(1, 1, 3, 3), padding=1, dilation=2), ShapeError, r"spans \(5, 5\)"),
    (lambda: gnn.conv2d(_a(1, 1, 4, 4), _a(1, 1, 2, 2), stride=0), ShapeError, "non-positive stride"),
    (lambda: gnn.conv2d(_a(1, 1, 4, 4), _a(1, 1, 2, 2), stride=(1, -2)), ShapeError, "non-positive stride"),
    (lambda: gnn.conv2d(_a(1, 1, 4, 4), _a(1, 1, 2, 2), padding=-1), ShapeError, "negative padding"),
    (lambda: gnn.conv2d(_a(1, 1, 4, 4), _a(1, 1, 2, 2), dilation=0), ShapeError, "non-positive dilation"),
    (lambda: gnn.conv2d(_a(1, 3, 4, 4), _a(2, 1, 2, 2), groups=2), ShapeError,
     r"input of shape \(1, 3, 4, 4\) has 3 channels, not divisible by groups=2"),
    (lambda: gnn.conv2d(_a(1, 4, 4, 4), _a(2, 3, 2, 2)), ShapeError,
     r"weight of shape \(2, 3, 2, 2\) expects 3 channels per group, 3 in all .* input of shape \(1, 4, 4, 4\) has 4"),
    (lambda: gnn.conv2d(_a(1, 4, 4, 4), _a(3, 2, 2, 2), groups=2), ShapeError, "3 output channels, not divisible"),
    (lambda: gnn.conv2d(_a(1, 4, 4, 4), _a(2, 4, 2, 2), groups=0), ShapeError, "non-positive groups"),
    (lambda: gnn.conv2d(_a(4, 4), _a(2, 4, 2, 2)), ShapeError, r"expected 3D \(unbatched\) or 4D \(batched\) input"),
    (lambda: gnn.conv2d(_a(1, 4, 4, 4), _a(2, 4, 2)), ShapeError, r"weight of shape \(2, 4, 2\) must have 4 dim"),
    (lambda: gnn.conv2d(_a(1, 1, 4, 4), _a(1, 1, 2, 2), stride=2, padding="same"), ShapeError,
     "padding='same' is not supported for strided convolutions"),
    (lambda: gnn.conv2d(_a(1, 1, 4, 4), _a(1, 1, 2, 2), padding="full"), ArgumentError,
     "invalid padding string 'full'"),
    (lambda: gnn.conv2d(_a(1, 1, 4, 4), _a(2, 1, 2, 2), _a(3)), ShapeError, r"bias of shape \(3,\) must have shape"),
    (lambda: gnn.conv2d(_a(1, 1, 4, 4), _a(1, 1, 2, 2), stride=(1, 2, 3)), ArgumentError, "stride must be an int or"),
    (lambda: gnn.conv1d(_a(1, 2, 3), _a(1, 2, 4)), ShapeError, r"kernel of size \(4,\)"),
    (lambda: gnn.conv1d(_a(1, 2, 3, 3), _a(1, 2, 1)), ShapeError, r"expected 2D \(unbatched\) or 3D"),
    (lambda: gnn.conv_transpose2d(_a(1, 2, 3, 3), _a(2, 1, 2, 2), stride=2, output_padding=2), ShapeError,
     "output padding must be smaller than either stride or dilation"),
    (lambda: gnn.conv_transpose2d(_a(1, 3, 3, 3), _a(2, 1, 2, 2)), ShapeError,
     r"weight of shape \(2, 1, 2, 2\) expects 2 input channels .* input of shape \(1, 3, 3, 3\) has 3"),
    (lambda: gnn.conv_transpose2d(_a(1, 3, 3, 3), _a(3, 1, 2, 2), groups=2), ShapeError, "not divisible by groups"),
    (lambda: gnn.conv_transpose2d(_a(1, 1, 1, 1), _a(1, 1, 1, 1), padding=1), ShapeError, "too small"),
    (lambda: gnn.max_pool2d(_a(1, 1, 4, 4), 2, padding=2), ShapeError, "at most half of the kernel size"),
    (lambda: gnn.max_pool2d(_a(1, 1, 9, 9), 2, padding=2, dilation=3), ShapeError, r"padding=\(2, 2\) for kernel"),
    (lambda: gnn.avg_pool2d(_a(1, 1, 4, 4), (3, 2), padding=(1, 2)), ShapeError, "at most half of the kernel size"),
    (lambda: gnn.max_pool2d(_a(1, 1, 2, 2), 3), ShapeError, r"bigger than input of shape \(1, 1, 2, 2\)"),
    (lambda: gnn.max_pool2d(_a(1, 1, 4, 4), 2, stride=0), ShapeError, "non-positive stride"),
    (lambda: gnn.max_pool2d(_a(4, 4), 2), ShapeError, r"expected 3D \(unbatched\) or 4D"),
    (lambda: gnn.max_pool2d(_a(1, 1, 4, 4), 2, ceil_mode=True), UnsupportedError, "ceil_mode=True"),
    (lambda: gnn.avg_pool2d(_a(1, 1, 4, 4), 2, count_include_pad=False), UnsupportedError, "count_include_pad"),
    (lambda: gnn.avg_pool2d(_a(1, 1, 4, 4), 0), ShapeError, "non-positive kernel_size"),
]


@pytest.mark.parametrize("call,err,match", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_bad_arguments_are_graphc_errors_naming_them(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_errors_while_tracing_too():
    x, w = _a(2, 3, 4, 4), _a(2, 1, 2, 2)
    with pytest.raises(ShapeError, match="not divisible by groups=2"):
        graphc.value_and_grad(lambda x, w: gnp.sum(gnn.conv2d(x, w, groups=2)))(x, w)
    with pytest.raises(ShapeError, match="bigger than input"):
        graphc.value_and_grad(lambda x: gnp.sum(gnn.avg_pool2d(x, 5)))(x)
    with pytest.raises(ShapeError, match="padding='same' is not supported for strided"):
        graphc.value_and_grad(lambda x, w: gnp.sum(gnn.conv1d(x[:, :, 0], w[:, :, 0], stride=2, padding="same")),
                              argnums=(0, 1))(x, _a(2, 3, 2, 2))


# ------------------------------------------------------------------ the fast paths: tiling max pools, merged columns


def _pool_by_unfold(x, kernel):
    """max_pool2d(x, kernel) the general way (unfold with -inf padding, then graphc's max over the window
    axis): the reference the tiling path must agree with bit for bit, ties and NaN included."""
    from graphc.trace import apply

    n, c, h, w = x.shape
    kh, kw = kernel
    cols = apply("unfold", x, kernel=kernel, stride=kernel, pad_value="-inf")
    return apply("amax", gnp.reshape(cols, (n, c, kh * kw, h // kh, w // kw)), axis=(2,), keepdims=False)


TILE_CASES = [((2, 3, 4, 6), (2, 2)), ((1, 2, 7, 9), (2, 3)), ((2, 1, 6, 5), (3, 1)), ((1, 2, 4, 4), (4, 4)),
              ((1, 1, 3, 3), (1, 1)), ((3, 2, 5, 8), (2, 2))]


@pytest.mark.parametrize("shape,kernel", TILE_CASES, ids=[f"{s}-{k}" for s, k in TILE_CASES])
def test_tiling_max_pools_are_one_op_and_agree_with_the_references(shape, kernel):
    """stride = kernel, no padding: tile_max and its VJP tile_max_grad, no im2col; values against the loops
    and PyTorch, gradients bit for bit against the unfold path on the reference and the default target."""
    rng = np.random.default_rng(sum(shape))
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 3.0  # distinct: PyTorch's argmax is ours
    y = gnn.max_pool2d(x, kernel)
    np.testing.assert_array_equal(y, ref_pool(x, kernel))
    C = _loss_weights(y.shape)

    def fast(x, C):
        return gnp.sum(gnp.sin(gnn.max_pool2d(x, kernel) * C))

    def slow(x, C):
        return gnp.sum(gnp.sin(_pool_by_unfold(x, kernel) * C))

    ops = {n.op for n in graphc.value_and_grad(fast).lower(x, C).graph.body}
    assert {"tile_max", "tile_max_grad"} <= ops and "unfold" not in ops and "fold" not in ops, ops
    for target in ("numpy", DEFAULT_TARGET):
        v, g = graphc.value_and_grad(fast, target=target)(x, C)
        v0, g0 = graphc.value_and_grad(slow, target=target)(x, C)
        assert v == v0 and np.array_equal(g, g0), target
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, kernel)
    torch.sin(ty * torch.tensor(C)).sum().backward()
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_tiling_max_pool_ties_split_evenly_nan_and_infinities():
    """Ties share a window's gradient evenly (2, 3 and 4 ways), entries past the last window get 0,
    a window holding NaN has NaN as its max and NaN gradients, a window of -inf is all ties -- each as
    the unfold path (graphc's max) has it, bit for bit, in float64 and float32."""
    x = np.zeros((1, 2, 5, 4))
    x[0, 0, :4] = [[1, 1, 0, 2], [1, 0, 2, 2], [3, 3, 5, 4], [3, 0, 4, 5]]  # windows: 3-way, 3-way, 2-way, 2-way
    x[0, 0, 4] = 9.0  # the row past the last window: read by no window
    x[0, 1, :2, :2] = np.nan
    x[0, 1, 2:4, :2] = -np.inf
    x[0, 1, 2:4, 2:] = np.inf
    x[0, 1, :2, 2:] = [[0.0, -0.0], [-0.0, -1.0]]
    weights = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    for dt in (np.float64, np.float32):
        xs, C = x.astype(dt), weights.astype(dt)
        v, g = graphc.value_and_grad(lambda x, C: gnp.sum(gnn.max_pool2d(x, 2) * C))(xs, C)
        v0, g0 = graphc.value_and_grad(lambda x, C: gnp.sum(_pool_by_unfold(x, (2, 2)) * C))(xs, C)
        assert g.dtype == dt and np.array_equal(g, g0, equal_nan=True), (g, g0)
        assert np.isnan(v) and np.isnan(v0)
        want = np.array([[1 / 3, 1 / 3, 0, 2 / 3], [1 / 3, 0, 2 / 3, 2 / 3], [1, 1, 2, 0], [1, 0, 0, 2], [0, 0, 0, 0]])
        np.testing.assert_array_equal(g[0, 0], want.astype(dt))
        assert np.isnan(g[0, 1, :2, :2]).all()
        np.testing.assert_array_equal(g[0, 1, 2:4, :2], np.full((2, 2), 7 / 4))  # -inf everywhere: four ties
        np.testing.assert_array_equal(g[0, 1, 2:4, 2:], np.full((2, 2), 2.0))
        np.testing.assert_array_equal(g[0, 1, :2, 2:], [[2, 2], [2, 0]])  # 0 == -0: three ties
        np.testing.assert_array_equal(g[0, 1, 4], np.zeros(4))
    y = gnn.max_pool2d(x, 2)
    assert np.isnan(y[0, 1, 0, 0]) and y[0, 1, 1, 0] == -np.inf and y[0, 1, 1, 1] == np.inf


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tiling_max_pool_gradient_against_sympy(dtype):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 2, 4, 5)).astype(dtype)
    f = lambda x: gnp.sum(gnp.sin(gnn.max_pool2d(x, 2)) * gnp.arange(1.0, 5.0).reshape(1, 1, 2, 2))  # noqa: E731
    fn = graphc.compile(graphc.value_and_grad(f).lower(x))
    assert "tile_max" in {n.op for n in fn.program.graph.body}
    report = check_tensor(fn, values=[{"x": x}])
    assert report.ok, str(report)


def test_tiling_max_pool_hessian_vector_products():
    """tile_max_grad's own VJP (each window's share of the cotangent, summed; none in x) makes the gradient
    differentiable again: Hessian-vector products against central differences of the gradient."""
    rng = np.random.default_rng(4)
    x = rng.permutation(2 * 3 * 6 * 5).reshape(2, 3, 6, 5) * 0.05 - 2.0
    w = rng.normal(size=(4, 3, 3, 3))
    v = rng.normal(size=x.shape)

    def f(x, w):
        return gnp.sum(gnp.sin(gnn.max_pool2d(gnn.conv2d(x, w, padding=1), 2)) ** 2)

    hv = graphc.hvp(f)(x, v, w)
    grad = graphc.grad(f)
    h = 1e-6
    fd = (np.asarray(grad(x + h * v, w)) - np.asarray(grad(x - h * v, w))) / (2 * h)
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["conv2d", "conv2d-groups", "conv2d-dilation", "conv1d-dilated-groups",
                                  "conv2d-same-even"])
def test_merged_columns_give_the_per_image_values_and_gradients(name, monkeypatch):
    """nn_conv.MERGED: a known batch's windows as the columns of one matrix (unfold(merged=True)), each
    product one GEMM (per group) instead of one per image; the same values and gradients, and a batch of
    unknown size (named while tracing) keeps the per-image layout."""
    from graphc import nn_conv

    arrays = _arrays(name)
    C = _loss_weights(reference(name, arrays).shape)
    present = _present(arrays)
    argnums = tuple(range(len(present)))
    loss = _traced_loss(name, arrays, gnp.sin)
    got = {}
    for merged in (False, True):
        monkeypatch.setattr(nn_conv, "MERGED", merged)
        vg = graphc.value_and_grad(loss, argnums=argnums)
        got[merged] = vg(*present, C)
        unfolds = [n for n in vg.lower(*present, C).graph.body if n.op == "unfold"]
        assert unfolds and all(bool(n.attrs.get("merged")) == merged for n in unfolds)
    (v0, g0), (v1, g1) = got[False], got[True]
    assert v1 == pytest.approx(v0, rel=1e-12)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    assert v0 == pytest.approx(float(np.sum(np.sin(reference(name, arrays) * C))), rel=1e-12)


def test_merged_columns_schedule_and_named_batches(monkeypatch):
    from graphc import nn_conv

    monkeypatch.setattr(nn_conv, "MERGED", True)
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(4, 3, 8, 8)), rng.normal(size=(5, 3, 3, 3)), rng.normal(size=5)
    vg = graphc.value_and_grad(lambda x, w, b: gnp.sum(gnn.relu(gnn.conv2d(x, w, b, padding=1)) ** 2),
                               argnums=(0, 1, 2))
    fn = graphc.compile(vg.lower(x, w, b))
    text = fn.kernel.describe().split("# ----")[0]
    assert "= unfold (1, 27, 256)" in text and "= fold (4, 3, 8, 8)" in text, text
    assert text.count("gemm: ") == 3 and "= matmul" not in text, text  # the product and both gradients, 2-D
    for n in (4, 3, 5):  # the second size names the batch: the per-image layout, one program for every size
        xb = rng.normal(size=(n, 3, 8, 8))
        v, _ = vg(xb, w, b)
        assert v == pytest.approx(float(np.sum(np.maximum(ref_conv2d(xb, w, b, padding=1), 0) ** 2)), rel=1e-12)
    named = [s for s in vg._sigs if s.pattern is not None]
    assert named and not any(n.attrs.get("merged") for n in named[0].program.graph.body if n.op == "unfold")


MERGED_GEOMETRIES = [((2, 3, 5, 6), (2, 2), (1, 1), (0, 0, 0, 0), (1, 1)),
                     ((3, 2, 6, 5), (3, 2), (2, 1), (1, 1, 2, 2), (1, 2)),
                     ((2, 1, 7, 8), (2, 2), (3, 4), (0, 1, 0, 0), (2, 3))]


@pytest.mark.parametrize("shape,kernel,stride,pads,dilation", MERGED_GEOMETRIES)
def test_merged_unfold_and_fold_are_the_batch_side_by_side(shape, kernel, stride, pads, dilation):
    """unfold(merged=True) is (1, C*kh*kw, N*L): column n*L + l holds image n's window l; fold(merged=True)
    its transpose; NumPy and SymPy forms against the loops and each other."""
    rng = np.random.default_rng(sum(shape) + 1)
    x = rng.normal(size=shape)
    geo = {"kernel": kernel, "stride": stride, "padding": pads, "dilation": dilation}
    per_image = ref_unfold(x, kernel, stride, pads, dilation)  # (N, K, L)
    n, k, L = per_image.shape
    cols = REGISTRY["unfold"].numpy(x, merged=True, **geo)
    np.testing.assert_array_equal(cols, per_image.transpose(1, 0, 2).reshape(1, k, n * L))
    np.testing.assert_array_equal(REGISTRY["unfold"].numpy(x, merged=True, pad_value="-inf", **geo),
                                  ref_unfold(x, kernel, stride, pads, dilation, -np.inf).transpose(1, 0, 2)
                                  .reshape(1, k, n * L))
    g = rng.normal(size=cols.shape)
    back = REGISTRY["fold"].numpy(g, output_size=shape[2:], merged=True, **geo)
    want = ref_fold(g.reshape(k, n, L).transpose(1, 0, 2), shape[2:], kernel, stride, pads, dilation)
    np.testing.assert_allclose(back, want, rtol=1e-14, atol=1e-14)
    assert np.sum(cols * g) == pytest.approx(np.sum(x * back), rel=1e-12)
    np.testing.assert_array_equal(REGISTRY["unfold"].symbolic(x.astype(object), merged=True, **geo).astype(float),
                                  cols)
    np.testing.assert_allclose(REGISTRY["fold"].symbolic(g.astype(object), output_size=shape[2:], merged=True,
                                                         **geo).astype(float), back, rtol=1e-14, atol=1e-14)
    u = ir.make("unfold", ir.input_node("x", "f64", shape), merged=True, **geo)
    assert u.type.shape == (1, k, n * L) and u.attrs["merged"] is True
    f = REGISTRY["unfold"].grad(u, u)[0]
    assert f.op == "fold" and f.attrs["merged"] is True and f.shape == shape
    assert REGISTRY["fold"].grad(f, f)[0].attrs["merged"] is True


def test_tile_ops_have_every_facet_and_round_trip():
    for name in ("tile_max", "tile_max_grad"):
        spec = REGISTRY[name]
        assert spec.infer is not None and spec.symbolic is not None and callable(spec.grad), name
        assert spec.internal and "torch.nn.functional" in spec.doc and spec.keywords == ("kernel",), name
    x = ir.input_node("x", "f32", ("N", 3, 7, 5))
    t = ir.make("tile_max", x, kernel=2)
    assert t.type == ir.Type("f32", ("N", 3, 3, 2)) and t.attrs == {"kernel": (2, 2)}
    (dg,) = REGISTRY["tile_max"].grad(t, t)
    assert dg.op == "tile_max_grad" and dg.type == x.type
    dx, dh = REGISTRY["tile_max_grad"].grad(dg, x)
    assert dx is None and dh.type == t.type  # piecewise constant in x; linear in the cotangent
    # the symbolic forms: Max over each window, and the share of each entry (ties split)
    xs = np.array([[[[1.0, 3.0, 2.0], [3.0, 0.0, 5.0]]]])
    np.testing.assert_array_equal(REGISTRY["tile_max"].symbolic(xs.astype(object), kernel=(2, 2)).astype(float),
                                  [[[[3.0]]]])
    sym = REGISTRY["tile_max_grad"].symbolic(xs.astype(object), np.array([[[[6.0]]]], dtype=object), kernel=(2, 2))
    np.testing.assert_array_equal(sym.astype(float), [[[[0, 3, 0], [3, 0, 0]]]])
    # the IR text, JSON and pickles keep the ops and merged=True
    rng = np.random.default_rng(1)
    xv, wv = rng.normal(size=(2, 2, 6, 6)), rng.normal(size=(3, 2, 3, 3))

    def f(x, w):
        return gnp.sum(gnn.max_pool2d(gnn.conv2d(x, w, padding=1), 2) ** 2)

    from graphc import nn_conv

    old, nn_conv.MERGED = nn_conv.MERGED, True
    try:
        prog = graphc.value_and_grad(f, argnums=(0, 1)).lower(xv, wv)
    finally:
        nn_conv.MERGED = old
    g = prog.graph
    assert {"tile_max", "tile_max_grad", "unfold", "fold"} <= {n.op for n in g.body}
    text = ir.print_graph(g)
    assert "merged=True" in text and "= tile_max_grad %" in text
    assert ir.parse_graph(text) == g and ir.from_json(ir.to_json(g)) == g
    fn = graphc.compile(prog)
    v, grads = fn(x=xv, w=wv)
    v2, grads2 = pickle.loads(pickle.dumps(fn))(x=xv, w=wv)
    assert v == v2 and np.array_equal(grads["w"], grads2["w"])


@pytest.mark.parametrize("op,shapes,attrs,err,match", [
    ("tile_max", [(2, 3, 4)], {"kernel": 2}, ShapeError, r"x of shape \(2, 3, 4\) is not \(N, C, H, W\)"),
    ("tile_max", [(1, 1, 3, 3)], {"kernel": (2, 4)}, ShapeError, r"kernel \(2, 4\) is bigger than x of shape"),
    ("tile_max", [(1, 1, 3, 3)], {"kernel": 0}, ShapeError, "must be positive"),
    ("tile_max", [(1, 1, 3, 3)], {}, IRError, "needs kernel="),
    ("tile_max", [(1, 1, 3, 3)], {"kernel": 2, "stride": 2}, IRError, "unknown attribute stride="),
    ("tile_max", [(1, 1, "H", 3)], {"kernel": 2}, ShapeError, "must be known while tracing"),
    ("tile_max_grad", [(1, 2, 4, 4), (1, 2, 2, 3)], {"kernel": 2}, ShapeError,
     r"y of f64\[1,2,2,3\] must be f64 of shape \(1, 2, 2, 2\)"),
    ("unfold", [("N", 2, 4, 4)], {"kernel": 2, "merged": True}, ShapeError, r"batch size .* must be known"),
    ("unfold", [(1, 2, 4, 4)], {"kernel": 2, "merged": "yes"}, IRError, "merged= must be True or False"),
    ("fold", [(2, 8, 9)], {"kernel": 2, "output_size": (4, 4), "merged": True}, ShapeError,
     r"not \(1, C\*kh\*kw, N\*L\)"),
    ("fold", [(1, 8, 10)], {"kernel": 2, "output_size": (4, 4), "merged": True}, ShapeError,
     "not a whole batch"),
])
def test_fast_path_op_errors_name_the_argument(op, shapes, attrs, err, match):
    args = [ir.input_node(nm, "f64", s) for nm, s in zip("xy", shapes)]
    with pytest.raises(err, match=match):
        ir.make(op, *args, **attrs)
