"""Error text (issue 23, item 6): a wrong argument is named by its type's package and
name with the right article ("a Python str", "an ndarray of complex128", "a dask
Array (dask.array.core.Array)"), and a traced value where an array is expected
says what to do. A graphc.jit-ed function called on traced values is traced
inline, as JAX does (gradients against finite differences).
"""

import re

import numpy as np
import pytest
from conftest import fd_grad

import graphc
import graphc.numpy as gnp
from graphc import ArgumentError, TracingError

BAD_ARTICLE = re.compile(r"\ba [aeiouAEIOU]|\bis a (Tracer|[a-z]+\b[^ ])")  # "a Array", "is a Tracer", "is a complex:"


def _message(fn):
    with pytest.raises(graphc.GraphcError) as info:
        fn()
    text = str(info.value)
    assert not BAD_ARTICLE.search(text), text
    return text


def _foreign(module, name):
    """An instance of a class that says it lives in `module` (a dask or xarray array, say)."""
    return type(name, (), {"__module__": module, "__qualname__": name})()


def _sum_grad(x):
    return graphc.value_and_grad(lambda x: gnp.sum(x))(x)


@pytest.mark.parametrize("value,text", [
    (1 + 2j, "argument x is a Python complex number: pass arrays, floats"),
    (np.complex128(1), "argument x is a NumPy complex128 scalar"),
    (np.array([1 + 2j]), "argument x is an ndarray of complex128: graphc takes float or integer arrays"),
    ("abc", "argument x is a Python str"),
    ({1, 2}, "argument x is a Python set"),
    (_foreign("dask.array.core", "Array"), "argument x is a dask Array (dask.array.core.Array)"),
    (_foreign("xarray.core.dataarray", "DataArray"), "argument x is an xarray DataArray"),
    (_foreign("torch", "Tensor"), "argument x is a torch Tensor:"),
])
def test_argument_types_are_named_with_their_article(value, text):
    assert text in _message(lambda: _sum_grad(value))


def test_other_type_messages():
    assert "cannot use a Python str in a traced computation" in _message(
        lambda: graphc.value_and_grad(lambda x: gnp.sum(x + "a"))(np.ones(2)))
    assert "the function returned a Python str, not a traced value" in _message(
        lambda: graphc.value_and_grad(lambda x: "a")(np.ones(2)))
    assert "expected a Python function, got a Python int" in _message(lambda: graphc.jit(3))


def test_grad_inside_a_traced_function_is_traced_into_it():
    """Once refused (issue 23's wording test); since issue 26 a nested grad is a derivative
    of the outer program (tests/test_nested.py has the cases); a non-scalar inner value
    is still refused by name."""
    inner = graphc.grad(lambda y: gnp.sum(y**2))
    v, g = graphc.value_and_grad(lambda x: gnp.sum(inner(x)))(np.ones(3))
    assert v == 6.0 and g.tolist() == [2.0, 2.0, 2.0]
    text = _message(lambda: graphc.grad(lambda x: gnp.sum(graphc.grad(lambda y: y * 2)(x)))(np.ones(3)))
    assert "not a traced 0-d value" in text and "Tracer:" not in text


def test_a_compiled_formula_inside_a_traced_function_says_what_to_do():
    f = graphc.compile("x * y")
    t = graphc.compile("sum(X @ w)", shapes={"X": ("N", 3), "w": (3,)})
    for call in (lambda x: f(x, 2.0)[0], lambda x: t(x, np.ones(3))[0]):
        text = _message(lambda call=call: graphc.value_and_grad(call)(np.ones((2, 3))))
        assert "is a traced value" in text and "graphc.compile" in text and "graphc.numpy" in text


# ------------------------------------------------------------------ jit under a trace: traced inline



def test_jit_called_on_traced_values_is_traced_inline():
    @graphc.jit
    def layer(w, x):
        return gnp.tanh(x @ w), {"norm": gnp.sum(w * w)}

    def loss(w, X):
        h, extra = layer(w, X)
        return gnp.sum(gnp.exp(-h) * h) + 0.1 * extra["norm"]

    def ref(w, X):
        h = np.tanh(X @ w)
        return float(np.sum(np.exp(-h) * h) + 0.1 * np.sum(w * w))

    rng = np.random.default_rng(6)
    w, X = rng.normal(size=(3, 2)), rng.normal(size=(5, 3))
    v, g = graphc.value_and_grad(loss)(w, X)
    assert v == pytest.approx(ref(w, X), rel=1e-13)
    np.testing.assert_allclose(g, fd_grad(lambda w: ref(w, X), w), rtol=1e-6, atol=1e-8)
    assert layer.cache_info()["misses"] == 0  # nothing compiled for the inner function
    # the jit-ed function still runs on arrays by itself
    h, extra = layer(w, X)
    np.testing.assert_allclose(h, np.tanh(X @ w), rtol=1e-13)


def test_jit_inline_with_static_arguments_and_inside_jit():
    scale = graphc.jit(lambda x, k: x * k + gnp.sin(x), static_argnames="k")
    x = np.linspace(-1.0, 1.0, 4)
    v, g = graphc.value_and_grad(lambda x: gnp.sum(scale(x, k=3.0) ** 2))(x)
    assert v == pytest.approx(float(np.sum((3 * x + np.sin(x)) ** 2)), rel=1e-13)
    np.testing.assert_allclose(g, fd_grad(lambda x: float(np.sum((3 * x + np.sin(x)) ** 2)), x), rtol=1e-6)
    outer = graphc.jit(lambda x: scale(x, k=2.0) - 1.0)
    np.testing.assert_allclose(outer(x), 2 * x + np.sin(x) - 1.0, rtol=1e-13)


def test_jit_inline_is_refused_only_for_what_tracing_refuses():
    with pytest.raises(TracingError, match="no truth value"):
        graphc.value_and_grad(lambda x: gnp.sum(graphc.jit(lambda y: y if y else -y)(x)))(np.ones(2))
    with pytest.raises(ArgumentError, match="is a Python str"):
        graphc.jit(lambda y: y)("abc")


@pytest.mark.parametrize("bad, words", [(3, "a Python int"), ([1.0], "a Python list"), (2j, "a Python complex number"),
                                        (None, "None")])
def test_compile_names_what_it_was_given_with_its_article(bad, words):
    with pytest.raises(graphc.GraphcError, match=f"cannot compile {words}:"):
        graphc.compile(bad)


def test_out_of_the_wrong_kind_is_named_with_its_article():
    with pytest.raises(graphc.GraphcError, match="got a Python int$"):
        graphc.compile("x*y")(np.ones(3), np.ones(3), out=5)


def test_a_traced_value_kept_after_its_trace_is_named():
    """Regression: a tracer kept from inside a traced function and passed later reached the
    nested-derivative path with no trace recording (an IndexError traceback)."""
    kept = []

    def f(x):
        kept.append(x)
        return gnp.sum(x)

    graphc.grad(f)(np.ones(2))
    for mode in (graphc.grad, graphc.jit):
        text = _message(lambda mode=mode: mode(lambda x: gnp.sum(x))(kept[0]))
        assert "traced value of a trace that has ended" in text and "argument x" in text
