"""graphc.train_step: loss, gradient and optimizer update as one compiled program. 100 steps against the
eager loop (graphc.value_and_grad + Optimizer.update: the same numbers, <= 1e-12 relative in float64) for
sgd with momentum, adam with a schedule, adamw and rmsprop on the seed's two-layer net and on an MLP pytree;
against hand-written NumPy backpropagation + Adam, and torch.optim when installed; has_aux; the caller's
arrays untouched by default and written in place with donate=True (no parameter-sized allocation per step);
one trace for 100 steps; bad input refused by name; a couple of cases on every tensor target."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from conftest import on_every_target

import graphc
import graphc.nn as nn
import graphc.numpy as gnp
from graphc import optim
from graphc.backends.targets import DEFAULT_TARGET
from graphc.errors import GraphcError, ShapeError
from graphc.trace import flatten, unflatten
from graphc.train import written_in_place

STEPS = 100
REG = 1e-3


# ------------------------------------------------------------------ models: the seed's net and an MLP pytree


def seed_loss(params, X, y):
    """The seed's two-layer net (examples/spiral.py): softmax cross-entropy of relu(X W1 + b1) W2 + b2, plus L2."""
    hidden = nn.relu(X @ params["W1"] + params["b1"])
    scores = hidden @ params["W2"] + params["b2"]
    return nn.cross_entropy(scores, y) + 0.5 * REG * (gnp.sum(params["W1"] ** 2) + gnp.sum(params["W2"] ** 2))


def seed_loss_and_accuracy(params, X, y):
    hidden = nn.relu(X @ params["W1"] + params["b1"])
    scores = hidden @ params["W2"] + params["b2"]
    loss = nn.cross_entropy(scores, y) + 0.5 * REG * (gnp.sum(params["W1"] ** 2) + gnp.sum(params["W2"] ** 2))
    return loss, {"accuracy": gnp.mean(gnp.argmax(scores, axis=1) == y), "scores": scores}


def seed_problem(dtype=np.float64, n=60, d=5, h=16, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n, d)).astype(dtype), rng.integers(0, c, n)
    params = {"W1": (rng.normal(size=(d, h)) * 0.5).astype(dtype), "b1": np.zeros(h, dtype),
              "W2": (rng.normal(size=(h, c)) * 0.5).astype(dtype), "b2": np.zeros(c, dtype)}
    return params, (X, y)


def mlp_loss(params, x, y):
    """A tanh MLP's squared error: the layers a list of dicts, an output scale a 0-d parameter."""
    (l1, l2), s = params["layers"], params["scale"]
    out = s * (gnp.tanh(x @ l1["W"] + l1["b"]) @ l2["W"] + l2["b"])
    return gnp.sum((out - y) ** 2) / (2 * x.shape[0])


def mlp_problem(dtype=np.float64):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(16, 4)).astype(dtype), rng.normal(size=(16, 3)).astype(dtype)
    params = {"layers": [{"W": (rng.normal(size=(4, 8)) / 2).astype(dtype), "b": np.zeros(8, dtype)},
                         {"W": (rng.normal(size=(8, 3)) / 3).astype(dtype), "b": np.zeros(3, dtype)}],
              "scale": np.array(1.0, dtype)}
    return params, (x, y)


MODELS = {"seed": (seed_loss, seed_problem), "mlp": (mlp_loss, mlp_problem)}

OPTIMIZERS = {
    "sgd-momentum": lambda: optim.sgd(optim.warmup(0.05, 10, optim.cosine(0.05, 90)), momentum=0.9, nesterov=True),
    "adam-schedule": lambda: optim.adam(optim.warmup(0.01, 10, optim.cosine(0.01, 90, final=1e-4))),
    "adamw": lambda: optim.adamw(0.01, weight_decay=0.1),
    "rmsprop": lambda: optim.rmsprop(0.003, momentum=0.5, centered=True),
}

_VG: dict = {}


def eager_grad(loss, target=None):
    """graphc.value_and_grad of a loss, one per (loss, target) for the whole module (traced once)."""
    key = (loss, target)
    if key not in _VG:
        _VG[key] = graphc.value_and_grad(loss, target=target)
    return _VG[key]


def copy_tree(tree):
    leaves, _, td = flatten(tree)
    return unflatten(td, [np.array(x, copy=True) for x in leaves])


def eager_run(loss, opt, params, data, steps=STEPS, target=None):
    """The reference loop: value_and_grad, then Optimizer.update (NumPy), `steps` times."""
    vg = eager_grad(loss, target)
    state = opt.init(params)
    values = []
    for _ in range(steps):
        value, grads = vg(params, *data)
        params, state = opt.update(grads, state, params)
        values.append(value)
    return params, state, values


def fused_run(step, params, data, steps=STEPS):
    state = step.optimizer.init(params)
    values = []
    for _ in range(steps):
        params, state, value = step(params, state, *data)
        values.append(value)
    return params, state, values


def rel_err(a, b) -> float:
    """The largest difference of two pytrees' leaves, relative to each reference leaf's largest entry."""
    worst = 0.0
    for x, r in zip(flatten(a)[0], flatten(b)[0], strict=True):
        x, r = np.asarray(x, np.float64), np.asarray(r, np.float64)
        assert x.shape == r.shape
        worst = max(worst, float(np.max(np.abs(x - r), initial=0.0) / max(np.max(np.abs(r), initial=0.0), 1e-300)))
    return worst


def assert_same_run(got, ref, rel):
    (p, s, v), (rp, rs, rv) = got, ref
    assert rel_err(p, rp) <= rel
    assert set(s) == set(rs) and s["step"] == rs["step"] == len(v)
    for k in s:
        if k != "step":
            assert rel_err(s[k], rs[k]) <= rel, k
    np.testing.assert_allclose(v, rv, rtol=rel, atol=0)


# ------------------------------------------------------------------ against the eager loop


PARITY = [pytest.param("seed", name, id=f"seed-{name}", marks=[pytest.mark.slow] if name in ("adamw", "rmsprop") else [])
          for name in OPTIMIZERS] + [
    pytest.param("mlp", "adam-schedule", id="mlp-adam-schedule"),
    pytest.param("mlp", "sgd-momentum", id="mlp-sgd-momentum", marks=pytest.mark.slow),
    pytest.param("mlp", "rmsprop", id="mlp-rmsprop"),
]


@pytest.mark.parametrize("model, opt_name", PARITY)
def test_100_steps_match_the_eager_loop_in_float64(model, opt_name):
    """train_step's params, state and losses over 100 steps against value_and_grad + Optimizer.update,
    with one trace for all of them (the step count and the scheduled lr are inputs, not constants)."""
    loss, problem = MODELS[model]
    params, data = problem()
    opt = OPTIMIZERS[opt_name]()
    ref = eager_run(loss, opt, copy_tree(params), data)
    step = graphc.train_step(loss, opt)
    got = fused_run(step, copy_tree(params), data)
    assert_same_run(got, ref, 1e-12)
    assert step.traces == 1 and step.cache_info() == {"hits": STEPS - 1, "misses": 1, "signatures": 1}
    assert ref[2][-1] < 0.7 * ref[2][0]  # it trains: the comparison is not of two stuck runs


def test_float32_stays_float32_and_matches_the_eager_loop():
    """float32 params and data: a float32 program; its 100 steps within float32's tolerance of the eager
    float32 loop and of the float64 one."""
    params, data = seed_problem(np.float32)
    opt = OPTIMIZERS["adam-schedule"]()
    step = graphc.train_step(seed_loss, opt)
    got = fused_run(step, copy_tree(params), data)
    assert all(x.dtype == np.float32 for x in flatten(got[0])[0] + flatten(got[1]["exp_avg"])[0])
    ref32 = eager_run(seed_loss, opt, copy_tree(params), data)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    ref64 = eager_run(seed_loss, opt, p64, (data[0].astype(np.float64), data[1]))
    assert_same_run(got, ref32, 2e-4)
    assert rel_err(got[0], ref64[0]) <= 2e-3


def test_a_second_batch_size_retraces_once_for_every_size():
    """Batches of 60, 50 and 40 points: the second size traces the step with the batch axis named, the
    third runs that program (Traced's rule); each step equals the eager one."""
    params, (X, y) = seed_problem()
    opt = optim.sgd(0.1, momentum=0.9)
    step = graphc.train_step(seed_loss, opt)
    vg = eager_grad(seed_loss)
    p, s = copy_tree(params), opt.init(params)
    rp, rs = copy_tree(params), opt.init(params)
    for n in (60, 50, 40, 60):
        p, s, value = step(p, s, X[:n], y[:n])
        v, g = vg(rp, X[:n], y[:n])
        rp, rs = opt.update(g, rs, rp)
        assert value == pytest.approx(v, rel=1e-12) and rel_err(p, rp) <= 1e-12
    assert step.traces == 2 and step.cache_info()["misses"] == 2


# ------------------------------------------------------------------ independent references


def numpy_seed_step(params, X, y):
    """The seed net's loss and gradients by hand (CS231n's backpropagation)."""
    n = len(X)
    z = X @ params["W1"] + params["b1"]
    hid = np.maximum(z, 0)
    s = hid @ params["W2"] + params["b2"]
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(n), y])) + 0.5 * REG * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))
    ds = p.copy()
    ds[np.arange(n), y] -= 1
    ds /= n
    dh = ds @ params["W2"].T * (z > 0)
    grads = {"W1": X.T @ dh + REG * params["W1"], "b1": dh.sum(0), "W2": hid.T @ ds + REG * params["W2"],
             "b2": ds.sum(0)}
    return loss, grads


def numpy_adam_run(params, X, y, lr, steps=STEPS, b1=0.9, b2=0.999, eps=1e-8):
    """Adam as Kingma & Ba write it (torch.optim.Adam's documented algorithm), over hand backpropagation."""
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    losses = []
    for t in range(1, steps + 1):
        loss, g = numpy_seed_step(params, X, y)
        losses.append(loss)
        for k in params:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            params[k] = params[k] - lr(t - 1) * (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
    return params, {"exp_avg": m, "exp_avg_sq": v}, losses


def test_adam_against_hand_written_numpy():
    """100 Adam steps with a schedule against NumPy backpropagation and the paper's update (no graphc in
    the reference): the same to 1e-9 relative in float64 (rounding differs, the formulas do not)."""
    params, (X, y) = seed_problem()
    schedule = optim.warmup(0.01, 10, optim.cosine(0.01, 90))
    step = graphc.train_step(seed_loss, optim.adam(schedule))
    p, s, values = fused_run(step, copy_tree(params), (X, y))
    rp, rs, rvalues = numpy_adam_run(copy_tree(params), X, y, schedule)
    assert rel_err(p, rp) <= 1e-9
    assert rel_err(s["exp_avg"], rs["exp_avg"]) <= 1e-9 and rel_err(s["exp_avg_sq"], rs["exp_avg_sq"]) <= 1e-9
    np.testing.assert_allclose(values, rvalues, rtol=1e-10)


TORCH = [("adam", dict(lr=0.01), "Adam", dict(lr=0.01)),
         ("sgd", dict(lr=0.05, momentum=0.9), "SGD", dict(lr=0.05, momentum=0.9)),
         ("adamw", dict(lr=0.01, weight_decay=0.1), "AdamW", dict(lr=0.01, weight_decay=0.1)),
         ("rmsprop", dict(lr=0.003, momentum=0.5), "RMSprop", dict(lr=0.003, momentum=0.5))]


@pytest.mark.parametrize("name, kw, cls, torch_kw", [
    pytest.param(*case, id=case[0], marks=[] if case[0] == "adam" else [pytest.mark.slow]) for case in TORCH])
def test_against_torch_optim(name, kw, cls, torch_kw):
    """The seed net trained 100 steps by train_step and by torch.optim on torch's own loss and autograd
    (float64): the same params to 1e-9 relative."""
    torch = pytest.importorskip("torch")
    params, (X, y) = seed_problem()
    step = graphc.train_step(seed_loss, getattr(optim, name)(**kw))
    p, _, values = fused_run(step, copy_tree(params), (X, y))
    names = sorted(params)
    ts = {k: torch.tensor(params[k], requires_grad=True) for k in names}
    topt = getattr(torch.optim, cls)([ts[k] for k in names], foreach=False, **torch_kw)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    tvalues = []
    for _ in range(STEPS):
        topt.zero_grad()
        s = torch.relu(Xt @ ts["W1"] + ts["b1"]) @ ts["W2"] + ts["b2"]
        loss = torch.nn.functional.cross_entropy(s, yt) + 0.5 * REG * ((ts["W1"] ** 2).sum() + (ts["W2"] ** 2).sum())
        loss.backward()
        topt.step()
        tvalues.append(float(loss.detach()))
    assert rel_err(p, {k: t.detach().numpy() for k, t in ts.items()}) <= 1e-9
    np.testing.assert_allclose(values, tvalues, rtol=1e-10)


# ------------------------------------------------------------------ aux, donation, the caller's arrays


def test_has_aux_returns_the_accuracy_of_the_params_it_was_given():
    params, (X, y) = seed_problem()
    opt = optim.adam(0.01)
    step = graphc.train_step(seed_loss_and_accuracy, opt, has_aux=True)
    p, s = copy_tree(params), opt.init(params)
    rp, rs = copy_tree(params), opt.init(params)
    vg = eager_grad(seed_loss)
    for _ in range(5):
        scores = np.maximum(X @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]
        before = p
        p, s, value, aux = step(p, s, X, y)
        assert set(aux) == {"accuracy", "scores"} and isinstance(aux["accuracy"], float)
        assert aux["accuracy"] == pytest.approx(np.mean(np.argmax(scores, 1) == y), abs=1e-15)
        np.testing.assert_allclose(aux["scores"], scores, rtol=1e-12, atol=1e-14)
        assert value == pytest.approx(numpy_seed_step(before, X, y)[0], rel=1e-12)
        v, g = vg(rp, X, y)
        rp, rs = opt.update(g, rs, rp)
    assert rel_err(p, rp) <= 1e-12 and rel_err(s["exp_avg_sq"], rs["exp_avg_sq"]) <= 1e-12


def test_the_callers_arrays_are_unchanged_by_default():
    params, data = mlp_problem()
    keep = copy_tree(params)
    opt = optim.adam(0.01)
    state = opt.init(params)
    kept_state = copy_tree(state)
    step = graphc.train_step(mlp_loss, opt)
    p, s, _ = step(params, state, *data)
    p, s, _ = step(p, s, *data)
    assert rel_err(params, keep) == 0 and rel_err(state["exp_avg"], kept_state["exp_avg"]) == 0
    assert state["step"] == 0 and s["step"] == 2
    assert not any(np.shares_memory(a, b) for a in flatten(p)[0] for b in flatten(params)[0])
    assert isinstance(p["scale"], np.ndarray) and p["scale"].shape == ()  # 0-d params stay 0-d arrays


@pytest.mark.parametrize("model", [pytest.param("seed", marks=pytest.mark.slow), "mlp"])
def test_donate_writes_into_the_callers_arrays(model):
    """donate=True: the returned leaves are the given arrays, holding what the default step returns."""
    loss, problem = MODELS[model]
    params, data = problem()
    opt = optim.adam(optim.cosine(0.01, 50))
    plain = graphc.train_step(loss, opt)
    donating = graphc.train_step(loss, opt, donate=True)
    p, s = copy_tree(params), opt.init(params)
    rp, rs = copy_tree(params), opt.init(params)
    for _ in range(20):
        given = flatten(p)[0] + flatten(s["exp_avg"])[0] + flatten(s["exp_avg_sq"])[0]
        p, s, value = donating(p, s, *data)
        back = flatten(p)[0] + flatten(s["exp_avg"])[0] + flatten(s["exp_avg_sq"])[0]
        assert all(a is b for a, b in zip(given, back, strict=True))
        rp, rs, rvalue = plain(rp, rs, *data)
        assert value == rvalue
    assert rel_err(p, rp) == 0 and rel_err(s["exp_avg_sq"], rs["exp_avg_sq"]) == 0 and s["step"] == 20


def test_donate_allocates_no_parameter_sized_array_per_step():
    """tracemalloc over 5 donated steps (after two, which compile and make the kept buffers): each step's
    peak of new memory, and what the five keep, stay under a quarter of the biggest parameter (W1: 200 x 100
    float64, 160 kB); the default step returns new arrays: at least the params and state each step."""
    params, (X, y) = seed_problem(n=20, d=200, h=100, c=3)
    big = params["W1"].nbytes
    opt = optim.adam(0.001)
    peaks = {}
    for donate in (True, False):
        step = graphc.train_step(seed_loss, opt, donate=donate)
        p, s = copy_tree(params), opt.init(params)
        p, s, _ = step(p, s, X, y)
        p, s, _ = step(p, s, X, y)
        gc.collect()
        tracemalloc.start()
        try:
            start, most = tracemalloc.get_traced_memory()[0], 0
            for _ in range(5):
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                p, s, _ = step(p, s, X, y)
                most = max(most, tracemalloc.get_traced_memory()[1] - before)
            gc.collect()  # unflatten's recursive closures are cycles: garbage, not kept memory
            kept = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        peaks[donate] = most
        if donate:
            assert most < big / 4 and kept < big / 4, (most, kept, big)
    assert peaks[False] >= 3 * big  # W1, its exp_avg and exp_avg_sq are new arrays each step


def loss_with_its_params_as_aux(params, x):
    """A loss of params["a"] whose aux is params["a"] and params["unused"] themselves (outputs that are inputs)."""
    return gnp.sum((x @ params["a"]) ** 2), {"a": params["a"], "unused": params["unused"]}


@pytest.mark.parametrize("target", ["numpy", DEFAULT_TARGET])
def test_donate_keeps_an_aux_that_is_a_donated_parameter(target):
    """An aux that is a parameter reads the donated array after the program: it comes back with the value
    the step was given, while the array itself holds the new one; a parameter the loss does not use gets
    a zero gradient (and Adam's update of it)."""
    rng = np.random.default_rng(3)
    x, params = rng.normal(size=(5, 4)), {"a": rng.normal(size=(4, 3)), "unused": rng.normal(size=2)}
    opt = optim.adam(0.01)
    step = graphc.train_step(loss_with_its_params_as_aux, opt, has_aux=True, donate=True, target=target)
    vg = graphc.value_and_grad(loss_with_its_params_as_aux, has_aux=True, target="numpy")
    p, s = copy_tree(params), opt.init(params)
    rp, rs = copy_tree(params), opt.init(params)
    for _ in range(3):
        before, given = copy_tree(p), p["a"]
        p, s, value, aux = step(p, s, x)
        assert p["a"] is given and aux["a"] is not given
        assert np.array_equal(aux["a"], before["a"]) and np.array_equal(aux["unused"], before["unused"])
        (rv, _), g = vg(rp, x)
        rp, rs = opt.update(g, rs, rp)
        assert value == pytest.approx(rv, rel=1e-12) and rel_err(p, rp) <= 1e-12


def test_donate_on_llvm_writes_the_seed_nets_update_straight_into_the_callers_arrays():
    """llvm's loops are explicit vectors, so the loop that reads a parameter (or moment) last may write its new
    value over it at the same index: for the seed net every donated leaf is written by the plan itself, none
    through a kept buffer and a copy. An aux that reads a parameter at the end keeps that one out of it."""
    params, data = seed_problem()
    opt = optim.adam(0.01)
    step = graphc.train_step(seed_loss, opt, donate=True, target="llvm")
    step(copy_tree(params), opt.init(params), *data)
    sig = step.traced._sigs[0]
    order = [list(sig.out_names).index(f"out{k}") for k in range(12)]
    assert written_in_place(sig.fn, 12, order) == [True] * 12
    aux = graphc.train_step(loss_with_its_params_as_aux, opt, has_aux=True, donate=True, target="llvm")
    rng = np.random.default_rng(3)
    p = {"a": rng.normal(size=(4, 3)), "unused": rng.normal(size=2)}
    aux(p, opt.init(p), rng.normal(size=(5, 4)))
    sig = aux.traced._sigs[0]
    order = [list(sig.out_names).index(f"out{k}") for k in range(6)]
    assert written_in_place(sig.fn, 6, order)[:2] == [False, False]  # params a and unused: read as aux at the end


def test_donated_arrays_must_be_writeable_arrays_of_their_own():
    params, data = seed_problem()
    opt = optim.sgd(0.1, momentum=0.9)
    step = graphc.train_step(seed_loss, opt, donate=True)
    state = opt.init(params)
    frozen = copy_tree(params)
    frozen["b1"].flags.writeable = False
    with pytest.raises(GraphcError, match=r"donate=True, but params leaf b1 is .*read-only"):
        step(frozen, state, *data)
    shared = copy_tree(params)
    state = opt.init(shared)
    state["momentum_buffer"]["W1"] = shared["W1"]
    with pytest.raises(GraphcError, match="one array is given for two"):
        step(shared, state, *data)


# ------------------------------------------------------------------ bad input


def vector_loss(params, X, y):
    return gnp.sum(X @ params["W1"], axis=0)


def constant_loss(params, X, y):
    return 1.0


def test_a_loss_that_is_not_a_scalar_is_refused_by_name():
    params, data = seed_problem()
    opt = optim.adam(0.01)
    with pytest.raises(ShapeError, match=r"train_step: loss returned a value of shape \(16,\); the loss must be a "
                                         r"scalar"):
        graphc.train_step(vector_loss, opt)(params, opt.init(params), *data)
    with pytest.raises(GraphcError, match="loss returned a Python float, not a value computed from params"):
        graphc.train_step(constant_loss, opt)(params, opt.init(params), *data)
    with pytest.raises(GraphcError, match=r"has_aux=True, so loss must return \(value, aux\)"):
        graphc.train_step(seed_loss, opt, has_aux=True)(params, opt.init(params), *data)


def test_params_and_state_that_do_not_match_are_refused_by_name():
    params, data = seed_problem()
    opt = optim.adam(0.01)
    step = graphc.train_step(seed_loss, opt)
    other = opt.init({k: v for k, v in params.items() if k != "b2"})
    with pytest.raises(GraphcError, match=r"opt_state\['exp_avg'\] does not have the structure of params"):
        step(params, other, *data)
    wrong = opt.init(params)
    wrong["exp_avg_sq"]["W1"] = np.zeros((16, 5))
    with pytest.raises(ShapeError, match=r"opt_state\['exp_avg_sq'\] leaf W1 has shape \(16, 5\), its parameter "
                                         r"\(5, 16\)"):
        step(params, wrong, *data)
    with pytest.raises(GraphcError, match=r"opt_state has slots \['momentum_buffer'\], but graphc.optim.adam"):
        step(params, optim.sgd(0.1, momentum=0.9).init(params), *data)
    with pytest.raises(GraphcError, match=r"opt_state\['step'\] must be a whole number >= 0"):
        step(params, {**opt.init(params), "step": -1}, *data)
    with pytest.raises(GraphcError, match="opt_state must be the dict"):
        step(params, [1, 2], *data)
    mixed = opt.init(params)
    mixed["exp_avg"]["b1"] = mixed["exp_avg"]["b1"].astype(np.float32)
    with pytest.raises(GraphcError, match=r"opt_state\['exp_avg'\] leaf b1 is an ndarray of float32, the params "
                                          "are float64"):
        step(params, mixed, *data)


@pytest.mark.parametrize("make, message", [
    (lambda: graphc.train_step("loss", optim.adam()), "loss must be a function loss"),
    (lambda: graphc.train_step(seed_loss, "adam"), "optimizer must be a graphc.optim optimizer"),
    (lambda: graphc.train_step(seed_loss, optim.adam(), donate=1), "donate must be True or False"),
    (lambda: graphc.train_step(seed_loss, optim.adam(), target="nope"), "unknown target 'nope'"),
])
def test_bad_arguments_are_refused_by_name(make, message):
    with pytest.raises(GraphcError, match=message):
        make()


# ------------------------------------------------------------------ every tensor target


TARGET_CASES = [("seed", "adam-schedule", False), ("mlp", "sgd-momentum", True)]


def fast_on_numpy_and_default(params):
    """on_every_target's cases with the Numba targets' all in the slow tier: compiling a whole training
    step with Numba takes ~10 s, the fast tier's budget for this file."""
    return [p if p.values[-1] in ("numpy", DEFAULT_TARGET) else
            pytest.param(*p.values, id=p.id, marks=[pytest.mark.slow]) for p in params]


@pytest.mark.parametrize("model, opt_name, donate, target", fast_on_numpy_and_default(on_every_target(
    TARGET_CASES, [f"{m}-{o}-{'donate' if d else 'copy'}" for m, o, d in TARGET_CASES])))
def test_every_target_matches_the_numpy_eager_loop(model, opt_name, donate, target):
    """30 steps on each tensor target against the eager loop on the numpy (reference) target."""
    loss, problem = MODELS[model]
    params, data = problem()
    opt = OPTIMIZERS[opt_name]()
    ref = eager_run(loss, opt, copy_tree(params), data, steps=30, target="numpy")
    step = graphc.train_step(loss, opt, donate=donate, target=target)
    got = fused_run(step, copy_tree(params), data, steps=30)
    assert_same_run(got, ref, 1e-12)
    assert step.traces == 1


def test_describe_shows_the_update_in_the_gradients_loops():
    """The schedule: the weight's update reads the GEMM that finishes its gradient in the same loop nest
    (the default target's plan)."""
    params, data = seed_problem()
    opt = optim.adam(0.01)
    step = graphc.train_step(seed_loss, opt)
    text = step.describe(params, opt.init(params), *data)
    assert f"target {DEFAULT_TARGET}" in text
    loops = [line for line in text.splitlines() if line.startswith("kernel") and "%slots_exp_avg_W1" in line]
    assert loops and "%params_W1" in loops[0] and "sum" in loops[0]  # sum(W1**2) of the loss in that loop
