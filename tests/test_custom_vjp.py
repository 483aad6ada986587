"""graphc.custom_vjp (issue 28): jax.custom_vjp's API; in a traced function the gradient is bwd's,
traced into the program's IR (no custom_vjp node is left in a compiled program).

References: hand-written NumPy gradients of the rules (a rule that deliberately differs from the
true gradient -- clipped, scaled -- must give its own, not autodiff's), central finite
differences where the rule is the true gradient, analytic second derivatives, and JAX's
jax.custom_vjp when installed."""

import pickle

import numpy as np
import pytest
from conftest import fd_grad, on_every_target

import graphc
import graphc.numpy as gnp
from graphc import ir
from graphc.errors import ArgumentError, GraphcError, ShapeError

RNG = np.random.default_rng(28)


# ------------------------------------------------------------------ the rules of JAX's documentation


@graphc.custom_vjp
def clip_gradient(lo, hi, x):
    return x  # the identity; its gradient is clipped


def _clip_fwd(lo, hi, x):
    return x, (lo, hi)  # the bounds (Python floats) reach bwd as they are


def _clip_bwd(res, g):
    lo, hi = res
    return None, None, gnp.clip(g, lo, hi)


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


@graphc.custom_vjp
def log1pexp(x):
    return gnp.log(1.0 + gnp.exp(x))


def _log1pexp_fwd(x):
    return log1pexp(x), x  # fwd calls the function itself, as JAX's examples do


def _log1pexp_bwd(x, g):
    return (g * (1.0 - 1.0 / (1.0 + gnp.exp(x))),)  # the stable form of exp(x) / (1 + exp(x))


log1pexp.defvjp(_log1pexp_fwd, _log1pexp_bwd)


@graphc.custom_vjp
def sin_times(x, y):
    return gnp.sin(x) * y


def _sin_times_fwd(x, y):
    return sin_times(x, y), (gnp.cos(x), gnp.sin(x), y)


def _sin_times_bwd(res, g):
    cos_x, sin_x, y = res
    return 3.0 * cos_x * g * y, sin_x * g  # d/dx deliberately 3 times the true one


sin_times.defvjp(_sin_times_fwd, _sin_times_bwd)


@graphc.custom_vjp
def dense(p, x):
    """tanh(x @ W + b), its rule the true gradient written by hand (from the output, a residual)."""
    return gnp.tanh(x @ p["W"] + p["b"])


def _dense_fwd(p, x):
    y = dense(p, x)
    return y, (p["W"], x, y)


def _dense_bwd(res, g):
    W, x, y = res
    d = g * (1.0 - y * y)
    return {"W": x.T @ d, "b": gnp.sum(d, axis=0)}, d @ W.T


dense.defvjp(_dense_fwd, _dense_bwd)


# ------------------------------------------------------------------ the custom rule is the one used


def test_clip_gradient_gives_the_clipped_gradient_not_the_identitys():
    x, w = np.array([1.0, 2.0, 3.0, -1.0]), np.array([-3.0, 0.2, 4.0, 0.5])
    v, g = graphc.value_and_grad(lambda x, w: gnp.sum(clip_gradient(-0.5, 0.5, x) * w))(x, w)
    assert v == pytest.approx(np.sum(x * w), rel=1e-15)  # the value is fn's: the identity
    np.testing.assert_array_equal(g, np.clip(w, -0.5, 0.5))  # autodiff of the identity would give w


def test_a_scaled_rule_gives_its_gradient_for_every_argument():
    x, y = RNG.normal(size=5), RNG.normal(size=5)
    v, (gx, gy) = graphc.value_and_grad(lambda x, y: gnp.sum(sin_times(x, y) ** 2), argnums=(0, 1))(x, y)
    f = np.sin(x) * y
    assert v == pytest.approx(np.sum(f ** 2), rel=1e-14)
    np.testing.assert_allclose(gx, 3.0 * np.cos(x) * y * 2 * f, rtol=1e-13)
    np.testing.assert_allclose(gy, np.sin(x) * 2 * f, rtol=1e-13)


def test_log1pexp_rule_is_finite_where_the_naive_gradient_overflows():
    x = np.array([-800.0, -30.0, -3.0, 0.0, 2.0, 30.0, 800.0])
    v, g = graphc.value_and_grad(lambda x: gnp.sum(log1pexp(x)))(x)
    with np.errstate(over="ignore"):
        rule = 1.0 - 1.0 / (1.0 + np.exp(x))
    np.testing.assert_allclose(g, rule, rtol=1e-14, atol=2e-16)  # the rule, in NumPy (not autodiff's sigmoid)
    np.testing.assert_allclose(g, 0.5 * (1 + np.tanh(x / 2)), rtol=1e-12, atol=2e-16)  # which is the sigmoid
    assert np.all(np.isfinite(g)) and g[-1] == 1.0 and g[0] == 0.0
    inner = x[1:-1]
    assert graphc.value_and_grad(lambda x: gnp.sum(log1pexp(x)))(inner)[0] == pytest.approx(
        np.sum(np.logaddexp(0.0, inner)), rel=1e-14)


def test_one_backward_call_takes_every_outputs_cotangent():
    """bwd is called once with all the outputs' cotangents (zeros where an output is unused), as
    in JAX: a rule nonlinear in them (g1 * g2) shows it."""
    @graphc.custom_vjp
    def two(x):
        return x, 2.0 * x

    two.defvjp(lambda x: (two(x), None), lambda _, g: (g[0] * g[1],))
    x, u, v = RNG.normal(size=4), RNG.normal(size=4), RNG.normal(size=4)
    g = graphc.grad(lambda x, u, v: gnp.sum(two(x)[0] * u) + gnp.sum(two(x)[1] * v))(x, u, v)
    np.testing.assert_allclose(g, u * v, rtol=1e-15)
    g = graphc.grad(lambda x, u: gnp.sum(two(x)[0] * u))(x, u)  # the second output unused: its cotangent 0
    np.testing.assert_array_equal(g, np.zeros(4))


def test_nondiff_argnums_come_first_to_bwd_and_get_no_cotangent():
    def identity(lo, hi, x):
        return x

    clip = graphc.custom_vjp(identity, nondiff_argnums=(0, 1))
    clip.defvjp(lambda lo, hi, x: (x, None), lambda lo, hi, _, g: (gnp.clip(g, lo, hi),))
    w = np.array([-2.0, 0.1, 2.0])
    g = graphc.grad(lambda x, w: gnp.sum(clip(-1.0, 0.5, x) * w))(np.ones(3), w)
    np.testing.assert_array_equal(g, np.clip(w, -1.0, 0.5))


# ------------------------------------------------------------------ the rule as the true gradient: finite differences


def _dense_loss(p, x):
    return gnp.sum(dense(p, x) ** 2) + gnp.mean(log1pexp(dense(p, x)))


def _sin_loss(p, x):
    y = sin_times(p["a"], x)
    return gnp.sum(clip_gradient(-1e9, 1e9, y) * x)


P_DENSE = {"W": RNG.normal(size=(3, 4)) * 0.5, "b": RNG.normal(size=4) * 0.1}
X_DENSE = RNG.normal(size=(5, 3))


def _np_dense_loss(p, x):
    y = np.tanh(x @ p["W"] + p["b"])
    return np.sum(y ** 2) + np.mean(np.logaddexp(0.0, y))


CASES = [("dense", _dense_loss, _np_dense_loss, P_DENSE, X_DENSE)]


@pytest.mark.parametrize("name,loss,np_loss,p,x,target", on_every_target(CASES, [c[0] for c in CASES]))
def test_true_rules_match_finite_differences(name, loss, np_loss, p, x, target):
    v, g = graphc.value_and_grad(loss, target=target)(p, x)
    assert v == pytest.approx(np_loss(p, x), rel=1e-13)
    for key in p:
        def at(a, key=key):
            return np_loss({**p, key: a}, x)
        np.testing.assert_allclose(g[key], fd_grad(at, p[key]), rtol=1e-6, atol=1e-8, err_msg=key)


def _clip_case(x, w):
    return gnp.sum(clip_gradient(-0.5, 0.5, gnp.sin(x)) * w)


def _scaled_case(x, w):
    return gnp.sum(sin_times(x, w))


RULED = [("clip", _clip_case, lambda x, w: np.cos(x) * np.clip(w, -0.5, 0.5)),
         ("scaled", _scaled_case, lambda x, w: 3.0 * np.cos(x) * w)]


@pytest.mark.parametrize("name,loss,want,target", on_every_target(RULED, [c[0] for c in RULED]))
def test_custom_rules_on_every_target(name, loss, want, target):
    x, w = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3)) * 2
    g = graphc.grad(loss, target=target)(x, w)
    np.testing.assert_allclose(g, want(x, w), rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------ gradients of gradients: bwd differentiated as written


def test_grad_of_grad_differentiates_the_rule():
    x = np.array([-3.0, -0.5, 0.0, 1.5, 4.0])
    h = graphc.grad(lambda x: gnp.sum(graphc.grad(lambda z: gnp.sum(log1pexp(z)))(x)))(x)
    s = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(h, s * (1 - s), rtol=1e-13)
    np.testing.assert_allclose(graphc.hvp(lambda x: gnp.sum(log1pexp(x)))(x, np.ones(5)), s * (1 - s), rtol=1e-13)
    # the scaled rule's d/dx is 3 cos(x) y: its derivative is the rule's, -3 sin(x) y, not the true -sin(x) y
    y = RNG.normal(size=5)
    h = graphc.grad(lambda x, y: gnp.sum(graphc.grad(lambda z: gnp.sum(sin_times(z, y)))(x)))(x, y)
    np.testing.assert_allclose(h, -3.0 * np.sin(x) * y, rtol=1e-13)


@pytest.mark.slow  # importing JAX and one XLA compile: seconds
def test_matches_jax_custom_vjp():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    @jax.custom_vjp
    def j_sin_times(x, y):
        return jnp.sin(x) * y

    j_sin_times.defvjp(lambda x, y: (j_sin_times(x, y), (jnp.cos(x), jnp.sin(x), y)),
                       lambda r, g: (3.0 * r[0] * g * r[2], r[1] * g))

    def j_loss(x, y):
        return jnp.sum(j_sin_times(x, y) ** 2) + jnp.sum(jax.grad(lambda z: jnp.sum(j_sin_times(z, y) ** 2))(x))

    def g_loss(x, y):
        return gnp.sum(sin_times(x, y) ** 2) + gnp.sum(graphc.grad(lambda z: gnp.sum(sin_times(z, y) ** 2))(x))

    x, y = RNG.normal(size=4), RNG.normal(size=4)
    want = jax.value_and_grad(j_loss, argnums=(0, 1))(x, y)
    v, g = graphc.value_and_grad(g_loss, argnums=(0, 1))(x, y)
    assert v == pytest.approx(float(want[0]), rel=1e-13)
    for a, b in zip(g, want[1]):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-12)


# ------------------------------------------------------------------ eager, jit, loops, the IR


def test_eager_calls_fn_and_jit_computes_fns_value_with_no_custom_node_left():
    calls = []

    @graphc.custom_vjp
    def f(x):
        calls.append("fn")
        return gnp.exp(x) * 2.0

    f.defvjp(lambda x: (calls.append("fwd") or f(x), x), lambda x, g: (calls.append("bwd") or g,))
    x = RNG.normal(size=3)
    np.testing.assert_allclose(f(x), np.exp(x) * 2.0, rtol=1e-15)
    assert calls == ["fn"]  # on NumPy values: fn, nothing else
    j = graphc.jit(lambda x: f(x) + 1.0)
    np.testing.assert_allclose(j(x), np.exp(x) * 2.0 + 1.0, rtol=1e-15)
    text = j.lower(x).ir
    assert "custom_vjp" not in text and "exp" in text
    grad_ir = graphc.value_and_grad(lambda x: gnp.sum(f(x))).lower(x).ir
    assert "custom_vjp" not in grad_ir  # the rule inlined, the node dropped by CSE


def test_inside_a_scan_body_the_rule_is_used():
    def loss(x, w):
        def step(c, xt):
            c = clip_gradient(-0.25, 0.25, c * xt)
            return c, c
        c, ys = graphc.scan(step, x, w)
        return gnp.sum(ys) + gnp.sum(c)

    x, w = np.array([1.0, -2.0]), np.array([[3.0, 0.1], [0.5, 2.0]])
    g = graphc.grad(loss)(x, w)
    # by hand: c1 = x w0, c2 = c1 w1; d/dc2 = 2 -> clip 0.25; d/dc1 = 1 + clip(.25) w1 -> clip; d/dx = that * w0
    g2 = np.clip(np.full(2, 2.0), -0.25, 0.25)
    g1 = np.clip(1.0 + g2 * w[1], -0.25, 0.25)
    np.testing.assert_allclose(g, g1 * w[0], rtol=1e-15)


def test_the_forward_graph_prints_parses_and_pickles_with_the_rule():
    f = graphc.value_and_grad(lambda p, x: gnp.sum(dense(p, x)))
    prog = f.lower(P_DENSE, X_DENSE)
    text = ir.print_graph(prog.forward)
    assert "= custom_vjp " in text and "bwd = graph(" in text and "name='dense'" in text
    assert ir.parse_graph(text) == prog.forward and ir.print_graph(ir.parse_graph(text)) == text
    assert ir.from_json(ir.to_json(prog.forward)) == prog.forward
    loaded = pickle.loads(pickle.dumps(prog))  # IR text, passes rerun where it is loaded
    assert loaded.graph == prog.graph


def test_keyword_arguments_resolve_to_positions():
    x, w = np.array([1.0, 2.0]), np.array([5.0, -5.0])
    g = graphc.grad(lambda x, w: gnp.sum(clip_gradient(x=x, hi=1.0, lo=-1.0) * w))(x, w)
    np.testing.assert_array_equal(g, [1.0, -1.0])


# ------------------------------------------------------------------ wrong usage: GraphcErrors naming the problem


def _grad_of(f, *args):
    return graphc.grad(lambda x: gnp.sum(f(x)))(*args)


def test_calling_before_defvjp_is_refused_eagerly_and_traced():
    @graphc.custom_vjp
    def f(x):
        return x * 2.0

    with pytest.raises(GraphcError, match=r"custom_vjp f: no VJP rule yet: call f\.defvjp"):
        f(np.ones(2))
    with pytest.raises(GraphcError, match="no VJP rule yet"):
        _grad_of(f, np.ones(2))


def _with_rule(fwd, bwd, fn=lambda x: x * 2.0):
    f = graphc.custom_vjp(fn)
    f.defvjp(fwd, bwd)
    return f


@pytest.mark.parametrize("fwd,bwd,error,match", [
    (lambda x: (x * 2.0, x), lambda x, g: (g, g), ArgumentError, r"bwd returned 2 cotangent\(s\) for 1 argument"),
    (lambda x: (x * 2.0, x), lambda x, g: (), ArgumentError, r"bwd returned 0 cotangent\(s\) for 1 argument\(s\) \(x\)"),
    (lambda x: (x * 2.0, x), lambda x, g: g, ArgumentError, "bwd must return a tuple of cotangents"),
    (lambda x: (x * 2.0, x), lambda x, g: (gnp.sum(g),), ShapeError, r"cotangent for x is f64 but x is f64\[3\]"),
    (lambda x: (x * 2.0, x), lambda x, g: (np.ones(2),), ShapeError, r"cotangent for x has shape \(2,\)"),
    (lambda x: (x * 2.0, x), lambda x, g: ((g, g),), ShapeError, "cotangent for x is a Python tuple"),
    (lambda x: x * 2.0, lambda x, g: (g,), ArgumentError, "fwd must return a pair"),
    (lambda x: (gnp.sum(x), x), lambda x, g: (g,), ShapeError, r"fwd's output is f64 but fn's is f64\[3\]"),
])
def test_bad_rules_are_refused_naming_the_problem(fwd, bwd, error, match):
    with pytest.raises(error, match=match):
        _grad_of(_with_rule(fwd, bwd), np.ones(3))


def test_bad_cotangent_structures_name_the_argument():
    @graphc.custom_vjp
    def f(p, x):
        return p["W"] * x

    f.defvjp(lambda p, x: (f(p, x), None), lambda _, g: ({"V": g}, g))
    with pytest.raises(ShapeError, match=r"bwd's cotangent for p is keys \['V'\]; the argument is a dict with keys "
                                         r"\['W'\]"):
        graphc.grad(lambda p, x: gnp.sum(f(p, x)))({"W": np.ones(2)}, np.ones(2))
    f.defvjp(lambda p, x: (f(p, x), None), lambda _, g: ({"W": g[:1]}, g))
    with pytest.raises(ShapeError, match=r"cotangent for p\['W'\] is f64\[1\] but p\['W'\] is f64\[2\]"):
        graphc.grad(lambda p, x: gnp.sum(f(p, x)))({"W": np.ones(2)}, np.ones(2))


def test_an_integer_argument_takes_no_cotangent():
    @graphc.custom_vjp
    def pick(x, y):
        return x[np.arange(2), y]

    pick.defvjp(lambda x, y: (pick(x, y), (x, y)), lambda r, g: (gnp.zeros_like(r[0]), g))
    with pytest.raises(ShapeError, match=r"bwd gives a cotangent for y, which is i64\[2\].*give None"):
        graphc.grad(lambda x, y: gnp.sum(pick(x, y)))(np.ones((2, 3)), np.array([0, 2]))


def test_differentiating_a_value_fn_closes_over_is_refused():
    def loss(x, w):
        @graphc.custom_vjp
        def scaled(z):
            return z * w  # w is closed over: the rule gives no gradient for it

        scaled.defvjp(lambda z: (scaled(z), None), lambda _, g: (g * w,))
        return gnp.sum(scaled(x))

    x, w = np.ones(3), np.full(3, 2.0)
    np.testing.assert_array_equal(graphc.grad(loss)(x, w), w)  # with respect to x: fine
    with pytest.raises(GraphcError, match="custom_vjp scaled: differentiating with respect to a value it reads but "
                                          "does not take"):
        graphc.grad(loss, argnums=1)(x, w)


def test_bad_construction_is_refused():
    with pytest.raises(ArgumentError, match="custom_vjp: expected a Python function, got a Python int"):
        graphc.custom_vjp(3)
    with pytest.raises(ArgumentError, match="nondiff_argnums takes ints >= 0"):
        graphc.custom_vjp(lambda x: x, nondiff_argnums=(-1,))
    f = graphc.custom_vjp(lambda x: x)
    with pytest.raises(ArgumentError, match="defvjp's bwd must be a function, got None"):
        f.defvjp(lambda x: (x, None), None)
    g = graphc.custom_vjp(lambda x: x, nondiff_argnums=(2,))
    g.defvjp(lambda x: (x, None), lambda *a: (None,))
    with pytest.raises(ArgumentError, match="nondiff_argnums names argument 2, but it was called with 1"):
        g(np.ones(2))
