"""Beyond one process: picklable compiled functions and programs, the batch
separability proof, and compiled functions over Dask arrays (threads, then a
LocalCluster of two worker processes). References: the same function called
once on the whole data in this process, and hand-written NumPy."""

import functools
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import TARGETS
from test_tensor import MLP_L2, MLP_SHAPES, _mlp_args, _mlp_numpy

import graphc
from graphc.errors import GraphcError
from graphc.ir import print_graph
from graphc.separable import NotSeparableError, split

NEURON = "sigmoid(w0*x0 + w1*x1 + w2)"
WRT = ["W1", "b1", "W2", "b2"]


@functools.cache  # one compile per target for the module: the tests only call it
def _net(target="numpy"):
    return graphc.compile(MLP_L2, shapes=MLP_SHAPES, dtypes={"y": "int64"}, wrt=WRT, target=target)


# ------------------------------------------------------------------ pickling
@pytest.mark.parametrize("target", TARGETS)
def test_compiled_functions_pickle_as_ir_text_and_options(target):
    fn = graphc.compile(NEURON, target=target, dtype="float32" if target == "llvm" else "float64")
    blob = pickle.dumps(fn)
    assert b"sigmoid" in blob and b"graphc.api" in blob and b"numba" not in blob  # IR text, no code
    back = pickle.loads(blob)
    assert back.target == target and back.dtype == fn.dtype and back.wrt == fn.wrt
    x = np.linspace(-2, 2, 101, dtype=fn.dtype)
    v, g = back(x, 0.5, -x, 2.0, 0.1)
    rv, rg = fn(x, 0.5, -x, 2.0, 0.1)
    np.testing.assert_array_equal(v, rv)
    assert all(np.array_equal(g[k], rg[k]) for k in rg)


def test_a_tensor_program_and_a_hessian_pickle():
    fn = _net("cpu")
    back = pickle.loads(pickle.dumps(fn))
    args = _mlp_args()
    v, g = back(**args)
    rv, rg = _mlp_numpy(**args)
    assert abs(v - rv) < 1e-12 and all(np.allclose(g[k], rg[k], rtol=1e-10, atol=1e-12) for k in rg)
    h = pickle.loads(pickle.dumps(graphc.hessian("x*y*y", target="numpy")))
    assert h(2.0, 3.0)[2]["y"]["y"] == 4.0
    prog = pickle.loads(pickle.dumps(graphc.Program("exp(x) * y", wrt="x")))
    assert prog.wrt == ("x",) and "exp" in prog.ir


def _traced_loss(w, X):
    import graphc.numpy as gnp

    return gnp.sum(gnp.tanh(X @ w))


def test_a_traced_function_pickles_by_reference_and_retraces():
    f = graphc.value_and_grad(_traced_loss)
    X, w = np.arange(12.0).reshape(4, 3) / 10, np.array([0.3, -0.2, 0.1])
    v, g = f(w, X)
    back = pickle.loads(pickle.dumps(f))
    v2, g2 = back(w, X)
    assert v2 == v and np.array_equal(g2, g)
    np.testing.assert_allclose(g, X.T @ (1 - np.tanh(X @ w) ** 2), rtol=1e-14)


def test_a_pickle_loads_in_a_fresh_process(tmp_path):
    path = tmp_path / "fn.pkl"
    fn = graphc.compile(NEURON, target="cpu")
    path.write_bytes(pickle.dumps(fn))
    code = textwrap.dedent(f"""
        import pickle, numpy as np
        fn = pickle.loads(open({str(path)!r}, "rb").read())
        v, g = fn(0.5, 1.0, -2.0, 0.25, 0.1)
        print(repr(v), repr(g["x1"]))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    v, g = fn(0.5, 1.0, -2.0, 0.25, 0.1)
    assert r.stdout.split() == [repr(v), repr(g["x1"])]


def test_a_tampered_pickle_payload_is_refused_by_the_ir_verifier():
    blob = pickle.dumps(graphc.compile("x * y", target="numpy"))
    for old, new in ((b"mul", b"xyz"), (b"%x", b"%q")):  # an unknown op; a name nobody defined
        with pytest.raises(GraphcError):
            pickle.loads(blob.replace(old, new, 1))


# --------------------------------------------------------- separability proof
def test_the_seed_net_with_l2_splits_into_separable_and_data_free_parts():
    fn = _net()
    parts = split(fn.program.forward, ["X", "y"])
    text = print_graph(parts.separable)
    assert "reduction='sum'" in text and "reduction='mean'" not in text and "inv_n" in text
    assert parts.free is not None and "W1" in print_graph(parts.free) and "X" not in parts.free.input_names
    # evaluated on the whole batch with 1/N, the two parts add up to the loss and its gradients
    args = _mlp_args()
    sep = graphc.compile(graphc.Program(parts.separable, wrt=WRT, shapes={}), target="numpy")
    free = graphc.compile(graphc.Program(parts.free, wrt=WRT, shapes={}), target="numpy")
    v1, g1 = sep(**args, inv_n=1.0 / len(args["y"]))
    v2, g2 = free(**{k: a for k, a in args.items() if k not in ("X", "y")})
    rv, rg = _mlp_numpy(**args)
    assert abs(v1 + v2 - rv) < 1e-12
    assert all(np.allclose(g1[k] + g2[k], rg[k], rtol=1e-10, atol=1e-12) for k in WRT)


@pytest.mark.parametrize("formula, why", [
    ("log(mean(X)) + sum(w * w)", "not linear in the rows"),
    ("sum(max(X, axis=0) * w)", "amax over the batch axis"),
    ("sum(X.T @ X) + sum(w)", "transpose moves the batch axis"),
    ("sum(X @ (X.T @ X)) + sum(w)", "transpose moves the batch axis"),
    ("sum(softmax(X, axis=0)) + sum(w)", "along the batch axis mixes rows"),
    ("sum(X, axis=1) + sum(w)", "batch split needs one scalar loss"),
    ("sum(X) * sum(X) + sum(w)", "not linear in the rows"),
    ("sum(X * w) + exp(mean(X))", "not linear in the rows"),
    ("sum(X * w) + sum(X) * mean(X)", "not linear in the rows"),
])
def test_losses_that_are_not_separable_get_a_clear_error(formula, why):
    prog = graphc.Program(formula, shapes={"X": ("N", 3), "w": (3,)}, grad=False)
    with pytest.raises(NotSeparableError, match=why):
        split(prog.forward, ["X"])


def test_separable_losses_of_several_shapes_are_accepted():
    shapes = {"X": ("N", 3), "w": (3,), "c": ()}
    for formula in ("mean(X @ w) - 2 * sum(log(1 + exp(X @ w))) / c + c * sum(w * w)",
                    "mean(X) + sum(mean(X, axis=0) * w)", "-(sum(X * w) / 7)", "sum(w) * mean(X)", "logsumexp(w) + mean(tanh(X))"):
        prog = graphc.Program(formula, shapes={k: v for k, v in shapes.items() if k in formula}, grad=False)
        parts = split(prog.forward, ["X"])
        assert parts.separable.outputs and "mean" not in print_graph(parts.separable).replace("mean'", "")


# ----------------------------------------------------------------- over Dask
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")


def test_pointwise_over_dask_is_lazy_one_call_per_chunk_and_exact():
    fn = graphc.compile(NEURON, target="cpu")
    rng = np.random.default_rng(0)
    x0, x1 = rng.normal(size=(2, 1000, 30))
    w0 = rng.normal(size=30)
    calls = []
    real = fn.call
    fn.call = lambda *a, **k: calls.append(1) or real(*a, **k)
    dx0 = da.from_array(x0, chunks=(250, 30))
    dx1 = da.from_array(x1, chunks=(400, 15))  # other chunks: aligned by Dask
    v, g = fn(w0, dx0, 0.5, dx1, -0.25)
    assert isinstance(v, da.Array) and v.shape == (1000, 30) and set(g) == set(fn.wrt) and calls == []
    v, g = dask.compute(v, g, scheduler="threads")
    rv, rg = fn(w0, x0, 0.5, x1, -0.25)
    np.testing.assert_array_equal(v, rv)
    assert all(np.array_equal(g[k], rg[k]) for k in rg)
    assert len(calls) == 12  # one kernel call per aligned chunk (4 x 3), for the value and all 5 gradients


def test_a_separable_loss_over_row_chunks_equals_the_whole_batch():
    fn = _net("cpu")
    args = _mlp_args(n=203)
    dX = da.from_array(args["X"], chunks=((50, 7, 100, 46), 5))  # uneven chunks: the mean is weighted exactly
    dy = da.from_array(args["y"], chunks=60)  # rechunked to X's rows
    params = {k: a for k, a in args.items() if k not in ("X", "y")}
    v, g = fn(X=dX, y=dy, **params)
    assert isinstance(v, da.Array) and g["W1"].shape == args["W1"].shape
    v, g = dask.compute(v, g, scheduler="threads")
    rv, rg = fn(**args)
    assert abs(v - rv) <= 1e-12 * abs(rv)
    for k in WRT:
        np.testing.assert_allclose(g[k], rg[k], rtol=1e-12, atol=1e-15)


def test_dask_errors_are_clear():
    fn = graphc.compile("sum(X) * sum(X) + sum(w)", shapes={"X": ("N", 3), "w": (3,)}, wrt=["w"], target="numpy")
    with pytest.raises(NotSeparableError, match="not linear in the rows"):
        fn(X=da.ones((10, 3), chunks=5), w=np.ones(3))
    data = graphc.compile("mean(X @ w)", shapes={"X": ("N", 3), "w": (3,)}, target="numpy")
    with pytest.raises(graphc.ArgumentError, match="gradients with respect to chunked data"):
        data(X=da.ones((10, 3), chunks=5), w=np.ones(3))
    pw = graphc.compile("x * y", target="numpy")
    with pytest.raises(graphc.ArgumentError, match="out= is not offered with Dask"):
        pw(da.ones(4, chunks=2), 2.0, out=[np.empty(4)] * 3)


@pytest.mark.slow  # starts a cluster of two worker processes; the other tests run Dask in this one
def test_on_a_local_cluster_of_two_worker_processes(tmp_path):
    distributed = pytest.importorskip("distributed")
    fn = graphc.compile(NEURON, target="cpu")
    net = _net("cpu")
    args = _mlp_args(n=301)
    x = np.linspace(-3, 3, 20_000)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        dx = da.from_array(x, chunks=5_000)
        v, g = client.compute(fn(dx, 0.5, -dx, 2.0, 0.1), sync=True)
        dX = da.from_array(args["X"], chunks=(80, 5))
        dy = da.from_array(args["y"], chunks=80)
        params = {k: a for k, a in args.items() if k not in ("X", "y")}
        lv, lg = client.compute(net(X=dX, y=dy, **params), sync=True)
        workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2
    rv, rg = fn(x, 0.5, -x, 2.0, 0.1)
    np.testing.assert_array_equal(v, rv)
    assert all(np.array_equal(g[k], rg[k]) for k in rg)
    mv, mg = net(**args)
    assert abs(lv - mv) <= 1e-12 * abs(mv)
    for k in WRT:
        np.testing.assert_allclose(lg[k], mg[k], rtol=1e-12, atol=1e-15)


def test_readme_dask_example_runs():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text[text.index("## Larger than memory: Dask"):text.index("## The formula language")]
    start = section.index("```python") + len("```python")
    code = section[start:section.index("```", start)]
    code = code.replace("10**8", "10**6").replace("10**7", "10**5")  # the same code, 100x fewer points
    env: dict = {}
    exec(compile(code, "README-dask", "exec"), env)  # our own README, not user input
    assert abs(env["value"] - np.log(2)) < 1e-12  # w = 0, b = 0: every row's loss is log 2
    assert abs(env["grads"]["w"][0] + 0.3989) < 0.01  # mean((1/2 - [x0 > 0]) x0) = -E[x0; x0 > 0]
