"""graphc.nn's layers and losses (issue 27): layer_norm, batch_norm, dropout, embedding,
attention, gelu (exact and tanh), silu, mse_loss, l1_loss, binary_cross_entropy_with_logits,
nll_loss.

References: PyTorch's torch.nn.functional values and autograd gradients (skipped without
torch); hand-written NumPy and central differences of it in float64 (always); SymPy's exact
derivatives on tiny shapes (graphc.verify.tensor); float32 within tolerance; a few programs on
every tensor target. Bad arguments raise GraphcError / ShapeError naming the argument.
"""

import math
import warnings

import numpy as np
import pytest
from conftest import DEFAULT_TARGET, fd_grad, on_every_target
from scipy.special import erf, expit

import graphc
import graphc.nn as nn
import graphc.numpy as gnp
from graphc import ArgumentError, GraphcError, ShapeError
from graphc import random as gr
from graphc.verify.tensor import check_tensor

RNG = np.random.default_rng(27)


# ------------------------------------------------------------------ NumPy references


def np_layer_norm(x, axes, eps=1e-5, w=None, b=None):
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    keep = tuple(d if i in axes else 1 for i, d in enumerate(x.shape))
    return y * (1 if w is None else w.reshape(keep)) + (0 if b is None else b.reshape(keep))


def np_batch_norm(x, w=None, b=None, eps=1e-5):
    axes = tuple(a for a in range(x.ndim) if a != 1)
    keep = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    y = np_layer_norm(x, axes, eps)
    return y * (1 if w is None else w.reshape(keep)) + (0 if b is None else b.reshape(keep))


def np_softplus(x):
    return np.logaddexp(0.0, x)


def np_sigmoid(x):
    return expit(x)


def np_attention(q, k, v, keep=None, add=None, scale=None):
    s = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if add is not None:
        s = s + add
    if keep is not None:
        s = np.where(keep, s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    e = np.where(np.isfinite(s), np.exp(s - np.where(np.isfinite(m), m, 0)), 0.0)
    tot = e.sum(axis=-1, keepdims=True)
    p = np.where(tot > 0, e / np.where(tot > 0, tot, 1), 0.0)  # a row with nothing kept: 0 (PyTorch's)
    return p @ v


def np_bce(x, y, w=None, pw=None):
    pw = 1.0 if pw is None else pw
    loss = -(pw * y * np.log(np_sigmoid(x)) + (1 - y) * np.log(1 - np_sigmoid(x)))
    return loss * (1.0 if w is None else w)


def np_gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def np_nll(lp, t):
    return -np.take_along_axis(np.moveaxis(lp, 1, -1), t[..., None], axis=-1)[..., 0]


# ------------------------------------------------------------------ the cases

# name -> (args, argnums, graphc loss, NumPy loss, torch loss); each loss returns a scalar
# (outputs weighted by a random R, so every output entry matters differently)


def _t(F):  # noqa: N803 - torch.nn.functional
    import torch

    return torch, F


def _cases():
    r = RNG.normal
    mask = RNG.random((3, 5)) > 0.4
    mask[1] = False  # a row with nothing kept
    add = np.where(RNG.random((3, 5)) > 0.3, RNG.normal(size=(3, 5)), -np.inf)
    add[2] = -np.inf
    return {
        "layer_norm_last_affine": (
            (r(size=(3, 5)) * 3 + 1, r(size=5), r(size=5), r(size=(3, 5))), (0, 1, 2),
            lambda x, w, b, R: gnp.sum(nn.layer_norm(x, -1, 1e-5, w, b) * R),
            lambda x, w, b, R: np.sum(np_layer_norm(x, (1,), 1e-5, w, b) * R),
            lambda F, x, w, b, R: (F.layer_norm(x, (5,), w, b, 1e-5) * R).sum()),
        "layer_norm_two_axes": (
            (r(size=(2, 3, 4)), r(size=(2, 3, 4))), (0,),
            lambda x, R: gnp.sum(nn.layer_norm(x, (-2, -1), 1e-3) * R),
            lambda x, R: np.sum(np_layer_norm(x, (1, 2), 1e-3) * R),
            lambda F, x, R: (F.layer_norm(x, (3, 4), eps=1e-3) * R).sum()),
        "layer_norm_middle_axis": (
            (r(size=(2, 3, 4)), r(size=3), r(size=(2, 3, 4))), (0, 1),
            lambda x, w, R: gnp.sum(nn.layer_norm(x, 1, 1e-5, w) * R),
            lambda x, w, R: np.sum(np_layer_norm(x, (1,), 1e-5, w) * R),
            lambda F, x, w, R: (F.layer_norm(x.transpose(1, 2), (3,), w).transpose(1, 2) * R).sum()),
        "batch_norm_ncl_affine": (
            (r(size=(4, 3, 2)) + 2, r(size=3), r(size=3), r(size=(4, 3, 2))), (0, 1, 2),
            lambda x, w, b, R: gnp.sum(nn.batch_norm(x, w, b) * R),
            lambda x, w, b, R: np.sum(np_batch_norm(x, w, b) * R),
            lambda F, x, w, b, R: (F.batch_norm(x, None, None, w, b, training=True) * R).sum()),
        "batch_norm_nc": (
            (r(size=(5, 3)), r(size=(5, 3))), (0,),
            lambda x, R: gnp.sum(nn.batch_norm(x, eps=1e-2) * R),
            lambda x, R: np.sum(np_batch_norm(x, eps=1e-2) * R),
            lambda F, x, R: (F.batch_norm(x, None, None, training=True, eps=1e-2) * R).sum()),
        "attention_batched": (
            (r(size=(2, 3, 4)), r(size=(2, 5, 4)), r(size=(2, 5, 2)), r(size=(2, 3, 2))), (0, 1, 2),
            lambda q, k, v, R: gnp.sum(nn.attention(q, k, v) * R),
            lambda q, k, v, R: np.sum(np_attention(q, k, v) * R),
            lambda F, q, k, v, R: (F.scaled_dot_product_attention(q, k, v) * R).sum()),
        "attention_causal": (
            (r(size=(4, 3)), r(size=(4, 3)), r(size=(4, 2)), r(size=(4, 2))), (0, 1, 2),
            lambda q, k, v, R: gnp.sum(nn.attention(q, k, v, is_causal=True) * R),
            lambda q, k, v, R: np.sum(np_attention(q, k, v, keep=np.tril(np.ones((4, 4), bool))) * R),
            lambda F, q, k, v, R: (F.scaled_dot_product_attention(q, k, v, is_causal=True) * R).sum()),
        "attention_causal_L_ne_S_scale": (
            (r(size=(2, 4, 2)), r(size=(2, 3, 2)), r(size=(2, 3, 3)), r(size=(2, 4, 3))), (0, 1, 2),
            lambda q, k, v, R: gnp.sum(nn.attention(q, k, v, is_causal=True, scale=0.3) * R),
            lambda q, k, v, R: np.sum(np_attention(q, k, v, keep=np.tril(np.ones((4, 3), bool)), scale=0.3) * R),
            lambda F, q, k, v, R: (F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3) * R).sum()),
        "attention_bool_mask": (  # the mask made in the program (m > 0.5); row 1 excluded entirely
            (r(size=(2, 3, 4)), r(size=(5, 4)), r(size=(5, 2)), mask.astype(float), r(size=(2, 3, 2))), (0, 1, 2),
            lambda q, k, v, m, R: gnp.sum(nn.attention(q, k, v, mask=m > 0.5) * R),
            lambda q, k, v, m, R: np.sum(np_attention(q, k, v, keep=m > 0.5) * R),
            lambda F, q, k, v, m, R: (F.scaled_dot_product_attention(q, k.expand(2, 5, 4), v.expand(2, 5, 2),
                                                                     attn_mask=m > 0.5) * R).sum()),
        "attention_float_mask": (  # an additive mask with -inf entries and a row of them
            (r(size=(3, 4)), r(size=(5, 4)), r(size=(5, 2)), add, r(size=(3, 2))), (0, 1, 2),
            lambda q, k, v, a, R: gnp.sum(nn.attention(q, k, v, mask=a) * R),
            lambda q, k, v, a, R: np.sum(np_attention(q, k, v, add=a) * R),
            lambda F, q, k, v, a, R: (F.scaled_dot_product_attention(q, k, v, attn_mask=a) * R).sum()),
        "bce_weight_pos_weight": (
            (r(size=(4, 3)) * 4, (RNG.random((4, 3)) > 0.5) * 1.0, RNG.random((4, 3)), RNG.random(3) * 3), (0, 1),
            lambda x, y, w, pw: nn.binary_cross_entropy_with_logits(x, y, w, "mean", pw),
            lambda x, y, w, pw: np.mean(np_bce(x, y, w, pw)),
            lambda F, x, y, w, pw: F.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw)),
        "bce_soft_targets_none": (
            (r(size=(3, 2)) * 3, RNG.random((3, 2)), r(size=(3, 2))), (0, 1),
            lambda x, y, R: gnp.sum(nn.binary_cross_entropy_with_logits(x, y, reduction="none") * R),
            lambda x, y, R: np.sum(np_bce(x, y) * R),
            lambda F, x, y, R: (F.binary_cross_entropy_with_logits(x, y, reduction="none") * R).sum()),
        "mse_l1": (
            (r(size=(3, 4)), r(size=(3, 4)), r(size=(3, 4))), (0, 1),
            lambda x, y, R: nn.mse_loss(x, y) + nn.l1_loss(x, y, "sum") + gnp.sum(nn.mse_loss(x, y, "none") * R),
            lambda x, y, R: np.mean((x - y) ** 2) + np.sum(np.abs(x - y)) + np.sum((x - y) ** 2 * R),
            lambda F, x, y, R: F.mse_loss(x, y) + F.l1_loss(x, y, reduction="sum")
            + (F.mse_loss(x, y, reduction="none") * R).sum()),
        "nll_2d_3d": (
            (r(size=(4, 3)), RNG.integers(0, 3, 4), r(size=(2, 3, 2)), RNG.integers(0, 3, (2, 2))), (0, 2),
            lambda a, t, b, u: nn.nll_loss(a, t) + nn.nll_loss(b, u, "sum") * 0.5,
            lambda a, t, b, u: np.mean(np_nll(a, t)) + np.sum(np_nll(b, u)) * 0.5,
            lambda F, a, t, b, u: F.nll_loss(a, t) + F.nll_loss(b, u, reduction="sum") * 0.5),
        "embedding": (
            (r(size=(5, 3)), np.array([[0, 4, 4], [2, 0, 1]]), r(size=(2, 3, 3))), (0,),
            lambda W, i, R: gnp.sum(nn.embedding(W, i) * R),
            lambda W, i, R: np.sum(W[i] * R),
            lambda F, W, i, R: (F.embedding(i, W) * R).sum()),
        "gelu_silu": (
            (r(size=7) * 3, r(size=7)), (0,),
            lambda x, R: gnp.sum((nn.gelu(x) + 2 * nn.gelu(x, "tanh") + 3 * nn.silu(x)) * R),
            lambda x, R: np.sum((np_gelu(x) + 2 * np_gelu_tanh(x) + 3 * x * np_sigmoid(x)) * R),
            lambda F, x, R: ((F.gelu(x) + 2 * F.gelu(x, approximate="tanh") + 3 * F.silu(x)) * R).sum()),
    }


CASES = _cases()
NAMES = sorted(CASES)


def _graphc(name, target="numpy", dtype=None):
    args, nums, f, _, _ = CASES[name]
    if dtype is not None:
        args = tuple(a.astype(dtype) if a.dtype.kind == "f" else a for a in args)
    return graphc.value_and_grad(f, argnums=nums, target=target)(*args)


@pytest.mark.parametrize("name", NAMES)
def test_against_torch(name):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F  # noqa: N812

    args, nums, _, _, tf = CASES[name]
    targs = [torch.tensor(a, requires_grad=(i in nums)) for i, a in enumerate(args)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = tf(F, *targs)
    want.backward()
    value, grads = _graphc(name)
    assert value == pytest.approx(want.item(), rel=1e-12, abs=1e-13)
    for i, g in zip(nums, grads):
        np.testing.assert_allclose(g, targs[i].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"d/d arg {i}")


@pytest.mark.parametrize("name", NAMES)
def test_against_numpy_and_finite_differences(name):
    args, nums, _, ref, _ = CASES[name]
    value, grads = _graphc(name)
    assert value == pytest.approx(ref(*args), rel=1e-12, abs=1e-13)
    for i, g in zip(nums, grads):
        fd = fd_grad(lambda a, i=i: ref(*args[:i], a, *args[i + 1:]), args[i])
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7, err_msg=f"d/d arg {i}")


@pytest.mark.parametrize("name", ["layer_norm_last_affine", "batch_norm_ncl_affine", "attention_causal",
                                  "bce_weight_pos_weight", "nll_2d_3d", "gelu_silu"])
def test_float32_within_tolerance(name):
    args, nums, _, ref, _ = CASES[name]
    value, grads = _graphc(name, DEFAULT_TARGET if name == "gelu_silu" else "numpy", np.float32)
    value64, grads64 = _graphc(name)
    assert isinstance(value, float) and value == pytest.approx(value64, rel=2e-5, abs=2e-5)
    for g, g64 in zip(grads, grads64):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, g64, rtol=1e-3, atol=2e-4 * max(1.0, np.max(np.abs(g64))))


# ------------------------------------------------------------------ SymPy's exact derivatives

K = gr.key(5)
SYMPY = {  # tiny shapes: (function, args, argnums)
    "layer_norm": (lambda x, w, b, R: gnp.sum(nn.layer_norm(x, -1, 1e-5, w, b) * R),
                   (RNG.normal(size=(2, 3)), RNG.normal(size=3), RNG.normal(size=3), RNG.normal(size=(2, 3))), (0, 1, 2)),
    "batch_norm": (lambda x, w, R: gnp.sum(nn.batch_norm(x, w) * R),
                   (RNG.normal(size=(3, 2)), RNG.normal(size=2), RNG.normal(size=(3, 2))), (0, 1)),
    "attention": (lambda q, k, v, R: gnp.sum(nn.attention(q, k, v, is_causal=True) * R),
                  tuple(RNG.normal(size=(2, 2)) for _ in range(4)), (0, 1, 2)),
    "bce_mse_l1": (lambda x, y, w: nn.binary_cross_entropy_with_logits(x, y, w, "sum", w[0]) + nn.mse_loss(x, y)
                   + nn.l1_loss(x, w), (RNG.normal(size=(2, 2)), RNG.random((2, 2)), RNG.random((2, 2))), (0, 1, 2)),
    "dropout": (lambda x, k, R: gnp.sum(nn.dropout(x, 0.5, k) * R), (RNG.normal(size=(2, 3)), K, RNG.normal(size=(2, 3))),
                (0,)),
    "nll_embedding": (lambda lp, t, W, R: nn.nll_loss(lp, t) + gnp.sum(nn.embedding(W, t) * R),
                      (RNG.normal(size=(3, 4)), np.array([0, 3, 1]), RNG.normal(size=(4, 2)), RNG.normal(size=(3, 2))),
                      (0, 2)),
    "activations": (lambda x: gnp.sum(nn.gelu(x, "tanh") + nn.silu(x) * x + nn.gelu(x)), (RNG.normal(size=3),), (0,)),
}
SLOW_SYMPY = {"layer_norm", "batch_norm", "attention", "nll_embedding", "activations"}  # a second or more each


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_SYMPY else [])
                                  for n in SYMPY])
def test_against_sympy(name):
    f, args, nums = SYMPY[name]
    fn = graphc.compile(graphc.value_and_grad(f, argnums=nums).lower(*args), target="numpy")
    names = [n.attr for n in fn.forward_graph.inputs]
    report = check_tensor(fn, values=[dict(zip(names, args))])
    assert report.ok, str(report)


# ------------------------------------------------------------------ every target


def _block(p, x, key, y):
    """A small transformer-like step: layer norm, causal self-attention, dropout, a residual,
    batch norm, gelu, and a binary cross-entropy loss."""
    h = nn.layer_norm(x, -1, 1e-5, p["g"], p["b"])
    a = nn.attention(h @ p["wq"], h @ p["wk"], h @ p["wv"], is_causal=True)
    z = x + nn.dropout(a, 0.25, key)
    z = nn.gelu(nn.batch_norm(z), "tanh")
    return nn.binary_cross_entropy_with_logits(z, y)


def _np_block(p, x, keep, y):
    h = np_layer_norm(x, (2,), 1e-5, p["g"], p["b"])
    a = np_attention(h @ p["wq"], h @ p["wk"], h @ p["wv"], keep=np.tril(np.ones((4, 4), bool)))
    z = np_gelu_tanh(np_batch_norm(x + a * keep_scale(keep)))
    return np.mean(np_bce(z, y))


def keep_scale(mask):
    return mask / 0.75


def _lookup(W, idx, lp, t, R):
    return nn.nll_loss(lp, t) + gnp.sum(nn.layer_norm(nn.embedding(W, idx), -1) * R)


def _np_lookup(W, idx, lp, t, R):
    return np.mean(np_nll(lp, t)) + np.sum(np_layer_norm(W[idx], (1,)) * R)


def _mse_dropout(x, y, key):
    return nn.mse_loss(nn.dropout(x, 0.5, key), y)


TARGET_CASES = ["mse_dropout", "block", "lookup"]  # the first (cheapest) runs on cpu in the fast tier


def _target_case(name):
    if name == "mse_dropout":
        x, y, key = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3)), gr.key(11)
        keep = gr.uniform(key, (4, 3)) < 0.5
        return _mse_dropout, (x, y, key), (0, 1), lambda x, y, _: np.mean((np.where(keep, x / 0.5, 0.0) - y) ** 2)
    if name == "block":
        p = {"g": RNG.normal(size=6), "b": RNG.normal(size=6), **{w: RNG.normal(size=(6, 6)) * 0.5
                                                                for w in ("wq", "wk", "wv")}}
        x, key, y = RNG.normal(size=(2, 4, 6)), gr.key(3), RNG.random((2, 4, 6))
        keep = gr.uniform(key, (2, 4, 6)) < 0.75
        return _block, (p, x, key, y), (0, 1), lambda p, x, _, y: _np_block(p, x, keep, y)
    W, idx = RNG.normal(size=(5, 3)), np.array([4, 0, 4, 2])
    lp, t, R = RNG.normal(size=(4, 3)), np.array([2, 0, 1, 1]), RNG.normal(size=(4, 3))
    return _lookup, (W, idx, lp, t, R), (0, 2), _np_lookup


@pytest.mark.parametrize("name,target", on_every_target([(n,) for n in TARGET_CASES], TARGET_CASES))
def test_on_every_target(name, target):
    f, args, nums, ref = _target_case(name)
    value, grads = graphc.value_and_grad(f, argnums=nums, target=target)(*args)
    assert value == pytest.approx(ref(*args), rel=1e-11)
    for i, g in zip(nums, grads):
        if isinstance(args[i], dict):
            for k in args[i]:
                fd = fd_grad(lambda a, i=i, k=k: ref(*args[:i], {**args[i], k: a}, *args[i + 1:]), args[i][k])
                np.testing.assert_allclose(g[k], fd, rtol=1e-6, atol=1e-7, err_msg=f"{name} d/d{k} on {target}")
        else:
            fd = fd_grad(lambda a, i=i: ref(*args[:i], a, *args[i + 1:]), args[i])
            np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7, err_msg=f"{name} d/d arg {i} on {target}")


# ------------------------------------------------------------------ numerics


def test_normalisation_is_mean_shifted_for_data_far_from_zero():
    # 1e8 + noise: sum(x^2) - n mean^2 cancels every digit (the naive variance below is off by
    # O(1)); the mean-shifted value equals the value of the same data shifted back to 0
    noise = RNG.normal(size=(3, 8))
    x = 1e8 + noise
    shifted = x - 1e8  # exact (Sterbenz)
    naive_var = np.mean(x * x, axis=-1) - np.mean(x, axis=-1) ** 2
    assert np.max(np.abs(naive_var - np.var(shifted, axis=-1))) > 1e-2  # the test can tell the two apart
    R = RNG.normal(size=(3, 8))
    f = graphc.value_and_grad(lambda x, R: gnp.sum(nn.layer_norm(x) * R), target="numpy")
    v, g = f(x, R)
    v0, g0 = f(shifted, R)
    assert v == pytest.approx(v0, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(g, g0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nn.layer_norm(x), np_layer_norm(shifted, (1,)), rtol=1e-6, atol=1e-6)
    xb = 1e8 + RNG.normal(size=(6, 2, 3))
    np.testing.assert_allclose(nn.batch_norm(xb), np_batch_norm(xb - 1e8), rtol=1e-6, atol=1e-6)
    fb = graphc.value_and_grad(lambda x, R: gnp.sum(nn.batch_norm(x) * R), target="numpy")
    R = RNG.normal(size=xb.shape)
    np.testing.assert_allclose(fb(xb, R)[1], fb(xb - 1e8, R)[1], rtol=1e-5, atol=1e-6)


def test_normalisation_is_one_mean_and_one_centred_pass():
    # the forward graph holds two means (the mean, then the mean of squares of x - mean), no more
    # (and the gradient adds none)
    program = graphc.value_and_grad(lambda x: gnp.sum(nn.layer_norm(x) ** 3)).lower(RNG.normal(size=(4, 5)))
    assert [n.op for n in program.forward.body].count("mean") == 2
    assert [n.op for n in program.graph.body].count("mean") == 2


def test_bce_with_logits_is_stable_for_huge_logits():
    x = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    for y in (np.zeros(5), np.ones(5)):
        v, g = graphc.value_and_grad(lambda x, y: nn.binary_cross_entropy_with_logits(x, y, reduction="sum"),
                                     target="numpy")(x, y)
        # exact: sum(softplus(-x)) for y = 1, sum(softplus(x)) for y = 0; gradient sigmoid(x) - y,
        # that is -sigmoid(-x) or sigmoid(x) (no 1 - 1 cancellation: -4.2e-18 at x = 40, y = 1)
        want = np.sum(np_softplus(-x if y[0] else x))
        assert v == pytest.approx(want, rel=1e-14)
        np.testing.assert_allclose(g, -np_sigmoid(-x) if y[0] else np_sigmoid(x), rtol=1e-12, atol=1e-300)
    # no cancellation at a confident right answer: softplus(-40) = 4.2e-18, not 0 or 1e-15
    single = nn.binary_cross_entropy_with_logits(np.array([40.0]), np.array([1.0]))
    assert single == pytest.approx(math.log1p(math.exp(-40.0)), rel=1e-12)


def test_gelu_tanh_keeps_its_tail():
    # 0.5 x (1 + tanh(z)) loses every digit where tanh(z) is near -1; x * sigmoid(2z) does not
    import mpmath

    for x in (-5.0, -8.0, -12.0):
        with mpmath.workdps(50):
            z = mpmath.sqrt(2 / mpmath.pi) * (x + mpmath.mpf("0.044715") * x ** 3)
            exact = float(0.5 * x * (1 + mpmath.tanh(z)))
        assert float(nn.gelu(np.array(x), "tanh")) == pytest.approx(exact, rel=1e-12)


# ------------------------------------------------------------------ dropout, attention and batch_norm details


def test_dropout_rules():
    x = RNG.normal(size=(30, 20))
    k = gr.key(8)
    assert nn.dropout(x, 0.0, k) is x
    assert nn.dropout(x, 0.7, k, training=False) is x
    np.testing.assert_array_equal(nn.dropout(x, 1.0, k), np.zeros_like(x))
    y = nn.dropout(x, 0.3, k)
    keep = gr.uniform(k, x.shape) < 0.7
    np.testing.assert_array_equal(y, np.where(keep, x * (1 / 0.7), 0.0))
    # the gradient is the same mask, scaled; the traced value equals the eager one on every kind of target
    for target in ("numpy", DEFAULT_TARGET):
        f = graphc.value_and_grad(lambda x, k, R: gnp.sum(nn.dropout(x, 0.3, k) * R), target=target)
        v, g = f(x, k, np.ones_like(x))
        np.testing.assert_array_equal(g, np.where(keep, 1 / 0.7, 0.0))
        assert v == pytest.approx(np.sum(y), rel=1e-12)
    v, g = graphc.value_and_grad(lambda x, k: gnp.sum(nn.dropout(x, 1.0, k) * x), target="numpy")(x, k)
    assert v == 0.0 and not np.any(g)
    v, g = graphc.value_and_grad(lambda x, k: gnp.sum(nn.dropout(x, 0.5, k, training=False) * x), target="numpy")(x, k)
    np.testing.assert_allclose(g, 2 * x)
    # a NumPy key captured by the traced function is a constant of the program: the same mask
    g = graphc.grad(lambda x: gnp.sum(nn.dropout(x, 0.3, k)), target="numpy")(x)
    np.testing.assert_array_equal(g, np.where(keep, 1 / 0.7, 0.0))
    # float32: the mask drawn in float32, the scale rounded to float32, as eagerly
    x32 = x.astype(np.float32)
    g32 = graphc.grad(lambda x, k: gnp.sum(nn.dropout(x, 0.3, k)), target="numpy")(x32, k)
    keep32 = gr.uniform(k, x.shape, np.float32) < np.float32(0.7)
    np.testing.assert_array_equal(g32, np.where(keep32, np.float32(1 / 0.7), np.float32(0)))
    np.testing.assert_array_equal(nn.dropout(x32, 0.3, k), np.where(keep32, x32 * np.float32(1 / 0.7), 0))


def test_attention_masks_eagerly_and_traced():
    q, k, v = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 5, 4)), RNG.normal(size=(2, 5, 2))
    mask = RNG.random((3, 5)) > 0.5
    mask[0] = False
    want = np_attention(q, k, v, keep=mask)
    np.testing.assert_allclose(nn.attention(q, k, v, mask=mask), want, rtol=1e-12)
    np.testing.assert_array_equal(want[:, 0], 0.0)  # nothing kept: 0, as PyTorch's
    np.testing.assert_allclose(nn.attention(q, k, v, mask=mask.astype(np.int64)), want, rtol=1e-12)
    R = RNG.normal(size=(2, 3, 2))
    # a NumPy mask captured is a constant of the program; an int64 mask passed in is data
    g1 = graphc.value_and_grad(lambda q, k, v, R: gnp.sum(nn.attention(q, k, v, mask=mask) * R), argnums=(0, 1, 2),
                               target="numpy")
    g2 = graphc.value_and_grad(lambda q, k, v, m, R: gnp.sum(nn.attention(q, k, v, mask=m) * R), argnums=(0, 1, 2),
                               target="numpy")
    v1, d1 = g1(q, k, v, R)
    v2, d2 = g2(q, k, v, mask.astype(np.int64), R)
    assert v1 == pytest.approx(np.sum(want * R), rel=1e-12) and v2 == pytest.approx(v1, rel=1e-14)
    for a, b in zip(d1, d2):
        np.testing.assert_allclose(a, b, rtol=1e-14)
        assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(d1[0][:, 0], 0.0)  # an excluded row passes no gradient back to its query
    # a captured causal mask is the same program as is_causal=True
    cm = nn.causal_mask(3, 5)
    np.testing.assert_array_equal(cm, np.tril(np.ones((3, 5), bool)))
    np.testing.assert_array_equal(nn.causal_mask(2), [[True, False], [True, True]])
    a = graphc.value_and_grad(lambda q, k, v: gnp.sum(nn.attention(q, k, v, mask=cm) ** 2), target="numpy")(q, k, v)
    b = graphc.value_and_grad(lambda q, k, v: gnp.sum(nn.attention(q, k, v, is_causal=True) ** 2), target="numpy")(q, k, v)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_attention_softmax_once():
    # the forward graph computes one softmax; the gradient reuses it (no second softmax, no exp)
    program = graphc.value_and_grad(lambda q, k, v: gnp.sum(nn.attention(q, k, v, is_causal=True) ** 2),
                                    argnums=(0, 1, 2)).lower(*(RNG.normal(size=(3, 2)) for _ in range(3)))
    ops = [n.op for n in program.graph.body]
    assert ops.count("softmax") == 1 and "exp" not in ops and "logsumexp" not in ops


def test_batch_norm_running_statistics_and_eval_mode():
    x, w, b = RNG.normal(size=(6, 3, 2)) + 1, RNG.normal(size=3), RNG.normal(size=3)
    rm, rv = RNG.normal(size=3), RNG.random(3) + 0.5
    y, m, v = nn.batch_norm(x, w, b, running_mean=rm, running_var=rv, momentum=0.2)
    n = 12
    np.testing.assert_allclose(y, np_batch_norm(x, w, b), rtol=1e-12)
    np.testing.assert_allclose(m, 0.8 * rm + 0.2 * x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(v, 0.8 * rv + 0.2 * x.var(axis=(0, 2)) * n / (n - 1), rtol=1e-12)
    ev = nn.batch_norm(x, w, b, running_mean=rm, running_var=rv, training=False)
    np.testing.assert_allclose(ev, (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5) * w[:, None] + b[:, None],
                               rtol=1e-12)
    # traced: the new statistics as aux outputs; the same numbers
    f = graphc.value_and_grad(lambda x, rm, rv: (gnp.sum(nn.batch_norm(x, running_mean=rm, running_var=rv)[0] ** 3),
                                                 nn.batch_norm(x, running_mean=rm, running_var=rv)[1:]), has_aux=True,
                              target="numpy")
    (_, (m2, v2)), _ = f(x, rm, rv)
    m1, v1 = nn.batch_norm(x, running_mean=rm, running_var=rv)[1:]
    np.testing.assert_allclose(m2, m1, rtol=1e-14)
    np.testing.assert_allclose(v2, v1, rtol=1e-14)
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F  # noqa: N812

    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = F.batch_norm(torch.tensor(x), trm, trv, torch.tensor(w), torch.tensor(b), training=True, momentum=0.2)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-12)
    np.testing.assert_allclose(m, trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(v, trv.numpy(), rtol=1e-12)
    te = F.batch_norm(torch.tensor(x), torch.tensor(rm), torch.tensor(rv), torch.tensor(w), torch.tensor(b))
    np.testing.assert_allclose(ev, te.numpy(), rtol=1e-12)


def test_one_program_for_every_batch_size():
    # symbolic batch sizes: layer norm, dropout and attention traced once for N rows
    calls = [0]

    def loss(x, key, R):
        calls[0] += 1
        h = nn.dropout(nn.layer_norm(x), 0.5, key)
        return gnp.sum(nn.attention(h, h, h, is_causal=True) * R)

    f = graphc.value_and_grad(loss, target="numpy")
    for n in (3, 4, 6):
        x, R = RNG.normal(size=(n, 2)), RNG.normal(size=(n, 2))
        v, g = f(x, gr.key(n), R)
        keep = gr.uniform(gr.key(n), (n, 2)) < 0.5
        h = np.where(keep, np_layer_norm(x, (1,)) * 2, 0.0)
        assert v == pytest.approx(np.sum(np_attention(h, h, h, keep=np.tril(np.ones((n, n), bool))) * R), rel=1e-12)
    assert f.cache_info()["signatures"] == 2 and calls[0] == 2  # one per size, then one for every size


# ------------------------------------------------------------------ bad input


def _raises(exc, fn, *words):
    with pytest.raises(exc) as info:
        fn()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_bad_arguments_are_named():
    x = RNG.normal(size=(4, 3))
    k = gr.key(0)
    _raises(GraphcError, lambda: nn.dropout(x, 1.5, k), "rate")
    _raises(GraphcError, lambda: nn.dropout(x, -0.1, k), "rate")
    _raises(GraphcError, lambda: nn.dropout(x, 0.5, np.array([1.0, 2.0])), "key")
    _raises(ShapeError, lambda: nn.dropout(x, 0.5, gr.split(k)), "key", "keys[0]")
    _raises(GraphcError, lambda: nn.dropout(x, 0.5, np.array([1, -2])), "key")
    _raises(GraphcError, lambda: graphc.grad(lambda x, k: gnp.sum(nn.dropout(x, 0.5, k)))(x, np.ones(2)), "key")
    _raises(GraphcError, lambda: nn.layer_norm(x, eps=0.0), "eps")
    _raises(GraphcError, lambda: nn.layer_norm(x, eps=-1e-5), "eps")
    _raises(GraphcError, lambda: nn.batch_norm(x, eps=0), "eps")
    _raises(ShapeError, lambda: nn.layer_norm(x, axis=2), "axis", "out of range")
    _raises(ShapeError, lambda: nn.batch_norm(x, axis=-3), "axis", "out of range")
    _raises(ShapeError, lambda: graphc.grad(lambda x: gnp.sum(nn.layer_norm(x, axis=(0, 5))))(x), "axis")
    _raises(ShapeError, lambda: nn.layer_norm(x, -1, 1e-5, np.ones(4)), "weight")
    _raises(ShapeError, lambda: nn.batch_norm(x, bias=np.ones(4)), "bias")
    _raises(ShapeError, lambda: nn.batch_norm(x[:1]), "more than 1 value per channel")
    _raises(ShapeError, lambda: nn.batch_norm(x, running_mean=np.zeros(2), running_var=np.ones(2)), "running_mean")
    _raises(GraphcError, lambda: nn.batch_norm(x, training=False), "running_mean")
    for fn in (lambda r: nn.mse_loss(x, x, r), lambda r: nn.l1_loss(x, x, r), lambda r: nn.nll_loss(x, [0, 1, 2, 0], r),
               lambda r: nn.binary_cross_entropy_with_logits(x, x, reduction=r)):
        _raises(GraphcError, lambda fn=fn: fn("avg"), "reduction", "'avg'")
    _raises(ShapeError, lambda: nn.mse_loss(x, np.ones((4, 2))), "target")
    _raises(ShapeError, lambda: nn.binary_cross_entropy_with_logits(x, np.ones(3)), "target")
    _raises(ShapeError, lambda: nn.nll_loss(x, np.array([0, 1])), "target")
    _raises(GraphcError, lambda: nn.nll_loss(x, np.zeros(4)), "target")
    _raises(GraphcError, lambda: nn.nll_loss(x, np.array([0, 1, 3, 0])), "target", "3")
    _raises(ShapeError, lambda: nn.embedding(x, np.array([0, 4])), "idx", "4")
    _raises(ShapeError, lambda: nn.embedding(x, np.array([-1])), "idx")
    _raises(GraphcError, lambda: nn.embedding(x, np.array([0.0])), "idx")
    _raises(ShapeError, lambda: nn.embedding(x[0], np.array([0])), "W")
    _raises(GraphcError, lambda: nn.gelu(x, "erf"), "approximate")
    q = RNG.normal(size=(3, 4))
    _raises(ShapeError, lambda: nn.attention(q, q, q, mask=np.ones((2, 3), bool)), "mask")
    _raises(ShapeError, lambda: graphc.grad(lambda q, m: gnp.sum(nn.attention(q, q, q, mask=m > 0)))(q, np.ones(4)),
            "mask")
    _raises(GraphcError, lambda: nn.attention(q, q, q, mask=np.ones((3, 3), bool), is_causal=True), "mask",
            "is_causal")
    _raises(ShapeError, lambda: nn.attention(q, RNG.normal(size=(3, 2)), q), "k")
    _raises(ShapeError, lambda: nn.attention(q, q, RNG.normal(size=(2, 4))), "v")
    _raises(GraphcError, lambda: nn.causal_mask(-1), "L")
    with pytest.raises(ArgumentError):
        nn.layer_norm(np.array([True, False]))
