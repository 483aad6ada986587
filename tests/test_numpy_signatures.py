"""graphc.numpy takes NumPy's parameter names and order (issue 23, item 3).

For every public function with a NumPy counterpart of the same name: the
parameter names against NumPy's own signature (ufuncs: nin and x / x1, x2),
then a call with NumPy's keyword names on traced values -- through
graphc.numpy and through NumPy's dispatch (`np.clip(tracer, a_min=...)`) --
whose value is compared with NumPy's and whose gradient with finite
differences of NumPy's. Parameters graphc cannot honour are refused with an
UnsupportedError naming them, never ignored.
"""

import inspect

import numpy as np
import pytest

import graphc
import graphc.numpy as gnp
from graphc import GraphcError, UnsupportedError

# dot and matmul are specified (and tested) in test_dot_matmul.py
NAMES = [n for n in gnp.__all__ if n not in ("dot", "matmul")]
P = inspect.Parameter
POSITIONAL = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
RENAMED = {"newshape": "shape"}  # NumPy < 2.1's name for reshape's shape
HAS_MINMAX = "min" in inspect.signature(np.clip).parameters
RNG = np.random.default_rng(23)


def _params(f):
    return list(inspect.signature(f).parameters.values())


@pytest.mark.parametrize("name", NAMES)
def test_parameter_names_are_numpys(name):
    ours, theirs = gnp.__dict__[name], getattr(np, name)
    mine = _params(ours)
    if isinstance(theirs, np.ufunc):
        assert getattr(ours, "_numpy_ufunc", 0) == theirs.nin
        try:
            want = [(p.name, p.kind) for p in _params(theirs)]
        except ValueError:  # a NumPy whose ufuncs have no signature: the documented one
            names = ["x"] if theirs.nin == 1 else ["x1", "x2"]
            want = [(n, P.POSITIONAL_ONLY) for n in names] + [("out", P.POSITIONAL_OR_KEYWORD)] + [
                (n, P.KEYWORD_ONLY) for n in ("where", "casting", "order", "dtype", "subok", "signature")]
        assert [(p.name, p.kind) for p in mine] == want
        return
    want = _params(theirs)
    pos = [(RENAMED.get(p.name, p.name), p.kind) for p in want if p.kind in POSITIONAL]
    assert [(p.name, p.kind) for p in mine if p.kind in POSITIONAL] == pos
    kw_theirs = {RENAMED.get(p.name, p.name) for p in want if p.kind == P.KEYWORD_ONLY}
    kw_mine = {p.name for p in mine if p.kind == P.KEYWORD_ONLY}
    assert kw_theirs <= kw_mine
    assert any(p.kind == P.VAR_KEYWORD for p in want) == any(p.kind == P.VAR_KEYWORD for p in mine)


# ------------------------------------------------------------------ calls with NumPy's names

X = 0.2 + 0.6 * RNG.random((2, 3))  # inside every unary domain (log, arcsin, arctanh, ...)
Y = 0.2 + 0.6 * RNG.random((2, 3))


def _ufunc_case(name):
    uf = getattr(np, name)
    x0 = X + 1.0 if name == "arccosh" else X
    opts = {"out": None, "where": True, "casting": "same_kind", "order": "K", "subok": True}
    if "dd->d" in uf.types:  # not the comparisons (their result is a mask)
        opts["dtype"] = np.float64
    if uf.nin == 1:
        return (x0,), opts
    return (x0, Y), opts


def _reshape_kw():
    return "shape" if "shape" in inspect.signature(np.reshape).parameters else "newshape"


# name -> list of (args, kwargs): arrays in args are traced; NumPy's keyword names throughout
CASES = {
    "sum": [((), {"a": X, "axis": 0, "dtype": None, "out": None, "keepdims": True, "initial": 0, "where": True})],
    "mean": [((X,), {"axis": 1, "dtype": np.float64, "out": None, "keepdims": False, "where": True})],
    "max": [((), {"a": X, "axis": 1, "out": None, "keepdims": True})],
    "min": [((X,), {"axis": None, "out": None, "keepdims": False, "where": True})],
    "amax": [((), {"a": X, "axis": 0})],
    "amin": [((X,), {"axis": 1, "keepdims": True})],
    "transpose": [((), {"a": X, "axes": (1, 0)})],
    "reshape": [((X,), {_reshape_kw(): (3, 2), "order": "C"})],
    "broadcast_to": [((), {"array": X[0], "shape": (4, 3), "subok": False})],
    "clip": [((), {"a": X, "a_min": 0.3, "a_max": 0.6}), ((X, 0.35, None), {}), ((X,), {"a_min": None, "a_max": 0.5}),
             ((X, Y - 0.2, Y + 0.1), {"out": None, "where": True, "dtype": np.float64})]
    + ([((X,), {"min": 0.3, "max": 0.65}), ((X,), {"max": 0.45})] if HAS_MINMAX else []),
}


def _cases():
    for name in NAMES:
        if isinstance(getattr(np, name), np.ufunc):
            yield name, *_ufunc_case(name)
        for args, kwargs in CASES.get(name, []):
            yield name, args, kwargs


def _traced(args, kwargs):
    """Positions of the float arrays among args and kwargs, traced as one tuple."""
    slots = [("a", k) for k, v in enumerate(args) if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    slots += [("k", k) for k, v in kwargs.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]

    def fill(values):
        a, kw = list(args), dict(kwargs)
        for (where, k), v in zip(slots, values):
            if where == "a":
                a[k] = v
            else:
                kw[k] = v
        return a, kw

    arrays = [args[k] if w == "a" else kwargs[k] for w, k in slots]
    return arrays, fill


def _reference(name, args, kwargs):
    out = getattr(np, name)(*args, **kwargs)
    return np.where(out, 1.0, -1.0) if np.asarray(out).dtype == bool else np.asarray(out, dtype=float)


@pytest.mark.parametrize("via", ["graphc.numpy", "numpy dispatch"])
@pytest.mark.parametrize("name,args,kwargs", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_numpy_keywords_on_traced_values(name, args, kwargs, via):
    fn = gnp.__dict__[name] if via == "graphc.numpy" else getattr(np, name)
    arrays, fill = _traced(args, kwargs)
    want = _reference(name, args, kwargs)
    C = RNG.normal(size=want.shape)
    mask = np.asarray(getattr(np, name)(*args, **kwargs)).dtype == bool

    def loss(arrs, C):
        a, kw = fill(arrs)
        out = fn(*a, **kw)
        if mask:  # a comparison: a mask, turned into numbers by where
            out = gnp.where(out, 1.0, -1.0)
        return gnp.sum(out * C)

    value, grads = graphc.value_and_grad(loss, target="numpy")(tuple(arrays), C)
    assert value == pytest.approx(float(np.sum(want * C)), rel=1e-12, abs=1e-12)
    # the gradient against central differences of NumPy's own function
    for k, arr in enumerate(arrays):
        fd = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            h = 1e-6
            up, dn = [a.copy() for a in arrays], [a.copy() for a in arrays]
            up[k][i] += h
            dn[k][i] -= h
            fd[i] = (np.sum(_reference(name, *fill(up)) * C) - np.sum(_reference(name, *fill(dn)) * C)) / (2 * h)
        np.testing.assert_allclose(grads[k], fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,args,kwargs", [c for c in _cases() if c[0] in ("clip", "sum", "max", "reshape")],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_numpy_keywords_eagerly(name, args, kwargs):
    got = gnp.__dict__[name](*args, **kwargs)
    np.testing.assert_allclose(got, getattr(np, name)(*args, **kwargs), rtol=1e-14)


def test_issue_23_clip_with_a_min_a_max_through_numpy():
    x = np.array([-1.0, 0.05, 0.5, 1.0, 2.0])
    v, g = graphc.value_and_grad(lambda x: gnp.sum(np.clip(x, a_min=0.1, a_max=1.1) ** 2))(x)
    c = np.clip(x, a_min=0.1, a_max=1.1)
    assert v == pytest.approx(float(np.sum(c**2)), rel=1e-14)
    np.testing.assert_allclose(g, np.where((x >= 0.1) & (x <= 1.1), 2 * c, 0.0), rtol=1e-14)
    v2, g2 = graphc.value_and_grad(lambda x: gnp.sum(gnp.clip(x, a_min=0.1, a_max=1.1) ** 2))(x)
    assert v2 == v and np.array_equal(g2, g)


def test_clip_argument_errors_are_numpys():
    x = np.ones(3)
    with pytest.raises(TypeError, match="a_max"):
        gnp.clip(x, a_min=0.1)
    if HAS_MINMAX:
        with pytest.raises(ValueError):
            gnp.clip(x, 0.1, 0.2, min=0.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        gnp.clip(x, 0.1, 0.2, bogus=1)


def test_array_methods_take_numpys_names():
    x = X

    def f(x):
        return x.sum(axis=0, dtype=np.float64, keepdims=True).sum() + x.mean(axis=1, out=None).sum() + \
            x.max(axis=0, keepdims=False).sum() + x.min(None, None, False)

    want = x.sum(axis=0, keepdims=True).sum() + x.mean(axis=1).sum() + x.max(axis=0).sum() + x.min()
    assert graphc.value_and_grad(f)(x)[0] == pytest.approx(want, rel=1e-14)


# ------------------------------------------------------------------ refused, never ignored

BUF = np.empty((2, 3))
REFUSED = [
    ("exp", (X,), {"out": BUF}, "out="),
    ("add", (X, Y), {"where": X > 0.5}, "where="),
    ("multiply", (X, Y), {"dtype": np.float32}, "dtype=float32"),
    ("sin", (X,), {"casting": "unsafe"}, "casting="),
    ("square", (X,), {"order": "F"}, "order="),
    ("sum", (X,), {"out": np.empty(3), "axis": 0}, "out="),
    ("sum", (X,), {"initial": 1.0}, "initial="),
    ("sum", (X,), {"where": X > 0.5}, "where="),
    ("sum", (X,), {"dtype": np.float32}, "dtype=float32"),
    ("mean", (X,), {"dtype": np.float32}, "dtype=float32"),
    ("mean", (X,), {"where": X > 0.5}, "where="),
    ("max", (X,), {"initial": 2.0}, "initial="),
    ("min", (X,), {"where": X > 0.5, "initial": 9.0}, "initial="),
    ("clip", (X, 0.1, 0.5), {"out": BUF}, "out="),
    ("clip", (X, 0.1, 0.5), {"where": X > 0.5}, "where="),
    ("clip", (X, 0.1, 0.5), {"dtype": np.float32}, "dtype=float32"),
    ("reshape", (X, (3, 2)), {"order": "F"}, "order="),
    ("broadcast_to", (X[0], (4, 3)), {"subok": True}, "subok="),
]


@pytest.mark.parametrize("via", ["graphc.numpy", "numpy dispatch", "eager"])
@pytest.mark.parametrize("name,args,kwargs,param", REFUSED, ids=lambda v: v if isinstance(v, str) else "")
def test_unsupported_parameters_are_refused_by_name(name, args, kwargs, param, via):
    if via == "eager":
        with pytest.raises(UnsupportedError, match=f"graphc.numpy.{name}: {param}.* is not supported"):
            gnp.__dict__[name](*args, **kwargs)
        return
    fn = gnp.__dict__[name] if via == "graphc.numpy" else getattr(np, name)
    traced = [k for k, a in enumerate(args) if isinstance(a, np.ndarray)][:1]

    def loss(x, *rest):
        a = list(args)
        a[traced[0]] = x
        return gnp.sum(fn(*a, **kwargs))

    with pytest.raises(UnsupportedError, match=f"graphc.numpy.{name}: {param}.* is not supported"):
        graphc.value_and_grad(loss)(args[traced[0]])


def test_a_dtype_that_changes_nothing_is_honoured():
    x32 = X.astype(np.float32)
    v, g = graphc.value_and_grad(lambda x: np.sum(np.exp(x, dtype=np.float32), dtype="float32"))(x32)
    assert isinstance(g, np.ndarray) and g.dtype == np.float32
    assert v == pytest.approx(float(np.sum(np.exp(x32))), rel=1e-6)
    with pytest.raises(UnsupportedError, match="dtype=float64"):
        graphc.value_and_grad(lambda x: gnp.sum(x, dtype=np.float64))(x32)


@pytest.mark.parametrize("fn", [gnp.where, np.where])
def test_where_positionally_as_numpy(fn):
    v, (gx, gy) = graphc.value_and_grad(lambda x, y: gnp.sum(fn(x > y, x * y, y) ** 2), argnums=(0, 1))(X, Y)
    m = X > Y
    assert v == pytest.approx(float(np.sum(np.where(m, X * Y, Y) ** 2)), rel=1e-14)
    np.testing.assert_allclose(gx, np.where(m, 2 * X * Y * Y, 0.0), rtol=1e-14)
    np.testing.assert_allclose(gy, np.where(m, 2 * X * Y * X, 2 * Y), rtol=1e-14)


def test_where_one_argument_form_is_refused():
    with pytest.raises(GraphcError, match="where\\(condition, x, y\\)"):
        graphc.value_and_grad(lambda x: gnp.sum(gnp.where(x > 0.5)))(X)
