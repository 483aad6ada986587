"""The NumPy reference evaluator and the call interface: IEEE semantics, dtypes,
broadcasting, argument errors."""

import math
import warnings

import numpy as np
import pytest
from conftest import TARGETS

import graphc
from graphc.errors import ArgumentError, GraphcError


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("target", TARGETS)
def test_ieee_semantics_no_exceptions_no_warnings(target):
    fn = graphc.compile("x / y", target=target)
    assert fn(1.0, 0.0)[0] == math.inf
    assert math.isnan(fn(0.0, 0.0)[0])
    assert fn(-1.0, 0.0)[0] == -math.inf
    assert math.isnan(graphc.compile("log(x)", target=target)(-1.0)[0])
    assert graphc.compile("log(x)", target=target)(0.0)[0] == -math.inf
    assert math.isnan(graphc.compile("sqrt(x)", target=target)(-1.0)[0])
    assert graphc.compile("exp(x)", target=target)(1000.0)[0] == math.inf
    assert math.isnan(graphc.compile("x ** y", target=target)(-2.0, 0.5)[0])
    assert math.isnan(graphc.compile("relu(x)", target=target)(math.nan)[0])
    assert math.isnan(graphc.compile("max(x, y)", target=target)(math.nan, 1.0)[0])
    v, g = graphc.compile("x * y", target=target)(math.inf, 0.0)
    assert math.isnan(v) and g["x"] == 0.0 and g["y"] == math.inf


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_arrays_broadcast_and_dtype(target, dtype):
    fn = graphc.compile("x*y + z", target=target, dtype=dtype)
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    y = np.array([1.0, 2.0, 3.0])
    v, g = fn(x, y, 1.5)
    assert v.dtype == np.dtype(dtype) and v.shape == (2, 3)
    np.testing.assert_allclose(v, x * y + 1.5)
    np.testing.assert_allclose(g["x"], np.broadcast_to(y, (2, 3)))
    np.testing.assert_allclose(g["y"], x)
    assert g["z"].shape == (2, 3) and g["z"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(g["z"], np.ones((2, 3)))


@pytest.mark.parametrize("target", TARGETS)
def test_strided_and_noncontiguous_inputs(target):
    fn = graphc.compile("sin(x) * y", target=target)
    base = np.linspace(-3, 3, 40).reshape(5, 8)
    x = base[:, ::2]
    y = base.T[::2, :].T[:, :4]
    v, g = fn(x, y)
    np.testing.assert_allclose(v, np.sin(x) * y, rtol=1e-15)
    np.testing.assert_allclose(g["x"], np.cos(x) * y, rtol=1e-15)


@pytest.mark.parametrize("target", TARGETS)
def test_float32_computes_in_float32(target):
    fn = graphc.compile("x * 0.1 + 1", dtype="float32", target=target)
    v, g = fn(np.array([3.0], dtype=np.float32))
    assert v.dtype == np.float32
    assert v[0] == np.float32(3.0) * np.float32(0.1) + np.float32(1)
    assert g["x"][0] == np.float32(0.1)


def test_scalars_in_floats_out():
    v, g = graphc.compile("x*y")(2, 3)
    assert type(v) is float and type(g["x"]) is float
    v = graphc.compile("x*y").forward(x=2.0, y=4.0)
    assert v == 8.0 and type(v) is float


@pytest.mark.parametrize(
    "args,kwargs,phrase",
    [
        ((1.0,), {}, "missing argument(s): y"),
        ((1.0, 2.0, 3.0), {}, "positional arguments"),
        ((1.0,), {"x": 2.0}, "given twice"),
        ((1.0, 2.0), {"z": 1.0}, "unknown argument 'z'"),
        ((1.0,), {"yy": 1.0}, "did you mean 'y'"),
        (("a", 1.0), {}, "argument 'x' is not real-valued"),
        ((np.array([1 + 2j]), 1.0), {}, "argument 'x' is not real-valued"),
        ((np.ones(3), np.ones(4)), {}, "do not broadcast"),
        (([[1.0], [1.0, 2.0]], 1.0), {}, "argument 'x'"),
    ],
)
@pytest.mark.parametrize("target", TARGETS)
def test_argument_errors(args, kwargs, phrase, target):
    fn = graphc.compile("x*y", target=target)
    with pytest.raises(ArgumentError) as info:
        fn(*args, **kwargs)
    assert phrase in str(info.value)


def test_compile_option_errors():
    with pytest.raises(GraphcError, match="unknown target"):
        graphc.compile("x", target="tpu")
    with pytest.raises(GraphcError, match="dtype"):
        graphc.compile("x", dtype="int8")
    with pytest.raises(ArgumentError, match="not an input"):
        graphc.compile("x*y", wrt=["q"])
    with pytest.raises(ArgumentError, match="twice"):
        graphc.compile("x*y", wrt=["x", "x"])
    with pytest.raises(GraphcError, match="order"):
        graphc.compile("x", order=3)
    with pytest.raises(GraphcError, match="unknown pass"):
        graphc.compile("x", passes=["bogus"])
