"""graphc.random (issue 27): keys, split, uniform, normal, bernoulli and dropout's masks.

References: Random123's published Threefry-2x32 known-answer vectors and values recorded from
jax.random (always); jax.random's own keys, splits, bits and uniforms, bit for bit (the slow
tier, skipped without JAX); the same key giving
bit-identical numbers eagerly and on the numpy and llvm targets; statistical bounds on
means, variances and kept fractions; one compiled program serving every key (traces counted).
"""

import math

import numpy as np
import pytest
from conftest import DEFAULT_TARGET

import graphc
import graphc.nn as nn
import graphc.numpy as gnp
from graphc import ArgumentError, GraphcError, ShapeError, TracingError
from graphc import random as gr
from graphc.registry import REGISTRY

# ------------------------------------------------------------------ the generator


def test_threefry_known_answers():
    # Random123's kat_vectors for threefry2x32_20 (key, counter) -> output, as JAX's random_test
    cases = [((0x0, 0x0), (0x0, 0x0), (0x6B200159, 0x99BA4EFE)),
             ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
             ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
    for key, (c0, c1), want in cases:
        got = gr.threefry2x32(key, [c0, c0], [c1, c1])  # two identical blocks: vectorised rows agree
        assert [int(w) for w in (got[0][0], got[1][0])] == list(want)
        assert got[0][1] == got[0][0] and got[1][1] == got[1][0]


def test_key_words():
    np.testing.assert_array_equal(gr.key(0), [0, 0])
    np.testing.assert_array_equal(gr.key(42), [0, 42])
    np.testing.assert_array_equal(gr.key(2**40 + 5), [256, 5])
    np.testing.assert_array_equal(gr.key(-1), [2**32 - 1, 2**32 - 1])  # int64 two's complement
    assert gr.key(7).dtype == np.uint32 and gr.key(7).shape == (2,)
    np.testing.assert_array_equal(gr.key(np.int64(9)), gr.key(9))


def test_jax_known_answers():
    # recorded from jax 0.10 (jax.random with its default threefry_partitionable=True) for
    # PRNGKey(42): split(key, 2), bits(key, (4,)), uniform(key, (4,)) (float32, as uint32
    # words) and uniform(key, (3,), float64) (as uint64 words); the live comparison is below
    k = gr.key(42)
    np.testing.assert_array_equal(gr.split(k, 2), [[1832780943, 270669613], [64467757, 2916123636]])
    np.testing.assert_array_equal(gr.bits(k, (4,)), [0x7D1C13A2, 0xAE0730D9, 0x9DC3F9F9, 0x8F9EC1D7])
    np.testing.assert_array_equal(gr.uniform(k, (4,), np.float32).view(np.uint32),
                                  [1056585764, 1059981104, 1058915320, 1057988288])
    np.testing.assert_array_equal(gr.uniform(k, (3,)).view(np.uint64),
                                  np.array([0x3FDB4F8123C40884, 0x3F8EBD996D6E8400, 0x3FE25F641D41E71A], np.uint64))


@pytest.mark.slow  # JAX's import and a compile per draw: seconds
def test_against_jax_bit_for_bit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    for seed in (0, 2**31 + 3):
        k, jk = gr.key(seed), jax.random.PRNGKey(seed)
        np.testing.assert_array_equal(k, np.asarray(jk))
        np.testing.assert_array_equal(gr.split(k, 3), np.asarray(jax.random.split(jk, 3)))
        np.testing.assert_array_equal(gr.bits(k, (3, 5)), np.asarray(jax.random.bits(jk, (3, 5))))
        np.testing.assert_array_equal(gr.uniform(k, (4, 7), np.float32), np.asarray(jax.random.uniform(jk, (4, 7))))
        # a range: u * (maxval - minval) + minval, which XLA may fuse into one multiply-add (one rounding)
        np.testing.assert_allclose(gr.uniform(k, (5,), np.float32, -2.0, 3.0),
                                   np.asarray(jax.random.uniform(jk, (5,), minval=-2.0, maxval=3.0)), rtol=0,
                                   atol=5 * 2.0**-23)
        np.testing.assert_array_equal(gr.bernoulli(k, np.float32(0.3), (9,)),
                                      np.asarray(jax.random.bernoulli(jk, 0.3, (9,))))
        # normal: the same uniforms through erfinv (JAX's polynomial vs SciPy's: equal to rounding)
        np.testing.assert_allclose(gr.normal(k, (200,), np.float32), np.asarray(jax.random.normal(jk, (200,))),
                                   rtol=2e-5, atol=2e-6)
    with jax.enable_x64(True):
        jk = jax.random.PRNGKey(7)
        np.testing.assert_array_equal(gr.uniform(gr.key(7), (3, 9)),
                                      np.asarray(jax.random.uniform(jk, (3, 9), dtype=jnp.float64)))
        np.testing.assert_array_equal(gr.bits(gr.key(7), (4,), 64),
                                      np.asarray(jax.random.bits(jk, (4,), dtype=jnp.uint64)))
        np.testing.assert_allclose(gr.normal(gr.key(7), (300,)),
                                   np.asarray(jax.random.normal(jk, (300,), dtype=jnp.float64)), rtol=1e-12,
                                   atol=1e-13)


def test_uniform_is_the_mantissa_of_the_bits():
    # hand-written: the top 23 (52) bits of the hash as the mantissa of a number in [1, 2), minus 1
    k = gr.key(3)
    b32 = gr.bits(k, (50,))
    np.testing.assert_array_equal(gr.uniform(k, (50,), np.float32), (b32 >> 9).astype(np.float64) / 2**23)
    b64 = gr.bits(k, (50,), 64)
    np.testing.assert_array_equal(gr.uniform(k, (50,)), (b64 >> np.uint64(12)).astype(np.float64) / 2**52)
    u = gr.uniform(k, (10, 10))
    np.testing.assert_array_equal(u.ravel(), gr.uniform(k, (100,)))  # entry i is counter i: shape-free


def test_split_gives_different_streams():
    k = gr.key(0)
    keys = gr.split(k, 4)
    assert keys.shape == (4, 2) and keys.dtype == np.uint32
    np.testing.assert_array_equal(gr.split(k, 4), keys)  # deterministic
    np.testing.assert_array_equal(gr.split(k, 2), keys[:2])  # key i is counter i
    streams = [gr.uniform(kk, (1000,)) for kk in (k, *keys)]
    for i in range(len(streams)):
        for j in range(i):
            assert not np.any(streams[i] == streams[j])
            assert abs(np.corrcoef(streams[i], streams[j])[0, 1]) < 5 / math.sqrt(1000)
    a, b = gr.split(k)  # unpacks, as JAX's
    np.testing.assert_array_equal(a, keys[0])


def test_statistics_within_bounds():
    n = 200_000
    for dtype in (np.float64, np.float32):
        u = gr.uniform(gr.key(1), (n,), dtype)
        assert u.dtype == dtype and u.min() >= 0.0 and u.max() < 1.0
        # mean 1/2, sd sqrt(1/12 / n); variance 1/12, sd of the estimate sqrt(1/180 / n): 5 sigma
        assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
        assert abs(u.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
        counts = np.histogram(u, bins=20, range=(0, 1))[0]
        chi2 = np.sum((counts - n / 20) ** 2 / (n / 20))
        assert chi2 < 50  # 19 degrees of freedom: P(chi2 > 50) < 2e-4
        z = gr.normal(gr.key(2), (n,), dtype)
        assert abs(z.mean()) < 5 / math.sqrt(n) and abs(z.var() - 1) < 5 * math.sqrt(2 / n)
        assert abs(np.mean(z > 1.0) - 0.15865525) < 5 * math.sqrt(0.16 * 0.84 / n)
    m = gr.bernoulli(gr.key(3), 0.3, (n,))
    assert m.dtype == bool and abs(m.mean() - 0.3) < 5 * math.sqrt(0.21 / n)


def test_dropout_keeps_the_expected_fraction():
    n = 100_000
    x = np.ones(n)
    for rate in (0.1, 0.5, 0.9):
        y = nn.dropout(x, rate, gr.key(int(rate * 10)))
        kept = np.mean(y != 0)
        assert abs(kept - (1 - rate)) < 5 * math.sqrt(rate * (1 - rate) / n)
        np.testing.assert_allclose(y[y != 0], 1 / (1 - rate))
        assert abs(y.mean() - 1.0) < 5 * math.sqrt(rate / (1 - rate) / n)  # inverted dropout keeps the mean


# ------------------------------------------------------------------ traced draws


def _draws(x, key):
    """Every kind of draw in one program: split keys, uniform, normal, a bernoulli mask."""
    k1, k2, k3 = gr.split(key, 3)
    u = gr.uniform(k1, x.shape)
    z = gr.normal(k2, (3,))
    m = gr.bernoulli(k3, 0.25, x.shape)
    return u, z, gnp.where(m, 1.0, 0.0) * x


def _eager_draws(x, key):
    k1, k2, k3 = gr.split(key, 3)
    dt = x.dtype
    return (gr.uniform(k1, x.shape, dt), gr.normal(k2, (3,), dt),
            np.where(gr.bernoulli(k3, dt.type(0.25), x.shape), 1.0, 0.0).astype(dt) * x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target", ["numpy", DEFAULT_TARGET])
def test_the_same_key_gives_the_same_bits_everywhere(target, dtype):
    x = np.arange(1.0, 7.0, dtype=dtype).reshape(2, 3)
    f = graphc.jit(_draws, target=target)
    for seed in (0, 12345):
        got = f(x, gr.key(seed))
        want = _eager_draws(x, gr.key(seed))
        for g, w in zip(got, want):
            assert g.dtype == dtype
            np.testing.assert_array_equal(g, w)


def test_one_program_serves_every_key():
    traces = [0]

    def loss(x, key):
        traces[0] += 1
        return gnp.sum(nn.dropout(x, 0.5, key) * x)

    for target in ("numpy", DEFAULT_TARGET):
        traces[0] = 0
        f = graphc.value_and_grad(loss, target=target)
        x = np.arange(1.0, 13.0).reshape(3, 4)
        seen = []
        for seed in (1, 2, 3):
            v, g = f(x, gr.key(seed))
            keep = gr.uniform(gr.key(seed), x.shape) < 0.5
            np.testing.assert_array_equal(g, np.where(keep, 4 * x, 0.0))
            seen.append(g)
        v, g = f(x, gr.split(gr.key(1))[1])  # any key, a split one too
        assert traces[0] == 1 and f.cache_info()["misses"] == 1, f.cache_info()
        assert not np.array_equal(seen[0], seen[1])


def test_split_and_draws_inside_the_trace_agree_with_eager_ones():
    # split in the program (an int64 (num, 2) value that unpacks, as JAX's), keys indexed
    def loss(x, key):
        a, b = gr.split(key)
        keys = gr.split(b, 3)
        return gnp.sum(x * gr.uniform(a, x.shape)) + gnp.sum(x * gr.normal(keys[2], x.shape))

    x = np.linspace(-1, 1, 6)
    k = gr.key(99)
    v, g = graphc.value_and_grad(loss, target="numpy")(x, k)
    a, b = gr.split(k)
    want = gr.uniform(a, (6,)) + gr.normal(gr.split(b, 3)[2], (6,))
    np.testing.assert_array_equal(g, want)
    assert v == pytest.approx(np.sum(x * want), rel=1e-14)


def test_draw_shapes_follow_symbolic_batch_sizes():
    f = graphc.jit(lambda x, key: gr.uniform(key, x.shape) * x, target="numpy")
    for n in (2, 5, 9):
        x = np.ones((n, 3))
        np.testing.assert_array_equal(f(x, gr.key(4)), gr.uniform(gr.key(4), (n, 3)))
    assert f.cache_info()["signatures"] <= 2


def test_registry_ops_have_every_tensor_facet():
    for name in ("random_uniform", "random_normal", "random_split"):
        spec = REGISTRY[name]
        assert spec.internal and spec.code == "" and callable(spec.infer) and callable(spec.symbolic), name
    # the SymPy form is the numbers themselves (the key is data)
    import sympy

    vals = REGISTRY["random_uniform"].symbolic(np.array([0, 5]), shape=(2,), dtype="f64")
    assert all(isinstance(v, sympy.Float) for v in vals)
    np.testing.assert_array_equal(np.array(vals, dtype=float), gr.uniform(np.array([0, 5]), (2,)))


# ------------------------------------------------------------------ bad input


def _raises(exc, fn, *words):
    with pytest.raises(exc) as info:
        fn()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_bad_keys_and_arguments_are_named():
    _raises(ArgumentError, lambda: gr.key(1.5), "seed")
    _raises(ArgumentError, lambda: gr.key(True), "seed")
    _raises(ArgumentError, lambda: gr.key(2**64), "seed")
    k = gr.key(0)
    _raises(ShapeError, lambda: gr.uniform(gr.split(k), (3,)), "key", "keys[0]")
    _raises(ShapeError, lambda: gr.normal(np.array([1, 2, 3]), (3,)), "key", "(2,)")
    _raises(GraphcError, lambda: gr.uniform(np.array([0.5, 1.0]), (3,)), "key")
    _raises(GraphcError, lambda: gr.uniform("key", (3,)), "key")
    _raises(GraphcError, lambda: gr.split(np.array([-1, 3]), 2), "key")
    _raises(GraphcError, lambda: gr.uniform(np.array([0, 2**32]), (2,)), "key")
    _raises(GraphcError, lambda: gr.split(k, 0), "num")
    _raises(GraphcError, lambda: gr.uniform(k, (3,), np.int64), "dtype")
    _raises(ShapeError, lambda: gr.uniform(k, (3, -1)), "shape")
    _raises(GraphcError, lambda: gr.bernoulli(k, 1.5, (3,)), "p")
    _raises(TracingError, lambda: graphc.jit(lambda x: gr.key(x))(np.ones(2)), "seed")
    # traced keys: the type while tracing, the words when the program runs
    f = graphc.value_and_grad(lambda x, key: gnp.sum(x * gr.uniform(key, x.shape)), target="numpy")
    _raises(GraphcError, lambda: f(np.ones(3), np.array([1.0, 2.0])), "key", "integer")
    _raises(ShapeError, lambda: f(np.ones(3), np.array([1, 2, 3])), "key", "(2,)")
    _raises(GraphcError, lambda: f(np.ones(3), np.array([-1, 2])), "key")
    g = graphc.jit(lambda x, key: gr.uniform(key, x.shape, np.float64) * x)
    _raises(GraphcError, lambda: g(np.ones(3, np.float32), k), "dtype")
    h = graphc.jit(lambda x, keys: gr.uniform(keys, x.shape) * x, target="numpy")
    _raises(ShapeError, lambda: h(np.ones(3), gr.split(k)), "key", "keys[0]")
