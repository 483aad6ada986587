"""The llvm kernels' METH_FASTCALL entries (llvm_python.py): compiled C functions
that read Python floats and NumPy arrays straight from their objects. They must
agree with the numpy target, refuse (return 1, touching nothing) every argument
they cannot read exactly -- the API then takes its general path, so results stay
right -- and leak no references."""

import sys

import numpy as np
import pytest

import graphc

pytestmark = pytest.mark.usefixtures("one_thread")  # the C entries take calls below the threading threshold

NEURON = "sigmoid(w0*x0 + w1*x1 + w2)"


@pytest.fixture(scope="module")
def neuron():
    fn = graphc.compile(NEURON, target="llvm")
    if fn._py_scalar is None:
        pytest.skip("this interpreter's object layout is not the one the entries read")
    return fn, graphc.compile(NEURON, target="numpy")


def _same(got, want):
    v, g = got
    rv, rg = want
    np.testing.assert_allclose(v, rv, rtol=1e-14)
    assert list(g) == list(rg)
    for k in rg:
        np.testing.assert_allclose(g[k], rg[k], rtol=1e-14)


def test_entries_agree_with_the_numpy_target(neuron):
    fn, ref = neuron
    xs = (0.3, -1.2, 0.7, 2.0, 0.1)
    assert type(fn._py_scalar(*xs)) is tuple  # taken
    _same(fn(*xs), ref(*xs))
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 3, 4, 5, 7, 8, 1000, 5000):  # around the vector width; 5000 releases the GIL
        args = [rng.normal(size=n) for _ in range(5)]
        res = fn._py_arrays(*args)
        assert type(res) is tuple and res[0].shape == (n,) and res[0].flags.owndata
        _same(res, ref(*args))
        _same(fn(*args), ref(*args))
    big = [rng.normal(size=20_000) for _ in range(5)]  # past ALLOC_MAX: the caller's block, rows filled here
    assert fn._py_arrays(*big) == 1
    outs = np.empty((6, 20_000))
    assert fn.kernel._pyarrays(*big, *outs) == 0
    _same(fn(*big), ref(*big))


def test_arguments_the_entries_refuse_still_get_the_right_answer(neuron):
    fn, ref = neuron
    xs = [0.3, -1.2, 0.7, 2.0, 0.1]
    for odd in (2, np.float64(2.0), np.float32(2.0), True):  # not an exact float: refused, general path
        args = xs[:1] + [odd] + xs[2:]
        assert fn._py_scalar(*args) == 1
        _same(fn(*args), ref(*args))
    assert fn._py_scalar(*xs[:4]) == 1  # too few
    rng = np.random.default_rng(1)
    good = [rng.normal(size=9) for _ in range(5)]

    class Sub(np.ndarray):
        pass

    swapped = good[4].astype(">f8")
    refused = {
        "float32": good[4].astype(np.float32),
        "strided": rng.normal(size=18)[::2],
        "reversed": good[4][::-1],
        "2-D": good[4].reshape(1, 9),
        "0-d": np.asarray(1.5),
        "longer": rng.normal(size=10),
        "subclass": good[4].view(Sub),
        "big-endian": swapped,
        "unaligned": np.ndarray((9,), np.float64, np.zeros(73, np.uint8), offset=1),
    }
    for name, a in refused.items():
        args = good[:4] + [a]
        assert fn._py_arrays(*args) == 1, name
        if name == "longer":
            with pytest.raises(graphc.GraphcError):
                fn(*args)
            continue
        _same(fn(*args), ref(*args))
    assert fn._py_arrays(*good[:3]) == 1 and fn._py_arrays(*good, *good) == 1  # argument counts
    big = [rng.normal(size=(1 << 17)) for _ in range(5)]  # the threaded path's
    assert fn._py_arrays(*big) == 1
    _same(fn(*big), ref(*big))


def test_given_outputs_are_written_in_place_or_refused(neuron):
    fn, ref = neuron
    k = fn.kernel
    rng = np.random.default_rng(2)
    args = [rng.normal(size=11) for _ in range(5)]
    outs = [np.full(11, np.nan) for _ in range(6)]
    assert k._pyarrays(*args, *outs) == 0
    rv, rg = ref(*args)
    np.testing.assert_allclose(outs[0], rv, rtol=1e-14)
    np.testing.assert_allclose(outs[1], rg["w0"], rtol=1e-14)
    readonly = np.empty(11)
    readonly.flags.writeable = False
    for bad in (np.empty(22)[::2], readonly, np.empty(11, np.float32), np.empty(12)):
        assert k._pyarrays(*args, *outs[:5], bad) == 1
    assert k._pyarrays(*args, *outs[:5]) == 1  # neither all the outputs nor none
    v, g = fn(*args, out=outs)  # the API's out= path through it
    assert v is outs[0] and g["w2"] is outs[5]


def test_no_references_leak(neuron):
    fn, _ = neuron
    args = [np.linspace(-1, 1, 16) for _ in range(5)]
    v, g = fn(*args)
    s, gs = fn(0.5, 0.25, 1.0, 2.0, 3.0)  # alive at both counts: their dicts hold the names
    before = [sys.getrefcount(a) for a in args]
    names = fn._wrt
    name_refs = [sys.getrefcount(n) for n in names]
    for _ in range(2000):
        v, g = fn(*args)
        s, gs = fn(0.5, 0.25, 1.0, 2.0, 3.0)
    assert [sys.getrefcount(a) for a in args] == before
    assert [sys.getrefcount(n) for n in names] == name_refs
    assert sys.getrefcount(v) == 2 and all(sys.getrefcount(x) == 3 for x in g.values())  # the dict's, and ours
    assert sys.getrefcount(gs) == 2 and sys.getrefcount(s) == 2
    assert all(sys.getrefcount(x) == 3 for x in gs.values())


def test_float32_kernels_round_like_the_numpy_target():
    fn = graphc.compile(NEURON, target="llvm", dtype="float32")
    ref = graphc.compile(NEURON, target="numpy", dtype="float32")
    args = [np.linspace(-3, 3, 13, dtype=np.float32) + k for k in range(5)]
    v, g = fn(*args)
    rv, rg = ref(*args)
    assert v.dtype == np.float32 and g["x1"].dtype == np.float32
    np.testing.assert_allclose(v, rv, rtol=2e-6)
    np.testing.assert_allclose(g["x1"], rg["x1"], rtol=2e-6, atol=1e-7)
    assert fn._py_arrays(*args[:4], args[4].astype(np.float64)) == 1
    s, gs = fn(0.5, 0.25, 1.0, 2.0, 3.0)
    rs, rgs = ref(0.5, 0.25, 1.0, 2.0, 3.0)
    assert s == pytest.approx(rs, rel=2e-6)
