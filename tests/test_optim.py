"""graphc.optim: every optimizer and option against hand-written NumPy (PyTorch's arithmetic, bit for
bit; the papers' textbook form to 1e-12) and against torch.optim when installed, over 100 steps on a
quadratic and on an MLP's pytree; schedules against their formulas and torch's LR schedulers; float32
kept; the caller's arrays untouched unless donated; no temporaries beyond two scratch buffers; the
rules traced through graphc.jit giving the eager numbers; and bad input refused by name."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from conftest import TENSOR_TARGETS

import graphc
from graphc import optim
from graphc.backends.targets import DEFAULT_TARGET
from graphc.errors import GraphcError, ShapeError
from graphc.trace import flatten, unflatten

STEPS = 100
NOISE = 0.3

# ------------------------------------------------------------------ problems: params and a gradient function


def noisy(grads, t, scale=NOISE):
    """Gradients plus noise drawn afresh for step t (the same for every optimizer run): a stochastic
    gradient, whose variance keeps the second moments away from zero, so the runs are well conditioned."""
    if t == 0:  # the exact gradient
        return grads
    leaves, _, td = flatten(grads)
    rng = np.random.default_rng(1000 + t)
    return unflatten(td, [g + (scale * rng.normal(size=g.shape)).astype(g.dtype) for g in leaves])


def quadratic(dtype=np.float64):
    """f(w) = w'Aw/2 - b'w with A positive definite: gradient A w - b (plus noise)."""
    rng = np.random.default_rng(1)
    m = rng.normal(size=(6, 6))
    a, b = (m @ m.T / 6 + np.eye(6)).astype(dtype), rng.normal(size=6).astype(dtype)

    def grads(p, t):
        return noisy({"w": a @ p["w"] - b}, t)

    grads.loss = lambda p: float(p["w"] @ a @ p["w"] / 2 - b @ p["w"])
    return {"w": rng.normal(size=6).astype(dtype)}, grads


def mlp(dtype=np.float64):
    """A two-layer tanh net's squared error (an output scale as a 0-d parameter, the layers a list of
    dicts), with its gradient by hand-written backpropagation."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(16, 4)).astype(dtype), rng.normal(size=(16, 3)).astype(dtype)
    params = {"layers": [{"W": (rng.normal(size=(4, 8)) / 2).astype(dtype), "b": np.zeros(8, dtype)},
                         {"W": (rng.normal(size=(8, 3)) / 3).astype(dtype), "b": np.zeros(3, dtype)}],
              "scale": np.array(1.0, dtype)}

    def grads(p, t):
        (l1, l2), s = p["layers"], p["scale"]
        h = np.tanh(x @ l1["W"] + l1["b"])
        z = h @ l2["W"] + l2["b"]
        r = (s * z - y) / len(x)  # d/d(out) of sum((out - y)^2) / (2N)
        dz = s * r
        dh = (dz @ l2["W"].T) * (1 - h * h)
        return noisy({"layers": [{"W": x.T @ dh, "b": dh.sum(0)}, {"W": h.T @ dz, "b": dz.sum(0)}],
                      "scale": np.array((r * z).sum(), dtype)}, t)

    def loss(p):
        (l1, l2), s = p["layers"], p["scale"]
        return float(np.sum((s * (np.tanh(x @ l1["W"] + l1["b"]) @ l2["W"] + l2["b"]) - y) ** 2) / (2 * len(x)))

    grads.loss = loss
    return params, grads


PROBLEMS = {"quadratic": quadratic, "mlp": mlp}


def copy_tree(tree):
    leaves, _, td = flatten(tree)
    return unflatten(td, [np.array(x, copy=True) for x in leaves])


def leaves_of(tree):
    return flatten(tree)[0]


# ------------------------------------------------------------------ hand-written references, one leaf a step


def lerp(a, b, w):
    """torch.lerp's arithmetic."""
    return a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (1 - w)


def ref_sgd(p, g, s, t, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        s["momentum_buffer"] = g.copy() if t == 1 else s["momentum_buffer"] * momentum + (1 - dampening) * g
        g = g + momentum * s["momentum_buffer"] if nesterov else s["momentum_buffer"]
    return p + (-lr) * g


def ref_adam(p, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    """PyTorch's single-tensor Adam, line by line."""
    if weight_decay:
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
    s["exp_avg"] = lerp(s.get("exp_avg", 0 * p), g, 1 - b1)
    s["exp_avg_sq"] = s.get("exp_avg_sq", 0 * p) * b2 + (1 - b2) * g * g
    v = s["exp_avg_sq"]
    if amsgrad:
        v = s["max_exp_avg_sq"] = np.maximum(s.get("max_exp_avg_sq", 0 * p), v)
    denom = np.sqrt(v) / (1 - b2 ** t) ** 0.5 + eps
    return p + (-(lr / (1 - b1 ** t)) * s["exp_avg"]) / denom


def textbook_adam(p, g, s, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    """Adam as Kingma & Ba (and PyTorch's documentation) write it: bias-corrected moments."""
    if weight_decay:
        p, g = (p - lr * weight_decay * p, g) if decoupled else (p, g + weight_decay * p)
    s["m"] = b1 * s.get("m", 0 * p) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0 * p) + (1 - b2) * g ** 2
    v = s["v"]
    if amsgrad:
        v = s["vmax"] = np.maximum(s.get("vmax", 0 * p), v)
    return p - lr * (s["m"] / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


def ref_rmsprop(p, g, s, t, lr, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0):
    if weight_decay:
        g = g + weight_decay * p
    s["square_avg"] = s.get("square_avg", 0 * p) * alpha + (1 - alpha) * g * g
    if centered:
        s["grad_avg"] = lerp(s.get("grad_avg", 0 * p), g, 1 - alpha)
        avg = np.sqrt(s["square_avg"] - s["grad_avg"] * s["grad_avg"]) + eps
    else:
        avg = np.sqrt(s["square_avg"]) + eps
    if momentum > 0:
        s["momentum_buffer"] = s.get("momentum_buffer", 0 * p) * momentum + g / avg
        return p + (-lr) * s["momentum_buffer"]
    return p + (-lr * g) / avg


def textbook_rmsprop(p, g, s, t, lr, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0):
    g = g + weight_decay * p
    s["v"] = alpha * s.get("v", 0 * p) + (1 - alpha) * g ** 2
    if centered:
        s["ga"] = alpha * s.get("ga", 0 * p) + (1 - alpha) * g
        d = np.sqrt(s["v"] - s["ga"] ** 2) + eps
    else:
        d = np.sqrt(s["v"]) + eps
    if momentum > 0:
        s["b"] = momentum * s.get("b", 0 * p) + g / d
        return p - lr * s["b"]
    return p - lr * g / d


def textbook_sgd(p, g, s, t, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    g = g + weight_decay * p
    if momentum:
        s["b"] = g if t == 1 else momentum * s["b"] + (1 - dampening) * g
        g = g + momentum * s["b"] if nesterov else s["b"]
    return p - lr * g


# (name, graphc constructor kwargs, reference, textbook reference, reference kwargs)
CASES = [
    ("sgd", dict(lr=0.05), ref_sgd, textbook_sgd, {}),
    ("sgd", dict(lr=0.05, momentum=0.9), ref_sgd, textbook_sgd, {}),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3), ref_sgd, textbook_sgd, {}),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True), ref_sgd, textbook_sgd, {}),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01), ref_sgd, textbook_sgd, {}),
    ("adam", dict(lr=0.01), ref_adam, textbook_adam, {}),
    ("adam", dict(lr=0.01, b1=0.3, b2=0.9, eps=1e-6), ref_adam, textbook_adam, {}),  # lerp's other branch
    ("adam", dict(lr=0.01, amsgrad=True), ref_adam, textbook_adam, {}),
    ("adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True), ref_adam, textbook_adam, {}),
    ("adamw", dict(lr=0.01), ref_adam, textbook_adam, dict(decoupled=True, weight_decay=1e-2)),
    ("adamw", dict(lr=0.01, weight_decay=0.1, amsgrad=True), ref_adam, textbook_adam, dict(decoupled=True)),
    ("rmsprop", dict(lr=0.01), ref_rmsprop, textbook_rmsprop, {}),
    ("rmsprop", dict(lr=0.01, centered=True), ref_rmsprop, textbook_rmsprop, {}),
    ("rmsprop", dict(lr=0.01, momentum=0.5), ref_rmsprop, textbook_rmsprop, {}),
    ("rmsprop", dict(lr=0.01, alpha=0.3, momentum=0.5, centered=True, weight_decay=0.1), ref_rmsprop,
     textbook_rmsprop, {}),
]
IDS = [name + "-" + "-".join(f"{k}={v}" for k, v in kw.items()) for name, kw, *_ in CASES]


def run_ours(opt, params, grads_of, steps=STEPS, donate=False):
    state = opt.init(params)
    for t in range(1, steps + 1):
        params, state = opt.update(grads_of(params, t), state, params, donate=donate)
    return params, state


def run_reference(ref, kwargs, params, grads_of, steps=STEPS):
    leaves, _, td = flatten(params)
    slots = [{} for _ in leaves]
    for t in range(1, steps + 1):
        grads = leaves_of(grads_of(unflatten(td, leaves), t))
        leaves = [ref(p, g, s, t, **kwargs) for p, g, s in zip(leaves, grads, slots)]
    return unflatten(td, leaves), slots


def reference_kwargs(kw, extra):
    out = {**kw, **extra}
    return out


def relative(a, b):
    """max |a - b| / max |b| (the norm-wise relative error of one array)."""
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / scale) if scale else float(np.max(np.abs(a - b)))


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name, kw, ref, textbook, extra", CASES, ids=IDS)
def test_against_hand_written_numpy(name, kw, ref, textbook, extra, problem):
    """100 steps: bit for bit against PyTorch's arithmetic written out in NumPy, every state slot too;
    within 1e-12 relative of the textbook formulas (other rounding, the same algorithm)."""
    params, grads_of = PROBLEMS[problem]()
    ours, state = run_ours(getattr(optim, name)(**kw), copy_tree(params), grads_of)
    want, slots = run_reference(ref, reference_kwargs(kw, extra), copy_tree(params), grads_of)
    for a, b in zip(leaves_of(ours), leaves_of(want)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert state["step"] == STEPS
    for slot in getattr(optim, name)(**kw).slots:
        for a, s in zip(leaves_of(state[slot]), slots):
            np.testing.assert_array_equal(a, s[slot])
    loose, _ = run_reference(textbook, reference_kwargs(kw, extra), copy_tree(params), grads_of)
    for a, b in zip(leaves_of(ours), leaves_of(loose)):
        assert relative(a, b) <= 1e-12
    assert grads_of.loss(ours) < grads_of.loss(params)  # and it optimises


def test_trains_a_graphc_model_as_the_reference_does():
    """The loop a user writes: graphc.value_and_grad's gradients into adam's update, 100 steps, the same
    parameters as the hand-written update given the same gradient function."""
    params, _ = mlp()
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 3))

    def loss(p, x, y):
        (l1, l2), s = p["layers"], p["scale"]
        h = graphc.numpy.tanh(x @ l1["W"] + l1["b"])
        return graphc.numpy.sum((s * (h @ l2["W"] + l2["b"]) - y) ** 2) / (2 * 16)

    vg = graphc.value_and_grad(loss, target="numpy")
    first = vg(params, x, y)[0]
    opt = optim.adam(0.01, weight_decay=0.01)
    ours, _ = run_ours(opt, copy_tree(params), lambda p, t: vg(p, x, y)[1])
    want, _ = run_reference(ref_adam, dict(lr=0.01, weight_decay=0.01), copy_tree(params),
                           lambda p, t: vg(p, x, y)[1])
    for a, b in zip(leaves_of(ours), leaves_of(want)):
        np.testing.assert_array_equal(a, b)
    assert vg(ours, x, y)[0] < 0.5 * first


# ------------------------------------------------------------------ against torch.optim

TORCH_CASES = [
    ("sgd", dict(lr=0.05), "SGD", dict(lr=0.05)),
    ("sgd", dict(lr=0.05, momentum=0.9), "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01), "SGD",
     dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True), "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), "SGD",
     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", dict(lr=0.01), "Adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, b1=0.3, b2=0.9), "Adam", dict(lr=0.01, betas=(0.3, 0.9))),
    ("adam", dict(lr=0.01, amsgrad=True), "Adam", dict(lr=0.01, amsgrad=True)),
    ("adam", dict(lr=0.01, weight_decay=0.1), "Adam", dict(lr=0.01, weight_decay=0.1)),
    ("adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True), "Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("adamw", dict(lr=0.01), "AdamW", dict(lr=0.01)),
    ("adamw", dict(lr=0.01, weight_decay=0.1, amsgrad=True), "AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("rmsprop", dict(lr=0.01), "RMSprop", dict(lr=0.01)),
    ("rmsprop", dict(lr=0.01, centered=True), "RMSprop", dict(lr=0.01, centered=True)),
    ("rmsprop", dict(lr=0.01, momentum=0.5), "RMSprop", dict(lr=0.01, momentum=0.5)),
    ("rmsprop", dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.1), "RMSprop",
     dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.1)),
]


def torch_run(torch, cls, kwargs, params, grads_of, schedule=None, steps=STEPS):
    """torch.optim.<cls> on float64 tensors holding `params`, fed the same gradient function."""
    leaves, _, td = flatten(params)
    tensors = [torch.tensor(np.array(x), requires_grad=True) for x in leaves]
    opt = getattr(torch.optim, cls)(tensors, foreach=False, **kwargs)
    sched = schedule(opt) if schedule else None
    for k in range(1, steps + 1):
        grads = leaves_of(grads_of(unflatten(td, [t.detach().numpy() for t in tensors]), k))
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(np.array(g))
        opt.step()
        if sched:
            sched.step()
    return [t.detach().numpy() for t in tensors], [opt.state[t] for t in tensors]


@pytest.mark.parametrize("problem", ["mlp", pytest.param("quadratic", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name, kw, cls, torch_kw", TORCH_CASES,
                         ids=[f"{c[0]}-" + "-".join(f"{k}={v}" for k, v in c[1].items()) for c in TORCH_CASES])
def test_against_torch_optim(name, kw, cls, torch_kw, problem):
    """torch.optim's own optimizer, 100 steps in float64: parameters and every state slot within 1e-10."""
    torch = pytest.importorskip("torch")
    params, grads_of = PROBLEMS[problem]()
    opt = getattr(optim, name)(**kw)
    ours, state = run_ours(opt, copy_tree(params), grads_of)
    want, torch_state = torch_run(torch, cls, torch_kw, params, grads_of)
    for a, b in zip(leaves_of(ours), want):
        assert relative(a, b) <= 1e-10
    for slot in opt.slots:
        for a, s in zip(leaves_of(state[slot]), torch_state):
            assert relative(a, s[slot].numpy()) <= 1e-10
    assert all(float(s["step"]) == STEPS for s in torch_state if "step" in s)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_schedules_in_training_against_torch_schedulers(problem):
    """Adam with a cosine schedule = torch Adam + CosineAnnealingLR stepped after each step; SGD with a
    warmup = torch SGD + LinearLR: the schedule sees the count of updates already taken."""
    torch = pytest.importorskip("torch")
    params, grads_of = PROBLEMS[problem]()
    ours, _ = run_ours(optim.adam(optim.cosine(0.02, 80, final=1e-3)), copy_tree(params), grads_of)
    want, _ = torch_run(torch, "Adam", dict(lr=0.02), params, grads_of,
                        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=80, eta_min=1e-3), steps=80)
    ours80, _ = run_ours(optim.adam(optim.cosine(0.02, 80, final=1e-3)), copy_tree(params), grads_of, steps=80)
    for a, b in zip(leaves_of(ours80), want):
        assert relative(a, b) <= 1e-10
    assert not all(np.array_equal(a, b) for a, b in zip(leaves_of(ours), leaves_of(ours80)))  # it went on
    ours, _ = run_ours(optim.sgd(optim.warmup(0.05, 10), momentum=0.9), copy_tree(params), grads_of)
    want, _ = torch_run(torch, "SGD", dict(lr=0.05, momentum=0.9), params, grads_of,
                        lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=9))
    for a, b in zip(leaves_of(ours), want):
        assert relative(a, b) <= 1e-10


def test_the_schedule_is_read_at_the_count_of_updates_taken():
    """Hand check, no torch: with lr(t) = (t + 1)/10 and a gradient of 1, the k-th update moves by k/10."""
    opt = optim.sgd(lambda t: (t + 1) / 10)
    p, state = {"x": np.zeros(2)}, None
    state = opt.init(p)
    for k in range(1, 4):
        p, state = opt.update({"x": np.ones(2)}, state, p)
        assert state["step"] == k
    np.testing.assert_allclose(p["x"], -(0.1 + 0.2 + 0.3), rtol=1e-15)


# ------------------------------------------------------------------ schedules


def test_schedules_against_their_formulas():
    f = optim.constant(0.3)
    assert [f(t) for t in (0, 1, 1000)] == [0.3] * 3
    c = optim.cosine(0.1, 20, final=0.01)
    for t in range(0, 31):
        tt = min(t, 20)
        want = 0.01 + 0.5 * (0.1 - 0.01) * (1 + math.cos(math.pi * tt / 20))
        assert c(t) == pytest.approx(want, rel=1e-14, abs=0)
    assert c(0) == 0.1 and c(20) == 0.01 and c(25) == 0.01
    w = optim.warmup(0.2, 4)
    assert [w(t) for t in range(7)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.2], rel=1e-15)
    wc = optim.warmup(0.2, 4, then=optim.cosine(0.2, 10))
    assert [wc(t) for t in range(4)] == [w(t) for t in range(4)]
    assert [wc(t) for t in range(4, 20)] == [optim.cosine(0.2, 10)(t) for t in range(16)]
    assert optim.warmup(0.2, 4, then=0.05)(9) == 0.05
    assert "cosine(0.1, 20, final=0.01)" in repr(optim.adam(c))


def test_schedules_against_torch_lr_schedulers():
    """CosineAnnealingLR (for t <= T_max), LinearLR (warmup), and SequentialLR(LinearLR, CosineAnnealingLR)
    for warmup followed by cosine: the lr each torch step used, within 1e-12."""
    torch = pytest.importorskip("torch")
    sched = torch.optim.lr_scheduler

    def lrs(make, n, lr):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=lr)
        s, out = make(opt), []
        for _ in range(n):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        return out

    assert [optim.cosine(0.1, 30, 0.01)(t) for t in range(31)] == pytest.approx(
        lrs(lambda o: sched.CosineAnnealingLR(o, T_max=30, eta_min=0.01), 31, 0.1), rel=1e-12)
    assert [optim.warmup(0.1, 5)(t) for t in range(12)] == pytest.approx(
        lrs(lambda o: sched.LinearLR(o, start_factor=1 / 5, total_iters=4), 12, 0.1), rel=1e-12)
    both = lrs(lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=1 / 5, total_iters=4),
                                                sched.CosineAnnealingLR(o, T_max=10, eta_min=0.01)],
                                           milestones=[5]), 16, 0.1)
    assert [optim.warmup(0.1, 5, optim.cosine(0.1, 10, 0.01))(t) for t in range(16)] == pytest.approx(both, rel=1e-12)


# ------------------------------------------------------------------ dtypes, donation, temporaries


@pytest.mark.parametrize("name, kw, ref, textbook, extra", [CASES[i] for i in (4, 8, 10, 14)],
                         ids=[IDS[i] for i in (4, 8, 10, 14)])
def test_float32_stays_float32(name, kw, ref, textbook, extra):
    """float32 parameters: float32 results and state, bit for bit the reference computed in float32
    (Python scalars are weak in NumPy 2), and close to the float64 run."""
    params, grads_of = mlp(np.float32)
    ours, state = run_ours(getattr(optim, name)(**kw), copy_tree(params), grads_of, steps=20)
    want, _ = run_reference(ref, reference_kwargs(kw, extra), copy_tree(params), grads_of, steps=20)
    for a, b in zip(leaves_of(ours), leaves_of(want)):
        assert a.dtype == np.float32 and b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert all(x.dtype == np.float32 for s in getattr(optim, name)(**kw).slots for x in leaves_of(state[s]))
    p64, g64 = mlp()
    wide, _ = run_ours(getattr(optim, name)(**kw), p64, g64, steps=20)
    for a, b in zip(leaves_of(ours), leaves_of(wide)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    # float64 gradients of float32 parameters are rounded to float32, not widened
    p = {"w": np.ones(3, np.float32)}
    out, st = optim.adam().update({"w": np.ones(3)}, optim.adam().init(p), p)
    assert out["w"].dtype == np.float32 and st["exp_avg"]["w"].dtype == np.float32


@pytest.mark.parametrize("name, kw", [(c[0], c[1]) for c in CASES], ids=IDS)
def test_the_callers_arrays_are_unchanged_unless_donated(name, kw):
    params, grads_of = mlp()
    opt = getattr(optim, name)(**kw)
    state = opt.init(params)
    params, state = opt.update(grads_of(params, 1), state, params)  # non-zero state
    grads = grads_of(params, 2)
    before = [copy_tree(t) for t in (params, state, grads)]
    new_p, new_s = opt.update(grads, state, params)
    for tree, saved in zip((params, state, grads), before):
        for a, b in zip(leaves_of(tree), leaves_of(saved)):
            np.testing.assert_array_equal(a, b)
    assert state["step"] == 1 and new_s["step"] == 2
    assert not any(np.shares_memory(a, b) for a in leaves_of(new_p) + leaves_of(new_s)
                   for b in leaves_of(params) + leaves_of(state) + leaves_of(grads))
    # donate=True: the same arrays, updated in place, the same numbers; grads still untouched
    def arrays(p, s):
        return leaves_of(p) + [x for slot in opt.slots for x in leaves_of(s[slot])]

    ids = [id(x) for x in arrays(params, state)]
    don_p, don_s = opt.update(grads, state, params, donate=True)
    assert [id(x) for x in arrays(don_p, don_s)] == ids
    for a, b in zip(leaves_of(don_p) + leaves_of(don_s), leaves_of(new_p) + leaves_of(new_s)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves_of(grads), leaves_of(before[2])):
        np.testing.assert_array_equal(a, b)


def test_donated_grads_that_alias_a_parameter_are_read_before_written():
    """grads = params (an odd call, but one that in-place updates could corrupt): the same result as
    with a copy of the gradient."""
    opt = optim.adam(0.1, weight_decay=0.1)
    p = {"w": np.linspace(-1, 1, 7)}
    state = opt.init(p)
    want, _ = opt.update(copy_tree(p), state, p)
    got, _ = opt.update(p, opt.init(p), p, donate=True)
    np.testing.assert_array_equal(got["w"], want["w"])


@pytest.mark.parametrize("name, kw", [("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
                                      ("adam", dict(weight_decay=0.1, amsgrad=True)),
                                      ("rmsprop", dict(momentum=0.5, centered=True, weight_decay=0.1))])
def test_no_temporaries_beyond_two_scratch_buffers(name, kw):
    """tracemalloc (which sees NumPy's data) over one update of two 4 MB parameters: donated, the peak is
    the two scratch buffers of the largest parameter; not donated, plus the new params and state."""
    opt = getattr(optim, name)(**kw)
    n = 500_000
    params = {"a": np.linspace(-1, 1, n), "b": np.linspace(1, 2, n)}
    grads = {"a": np.cos(params["a"]), "b": np.sin(params["b"])}
    state = opt.init(params)
    params, state = opt.update(grads, state, params, donate=True)
    size = 8 * n
    for donate, allowed in ((True, 2 * size), (False, 2 * size + 2 * (1 + len(opt.slots)) * size)):
        tracemalloc.start()
        try:
            params, state = opt.update(grads, state, params, donate=donate)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert allowed <= peak <= allowed + size // 4, (donate, peak / size)


def test_a_scalar_parameter_and_a_float_gradient():
    """A 0-d parameter whose gradient graphc.value_and_grad returns as a Python float."""
    p = {"s": np.array(2.0), "v": np.ones(2)}
    out, state = optim.sgd(0.5, momentum=0.5).update({"s": 1.0, "v": np.ones(2)}, optim.sgd(0.5, 0.5).init(p), p)
    assert type(out["s"]) is np.ndarray and out["s"].shape == () and float(out["s"]) == 1.5
    assert float(state["momentum_buffer"]["s"]) == 1.0
    # a number as a parameter (as a traced program returns a 0-d result): a 0-d float64 array back
    out, state = optim.sgd(0.5).update({"s": 1.0}, optim.sgd(0.5).init({"s": 2.0}), {"s": 2.0})
    assert type(out["s"]) is np.ndarray and out["s"].dtype == np.float64 and float(out["s"]) == 1.5


def test_the_rule_traces_in_float32():
    """A float32 program: float32 results within float32 rounding of the eager float32 rule."""
    opt = optim.adam(0.01, weight_decay=0.1, amsgrad=True)
    p, g, slots = (x.astype(np.float32) if isinstance(x, np.ndarray) else [y.astype(np.float32) for y in x]
                   for x in rule_inputs(opt))
    got = graphc.jit(lambda p, g, slots, step: opt.rule(p, g, *slots, step=step, hyper=opt.hyper(0)))(p, g, slots, 7)
    eager = opt.rule(p, g, *slots, step=7, hyper=opt.hyper(0))
    for a, b in zip(got, eager):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ the rules traced


def rule_inputs(opt, shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    p, g = rng.normal(size=shape), rng.normal(size=shape)
    slots = []
    for s in opt.slots:  # a state some steps could have reached: square averages above mean squares
        slots.append(np.abs(rng.normal(size=shape)) + 1.0 if s in ("exp_avg_sq", "max_exp_avg_sq", "square_avg")
                     else 0.5 * rng.normal(size=shape))
    return p, g, slots


JIT_TARGETS = [t if t in ("numpy", DEFAULT_TARGET) else pytest.param(t, marks=pytest.mark.slow)
               for t in TENSOR_TARGETS]


@pytest.mark.parametrize("target", JIT_TARGETS)
@pytest.mark.parametrize("name, kw", [("sgd", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1)),
                                      ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                      ("adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
                                      ("adamw", dict(lr=0.01, b1=0.3)),
                                      ("rmsprop", dict(momentum=0.5, centered=True, weight_decay=0.1)),
                                      ("rmsprop", dict(alpha=0.6))])
def test_the_rule_traced_through_jit_gives_the_eager_numbers(name, kw, target):
    """rule(p, g, *slots, step=, hyper=) traced by graphc.jit with the step and lr as traced scalars (one
    program for every step) against the rule on arrays (pure) and the in-place update, at steps 1 and 5."""
    opt = getattr(optim, name)(**kw)
    p, g, slots = rule_inputs(opt)
    f = graphc.jit(lambda p, g, slots, step, lr: opt.rule(p, g, *slots, step=step, hyper={**opt.hyper(0), "lr": lr}),
                   target=target)
    for step in (1, 5):
        hyper = opt.hyper(step - 1)
        got = f(p, g, slots, step, hyper["lr"])
        eager = opt.rule(p, g, *slots, step=step, hyper=hyper)
        params, state = {"p": p}, {"step": step - 1, **{s: {"p": x} for s, x in zip(opt.slots, slots)}}
        new_p, new_s = opt.update({"p": g}, state, params)
        assert len(got) == len(eager) == 1 + len(opt.slots)
        for a, b, c in zip(got, eager, [new_p["p"], *(new_s[s]["p"] for s in opt.slots)]):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)
            np.testing.assert_array_equal(b, c)
    np.testing.assert_array_equal(p, rule_inputs(opt)[0])  # the pure rule wrote nothing


def test_apply_traced_over_a_pytree_matches_update():
    """Optimizer.apply, the pytree-level pure step, inside graphc.jit with the state (its step a traced
    scalar) and lr as arguments: update's numbers; the step comes back as a number update accepts."""
    opt = optim.adam(optim.cosine(0.05, 50), weight_decay=0.1, amsgrad=True)
    params, grads_of = mlp()
    state = opt.init(params)
    for _ in range(3):
        params, state = opt.update(grads_of(params, 1), state, params)
    grads = grads_of(params, 2)
    step = graphc.jit(lambda g, s, p, lr: opt.apply(g, s, p, lr=lr))
    got_p, got_s = step(grads, state, params, opt.learning_rate(state["step"]))
    want_p, want_s = opt.update(grads, state, params)
    pure_p, pure_s = opt.apply(grads, state, params)
    assert float(got_s["step"]) == want_s["step"] == pure_s["step"] == 4
    for a, b, c in zip(leaves_of((got_p, got_s)), leaves_of((want_p, want_s)), leaves_of((pure_p, pure_s))):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)
        np.testing.assert_array_equal(np.asarray(b), np.asarray(c))
    again_p, again_s = opt.update(grads, got_s, got_p)  # a float step from the program is a count
    assert again_s["step"] == 5
    with pytest.raises(GraphcError, match=r"pass lr="):
        graphc.jit(lambda g, s, p: opt.apply(g, s, p))(grads, state, params)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("make, message", [
    (lambda: optim.sgd(-0.1), r"sgd: Invalid learning rate: -0.1 \(lr must be"),
    (lambda: optim.adam(lr=-1e-3), r"adam: Invalid learning rate: -0.001 \(lr"),
    (lambda: optim.rmsprop(lr=float("nan")), r"Invalid learning rate: nan \(lr"),
    (lambda: optim.adam(b1=1.0), r"Invalid beta parameter at index 0: 1.0 \(b1 must be in \[0, 1\)\)"),
    (lambda: optim.adam(b1=-0.1), r"Invalid beta parameter at index 0: -0.1 \(b1"),
    (lambda: optim.adamw(b2=1.5), r"adamw: Invalid beta parameter at index 1: 1.5 \(b2"),
    (lambda: optim.adam(eps=-1e-8), r"Invalid epsilon value: -1e-08 \(eps"),
    (lambda: optim.adam(weight_decay=-0.1), r"Invalid weight_decay value: -0.1 \(weight_decay"),
    (lambda: optim.sgd(0.1, momentum=-0.5), r"Invalid momentum value: -0.5 \(momentum"),
    (lambda: optim.sgd(0.1, nesterov=True), r"Nesterov momentum requires a momentum and zero dampening "
                                            r"\(nesterov=True with momentum=0.0"),
    (lambda: optim.sgd(0.1, momentum=0.9, dampening=0.1, nesterov=True), r"Nesterov .*dampening=0.1"),
    (lambda: optim.rmsprop(alpha=-0.5), r"Invalid alpha value: -0.5 \(alpha"),
    (lambda: optim.rmsprop(momentum=-1), r"Invalid momentum value: -1.0 \(momentum"),
    (lambda: optim.sgd("0.1"), r"lr must be a number or a schedule .*not a Python str"),
    (lambda: optim.adam(b1=None), r"adam: b1 must be a number, not None"),
    (lambda: optim.cosine(0.1, 0), r"cosine: steps must be an int >= 1, not 0"),
    (lambda: optim.warmup(-0.1, 5), r"warmup: Invalid learning rate: -0.1"),
    (lambda: optim.constant(0.1)(-1), r"constant: the step must be an int >= 0"),
])
def test_bad_hyperparameters_are_refused_by_name(make, message):
    """torch.optim's ValueError messages, naming graphc's argument; a GraphcError and a ValueError."""
    with pytest.raises(GraphcError, match=message) as info:
        make()
    assert isinstance(info.value, ValueError)


def test_bad_trees_are_refused_by_name():
    opt = optim.adam()
    params = {"layers": [{"W": np.ones((2, 3)), "b": np.zeros(3)}], "s": np.array(1.0)}
    state = opt.init(params)
    grads = copy_tree(params)
    with pytest.raises(GraphcError, match=r"grads do not have the structure of params: at the top, grads has "
                                          r"keys \['t'\] that params lacks and params has keys \['s'\]"):
        opt.update({"layers": grads["layers"], "t": 1.0}, state, params)
    with pytest.raises(GraphcError, match=r"at \['layers'\]\[0\], grads has keys \['W '\] that params lacks"):
        opt.update({"layers": [{"W": 1, "W ": 2, "b": 3}], "s": 1.0}, state, params)
    with pytest.raises(GraphcError, match=r"at \['layers'\], grads has a tuple where params has a list"):
        opt.update({"layers": (grads["layers"][0],), "s": 1.0}, state, params)
    with pytest.raises(GraphcError, match=r"at \['layers'\], grads has 2 entries and params 1"):
        opt.update({"layers": grads["layers"] * 2, "s": 1.0}, state, params)
    with pytest.raises(ShapeError, match=r"grads leaf layers_0_W has shape \(3, 2\), its parameter \(2, 3\)"):
        opt.update({"layers": [{"W": np.ones((3, 2)), "b": np.zeros(3)}], "s": 1.0}, state, params)
    with pytest.raises(GraphcError, match=r"grads leaf s is a Python str"):
        opt.update({**grads, "s": "x"}, state, params)
    with pytest.raises(GraphcError, match=r"state\['exp_avg'\] does not have the structure of params"):
        opt.update(grads, {**state, "exp_avg": {"s": np.zeros(())}}, params)
    with pytest.raises(GraphcError, match=r"state has slots \['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'\]"):
        opt.update(grads, optim.adam(amsgrad=True).init(params), params)
    with pytest.raises(GraphcError, match=r"state must be the dict that init\(\) or update\(\) returned"):
        opt.update(grads, [state], params)
    with pytest.raises(GraphcError, match=r"state\['step'\] must be a whole number >= 0"):
        opt.update(grads, {**state, "step": 1.5}, params)
    with pytest.raises(GraphcError, match=r"state\['exp_avg'\] leaf s is an ndarray of float32"):
        opt.update(grads, {**state, "exp_avg": {**state["exp_avg"], "s": np.zeros((), np.float32)}}, params)
    with pytest.raises(GraphcError, match=r"params leaf s is a Python str: an optimizer updates float NumPy"):
        opt.init({"s": "1.0"})
    with pytest.raises(GraphcError, match=r"update: params leaf s is a Python bool"):
        opt.update({"s": 1.0}, opt.init({"s": 1.0}), {"s": True})
    with pytest.raises(GraphcError, match=r"params leaf W is an ndarray of int64"):
        opt.init({"W": np.ones(3, dtype=np.int64)})
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(GraphcError, match=r"donate=True, but params leaf w is read-only"):
        opt.update({"w": np.ones(3)}, opt.init({"w": frozen}), {"w": frozen}, donate=True)
    bad = optim.sgd(lambda t: -0.1 * t)
    with pytest.raises(GraphcError, match=r"the lr schedule gave a Python float \(-0.1\) at step 1"):
        run_ours(bad, {"w": np.ones(2)}, lambda p, t: p, steps=2)


def test_optim_is_part_of_graphc():
    assert graphc.optim is optim and "optim" in graphc.__all__
    for name in ("sgd", "adam", "adamw", "rmsprop", "constant", "cosine", "warmup"):
        assert callable(getattr(graphc.optim, name))
    assert "torch.optim.Adam" in optim.adam.__doc__ and "torch.optim.SGD" in optim.sgd.__doc__
    assert "torch.optim.AdamW" in optim.adamw.__doc__ and "torch.optim.RMSprop" in optim.rmsprop.__doc__
