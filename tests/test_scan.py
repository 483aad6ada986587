"""graphc.scan and graphc.fori_loop (issue 27): jax.lax's semantics; the body traced once into
one loop node whose IR does not grow with the number of steps; its gradient a loop running
backwards that stores each step's carry (the memory plan holds it) and recomputes the rest.

References: the same function with the loop unrolled in Python (bit for bit on the numpy
target), hand-written NumPy loops, central differences, SymPy's exact derivatives, and JAX's
lax.scan when installed (slow tier)."""

import pickle
import time

import numpy as np
import pytest
from conftest import DEFAULT_TARGET, fd_grad, on_every_target

import graphc
import graphc.numpy as gnp
from graphc import ir
from graphc.errors import ArgumentError, IRError, ShapeError
from graphc.schedule.plan import ScanStep
from graphc.verify.tensor import check_tensor

T, N, D, H, C = 6, 3, 4, 5, 2  # steps, batch, inputs, hidden, outputs
RNG = np.random.default_rng(27)
PARAMS = {"Wx": RNG.normal(size=(D, H)) * 0.5, "Wh": RNG.normal(size=(H, H)) * 0.5, "b": RNG.normal(size=H) * 0.1,
          "Wo": RNG.normal(size=(H, C))}
XS, YS = RNG.normal(size=(T, N, D)), RNG.normal(size=(T, N, C))


def _every_target(cases, ids):
    """on_every_target, with the Numba targets (seconds of compiling per case) in the slow tier."""
    out = []
    for p in on_every_target(cases, ids):
        slow = p.values[-1] not in ("numpy", DEFAULT_TARGET)
        out.append(pytest.param(*p.values, id=p.id, marks=[pytest.mark.slow] if slow else []))
    return out


# ------------------------------------------------------------------ cases: (scan form, unrolled form, arguments)


def _cell(p):
    def cell(h, x):
        h = gnp.tanh(x @ p["Wx"] + h @ p["Wh"] + p["b"])
        return h, h @ p["Wo"]
    return cell


def rnn(p, xs, ys):
    h, outs = graphc.scan(_cell(p), np.zeros((N, H)), xs)
    return gnp.mean((outs - ys) ** 2) + gnp.sum(h) * 0.1


def rnn_unrolled(p, xs, ys):
    h, outs = np.zeros((N, H)), []
    for t in range(xs.shape[0]):
        h, y = _cell(p)(h, xs[t])
        outs.append(y)
    return gnp.mean((gnp.stack(outs) - ys) ** 2) + gnp.sum(h) * 0.1


def cumsum(w, xs):
    c, ys = graphc.scan(lambda c, x: (c + x * w, c + x * w), np.zeros(D), xs)
    return gnp.sum(ys * ys) + gnp.sum(c)


def cumsum_unrolled(w, xs):
    c, ys = np.zeros(D), []
    for t in range(xs.shape[0]):
        c = c + xs[t] * w
        ys.append(c)
    return gnp.sum(gnp.stack(ys) * gnp.stack(ys)) + gnp.sum(c)


def backwards(c0, w, xs):
    c, ys = graphc.scan(lambda c, x: (c * 0.9 + gnp.sin(x * w), c * x), c0, xs, reverse=True)
    return gnp.sum(ys * ys) + gnp.sum(c * c)


def backwards_unrolled(c0, w, xs):
    c, ys = c0, [None] * xs.shape[0]
    for t in reversed(range(xs.shape[0])):
        c, ys[t] = c * 0.9 + gnp.sin(xs[t] * w), c * xs[t]
    return gnp.sum(gnp.stack(ys) * gnp.stack(ys)) + gnp.sum(c * c)


def _tree_step(c, x):
    a = c["a"] * x["u"] + c["b"][0]
    return {"a": gnp.tanh(a), "b": (c["b"][0] * 0.5 + gnp.sum(a) * 0.1, c["b"][1] - x["v"])}, None


def tree(w, xs):
    init = {"a": w, "b": (gnp.sum(w), w * 2.0)}
    c, ys = graphc.scan(_tree_step, init, {"u": xs, "v": xs * xs})
    assert ys is None
    return gnp.sum(c["a"]) + c["b"][0] + gnp.sum(c["b"][1] ** 2)


def tree_unrolled(w, xs):
    c = {"a": w, "b": (gnp.sum(w), w * 2.0)}
    for t in range(xs.shape[0]):
        c, _ = _tree_step(c, {"u": xs[t], "v": xs[t] * xs[t]})
    return gnp.sum(c["a"]) + c["b"][0] + gnp.sum(c["b"][1] ** 2)


def closed(W, b, c0):  # xs=None with length; W and b closed over (W @ W computed outside the loop)
    W2 = W @ W
    c, ys = graphc.scan(lambda c, _: (gnp.tanh(c @ W2) + b, gnp.sum(c * b)), c0, None, length=5)
    return gnp.sum(ys) + gnp.sum(c * c)


def closed_unrolled(W, b, c0):
    W2, c, ys = W @ W, c0, []
    for _ in range(5):
        c, y = gnp.tanh(c @ W2) + b, gnp.sum(c * b)
        ys.append(y)
    return gnp.sum(gnp.stack(ys)) + gnp.sum(c * c)


def fori(W, x):
    return gnp.sum(graphc.fori_loop(1, 4, lambda i, v: gnp.tanh(v @ W) * x[i] + i, x[0]) ** 2)


def fori_unrolled(W, x):
    v = x[0]
    for i in range(1, 4):
        v = gnp.tanh(v @ W) * x[i] + i
    return gnp.sum(v ** 2)


def _args(name):
    r = np.random.default_rng(len(name))
    return {
        "rnn": (PARAMS, XS, YS),
        "cumsum": (r.normal(size=D), r.normal(size=(T, D))),
        "backwards": (r.normal(size=3), r.normal(size=3), r.normal(size=(T, 3))),
        "tree": (r.normal(size=3) * 0.5, r.normal(size=(4, 3))),
        "closed": (r.normal(size=(3, 3)) * 0.5, r.normal(size=3), r.normal(size=(2, 3))),
        "fori": (r.normal(size=(3, 3)), r.normal(size=(5, 3))),
    }[name]


CASES = {"rnn": (rnn, rnn_unrolled, 0), "cumsum": (cumsum, cumsum_unrolled, 0),
         "backwards": (backwards, backwards_unrolled, (0, 1, 2)), "tree": (tree, tree_unrolled, (0, 1)),
         "closed": (closed, closed_unrolled, (0, 1, 2)), "fori": (fori, fori_unrolled, (0, 1))}


def _flat(g):
    leaves, _, _ = graphc.trace.flatten(g)
    return [np.asarray(v) for v in leaves]


# Cases where a value gets more than two gradient contributions in one step (b used twice in each
# step of `closed`; the initial carry and xs read several times in `tree`): the backward loop sums
# them within the step, then across steps, where the unrolled graph adds them in the order of its
# own reverse sweep -- the same terms, associated differently, so those gradients agree to an ulp.
ULP_CASES = {"tree", "closed"}


@pytest.mark.parametrize("name,target", _every_target([(n,) for n in CASES], list(CASES)))
def test_scan_against_the_unrolled_loop(name, target):
    """Values and gradients: bit for bit on the numpy target (the same ops per step, summed in the
    same order; see ULP_CASES), to 1e-12 on the compiled ones."""
    f, unrolled, argnums = CASES[name]
    args = _args(name)
    v, g = graphc.value_and_grad(f, argnums=argnums, target=target)(*args)
    rv, rg = graphc.value_and_grad(unrolled, argnums=argnums, target="numpy")(*args)
    got, ref = [np.asarray(v)] + _flat(g), [np.asarray(rv)] + _flat(rg)
    assert len(got) == len(ref)
    for k, (a, b) in enumerate(zip(got, ref)):
        if target == "numpy" and (k == 0 or name not in ULP_CASES):
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12 if target != "numpy" else 2e-15, atol=1e-13)


@pytest.mark.parametrize("name", ["rnn", "backwards", "closed", "fori"])
def test_gradients_against_central_differences(name):
    """The compiled gradient against central differences of the loop run eagerly (a Python loop
    over NumPy arrays: no graphc program involved)."""
    f, _, argnums = CASES[name]
    args = list(_args(name))
    _, g = graphc.value_and_grad(f, argnums=argnums)(*args)
    for k in (argnums,) if isinstance(argnums, int) else argnums:
        leaves, _, tdef = graphc.trace.flatten(args[k])
        got = _flat(g if isinstance(argnums, int) else g[argnums.index(k)])
        for j, leaf in enumerate(leaves):
            def at(v, j=j, k=k, leaves=leaves, tdef=tdef):
                trial = list(args)
                trial[k] = graphc.trace.unflatten(tdef, [v if i == j else x for i, x in enumerate(leaves)])
                return float(f(*trial))
            np.testing.assert_allclose(got[j], fd_grad(at, leaf), rtol=1e-6, atol=1e-7)


def test_gradient_against_sympy():
    """Every gradient entry of a program with a reversed scan and a fori_loop against SymPy's
    exact derivative (the loop's SymPy form expands its body once per step)."""
    def f(W, xs):
        h, ys = graphc.scan(lambda h, x: (gnp.tanh(h @ W + x), gnp.sum(h * x)), np.zeros(2), xs, reverse=True)
        return gnp.sum(ys) + gnp.sum(gnp.sin(h)) + gnp.sum(graphc.fori_loop(0, 2, lambda i, v: v * W[i] + 0.5, h))

    prog = graphc.value_and_grad(f, argnums=(0, 1)).lower(np.eye(2), np.ones((3, 2)))
    for target in ("numpy", DEFAULT_TARGET):
        report = check_tensor(graphc.compile(prog.forward, target=target), points=1, seed=3)
        assert report.ok, str(report)


def test_eager_scan_is_the_python_loop():
    """On NumPy arrays scan runs now: a cumulative sum as numpy.cumsum, reverse=True as the
    reversed one, fori_loop as the loop."""
    xs = RNG.normal(size=(7, 3))
    c, ys = graphc.scan(lambda c, x: (c + x, c + x), np.zeros(3), xs)
    np.testing.assert_allclose(ys, np.cumsum(xs, axis=0), rtol=1e-15)
    np.testing.assert_allclose(c, xs.sum(axis=0), rtol=1e-15)
    c, ys = graphc.scan(lambda c, x: (c + x, c + x), np.zeros(3), xs, reverse=True)
    np.testing.assert_allclose(ys, np.cumsum(xs[::-1], axis=0)[::-1], rtol=1e-15)
    c, ys = graphc.scan(lambda c, _: (c * 2.0, c), 1.0, None, length=4)
    np.testing.assert_array_equal(ys, [1.0, 2.0, 4.0, 8.0])
    assert c == 16.0
    assert graphc.fori_loop(2, 5, lambda i, v: v * i, 1.0) == 24.0
    assert graphc.fori_loop(5, 2, lambda i, v: v * i, 1.0) == 1.0  # no step when upper <= lower


def test_traced_cumsum_is_numpy_cumsum_and_runs_no_step_when_empty():
    f = graphc.jit(lambda xs: graphc.scan(lambda c, x: (c + x, c + x), np.zeros(2), xs))
    xs = RNG.normal(size=(5, 2))
    c, ys = f(xs)
    np.testing.assert_array_equal(ys, np.cumsum(xs, axis=0))  # the same additions in the same order
    c, ys = f(np.zeros((0, 2)))
    assert ys.shape == (0, 2) and np.array_equal(c, [0.0, 0.0])
    assert graphc.jit(lambda v: graphc.fori_loop(3, 3, lambda i, u: u * 2.0, v))(np.ones(2)).tolist() == [1.0, 1.0]


def test_one_program_serves_every_length():
    """A second length traces once more with the number of steps named (as any axis), then
    every length -- none included -- runs that program."""
    def f(w, xs):
        c, ys = graphc.scan(lambda c, x: (c + x * w, c), np.zeros(2), xs)
        return gnp.sum(ys) + gnp.sum(c * c)

    vg = graphc.value_and_grad(f)
    for n in (3, 7, 9, 0):
        xs, w = RNG.normal(size=(n, 2)), RNG.normal(size=2)
        v, g = vg(w, xs)
        c, s = np.zeros(2), 0.0
        for x in xs:
            s, c = s + c.sum(), c + x * w
        assert v == pytest.approx(s + c @ c, rel=1e-13)
        np.testing.assert_allclose(g, fd_grad(lambda u, xs=xs: float(f(u, xs)), w), rtol=1e-6, atol=1e-8)
    assert vg.cache_info()["misses"] == 2
    assert "n='N'" in vg.lower(w, RNG.normal(size=(4, 2))).ir


def _ops(graph):
    """Operations of a graph and of every loop body in it."""
    return sum(1 + sum(_ops(v) for v in n.attrs.values() if isinstance(v, ir.Graph))
               for n in graph.body if n.op != "const")


def test_ir_and_traces_do_not_grow_with_the_number_of_steps():
    traced = []

    def loss(p, xs, ys):
        def cell(h, x):
            traced.append(1)
            return _cell(p)(h, x)
        h, outs = graphc.scan(cell, np.zeros((N, H)), xs)
        return gnp.mean((outs - ys) ** 2)

    sizes = {}
    for n in (10, 1000):
        traced.clear()
        prog = graphc.value_and_grad(loss).lower(PARAMS, RNG.normal(size=(n, N, D)), RNG.normal(size=(n, N, C)))
        sizes[n] = (prog.graph.op_count(), _ops(prog.graph), len(prog.ir.splitlines()))
        assert len(traced) == 1  # the body is traced once
        assert sum(1 for m in prog.graph.body if m.op == "scan") == 2  # the loop and its backward loop
    assert sizes[10] == sizes[1000]


def test_a_long_loop_compiles_in_well_under_a_second():
    def loss(p, xs, ys, k):  # k: a constant of this test's own, so no earlier test cached these kernels
        def cell(h, x):
            h = gnp.tanh(x @ p["Wx"] + h @ p["Wh"] * k + p["b"])
            return h, h @ p["Wo"]
        h, outs = graphc.scan(cell, np.zeros((N, H)), xs)
        return gnp.mean((outs - ys) ** 2)

    graphc.value_and_grad(loss, static_argnames="k")(PARAMS, XS, YS, k=0.5)  # the backend's one-time start
    xs, ys = RNG.normal(size=(1000, N, D)), RNG.normal(size=(1000, N, C))
    f = graphc.value_and_grad(loss, static_argnames="k")
    t0 = time.perf_counter()
    v, g = f(PARAMS, xs, ys, k=0.37)  # trace, optimise, compile both loops, run 2,000 steps
    first = time.perf_counter() - t0
    assert first < 1.0, f"{first:.2f} s"
    rv, rg = graphc.value_and_grad(loss, static_argnames="k", target="numpy")(PARAMS, xs, ys, k=0.37)
    assert v == pytest.approx(rv, rel=1e-12)


def test_the_memory_plan_holds_the_stored_carries():
    """The backward loop reads the carry of every step, stored by the forward loop in a buffer of
    the plan (n x the carry, pooled from one loop to the other); a program without gradient stores none."""
    def sig(f, n):
        from graphc.backends.targets import build

        xs, ys = RNG.normal(size=(n, N, D)), RNG.normal(size=(n, N, C))
        return build(f.lower(PARAMS, xs, ys).graph, DEFAULT_TARGET)

    for n in (10, 1000):
        kernel = sig(graphc.value_and_grad(rnn), n)
        fwd = next(s for s in kernel.plan.steps if isinstance(s, ScanStep))
        stored = fwd.outs[2]  # results: the final carry, the stacked ys, the stacked carries
        assert stored is not None and stored.shape == (n, N, H) and stored.slot in kernel.plan.pooled
        pool = kernel.planned_memory({})["pool"]
        assert pool >= n * N * H * 8 + n * N * C * 8  # the stored carries and the ys
        assert pool < (n * N * H * 8 + n * N * C * 8) * 3
    kernel = sig(graphc.jit(rnn), 1000)
    (fwd,) = [s for s in kernel.plan.steps if isinstance(s, ScanStep)]
    assert len(fwd.outs) < 3 or fwd.outs[2] is None  # nothing reads the carries: not stored
    assert kernel.planned_memory({})["pool"] < 1000 * N * H * 8


def test_the_ir_prints_the_loop_as_one_node_with_its_body_and_reads_it_back():
    prog = graphc.value_and_grad(backwards, argnums=(0, 1, 2)).lower(*_args("backwards"))
    text = prog.ir
    assert text.count("= scan ") == 2 and text.count("body = graph(") == 2
    line = next(ln for ln in text.splitlines() if "= scan " in ln)
    assert "reverse=True" in line and "n=6" in line
    assert ir.parse_graph(text) == prog.graph and ir.print_graph(ir.parse_graph(text)) == text
    assert ir.from_json(ir.to_json(prog.graph)) == prog.graph
    loaded = pickle.loads(pickle.dumps(prog))  # a Program travels as IR text
    assert ir.print_graph(loaded.graph) == text
    # a dangling body is a clear error, never a traceback
    with pytest.raises(IRError, match="no closing"):
        ir.parse_graph("\n".join(text.splitlines()[:4] + ["}"]))
    with pytest.raises(IRError, match="must follow the node"):
        ir.parse_graph("graph(%x: f64) {\n  body = graph(%c0: f64) {\n  return c0 = %c0\n  }\n  return f = %x\n}")


def test_passes_run_inside_the_body_and_on_the_loop():
    """simplify and fuse rewrite the body as they would the unrolled nodes; two equal loops are one
    node (the body is part of the node's identity); a loop nothing reads is removed."""
    def f(w, xs):
        c, ys = graphc.scan(lambda c, x: (1 / (1 + gnp.exp(-(c * 1.0 + x * w))), c + 0.0), np.zeros(3), xs)
        c2, _ = graphc.scan(lambda c, x: (1 / (1 + gnp.exp(-(c * 1.0 + x * w))), c + 0.0), np.zeros(3), xs)
        _, unused = graphc.scan(lambda c, x: (c * 3.0, c), np.zeros(3), xs)
        return gnp.sum(ys) + gnp.sum(c2)

    xs, w = RNG.normal(size=(4, 3)), RNG.normal(size=3)
    graph = graphc.jit(f).lower(w, xs).graph
    loops = [n for n in graph.body if n.op == "scan"]
    assert len(loops) == 1
    body = loops[0].attrs["body"]
    assert {n.op for n in body.body} == {"mul", "add", "sigmoid"}, ir.print_graph(body)
    for target in ("numpy", DEFAULT_TARGET):
        assert graphc.jit(f, target=target)(w, xs) == pytest.approx(float(f(w, xs)), rel=1e-14)


def test_grad_of_grad_through_a_loop():
    """A Hessian-vector product: reverse mode over the backward loop (itself a scan)."""
    W, xs, v = RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=(4, 3)), RNG.normal(size=(3, 3))

    def loss(W, xs):
        h, ys = graphc.scan(lambda h, x: (gnp.tanh(h @ W + x), gnp.sum(h * h)), np.zeros(3), xs)
        return gnp.sum(ys) + gnp.sum(h)

    grad = graphc.grad(loss, target="numpy")
    ref = fd_grad(lambda w: float(np.sum(grad(w, xs) * v)), W, h=1e-5)
    for target in ("numpy", DEFAULT_TARGET):
        np.testing.assert_allclose(graphc.hvp(loss, target=target)(W, v, xs), ref, rtol=1e-6, atol=1e-8)


def test_nested_loops_and_grad_inside_a_body():
    W, xs = RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=(4, 3))

    def nested(W, xs):
        def outer(c, x):
            inner, _ = graphc.scan(lambda a, _: (gnp.sin(a @ W) + x, None), c, None, length=3)
            return inner, gnp.sum(inner)
        c, ys = graphc.scan(outer, np.zeros(3), xs)
        return gnp.sum(ys * ys)

    def inner_grad(W, xs):
        def body(c, x):
            g = graphc.grad(lambda w: gnp.sum(gnp.tanh(c @ w) * x))(W)
            return c - 0.1 * gnp.sum(g, axis=0), gnp.sum(g)
        c, ys = graphc.scan(body, xs[0], xs)
        return gnp.sum(ys) + gnp.sum(c * c)

    for f in (nested, inner_grad):
        ref = fd_grad(lambda w, f=f: float(f(w, xs)), W)
        for target in ("numpy", DEFAULT_TARGET):
            v, g = graphc.value_and_grad(f, target=target)(W, xs)
            assert v == pytest.approx(float(f(W, xs)), rel=1e-13)
            np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-8)


def test_fori_loop_index_and_gradient():
    """i is a traced int64: it indexes (x[i]) and counts (i * 0.5); the gradient flows through every step."""
    x = RNG.normal(size=(6, 3))

    def f(x):
        return gnp.sum(graphc.fori_loop(0, 6, lambda i, v: v * 0.5 + x[i] * i, np.zeros(3)) ** 2)

    v, g = graphc.value_and_grad(f)(x)
    u = np.zeros(3)
    for i in range(6):
        u = u * 0.5 + x[i] * i
    assert v == pytest.approx(u @ u, rel=1e-14)
    np.testing.assert_allclose(g, fd_grad(lambda a: float(f(a)), x), rtol=1e-6, atol=1e-8)


DEGENERATE = {  # (function of x = arange(6).reshape(3, 2), its value, the gradient of sum(value ** 2)), by hand
    "no carry, a constant y": (lambda x: graphc.scan(lambda c, _: (c, 1.5), (), None, length=3)[1] + gnp.sum(x),
                               [16.5] * 3, np.full((3, 2), 99.0)),
    "the carry unchanged": (lambda x: graphc.scan(lambda c, t: (c, c * t), x[0], x)[1],
                            [[0, 1], [0, 3], [0, 5]], [[0, 72], [0, 6], [0, 10]]),
    "y is the slice": (lambda x: graphc.scan(lambda c, t: (c + t, t), x[0], x)[1], np.arange(6).reshape(3, 2),
                       2 * np.arange(6).reshape(3, 2)),
    "y is closed over": (lambda x: graphc.scan(lambda c, t: (c + t, x[1]), x[0], x)[1], [[2, 3]] * 3,
                         [[0, 0], [12, 18], [0, 0]]),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
@pytest.mark.parametrize("target", ["numpy", DEFAULT_TARGET])
def test_degenerate_loops(name, target):
    """A loop that reads nothing (no argument at all), returns its carry or a slice unchanged, or
    stacks a value from outside: the loop node and its rule handle each."""
    f, value, grad = DEGENERATE[name]
    x = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(graphc.jit(f, target=target)(x), value)
    np.testing.assert_array_equal(f(x), value)  # eager
    np.testing.assert_array_equal(graphc.grad(lambda x: gnp.sum(f(x) ** 2), target=target)(x), grad)


CUDA_SCRIPT = """
import numpy as np, graphc, graphc.numpy as gnp
rng = np.random.default_rng(0)
p = {"Wx": rng.normal(size=(3, 4)), "Wh": rng.normal(size=(4, 4)) * 0.5, "b": rng.normal(size=4)}
xs = rng.normal(size=(5, 2, 3))
def rnn(p, xs):
    h, ys = graphc.scan(lambda h, x: (gnp.tanh(x @ p["Wx"] + h @ p["Wh"] + p["b"]), gnp.sum(h)), np.zeros((2, 4)), xs)
    return gnp.sum(ys * ys) + gnp.sum(h)
def scalars(p, xs):  # a 0-d carry (kept on the host), reversed, and a fori_loop
    c, ys = graphc.scan(lambda c, x: (c * 0.5 + gnp.sum(x), c), 0.0, xs, reverse=True)
    return gnp.sum(ys) + c + gnp.sum(graphc.fori_loop(0, 3, lambda i, v: v @ p["Wh"], p["b"]))
for f in (rnn, scalars):
    (v, g), (rv, rg) = (graphc.value_and_grad(f, target=t)(p, xs) for t in ("cuda", "numpy"))
    assert abs(v - rv) <= 1e-12 * abs(rv), (v, rv)
    for k in p:
        np.testing.assert_allclose(g[k], rg[k], rtol=1e-12, atol=1e-13)
print("ok")
"""


@pytest.mark.slow
def test_the_cuda_runner_runs_loops_under_the_simulator():
    """TensorCudaKernel.run_scan: the body as a CUDA program of its own, called per step, the carry
    on the device (Numba's CUDA simulator; no GPU needed)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("numba")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    r = subprocess.run([sys.executable, "-c", CUDA_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


# ------------------------------------------------------------------ bad input: clear errors, traced and eager

x4 = np.ones((4, 3))
BAD = [
    ("carry shape", lambda x: graphc.scan(lambda c, t: (gnp.concatenate([c, t]), None), x[0], x)[0], ShapeError,
     r"carry leaf carry .*\(6,\).* enters the loop as .*\(3,\)|carry leaf carry as f64\[6\] but it enters the loop as "
     r"f64\[3\]"),
    ("carry dtype", lambda x: graphc.scan(lambda c, t: ((c > t), None), x[0], x)[0], ShapeError,
     r"carry leaf carry (as bool\[3\]|as an ndarray of bool)"),
    ("carry leaf", lambda x: graphc.scan(lambda c, t: ({"a": c["a"], "b": c["a"][:2]}, None), {"a": x[0], "b": x[1]},
                                         x)[0]["a"], ShapeError, r"carry\['b'\]"),
    ("carry structure", lambda x: graphc.scan(lambda c, t: ({"a": c["a"]}, None), {"a": x[0], "b": x[1]}, x)[0]["a"],
     ShapeError, r"structure \{'a': \*\}, but the carry enters as \{'a': \*, 'b': \*\}"),
    ("xs lengths", lambda x: graphc.scan(lambda c, t: (c, None), x[0], (x, x[:2]))[0], ShapeError,
     r"different leading lengths: xs\[0\] \(4, 3\), xs\[1\] \(2, 3\)"),
    ("length", lambda x: graphc.scan(lambda c, t: (c, None), x[0], x, length=7)[0], ShapeError,
     r"length=7 but the leaves of xs have 4"),
    ("no length", lambda x: graphc.scan(lambda c, t: (c, None), x[0])[0], ArgumentError, "give the number of steps"),
    ("not a pair", lambda x: graphc.scan(lambda c, t: c, x[0], x)[0], ArgumentError, r"must return a pair \(carry, y\)"),
    ("scalar xs", lambda x: graphc.scan(lambda c, t: (c, None), x[0], (x, 1.0))[0], ShapeError,
     r"xs\[1\] is a scalar"),
    ("fori float", lambda x: graphc.fori_loop(0, 2.5, lambda i, v: v, x[0]), ArgumentError,
     "upper must be a Python int"),
    ("fori traced", lambda x: graphc.fori_loop(x[0, 0], 3, lambda i, v: v, x[0]), ArgumentError,
     "lower must be a Python int"),
    ("fori carry", lambda x: graphc.fori_loop(0, 3, lambda i, v: v[:2], x[0]), ShapeError, "carry leaf carry"),
]


@pytest.mark.parametrize("mode", ["traced", "eager"])
@pytest.mark.parametrize("name,f,err,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_error(name, f, err, match, mode):
    with pytest.raises(err, match=match):
        graphc.jit(f)(x4) if mode == "traced" else f(x4)


def test_bad_arguments_of_the_api():
    with pytest.raises(ArgumentError, match="f must be a function"):
        graphc.scan(3, 0.0, np.ones(2))
    with pytest.raises(ArgumentError, match="reverse must be True or False"):
        graphc.scan(lambda c, x: (c, x), 0.0, np.ones(2), reverse="yes")
    with pytest.raises(ArgumentError, match="length must be an int"):
        graphc.scan(lambda c, x: (c, x), 0.0, None, length=2.5)
    with pytest.raises(ArgumentError, match="body_fun must be a function"):
        graphc.fori_loop(0, 2, None, 0.0)
    with pytest.raises(IRError, match="picks a result of a scan"):
        ir.make("scan_out", ir.input_node("x"), index=0)


@pytest.mark.slow
def test_rnn_against_jax_lax_scan():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def jloss(p, xs, ys):
        def cell(h, x):
            h = jnp.tanh(x @ p["Wx"] + h @ p["Wh"] + p["b"])
            return h, h @ p["Wo"]
        h, outs = jax.lax.scan(cell, jnp.zeros((N, H)), xs)
        return jnp.mean((outs - ys) ** 2) + jnp.sum(h) * 0.1

    rv, rg = jax.value_and_grad(jloss)(PARAMS, XS, YS)
    v, g = graphc.value_and_grad(rnn)(PARAMS, XS, YS)
    assert v == pytest.approx(float(rv), rel=1e-12)
    for k in PARAMS:
        np.testing.assert_allclose(g[k], np.asarray(rg[k]), rtol=1e-11, atol=1e-13)
