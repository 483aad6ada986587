"""graphc.checkpoint (issue 28): jax.checkpoint / torch.utils.checkpoint. The same values and
gradients as without it, while the backward pass recomputes each checkpointed block from its
inputs instead of keeping its intermediates: the compiled program's memory plan says so.

References: the same function without checkpoint (on the numpy target, the reference evaluator),
hand-written NumPy forward passes, and the compiled kernels' planned memory (computed, never
allocated)."""

import numpy as np
import pytest
from conftest import DEFAULT_TARGET, on_every_target

import graphc
import graphc.numpy as gnp
from graphc.backends.targets import build
from graphc.errors import ArgumentError

RNG = np.random.default_rng(280)


def _params(layers, d, h, rng=RNG):
    return [{"W1": rng.normal(size=(d, h)) / np.sqrt(d), "b1": rng.normal(size=h) * 0.1,
             "W2": rng.normal(size=(h, d)) / np.sqrt(h), "b2": rng.normal(size=d) * 0.1} for _ in range(layers)]


def block(h, p):
    """A residual MLP block: wide inside (h units), narrow at its ends (d)."""
    a = gnp.tanh(h @ p["W1"] + p["b1"])
    return h + gnp.tanh(a @ p["W2"] + p["b2"])


def np_block(h, p):
    return h + np.tanh(np.tanh(h @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"])


def mlp(remat):
    def loss(params, X, Y):
        h = X
        for p in params:
            h = graphc.checkpoint(block)(h, p) if remat else block(h, p)
        return gnp.mean((h - Y) ** 2)
    return loss


def mlp_closing_over(remat):
    """The block closes over its parameters (torch.utils.checkpoint's usual form): they are its inputs too."""
    def loss(params, X, Y):
        h = X
        for p in params:
            def layer(h, p=p):
                return block(h, p)
            h = graphc.checkpoint(layer)(h) if remat else layer(h)
        return gnp.mean((h - Y) ** 2)
    return loss


def mlp_nested(remat):
    """Checkpoints inside a checkpoint, a pytree output and a Python number among the arguments."""
    def pair(h, p, scale):
        out = block(h, p)
        return {"h": out, "penalty": gnp.sum(out ** 2) * scale}

    def loss(params, X, Y):
        ck = graphc.checkpoint if remat else (lambda f: f)
        total, h = 0.0, X
        for k in range(0, len(params), 2):
            def two(h, k=k):
                first = ck(pair)(h, params[k], 1e-3)
                second = ck(pair)(first["h"], params[k + 1], 1e-3)
                return second["h"], first["penalty"] + second["penalty"]
            h, pen = ck(two)(h)
            total = total + pen
        return gnp.mean((h - Y) ** 2) + total
    return loss


def _np_loss(params, X, Y):
    h = X
    for p in params:
        h = np_block(h, p)
    return np.mean((h - Y) ** 2)


def _assert_same(got, want, rtol=1e-12):
    (v, g), (rv, rg) = got, want
    assert v == pytest.approx(rv, rel=rtol)
    for a, b in zip(g, rg):
        for key in b:
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=rtol * np.max(np.abs(b[key])), err_msg=key)


# ------------------------------------------------------------------ the same values and gradients


SMALL = (_params(4, 3, 6), RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3)))
TWO = (SMALL[0][:2], *SMALL[1:])  # for the Numba targets, whose compile time grows with the program


def _every_target(ids):
    """on_every_target, with the Numba targets (seconds of compiling a program with its recomputation)
    in the slow tier, as tests/test_scan.py does."""
    return [pytest.param(*p.values, id=p.id, marks=[pytest.mark.slow] if p.values[-1] not in ("numpy", DEFAULT_TARGET)
                         else []) for p in on_every_target([()] * len(ids), ids)]


@pytest.mark.parametrize("target", _every_target(["mlp"]))
def test_same_values_and_gradients_as_without_checkpoint_on_every_target(target):
    want = graphc.value_and_grad(mlp(False), target="numpy")(*TWO)
    assert want[0] == pytest.approx(_np_loss(*TWO), rel=1e-14)
    _assert_same(graphc.value_and_grad(mlp(True), target=target)(*TWO), want)


@pytest.mark.parametrize("model", [mlp_closing_over, mlp_nested])  # mlp: on every target above
@pytest.mark.parametrize("target", ["numpy", DEFAULT_TARGET])
def test_same_values_and_gradients_as_without_checkpoint(model, target):
    args = TWO if model is mlp_nested else SMALL  # two blocks, each of two checkpointed blocks
    want = graphc.value_and_grad(model(False), target="numpy")(*args)
    _assert_same(graphc.value_and_grad(model(True), target=target)(*args), want)


def test_the_backward_pass_recomputes_each_block():
    params, X, Y = SMALL
    plain = graphc.value_and_grad(mlp(False)).lower(params, X, Y).ir
    remat = graphc.value_and_grad(mlp(True)).lower(params, X, Y).ir
    assert "remat_barrier" not in plain and "remat_barrier" in remat and "custom_vjp" not in remat
    # each block's two matrix products once more, in the backward pass
    assert remat.count("= matmul ") == plain.count("= matmul ") + 2 * len(params)
    jitted = graphc.jit(mlp(True))
    assert jitted(params, X, Y) == pytest.approx(_np_loss(params, X, Y), rel=1e-14)
    assert "remat_barrier" not in jitted.lower(params, X, Y).ir  # no gradient: nothing recomputed


def test_the_memory_plan_holds_one_blocks_intermediates_at_a_time():
    """N x H activations inside each of L blocks: without checkpoint the backward pass needs all of
    them kept from the forward pass; with it, the block inputs (N x D) and one block's recomputed ones."""
    L, N, D, H = 4, 512, 32, 256
    rng = np.random.default_rng(0)
    params, X, Y = _params(L, D, H, rng), rng.normal(size=(N, D)), rng.normal(size=(N, D))
    planned = {}
    for remat in (False, True):
        kernel = build(graphc.value_and_grad(mlp(remat)).lower(params, X, Y).graph, DEFAULT_TARGET)
        planned[remat] = kernel.planned_memory({})
    print(f"\nplanned bytes without checkpoint: {planned[False]}\nplanned bytes with checkpoint:    {planned[True]}")
    activation = N * H * 8
    assert planned[False]["pool"] > 2 * L * activation  # pre-activations and tanh of every block, kept
    assert planned[True]["peak"] < 0.6 * planned[False]["peak"]
    assert planned[True]["pool"] < (L + 1) * N * D * 8 + 5 * activation


def test_gradient_of_gradient_through_a_checkpoint():
    params, X, Y = TWO
    v = [{k: RNG.normal(size=np.shape(a)) for k, a in p.items()} for p in params]
    plain = graphc.hvp(mlp(False), target="numpy")(params, v, X, Y)
    remat = graphc.hvp(mlp(True), target="numpy")(params, v, X, Y)
    for a, b in zip(remat, plain):
        for key in b:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-10, atol=1e-12, err_msg=key)


def test_eager_calls_the_block():
    params, X, _ = SMALL
    np.testing.assert_array_equal(graphc.checkpoint(np_block)(X, params[0]), np_block(X, params[0]))
    np.testing.assert_array_equal(graphc.checkpoint(block)(X, p=params[0]), np_block(X, params[0]))


def test_checkpoint_takes_a_function():
    with pytest.raises(ArgumentError, match="checkpoint: expected a Python function, got an ndarray of float64"):
        graphc.checkpoint(np.ones(2))
