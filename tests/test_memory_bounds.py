"""Memory: caches per signature are bounded, and asking about memory allocates none.

Issue 23 item 7: `value_and_grad` kept a kernel and a pool per batch size without
bound (ten batch sizes near N = 10,000: +208 MB), and `planned_memory` made the
arena it described (N = 10**10: a 1.16 TiB allocation).
"""

import pickle
import time
import tracemalloc

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.numpy as gnp
from graphc import ArgumentError, api, trace
from graphc.schedule import memory

MLP_SHAPES = {"X": ("N", "D"), "W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",), "y": ("N",),
              "reg": ()}
MLP_L2 = "cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y) + 0.5 * reg * (sum(W1 * W1) + sum(W2 * W2))"
D, H, C = 32, 64, 10


def _mlp(target=None):
    return graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=["W1", "b1", "W2", "b2"],
                          target=target)


def _mlp_args(n, seed=0):
    rng = np.random.default_rng(seed)
    return dict(X=rng.normal(size=(n, D)), W1=rng.normal(size=(D, H)) * 0.3, b1=np.zeros(H),
                W2=rng.normal(size=(H, C)) * 0.3, b2=np.zeros(C), y=rng.integers(0, C, n), reg=1e-3)


def mlp_loss(params, X, y):
    h = nn.relu(X @ params["W1"] + params["b1"])
    return nn.cross_entropy(h @ params["W2"] + params["b2"], y)


def mlp_by_hand(params, X, y):
    z = X @ params["W1"] + params["b1"]
    s = np.maximum(z, 0) @ params["W2"] + params["b2"]
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ds = p.copy()
    ds[np.arange(len(y)), y] -= 1
    ds /= len(y)
    dh = ds @ params["W2"].T * (z > 0)
    grads = {"W1": X.T @ dh, "b1": dh.sum(0), "W2": np.maximum(z, 0).T @ ds, "b2": ds.sum(0)}
    return -np.mean(np.log(p[np.arange(len(y)), y])), grads


def _params(rng):
    return {"W1": rng.normal(size=(D, H)) * 0.3, "b1": rng.normal(size=H) * 0.1,
            "W2": rng.normal(size=(H, C)) * 0.3, "b2": rng.normal(size=C) * 0.1}


def _agrees(vg, params, X, y):
    v, g = vg(params, X, y)
    rv, rg = mlp_by_hand(params, X, y)
    assert v == pytest.approx(rv, rel=1e-12)
    for k in rg:
        np.testing.assert_allclose(g[k], rg[k], rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------ planned_memory asks, never allocates


@pytest.mark.parametrize("target", ["llvm", "cpu"])  # the targets with pooled buffers (parallel: cpu's kernel)
def test_planned_memory_of_a_huge_size_allocates_nothing_and_counts_right(target):
    fn = _mlp(target)
    small = fn.planned_memory(**_mlp_args(1000))
    assert small["pool"] == 8 * 1000 * (4 * H + C)  # four (N, H) values alive at once, and the (N, C) scores'
    fn(**_mlp_args(1000))
    assert fn.kernel.pool_bytes() == small["pool"]  # the plan is the arena a call makes
    fn.kernel.release_pools()
    n = 10**10
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        plan = fn.planned_memory(N=n, D=D, H=H, C=C)
        took = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert took < 1.0 and peak < 1 << 20, (took, peak)
    assert fn.kernel.pool_bytes() == 0  # no arena was made for the question
    assert plan["pool"] == 8 * n * (4 * H + C)  # 19.4 TiB, exactly: Python integers, no int64 overflow
    assert plan["outputs"] == 8 * (1 + D * H + H + H * C + C)
    assert plan["temporaries"] == small["temporaries"] + 8 * (n - 1000) * C
    assert plan["peak"] == plan["pool"] + plan["outputs"] + plan["temporaries"]
    # arguments and sizes mix; what is missing or contradicts is named
    a = _mlp_args(50)
    assert fn.planned_memory(X=a["X"], W1=a["W1"], W2=a["W2"]) == fn.planned_memory(N=50, D=D, H=H, C=C)
    with pytest.raises(ArgumentError, match="needs the size of dimension.*C"):
        fn.planned_memory(N=10, D=D, H=H)
    with pytest.raises(ArgumentError, match="dimension N is 50 in the arguments but N=7"):
        fn.planned_memory(X=a["X"], N=7, H=H, C=C)
    with pytest.raises(ArgumentError, match="unknown argument 'M'"):
        fn.planned_memory(M=3)


# ------------------------------------------------------------------ pools per kernel


@pytest.mark.slow  # eleven calls of the net on 10^4-2*10^5 rows
def test_a_kernel_keeps_about_twice_its_current_pool_not_one_per_size():
    fn = _mlp()
    held = []
    for n in range(10000, 10010):
        fn(**_mlp_args(n))
        held.append(fn.kernel.pool_bytes())
    last = fn.planned_memory(N=10009, D=D, H=H, C=C)["pool"]
    assert held[-1] <= 2 * last + memory.POOL_SLACK, held  # ten pools of ~21 MB were kept before
    fn(**_mlp_args(200000))
    big = fn.kernel.pool_bytes()
    fn(**_mlp_args(100))
    assert fn.kernel.pool_bytes() < big / 10  # a big call's pool goes once smaller calls follow


# ------------------------------------------------------------------ value_and_grad: one program per batch size


def test_value_and_grad_serves_every_batch_size_with_one_program_and_bounded_memory():
    rng = np.random.default_rng(0)
    params = _params(rng)
    data = {n: (rng.normal(size=(n, D)), rng.integers(0, C, n)) for n in range(10000, 10011)}
    vg = graphc.value_and_grad(mlp_loss)
    _agrees(vg, params, *data[10000])
    pool = max(s.fn.pool_bytes() for s in vg._sigs)
    tracemalloc.start()
    try:
        for n in range(10001, 10011):
            vg(params, *data[n])
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # before: a kernel and a ~21 MB pool per size, +208 MB; now one program, at most two pools held
    assert held < 2 * pool + memory.POOL_SLACK + (4 << 20), (held, pool)
    assert vg.cache_info() == {"hits": 9, "misses": 2, "signatures": 2}
    assert f"%X: f64[N,{D}]" in vg.lower(params, *data[10005]).ir  # the batch dimension by name
    for n in (10003, 7, 1, 10000):  # the symbolic program (and the first size's own) agree with NumPy
        X, y = rng.normal(size=(n, D)), rng.integers(0, C, n)
        _agrees(vg, params, X, y)
    assert vg.cache_info()["misses"] == 2


def test_a_size_used_as_a_number_is_counted_at_run_time():
    def loss(w, x):
        return gnp.sum(x @ w) / x.shape[0]

    vg = graphc.value_and_grad(loss)
    w = np.arange(3.0)
    for n in (4, 5, 9, 2):
        x = np.arange(3.0 * n).reshape(n, 3)
        v, g = vg(w, x)
        assert v == pytest.approx(np.sum(x @ w) / n, rel=1e-13)
        np.testing.assert_allclose(g, x.sum(0) / n, rtol=1e-13)
    assert vg.cache_info()["misses"] == 2


def test_a_function_that_decides_on_a_size_is_traced_per_size():
    def loss(x):
        if x.shape[0] > 100:  # a branch on the size: no one program serves every size
            return gnp.sum(x)
        return gnp.sum(2.0 * x)

    def scaled(x):  # an equality decides silently on a plain name ("N" == 64 is False): refused
        return gnp.sum(x) * (3.0 if x.shape[0] == 64 else 1.0)

    vg, vs = graphc.value_and_grad(loss), graphc.value_and_grad(scaled)
    for n in (50, 150, 60, 200, 64):
        x = np.ones(n)
        assert vg(x)[0] == (n if n > 100 else 2 * n)
        assert vs(x)[0] == (3 * n if n == 64 else n)
    assert vg.cache_info()["misses"] == 5
    with pytest.raises(graphc.TracingError, match="size of dimension N is not known"):
        bool(trace.SymbolicDim("N") < 3)


def test_signatures_kept_per_traced_function_are_bounded_and_old_pools_released():
    def loss(params, X, y):
        return mlp_loss(params, X, y) * (1.0 if X.shape[0] % 2 else 2.0)  # decides on the size: per size

    rng = np.random.default_rng(3)
    params = _params(rng)
    vg = graphc.value_and_grad(loss)
    for n in range(200, 230):
        X, y = rng.normal(size=(n, D)), rng.integers(0, C, n)
        v, g = vg(params, X, y)
        assert v == pytest.approx(mlp_by_hand(params, X, y)[0] * (1.0 if n % 2 else 2.0), rel=1e-12)
    assert len(vg._sigs) == vg.cache_info()["signatures"] == trace.MAX_SIGNATURES
    assert {id(e[0]) for e in vg._cache.values()} <= {id(s) for s in vg._sigs}  # nothing kept outside the bound
    pools = [s.fn.pool_bytes() for s in sorted(vg._sigs, key=lambda s: s.used)]
    assert pools[-1] > 0 and not any(pools[:-1]), pools  # only the signature in use keeps its pool
    assert vg.cache_info()["misses"] == 30


def test_loaded_functions_are_bounded_per_process():
    api._FUNCTIONS.clear()
    for k in range(api.FUNCTIONS_KEPT + 8):
        fn = graphc.compile(f"x * {k + 2}", target="numpy")
        assert pickle.loads(pickle.dumps(fn))(2.0)[0] == 2.0 * (k + 2)
    assert len(api._FUNCTIONS) == api.FUNCTIONS_KEPT


def test_loaded_programs_and_kernel_modules_are_bounded(monkeypatch):
    """Regression (issue 23, same class as the per-size kernels): the per-process memos of
    unpickled Programs and of loaded kernel modules grew with every distinct formula."""
    import pickle

    from graphc import program
    from graphc.backends import loader

    monkeypatch.setattr(program, "PROGRAMS_KEPT", 3)
    monkeypatch.setattr(loader, "MODULES_KEPT", 3)
    for k in range(6):
        fn = graphc.compile(f"x*y + {k + 2}*x", target="cpu")
        assert pickle.loads(pickle.dumps(fn))(2.0, 3.0)[0] == 6.0 + (k + 2) * 2.0
    assert len(program._LOADED) <= 3
    assert len(loader._LOADED) <= 3 and set(loader._SOURCE) == set(loader._LOADED)
