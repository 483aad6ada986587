"""Forward mode and Jacobians of traced functions (issue 28): graphc.jvp, linearize, jacfwd,
jacrev, built by transposing graphc's reverse mode on the IR (graphc/forward.py).
References: central differences in float64, SymPy's exact Jacobians, JAX's jvp/jacfwd
(when installed), graphc.hvp for forward over reverse."""

import functools

import numpy as np
import pytest
from conftest import on_every_target

import graphc
import graphc.nn as gnn
import graphc.numpy as gnp
from graphc import forward
from graphc.errors import GraphcError
from graphc.ir import topo_order

RNG = np.random.default_rng(28)
X34 = RNG.normal(size=(3, 4))
V34 = RNG.normal(size=(3, 4))
W45 = RNG.normal(size=(4, 5))


def fd_jvp(f, primals, tangents, h=1e-6):
    """Central differences of f (NumPy, on pytrees) along the tangents, leaf by leaf."""
    from graphc.trace import flatten, unflatten

    def shifted(s):
        return [unflatten(flatten(p)[2], [np.asarray(x, dtype=float) + s * np.asarray(t, dtype=float)
                                         for x, t in zip(flatten(p)[0], flatten(t)[0])])
                for p, t in zip(primals, tangents)]

    up, dn = flatten(f(*shifted(h)))[0], flatten(f(*shifted(-h)))[0]
    return [(np.asarray(a) - np.asarray(b)) / (2 * h) for a, b in zip(up, dn)]


def leaves(tree):
    from graphc.trace import flatten

    return [np.asarray(x) for x in flatten(tree)[0]]


# (name, graphc function of one (3, 4) array, the same in NumPy); JAX's versions are in jax_refs, by name
CASES = [
    ("elementwise", lambda a: gnp.sin(a) * gnp.exp(a / 3) + a ** 3, lambda a: np.sin(a) * np.exp(a / 3) + a ** 3),
    ("matmul", lambda a: gnp.tanh(a @ a.T) @ a, lambda a: np.tanh(a @ a.T) @ a),
    ("reductions", lambda a: gnp.sum(a * a, axis=0) + gnp.max(a, axis=0) * gnp.mean(a),
     lambda a: np.sum(a * a, axis=0) + np.max(a, axis=0) * np.mean(a)),
    ("softmax", lambda a: gnn.softmax(a, axis=-1), lambda a: np.exp(a) / np.exp(a).sum(-1, keepdims=True)),
    ("logsumexp", lambda a: gnn.logsumexp(a, axis=1), lambda a: np.log(np.exp(a).sum(1))),
    ("indexing", lambda a: a[1:, ::2] * a[0, 1] + a[np.array([0, 2, 2])][:2, 1:3].sum(),
     lambda a: a[1:, ::2] * a[0, 1] + a[np.array([0, 2, 2])][:2, 1:3].sum()),
    ("where_abs", lambda a: gnp.where(a > 0, gnp.sqrt(gnp.abs(a) + 1), a * a),
     lambda a: np.where(a > 0, np.sqrt(np.abs(a) + 1), a * a)),
    ("scans_sort", lambda a: gnp.cumsum(gnp.sort(a, axis=1), axis=1) * gnp.std(a),
     lambda a: np.cumsum(np.sort(a, axis=1), axis=1) * np.std(a)),
]
IDS = [c[0] for c in CASES]


def mlp(p, X):
    """Pytrees in (a dict of parameters, an array) and out (a dict: an array and a scalar)."""
    h = gnp.tanh(X @ p["W1"] + p["b1"])
    return {"out": h @ p["W2"], "reg": gnp.sum(p["W1"] ** 2)}


def np_mlp(p, X):
    h = np.tanh(X @ p["W1"] + p["b1"])
    return {"out": h @ p["W2"], "reg": np.sum(p["W1"] ** 2)}


P = {"W1": RNG.normal(size=(3, 4)), "b1": RNG.normal(size=4), "W2": RNG.normal(size=(4, 2))}
TP = {k: RNG.normal(size=v.shape) for k, v in P.items()}
X63, TX = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 3))


@pytest.fixture(scope="module")
def jax_refs():
    """JAX's results for this file's cases, in float64, from one jax.jit (one XLA compile)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    cases = {
        "elementwise": lambda a: jnp.sin(a) * jnp.exp(a / 3) + a ** 3,
        "matmul": lambda a: jnp.tanh(a @ a.T) @ a,
        "reductions": lambda a: jnp.sum(a * a, axis=0) + jnp.max(a, axis=0) * jnp.mean(a),
        "softmax": lambda a: jax.nn.softmax(a, axis=-1),
        "logsumexp": lambda a: logsumexp(a, axis=1),
        "indexing": lambda a: a[1:, ::2] * a[0, 1] + a[np.array([0, 2, 2])][:2, 1:3].sum(),
        "where_abs": lambda a: jnp.where(a > 0, jnp.sqrt(jnp.abs(a) + 1), a * a),
        "scans_sort": lambda a: jnp.cumsum(jnp.sort(a, axis=1), axis=1) * jnp.std(a),
    }

    def j_mlp(p, X):
        h = jnp.tanh(X @ p["W1"] + p["b1"])
        return {"out": h @ p["W2"], "reg": jnp.sum(p["W1"] ** 2)}

    def everything(x, v, p, X, tp, tX):
        refs = {name: jax.jvp(fn, (x,), (v,)) for name, fn in cases.items()}
        refs["mlp"] = jax.jvp(j_mlp, (p, X), (tp, tX))
        refs["mlp_jacfwd"] = jax.jacfwd(j_mlp, argnums=(0, 1))(p, X)
        return refs

    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        refs = jax.jit(everything)(X34, V34, P, X63, TP, TX)
        yield jax.tree.map(np.asarray, refs)
    finally:
        jax.config.update("jax_enable_x64", old)



# ------------------------------------------------------------------ jvp against references


@pytest.mark.parametrize("name,f,ref", CASES, ids=IDS)
def test_jvp_matches_finite_differences(name, f, ref):
    out, t = forward.jvp(f, (X34,), (V34,), target="numpy")
    np.testing.assert_allclose(out, ref(X34), rtol=1e-12, atol=1e-12)
    (expect,) = fd_jvp(ref, [X34], [V34])
    np.testing.assert_allclose(t, expect, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,f,ref", CASES, ids=IDS)
def test_jvp_matches_jax(name, f, ref, jax_refs):
    out, t = forward.jvp(f, (X34,), (V34,), target="numpy")  # the program the test above compiled
    j_out, j_t = jax_refs[name]
    np.testing.assert_allclose(out, np.asarray(j_out), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(t, np.asarray(j_t), rtol=1e-12, atol=1e-12)


def test_jvp_of_pytrees_in_and_out(jax_refs):
    out, t = forward.jvp(mlp, (P, X63), (TP, TX))  # the default target
    assert set(t) == {"out", "reg"} and np.shape(t["out"]) == (6, 2) and isinstance(t["reg"], float)
    for got, expect in zip(leaves(t), fd_jvp(np_mlp, [P, X63], [TP, TX])):
        np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["out"], np_mlp(P, X63)["out"], rtol=1e-13)
    _, j_t = jax_refs["mlp"]
    np.testing.assert_allclose(t["out"], j_t["out"], rtol=1e-12, atol=1e-13)
    assert t["reg"] == pytest.approx(float(j_t["reg"]), rel=1e-13)


def test_jvp_with_data_and_labels_through_partial():
    """Arrays the function needs besides the primals (weights held fixed, integer labels) go
    through functools.partial: they become inputs of the program, not captured constants."""
    y = np.array([0, 4, 1])

    def loss(s, W, y):
        return gnn.cross_entropy(s @ W, y)

    def np_loss(s):
        z = s @ W45
        z = z - z.max(1, keepdims=True)
        return -np.mean(z[np.arange(3), y] - np.log(np.exp(z).sum(1)))

    out, t = forward.jvp(functools.partial(loss, W=W45, y=y), (X34,), (V34,), target="numpy")
    assert out == pytest.approx(np_loss(X34), rel=1e-13)
    assert t == pytest.approx(fd_jvp(np_loss, [X34], [V34])[0], rel=1e-7)
    # other data: the same program (no retrace), other numbers
    calls = []
    f = functools.partial(lambda s, W, y: calls.append(1) or loss(s, W, y), W=W45, y=y)
    forward.jvp(f, (X34,), (V34,), target="numpy")
    f2 = functools.partial(f.func, W=2 * W45, y=y)
    _, t2 = forward.jvp(f2, (X34,), (V34,), target="numpy")
    assert len(calls) == 1
    assert t2 == pytest.approx(fd_jvp(lambda s: np_loss(2 * s), [X34], [V34])[0], rel=1e-7)


def test_float32():
    p32 = {k: v.astype(np.float32) for k, v in P.items()}
    t32 = {k: v.astype(np.float32) for k, v in TP.items()}
    out, t = forward.jvp(mlp, (p32, X63.astype(np.float32)), (t32, TX.astype(np.float32)))
    assert t["out"].dtype == np.float32
    _, t64 = forward.jvp(mlp, (P, X63), (TP, TX))
    np.testing.assert_allclose(t["out"], t64["out"], rtol=2e-5, atol=2e-5)
    assert t["reg"] == pytest.approx(t64["reg"], rel=2e-5)
    x32 = X34.astype(np.float32)
    Jf = forward.jacfwd(lambda a: gnn.softmax(a, axis=-1), target="numpy")(x32)
    Jr = forward.jacrev(lambda a: gnn.softmax(a, axis=-1), target="numpy")(x32)
    J64 = forward.jacfwd(lambda a: gnn.softmax(a, axis=-1), target="numpy")(X34)
    assert Jf.dtype == Jr.dtype == np.float32 and Jf.shape == (3, 4, 3, 4)
    np.testing.assert_allclose(Jf, J64, atol=1e-6)
    np.testing.assert_allclose(Jr, J64, atol=1e-6)


# ------------------------------------------------------------------ SymPy: exact Jacobians


def test_jvp_and_jacobians_against_sympy_jacobian():
    sp = pytest.importorskip("sympy")
    x0, x1, x2 = sp.symbols("x0 x1 x2", real=True)
    F = sp.Matrix([x0 * sp.sin(x1) + x2 ** 2, sp.exp(x0 * x1) / (1 + x2 ** 2), sp.log(1 + x0 ** 2) * sp.tanh(x2),
                   sp.sqrt(x1 ** 2 + 1) * x0])
    J = F.jacobian([x0, x1, x2])

    def f(x):
        a, b, c = x[0], x[1], x[2]
        return gnp.stack([a * gnp.sin(b) + c ** 2, gnp.exp(a * b) / (1 + c ** 2), gnp.log(1 + a ** 2) * gnp.tanh(c),
                          gnp.sqrt(b ** 2 + 1) * a])

    x, v = np.array([0.7, -1.3, 0.4]), np.array([0.5, 2.0, -1.5])
    at = dict(zip((x0, x1, x2), map(sp.Float, x)))
    exact = np.array(J.subs(at).evalf(30).tolist(), dtype=float)
    _, t = forward.jvp(f, (x,), (v,), target="numpy")
    np.testing.assert_allclose(t, exact @ v, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(forward.jacfwd(f, target="numpy")(x), exact, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(forward.jacrev(f, target="numpy")(x), exact, rtol=1e-14, atol=1e-15)


def test_the_jvp_ir_checks_against_sympy():
    """check_jvp: the JVP program's IR expanded over SymPy symbols equals SymPy's J·v of f's own
    expressions (at 30 digits), and the compiled numbers agree; on small shapes."""
    pytest.importorskip("sympy")
    a, va = X34[:2, :3], V34[:2, :3]
    for f, primals, tangents in [
        (lambda z: gnn.softmax(z, axis=-1) * gnp.log1p(z * z), (a,), (va,)),
        (lambda p, X: mlp(p, X)["out"], ({k: v[:3, :2] if v.ndim == 2 else v[:2] for k, v in P.items()}
                                         | {"W2": P["W2"][:2]}, X63[:2]),
         ({k: v[:3, :2] if v.ndim == 2 else v[:2] for k, v in TP.items()} | {"W2": TP["W2"][:2]}, TX[:2])),
    ]:
        report = forward.check_jvp(f, primals, tangents, target="numpy")
        assert report.ok, report
        assert report.ir < 1e-25


def test_check_jvp_sees_a_wrong_program(monkeypatch):
    """Negative case: a transform that drops a term (here: J·v of sin computed as v * sin) fails."""
    pytest.importorskip("sympy")
    real = forward.jvp_nodes

    def wrong(outputs, wrt, tangents):
        return [graphc.ir.make("mul", t, o) for o, t in zip(outputs, tangents)]

    monkeypatch.setattr(forward, "jvp_nodes", wrong)
    report = forward.check_jvp(lambda z: gnp.sin(z), (X34[:1, :2],), (V34[:1, :2],), target="numpy")
    monkeypatch.setattr(forward, "jvp_nodes", real)
    assert not report.ok and report.ir > 1e-3


# ------------------------------------------------------------------ the program: IR, no Jacobian


def test_the_jvp_program_is_printable_ir_without_a_jacobian():
    n = 40
    x, v = RNG.normal(size=n), RNG.normal(size=n)

    def f(a):
        return gnn.softmax(gnp.tanh(a) * a, axis=0) + gnp.cumsum(a)

    graph = forward.jvp_graph(f, (x,), (v,), target="numpy")
    text = graphc.print_graph(graph)
    assert graphc.print_graph(graphc.parse_graph(text)) == text  # IR text, round-trips
    assert graph.input_names == ("primals_0", "tangents_0")
    sizes = [int(np.prod(node.shape)) for node in topo_order(v for _, v in graph.outputs)]
    assert max(sizes) == n  # the Jacobian (n * n entries) is never formed
    assert not any(name.startswith("fwd_standin") for name in graph.input_names)  # cotangents u dropped
    # a matmul's JVP is products of the operands' shapes (tangent_X @ W + X @ tangent_W)
    g2 = forward.jvp_graph(lambda A, B: A @ B, (X34, W45), (V34, W45), target="numpy")
    assert max(int(np.prod(node.shape)) for node in topo_order(v for _, v in g2.outputs)) == 20
    assert sum(node.op == "matmul" for node in topo_order(v for _, v in g2.outputs)) == 3


def test_a_rule_that_still_mentions_the_cotangent_gets_zeros(monkeypatch):
    """The stand-in cotangents u never reach the program: a (late-registered) op whose rule
    selects its adjoint by a mask of the adjoint itself keeps u in J·v's IR after both sweeps;
    u is then replaced by zeros, which is exact because J·v is linear in u."""
    from graphc.backends.numpy_ref import evaluate
    from graphc.ir import const, input_node, make
    from graphc.registry import OpSpec, register_op, unregister_op

    def rule(n, g):  # 2 g, written so that it mentions g in a mask
        return (make("where", make("gt", make("abs", g), const(-1.0, g.dtype)), make("mul", g, const(2.0)),
                     const(0.0)),)

    replaced = []
    real = forward.substitute
    monkeypatch.setattr(forward, "substitute", lambda roots, mapping: replaced.append(mapping) or real(roots, mapping))
    register_op(OpSpec("fwdtest_double", 1, lambda x: 2 * x, rule, lambda a: 2 * a, "(F(2.0) * {0})", "2 x"))
    try:
        x, t = input_node("x", "f64", (3,)), input_node("t", "f64", (3,))
        (jv,) = forward.jvp_nodes([make("fwdtest_double", make("sin", x))], [x], [t])
        assert not [n for n in topo_order([jv]) if n.is_input and n.attr not in ("x", "t")]
        assert [m for m in replaced if m]  # the fallback ran: u was still there after the second sweep
        xs, ts = np.array([0.1, -2.0, 3.0]), np.array([1.0, 0.5, -2.0])
        (got,) = evaluate(graphc.Graph([x, t], [("jv", jv)]), [xs, ts])
        np.testing.assert_allclose(got, 2 * np.cos(xs) * ts, rtol=1e-15)
    finally:
        unregister_op("fwdtest_double")


def test_jvp_transform_is_a_graph_pass():
    """Forward mode on any Graph (here a formula's): tangent inputs x_dot, outputs f_dot;
    the result prints, parses back and compiles like any graph."""
    g = graphc.Program("sin(x) * y + exp(x * y)", grad=False).forward
    t = forward.jvp_transform(g)
    assert t.input_names == ("x", "y", "x_dot", "y_dot") and t.output_names == ("f", "f_dot")
    text = graphc.print_graph(t)
    assert graphc.print_graph(graphc.parse_graph(text)) == text
    from graphc.backends.numpy_ref import evaluate

    x, y, dx, dy = 0.3, 0.7, 0.4, -1.1
    _, dot = evaluate(t, [np.float64(x), np.float64(y), np.float64(dx), np.float64(dy)])
    expect = (np.cos(x) * y + y * np.exp(x * y)) * dx + (np.sin(x) + x * np.exp(x * y)) * dy
    assert float(dot) == pytest.approx(expect, rel=1e-14)
    with pytest.raises(GraphcError, match="x_dot"):
        forward.jvp_transform(graphc.Program("x * x_dot", grad=False).forward)


# ------------------------------------------------------------------ Jacobians


def test_jacfwd_and_jacrev_of_pytrees(jax_refs):
    J1 = forward.jacfwd(mlp, argnums=(0, 1), target="numpy")(P, X63)
    J2 = forward.jacrev(mlp, argnums=(0, 1), target="numpy")(P, X63)
    assert J1["out"][0]["W1"].shape == (6, 2, 3, 4) and J1["reg"][1].shape == (6, 3)
    for a, b in zip(leaves(J1), leaves(J2)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    # finite differences: column by column along basis tangents of W1
    for idx in [(0, 0), (2, 3)]:
        e = {k: np.zeros_like(v) for k, v in P.items()}
        e["W1"][idx] = 1
        col = fd_jvp(np_mlp, [P, X63], [e, np.zeros_like(X63)])
        np.testing.assert_allclose(J1["out"][0]["W1"][(..., *idx)], col[0], rtol=1e-6, atol=1e-8)
        assert J1["reg"][0]["W1"][idx] == pytest.approx(float(col[1]), rel=1e-6)
    import jax

    for a, b in zip(leaves(J1), jax.tree.leaves(jax_refs["mlp_jacfwd"])):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_jacobians_of_scalars_and_other_arguments():
    """Scalar in or out; argnums picks the differentiated argument, the others (data, integer
    labels, a Python int) pass through; has_aux returns aux as JAX."""
    y = np.array([1, 0, 2])

    def loss(w, X, y, k):
        s = X @ w
        return gnn.cross_entropy(s * k, y), gnp.max(s)

    w = RNG.normal(size=(4, 3))
    gw, aux = forward.jacfwd(loss, has_aux=True, target="numpy")(w, X34, y, 2)
    gr, aux2 = forward.jacrev(loss, has_aux=True, target="numpy")(w, X34, y, 2)
    expect = graphc.grad(lambda w, X, y: loss(w, X, y, 2)[0], target="numpy")(w, X34, y)
    assert gw.shape == gr.shape == (4, 3)
    np.testing.assert_allclose(gw, expect, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gr, expect, rtol=1e-12, atol=1e-14)
    assert aux == aux2 == pytest.approx(np.max(X34 @ w))
    d = forward.jacfwd(lambda t: gnp.sin(t) * gnp.stack([t, t * t]), target="numpy")(0.5)
    np.testing.assert_allclose(d, [np.cos(0.5) * 0.5 + np.sin(0.5), np.cos(0.5) * 0.25 + 2 * 0.5 * np.sin(0.5)])
    assert forward.jacrev(lambda t: gnp.sin(t) * t, target="numpy")(0.5) == pytest.approx(
        np.cos(0.5) * 0.5 + np.sin(0.5))


def test_each_jacobian_program_is_traced_once():
    calls = []

    def f(x):
        calls.append(1)
        return gnp.tanh(x) * x.sum()

    x = RNG.normal(size=5)
    J = forward.jacfwd(f, target="numpy")(x)
    assert len(calls) == 1  # five columns, one program
    Jr = forward.jacrev(f, target="numpy")(x)
    assert len(calls) == 2  # five rows, one program
    np.testing.assert_allclose(J, Jr, rtol=1e-13, atol=1e-14)
    expect = np.diag((1 - np.tanh(x) ** 2) * x.sum()) + np.tanh(x)[:, None]
    np.testing.assert_allclose(J, expect, rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------------ linearize, caching


def test_linearize_reuses_one_program():
    calls = []

    def f(p, X):
        calls.append(1)
        return mlp(p, X)

    out, f_jvp = forward.linearize(f, P, X63, target="numpy")
    np.testing.assert_allclose(out["out"], np_mlp(P, X63)["out"], rtol=1e-13)
    for _ in range(3):
        tp = {k: RNG.normal(size=v.shape) for k, v in P.items()}
        tx = RNG.normal(size=X63.shape)
        t = f_jvp(tp, tx)
        for got, expect in zip(leaves(t), fd_jvp(np_mlp, [P, X63], [tp, tx])):
            np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-7)
    assert len(calls) == 1
    with pytest.raises(GraphcError, match=r"tangents\[1\] has shape \(3, 6\)"):
        f_jvp(TP, X63.T)


def test_one_program_serves_every_batch_size():
    calls = []

    def f(a):
        calls.append(1)
        return gnp.exp(a) * gnp.sum(a * a)

    for n in (3, 4, 5, 7):
        a, v = RNG.normal(size=n), RNG.normal(size=n)
        _, t = forward.jvp(f, (a,), (v,), target="numpy")
        np.testing.assert_allclose(t, np.exp(a) * np.sum(a * a) * v + np.exp(a) * 2 * (a @ v), rtol=1e-13)
    assert len(calls) == 2  # per size, then once with the size named, as graphc.jit


# ------------------------------------------------------------------ composition with grad


def hvp_case(x):
    return gnp.sum(gnp.sin(x) ** 2 * gnp.exp(x / 3)) + gnp.sum(x[:-1] * x[1:] ** 2)


def test_forward_over_reverse_equals_hvp():
    x, v = RNG.normal(size=6), RNG.normal(size=6)
    _, hv = forward.jvp(graphc.grad(hvp_case), (x,), (v,), target="numpy")
    np.testing.assert_allclose(hv, graphc.hvp(hvp_case, target="numpy")(x, v), rtol=1e-13, atol=1e-14)


def test_reverse_over_forward_and_forward_over_forward():
    x, v = RNG.normal(size=6), RNG.normal(size=6)
    H = graphc.hessian(hvp_case, target="numpy")(x)

    def directional(a, t):  # J·t of a scalar function: <grad f, t>
        return forward.jvp(hvp_case, (a,), (t,))[1]

    np.testing.assert_allclose(graphc.grad(directional, target="numpy")(x, v), H @ v, rtol=1e-12, atol=1e-13)

    def second(a, t):  # t' H t, forward over forward
        return forward.jvp(lambda b: forward.jvp(hvp_case, (b,), (t,))[1], (a,), (t,))[1]

    assert graphc.jit(second, target="numpy")(x, v) == pytest.approx(v @ H @ v, rel=1e-12)


def test_constant_outputs_have_zero_tangents():
    out, t = forward.jvp(lambda a, b: (a * 2.0, 3.0, b.sum()), (X34, W45), (V34, np.zeros_like(W45)),
                         target="numpy")
    np.testing.assert_allclose(t[0], 2 * V34)
    assert t[1] == 0.0 and t[2] == 0.0 and out[1] == 3.0


def test_numbers_aux_and_jitted_functions():
    out, t = forward.jvp(lambda a, b: a * gnp.sin(b), (2.0, 0.5), (1.0, -3.0), target="numpy")
    assert out == pytest.approx(2 * np.sin(0.5)) and t == pytest.approx(np.sin(0.5) - 6 * np.cos(0.5))
    out, t, aux = forward.jvp(lambda a: (gnp.sum(a * a), {"m": gnp.max(a), "mask": a > 0}), (X34,), (V34,),
                              has_aux=True, target="numpy")
    assert t == pytest.approx(2 * np.sum(X34 * V34)) and aux["m"] == pytest.approx(X34.max())
    assert aux["mask"].dtype == bool and (aux["mask"] == (X34 > 0)).all()
    _, t = forward.jvp(graphc.jit(lambda a: gnp.exp(a) * 2), (X34,), (V34,), target="numpy")
    np.testing.assert_allclose(t, 2 * np.exp(X34) * V34, rtol=1e-14)
    y0, f_jvp, aux = forward.linearize(lambda a: (gnp.cos(a), a.sum()), X34, has_aux=True, target="numpy")
    np.testing.assert_allclose(f_jvp(V34), -np.sin(X34) * V34, rtol=1e-14)
    assert aux == pytest.approx(X34.sum())


# ------------------------------------------------------------------ every target

TARGET_CASES = [
    ((lambda a: gnp.sin(a) * gnp.exp(a / 3) + a ** 3, lambda a: np.sin(a) * np.exp(a / 3) + a ** 3), "elementwise"),
    ((lambda a: gnn.softmax(a @ a.T, axis=-1), lambda a: (e := np.exp(a @ a.T)) / e.sum(-1, keepdims=True)),
     "softmax_matmul"),
    ((lambda a: gnn.logsumexp(gnp.tanh(a), axis=0) * a[1, 2], lambda a: np.log(np.exp(np.tanh(a)).sum(0)) * a[1, 2]),
     "logsumexp_index"),
]


@pytest.mark.parametrize("case,target", on_every_target([(c,) for c, _ in TARGET_CASES], [n for _, n in TARGET_CASES]))
def test_jvp_on_every_target(case, target):
    f, ref = case
    out, t = forward.jvp(f, (X34,), (V34,), target=target)
    np.testing.assert_allclose(out, ref(X34), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(t, fd_jvp(ref, [X34], [V34])[0], rtol=1e-6, atol=1e-7)
    ref_out, ref_t = forward.jvp(f, (X34,), (V34,), target="numpy")
    np.testing.assert_allclose(t, ref_t, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("primals,tangents,match", [
    ((P,), ({"W1": TP["W1"], "b1": TP["b1"]},), r"tangents\[0\] is a dict with keys \['W1', 'b1'\] but primals\[0\]"),
    ((P,), ([TP["W1"], TP["b1"], TP["W2"]],), r"tangents\[0\] is a list of 3 but primals\[0\] is a dict"),
    ((P,), ({**TP, "W2": TP["W2"].T},), r"tangents\[0\]\['W2'\] has shape \(2, 4\) but its primal primals\[0\]\['W2'\]"),
    ((P,), ({**TP, "b1": TP["b1"].astype(np.float32)},), r"tangents\[0\]\['b1'\] is float32 but its primal "
                                                        r"primals\[0\]\['b1'\] is float64"),
    (({**P, "n": np.arange(3)},), ({**TP, "n": np.ones(3)},), r"primals\[0\]\['n'\] is an ndarray of int64"),
    ((P,), ({**TP, "b1": np.arange(4)},), r"tangents\[0\]\['b1'\] is an ndarray of int64"),
    (X34, V34, r"primals is an ndarray of float64: give a tuple"),
    ((X34, X34), (V34,), r"2 primal\(s\) but 1 tangent\(s\)"),
    ((True,), (1.0,), r"primals\[0\] is a Python bool"),
])
def test_bad_tangents_are_named(primals, tangents, match):
    with pytest.raises(GraphcError, match=match):
        forward.jvp(lambda p: p, primals, tangents, target="numpy")


def test_bad_calls_are_named():
    with pytest.raises(GraphcError, match=r"output\[1\] is bool"):
        forward.jvp(lambda a: (a * 2, a > 0), (X34,), (V34,), target="numpy")
    with pytest.raises(GraphcError, match="must return \\(value, aux\\)"):
        forward.jvp(lambda a: a, (X34,), (V34,), has_aux=True, target="numpy")
    with pytest.raises(GraphcError, match=r"argnums=3 for a call with 2"):
        forward.jacfwd(lambda a, b: a * b, argnums=3)(X34, X34)
    with pytest.raises(GraphcError, match=r"argument 1 is an ndarray of int64"):
        forward.jacrev(lambda a, y: a, argnums=(0, 1))(X34, np.arange(3))
    with pytest.raises(GraphcError, match="expected a function"):
        forward.jvp(3, (X34,), (V34,))
    with pytest.raises(GraphcError, match="jacfwd inside a traced function"):
        graphc.jit(lambda a: forward.jacfwd(gnp.sin)(a), target="numpy")(X34)
