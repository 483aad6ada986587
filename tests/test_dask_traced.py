"""Traced functions over Dask arrays (issue 28): `graphc.value_and_grad(loss)(params, X, y)`
with X, y Dask arrays chunked by rows splits a separable loss over the chunks, as compiled
tensor programs do (the same proof, the same NotSeparableError). References: hand-written
NumPy values and gradients, and the same traced function on the whole NumPy arrays; a
LocalCluster (threads, processes=False) runs one case. Also the a/an of error messages."""

import numpy as np
import pytest
from conftest import fd_grad

import graphc
import graphc.nn as gnn
import graphc.numpy as gnp
from graphc import ArgumentError, TracingError
from graphc.describe import article, describe
from graphc.separable import NotSeparableError

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

RTOL = 1e-12


@pytest.fixture(autouse=True)
def _threads():
    """Dask's threaded scheduler, as tests/test_dask.py computes with (the cluster test sets its own)."""
    with dask.config.set(scheduler="threads"):
        yield


def _data(n=203, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    return X, X @ w + 0.1 * rng.normal(size=n), rng.integers(0, 4, size=n)


def _close(got, ref, what=""):
    """Relative agreement to RTOL, each array against its own scale."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, what
    scale = max(float(np.max(np.abs(ref))), 1e-300)
    assert float(np.max(np.abs(got - ref))) <= RTOL * scale, (what, got, ref)


def _tree_close(got, ref):
    if isinstance(ref, dict):
        assert set(got) == set(ref)
        for k in ref:
            _tree_close(got[k], ref[k])
    elif isinstance(ref, (list, tuple)):
        assert type(got) is type(ref) and len(got) == len(ref)
        for a, b in zip(got, ref):
            _tree_close(a, b)
    else:
        assert type(got) is (float if isinstance(ref, float) else np.ndarray), (type(got), type(ref))
        _close(got, ref)


# ------------------------------------------------------------------ losses and their NumPy references
def mse_l2(p, X, y):
    """A mean over the rows, a pytree of parameters, a data-free L2 term."""
    h = gnp.tanh(X @ p["W"] + p["b"])
    return gnp.mean((h @ p["v"] + p["c"] - y) ** 2) + 0.01 * gnp.sum(p["W"] ** 2)


def mse_l2_numpy(p, X, y):
    z = X @ p["W"] + p["b"]
    h = np.tanh(z)
    r = h @ p["v"] + p["c"] - y
    n = len(y)
    dr = 2 * r / n
    dz = np.outer(dr, p["v"]) * (1 - h**2)
    grads = {"W": X.T @ dz + 0.02 * p["W"], "b": dz.sum(0), "v": h.T @ dr, "c": float(dr.sum())}
    return float(np.mean(r**2) + 0.01 * np.sum(p["W"] ** 2)), grads


def logistic_sum(w, X, t):
    """A sum over the rows (no 1/N): log(1 + exp(-t z)), t = +-1."""
    return gnp.sum(gnp.logaddexp(0.0, -t * (X @ w)))


def logistic_sum_numpy(w, X, t):
    z = X @ w
    return float(np.sum(np.logaddexp(0.0, -t * z))), X.T @ (-t / (1 + np.exp(t * z)))


def _signs(labels):
    return np.where(labels % 2 == 1, 1.0, -1.0)


def _params(d=3, k=4, seed=1):
    rng = np.random.default_rng(seed)
    return {"W": rng.normal(size=(d, k)), "b": rng.normal(size=k), "v": rng.normal(size=k), "c": 0.3}


def _pieces(chunks, d=3):
    """X's chunks: rows in chunks of an int (the last one shorter), or of explicit sizes; whole rows."""
    return (chunks, d) if isinstance(chunks, int) else (tuple(chunks), d)


CHUNKS = [pytest.param(50, id="50-uneven-last"), pytest.param((50, 7, 100, 46), id="uneven"),
          pytest.param((60, 0, 143), id="an-empty-chunk"),
          pytest.param(203, id="one-chunk"), pytest.param(1, id="one-row-chunks", marks=pytest.mark.slow)]


# ------------------------------------------------------------------ values and gradients
@pytest.mark.parametrize("chunks", CHUNKS)
def test_a_mean_loss_with_pytree_params_over_row_chunks(chunks):
    X, y, _ = _data()
    p = _params()
    f = graphc.value_and_grad(mse_l2, target="numpy")
    v, g = f(p, da.from_array(X, chunks=_pieces(chunks)), da.from_array(y, chunks=37))  # y rechunked to X's rows
    rv, rg = mse_l2_numpy(p, X, y)
    wv, wg = f(p, X, y)  # the same function on the whole NumPy arrays
    assert type(v) is float and type(g["c"]) is float and isinstance(g["W"], np.ndarray)
    _close(v, rv)
    _close(v, wv)
    _tree_close(g, rg)
    _tree_close(g, wg)


@pytest.mark.parametrize("chunks", CHUNKS)
def test_a_sum_loss_over_row_chunks(chunks):
    X, _, labels = _data()
    t = _signs(labels)
    w = np.array([0.5, -1.0, 0.25])
    f = graphc.value_and_grad(logistic_sum, target="numpy")
    v, g = f(w, da.from_array(X, chunks=_pieces(chunks)), da.from_array(t, chunks=_pieces(chunks)[:1]))
    rv, rg = logistic_sum_numpy(w, X, t)
    _close(v, rv)
    _close(g, rg)
    wv, wg = f(w, X, t)
    _close(v, wv)
    _close(g, wg)


def test_cross_entropy_of_an_mlp_on_the_default_target_and_grad():
    """nn.cross_entropy's mean with integer labels as Dask; the default (compiled) target; grad alone."""
    X, _, labels = _data(n=157, d=5)
    rng = np.random.default_rng(3)
    p = [rng.normal(size=(5, 6)) * 0.5, np.zeros(6), rng.normal(size=(6, 4)) * 0.5, np.zeros(4)]

    def loss(p, X, y):
        h = gnn.relu(X @ p[0] + p[1])
        return gnn.cross_entropy(h @ p[2] + p[3], y) + 1e-3 * (gnp.sum(p[0] ** 2) + gnp.sum(p[2] ** 2))

    def loss_np(p, X, y):
        s = np.maximum(X @ p[0] + p[1], 0) @ p[2] + p[3]
        s = s - s.max(1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean() + 1e-3 * (np.sum(p[0] ** 2) + np.sum(p[2] ** 2)))

    dX, dy = da.from_array(X, chunks=(40, 5)), da.from_array(labels, chunks=40)
    v, g = graphc.value_and_grad(loss)(p, dX, dy)
    g2 = graphc.grad(loss)(p, dX, dy)
    wv, wg = graphc.value_and_grad(loss)(p, X, labels)
    assert isinstance(g, list) and len(g) == 4
    _close(v, loss_np(p, X, labels))
    _close(v, wv)
    _tree_close(g, wg)
    _tree_close(g2, wg)
    for k in range(4):  # central differences of the NumPy loss (a reference independent of graphc)
        ref = fd_grad(lambda a, k=k: loss_np([a if j == k else p[j] for j in range(4)], X, labels), p[k])
        np.testing.assert_allclose(g[k], ref, rtol=1e-6, atol=1e-8)


def test_float32_data_and_params():
    X, y, _ = _data()
    p = {k: np.float32(a) if isinstance(a, float) else a.astype(np.float32) for k, a in _params().items()}
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    v, g = graphc.value_and_grad(mse_l2, target="numpy")(p, da.from_array(X32, chunks=(64, 3)),
                                                           da.from_array(y32, chunks=64))
    p64 = {k: float(a) if np.ndim(a) == 0 else a.astype(np.float64) for k, a in p.items()}
    rv, rg = mse_l2_numpy(p64, X32.astype(np.float64), y32.astype(np.float64))
    assert g["W"].dtype == np.float32
    assert abs(v - rv) <= 1e-5 * abs(rv)
    for k in rg:
        np.testing.assert_allclose(g[k], rg[k], rtol=1e-4, atol=1e-5)


def test_data_in_a_pytree_argnums_over_several_arguments_and_static_arguments():
    X, y, _ = _data()

    def loss(w, batch, b, power):
        r = batch["X"] @ w + b - batch["y"]
        return gnp.mean(r**power)

    f = graphc.value_and_grad(loss, argnums=(0, 2), static_argnames="power", target="numpy")
    w = np.array([0.1, 0.2, -0.3])
    batch = {"X": da.from_array(X, chunks=(60, 3)), "y": da.from_array(y, chunks=60)}
    v, (gw, gb) = f(w, batch, 0.5, power=2)
    r = X @ w + 0.5 - y
    _close(v, np.mean(r**2))
    _close(gw, 2 * X.T @ r / len(y))
    _close(gb, 2 * r.mean())
    assert type(gb) is float
    v4, _ = f(w, batch, 0.5, power=4)
    _close(v4, np.mean(r**4))


def test_the_row_count_read_as_a_number_is_the_whole_batch_and_one_trace_serves_every_chunking():
    """gnp.sum(...) / X.shape[0] divides by N, not by each chunk's rows; the function is
    traced once for every chunking and every row count (the rows are symbolic)."""
    calls = []

    def loss(w, X, y):
        calls.append(1)
        return gnp.sum((X @ w - y) ** 2) / X.shape[0]

    f = graphc.value_and_grad(loss, target="numpy")
    w = np.array([1.0, -0.5, 2.0])
    for n, chunks in ((203, 50), (203, 64), (90, 31)):
        X, y, _ = _data(n=n, seed=n)
        v, g = f(w, da.from_array(X, chunks=(chunks, 3)), da.from_array(y, chunks=chunks))
        r = X @ w - y
        _close(v, r @ r / n)
        _close(g, 2 * X.T @ r / n)
    assert len(calls) == 1


def test_on_a_local_cluster():
    """The Dask case on a dask.distributed LocalCluster (threads in this process: fast)."""
    distributed = pytest.importorskip("distributed")
    X, y, _ = _data(n=301)
    p = _params()
    f = graphc.value_and_grad(mse_l2, target="numpy")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,  # in-process transport
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        dX = da.from_array(X, chunks=(80, 3))
        dy = da.from_array(y, chunks=80)
        with distributed.get_task_stream(client) as stream:
            v, g = f(p, dX, dy)
        assert len(client.scheduler_info()["workers"]) == 2
    chunk_tasks = [t for t in stream.data if str(t["key"]).startswith("_chunk-")]
    assert len(chunk_tasks) == 4  # 301 rows in chunks of 80: each chunk's loss and gradients ran on the cluster
    rv, rg = mse_l2_numpy(p, X, y)
    _close(v, rv)
    _tree_close(g, rg)


@pytest.mark.slow  # starts two worker processes: the compiled parts travel by pickle
def test_on_a_local_cluster_of_two_worker_processes():
    distributed = pytest.importorskip("distributed")
    X, _, labels = _data(n=301)
    t = _signs(labels)
    w = np.array([0.5, -1.0, 0.25])
    f = graphc.value_and_grad(logistic_sum)  # the default, compiled target
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        v, g = f(w, da.from_array(X, chunks=(80, 3)), da.from_array(t, chunks=80))
        pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2
    rv, rg = logistic_sum_numpy(w, X, t)
    _close(v, rv)
    _close(g, rg)


def test_compute_false_gives_a_lazy_pair():
    from graphc.dask import value_and_grad_over_chunks

    X, y, _ = _data()
    f = graphc.value_and_grad(logistic_sum, target="numpy")
    w = np.array([0.5, -1.0, 0.25])
    calls = []
    real = graphc.dask._chunk
    graphc.dask._chunk = lambda *a: calls.append(1) or real(*a)
    try:
        lazy = value_and_grad_over_chunks(f, (w, da.from_array(X, chunks=(50, 3)), da.from_array(np.sign(y), chunks=50)),
                                          {}, compute=False)
        assert calls == [] and hasattr(lazy, "compute")
        v, g = lazy.compute()
    finally:
        graphc.dask._chunk = real
    assert len(calls) == 5
    rv, rg = logistic_sum_numpy(w, X, np.sign(y))
    _close(v, rv)
    _close(g, rg)


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("body, why", [
    (lambda w, X, y: gnp.log(gnp.mean(X @ w - y) ** 2), "not linear in the rows"),
    (lambda w, X, y: gnp.max(X @ w - y), "amax over the batch axis"),
    (lambda w, X, y: gnp.sum(X.T @ X @ w), "transpose moves the batch axis"),
    (lambda w, X, y: gnp.sum(X @ w) * gnp.mean(y), "not linear in the rows"),
    (lambda w, X, y: gnp.var(X @ w - y), "a separable term is added to a per-row"),
])
def test_a_loss_that_is_not_separable_raises_not_separable_error(body, why):
    X, y, _ = _data(n=20)
    f = graphc.value_and_grad(body, target="numpy")
    with pytest.raises(NotSeparableError, match=why) as info:
        f(np.ones(3), da.from_array(X, chunks=(5, 3)), da.from_array(y, chunks=5))
    assert "Dask row chunks (of X, y)" in str(info.value) and "not separable" in str(info.value)


def test_chunks_along_columns_are_refused_with_the_rechunk_to_use():
    X, y, _ = _data(n=20)
    f = graphc.value_and_grad(logistic_sum, target="numpy")
    with pytest.raises(ArgumentError, match=r"argument X is chunked along axis 1 .*\.rechunk\(\{1: -1\}\)"):
        f(np.ones(3), da.from_array(X, chunks=(5, 2)), da.from_array(y, chunks=5))
    # rechunked as told, it runs
    v, _ = f(np.ones(3), da.from_array(X, chunks=(5, 2)).rechunk({1: -1}), da.from_array(y, chunks=5))
    _close(v, logistic_sum_numpy(np.ones(3), X, y)[0])


def test_has_aux_jit_and_gradients_of_data_are_refused():
    X, y, _ = _data(n=20)
    dX, dy = da.from_array(X, chunks=(5, 3)), da.from_array(y, chunks=5)
    aux = graphc.value_and_grad(lambda w, X, y: (gnp.mean(X @ w - y), gnp.sum(w)), has_aux=True, target="numpy")
    with pytest.raises(ArgumentError, match=r"has_aux=True\) over Dask arrays is not offered"):
        aux(np.ones(3), dX, dy)
    with pytest.raises(ArgumentError, match="graphc.jit over Dask arrays is not offered"):
        graphc.jit(lambda X: X * 2)(dX)
    with pytest.raises(ArgumentError, match=r"argument X is Dask data and argnums=\(0, 1\) asks for its gradient"):
        graphc.value_and_grad(logistic_sum, argnums=(0, 1), target="numpy")(np.ones(3), dX, dy)


def test_bad_dask_data_is_named():
    X, y, _ = _data(n=20)
    f = graphc.value_and_grad(logistic_sum, target="numpy")
    dX = da.from_array(X, chunks=(5, 3))
    with pytest.raises(ArgumentError, match="the Dask data disagree on the number of rows: X has 20, t has 19"):
        f(np.ones(3), dX, da.from_array(y[:19], chunks=5))
    with pytest.raises(ArgumentError, match=r"argument t is a NumPy array with the 20 rows of the Dask data \(X\)"):
        f(np.ones(3), dX, y)
    with pytest.raises(ArgumentError, match="argument t is a 0-d Dask array"):
        f(np.ones(3), dX, da.from_array(np.float64(1.0)))
    with pytest.raises(ArgumentError, match="argument t has unknown chunk sizes"):
        f(np.ones(3), dX, da.from_array(y, chunks=5)[da.from_array(y, chunks=5) > -100])
    with pytest.raises(ArgumentError, match="argument t is a Dask array of bool"):
        f(np.ones(3), dX, da.from_array(y > 0, chunks=5))
    with pytest.raises(ArgumentError, match="argument t is a dask Delayed"):
        f(np.ones(3), dX, dask.delayed(y))
    with pytest.raises(TracingError, match="traced once for every number of rows"):
        graphc.value_and_grad(lambda w, X: gnp.sum(X @ w) / len(X), target="numpy")(np.ones(3), dX)


# ------------------------------------------------------------------ a / an
@pytest.mark.parametrize("words", [
    "an Array", "an ndarray", "an xarray", "an HDF5 file", "an h5py", "an SVD", "an NDArray", "an MLP", "an LU",
    "an API", "an ONNX", "an Euler", "an hour", "an umbrella", "an uninitialised", "an 8-bit", "an 11", "an 18",
    "an mpi4py", "an lxml", "an sklearn", "an xml",
    "a dask", "a Python", "a uint8", "a ufunc", "a unique", "a user", "a European", "a one", "a URL", "a UNIX",
    "a GPU", "a NASA", "a SIMD", "a NaN", "a torch", "a DataFrame", "a 1-D", "a 110", "a yaml", "a jax", "a hash",
])
def test_the_article_fits_how_the_word_is_said(words):
    art, word = words.split(" ", 1)
    assert article(word) == art


def _foreign(module, name):
    return type(name, (), {"__module__": module, "__qualname__": name})()


def test_messages_say_an_array_regression():
    """Regression: a class of the running script, or of a module whose name starts with a
    vowel sound, was named with 'a' ('argument X is a Array')."""
    assert describe(_foreign("__main__", "Array")) == "an Array (__main__.Array)"
    assert describe(_foreign("h5py._hl.dataset", "Dataset")) == "an h5py Dataset (h5py._hl.dataset.Dataset)"
    assert describe(_foreign("xarray.core.dataarray", "DataArray")).startswith("an xarray DataArray")
    assert describe(_foreign("dask.array.core", "Array")) == "a dask Array (dask.array.core.Array)"
    f = graphc.value_and_grad(lambda x: gnp.sum(x), target="numpy")
    for value, said in ((_foreign("__main__", "Array"), "is an Array"), (_foreign("ext", "Item"), "is an ext Item")):
        with pytest.raises(ArgumentError, match=said) as info:
            f(value)
        assert " a Array" not in str(info.value) and " a ext" not in str(info.value)


def test_integer_labels_used_as_numbers_regression():
    """Regression: to_float (integers or a mask used as numbers) was not known to keep rows apart,
    so `where(y > 0, ...)` with int64 Dask labels raised NotSeparableError."""
    X, _, labels = _data()
    w = np.array([0.5, -1.0, 0.25])

    def loss(w, X, y):
        t = gnp.where(y > 1, 1.0, -1.0) * (y + 1)
        return gnp.mean(gnp.logaddexp(0.0, -t * (X @ w)))

    f = graphc.value_and_grad(loss)
    v, g = f(w, da.from_array(X, chunks=50), da.from_array(labels, chunks=50))
    rv, rg = f(w, X, labels)
    _close(v, rv)
    _close(g, rg)


def test_train_step_over_dask_chunks_equals_the_numpy_step():
    """graphc.train_step with Dask data: each step's value and gradients chunk by chunk (the
    traced loss's separable split), then the optimizer's update; the same params as the
    compiled step on the whole NumPy arrays, step after step."""
    X, yv, _ = _data()
    params = {"w": np.zeros(3), "b": 0.0}

    def loss(p, X, y):
        r = X @ p["w"] + p["b"] - y
        return gnp.mean(r * r) + 1e-3 * gnp.sum(p["w"] ** 2)

    opt = graphc.optim.adam(0.05)
    step = graphc.train_step(loss, opt)
    Xd, yd = da.from_array(X, chunks=50), da.from_array(yv, chunks=50)
    p1, s1, p2, s2 = params, opt.init(params), params, opt.init(params)
    for _ in range(5):
        p1, s1, v1 = step(p1, s1, Xd, yd)
        p2, s2, v2 = step(p2, s2, X, yv)
        assert v1 == pytest.approx(v2, rel=1e-12)
    _close(p1["w"], p2["w"])
    assert s1["step"] == 5 and p1["b"] == pytest.approx(p2["b"], rel=1e-10)
    with pytest.raises(ArgumentError, match="has_aux=True is not offered"):
        graphc.train_step(lambda p, X, y: (loss(p, X, y), 0.0), opt, has_aux=True)(params, opt.init(params), Xd, yd)
