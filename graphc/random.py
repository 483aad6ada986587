"""graphc.random: counter-based random numbers with explicit keys, JAX's API (jax.random).

A key is a NumPy array of two uint32 words (`key(seed)`, as jax.random.PRNGKey); `split(key, num)`
gives `num` new keys. The generator is Threefry-2x32 (20 rounds, Salmon et al. 2011, the Random123
generator JAX uses) written in NumPy: entry i of a draw of shape `shape` is the hash of the
64-bit counter i (the flat index) under the key, so a draw is a pure function of (key, shape,
dtype) and gives the same numbers on every target, eagerly and in every call. The bits are JAX's
(its default, `jax_threefry_partitionable=True`): `split` and `uniform` agree with jax.random
bit for bit; `normal` is sqrt(2) erfinv(u) as JAX's, with SciPy's erfinv (equal to rounding).

In a traced function (graphc.value_and_grad / jit) a key passed as an argument is an int64
input, and each draw is one registry op whose input is the key (`random_uniform`,
`random_normal`, `random_split`: host steps in the plan that run the NumPy generator), so one
compiled function serves every key: a new key is new data, never a retrace. A key captured
from the enclosing Python scope (a NumPy array) is a constant of the traced program, as a
closure constant is in JAX.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .describe import describe
from .errors import ArgumentError, GraphcError, IRError, ShapeError
from .ir import DTYPE_NUMPY, Node, Type, canonical_shape, const, fmt_shape, make
from .registry import OpSpec, register_op
from .trace import SymbolicDim, Tracer, TracingError, apply

_MASK32 = 0xFFFFFFFF
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA  # Threefry's key-schedule constant


# ------------------------------------------------------------------ the generator (NumPy)


def threefry2x32(key: Sequence[int], x0: Any, x1: Any) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32 with 20 rounds: the 64-bit blocks (x0[i], x1[i]) (uint32 words) encrypted
    under the 64-bit key (key[0], key[1]). Random123's and jax.random's hash, vectorised."""
    k0, k1 = int(key[0]) & _MASK32, int(key[1]) & _MASK32
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    a = np.array(x0, dtype=np.uint32).reshape(-1)  # 1-D copies: in-place uint32 arithmetic wraps silently
    b = np.array(x1, dtype=np.uint32).reshape(-1)
    a += np.uint32(ks[0])
    b += np.uint32(ks[1])
    t = np.empty_like(b)
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            a += b
            np.left_shift(b, np.uint32(r), out=t)
            b >>= np.uint32(32 - r)
            b |= t
            b ^= a
        a += np.uint32(ks[(i + 1) % 3])
        b += np.uint32((ks[(i + 2) % 3] + i + 1) & _MASK32)
    return a, b


def _words(key: np.ndarray) -> tuple[int, int]:
    return int(key[0]), int(key[1])


def _counters(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices 0..n-1 as 64-bit counters: (high words, low words)."""
    i = np.arange(n, dtype=np.uint64)
    return (i >> np.uint64(32)).astype(np.uint32), i.astype(np.uint32)


def _hash(key: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    n = math.prod(shape)
    b1, b2 = threefry2x32(_words(key), *_counters(n))
    return b1, b2


def bits(key: Any, shape: Sequence[int] = (), width: int = 32) -> np.ndarray:
    """Uniform random bits (jax.random.bits): uint32 (width 32: the two hash words xor-ed) or
    uint64 (width 64: the two words side by side) of the given shape. NumPy only."""
    k = check_key(key, "graphc.random.bits")
    shape = _concrete_shape("bits", shape)
    b1, b2 = _hash(k, shape)
    if width == 32:
        return (b1 ^ b2).reshape(shape)
    if width == 64:
        return ((b1.astype(np.uint64) << np.uint64(32)) | b2.astype(np.uint64)).reshape(shape)
    raise GraphcError(f"graphc.random.bits: width={width!r}; use 32 or 64")


def _uniform01(key: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """[0, 1) with the mantissa filled from the bits (jax.random.uniform's construction):
    1.m - 1, 2**-23 (float32) or 2**-52 (float64) apart."""
    b1, b2 = _hash(key, shape)
    if dtype == np.float32:
        u = ((b1 ^ b2) >> np.uint32(9)) | np.uint32(0x3F800000)
        return (u.view(np.float32) - np.float32(1.0)).reshape(shape)
    w = (b1.astype(np.uint64) << np.uint64(32)) | b2.astype(np.uint64)
    u = (w >> np.uint64(12)) | np.uint64(0x3FF0000000000000)
    return (u.view(np.float64) - 1.0).reshape(shape)


def _normal(key: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """jax.random.normal: sqrt(2) erfinv(u) for u uniform on (-1, 1) (lo: the float after -1)."""
    from scipy.special import erfinv

    lo = np.nextafter(dtype.type(-1.0), dtype.type(0.0))
    u = _uniform01(key, shape, dtype) * (dtype.type(1.0) - lo) + lo
    u = np.maximum(lo, u)
    return (dtype.type(math.sqrt(2.0)) * erfinv(u)).astype(dtype, copy=False)


def _split(key: np.ndarray, num: int) -> np.ndarray:
    """`num` new keys: key i is the hash of the counter i (jax.random.split's fold-like rule)."""
    b1, b2 = threefry2x32(_words(key), *_counters(num))
    return np.stack([b1, b2], axis=-1)


# ------------------------------------------------------------------ argument checks


def _check_key_values(key: np.ndarray, where: str) -> None:
    if key.size and (int(np.min(key)) < 0 or int(np.max(key)) > _MASK32):
        raise ArgumentError(f"{where}: key {key.tolist()} is not a key: its two words must be in 0..2**32-1 "
                            "(make keys with graphc.random.key(seed) and graphc.random.split)")


def check_key(key: Any, where: str) -> np.ndarray:
    """A NumPy key checked -- integers, shape (2,), each word in 0..2**32-1 -- or an error
    naming `where` (the function) and its argument key."""
    if isinstance(key, (list, tuple)):
        key = np.asarray(key)
    if not isinstance(key, np.ndarray) or (key.dtype.kind not in "iu" and key.size):
        raise ArgumentError(f"{where}: key is {describe(key)}; a key is an integer array of shape (2,) made by "
                            "graphc.random.key(seed) or graphc.random.split")
    if key.shape != (2,):
        hint = " (split's result holds several keys: index a row, keys[0])" if key.ndim == 2 else ""
        raise ShapeError(f"{where}: key has shape {fmt_shape(key.shape)}; a key has shape (2,){hint}")
    _check_key_values(key, where)
    return key


def _concrete_shape(fn: str, shape: Any) -> tuple[int, ...]:
    try:
        out = canonical_shape(shape)
    except IRError as exc:
        raise ShapeError(f"graphc.random.{fn}: shape {shape!r} is not a shape: {exc}") from None
    if any(not isinstance(d, int) for d in out):
        raise ShapeError(f"graphc.random.{fn}: shape {shape!r} has a named dimension; give sizes")
    return out  # type: ignore[return-value]


def _traced_shape(fn: str, shape: Any) -> tuple:
    """A shape for a traced draw: ints and the symbolic dimensions of traced values (x.shape)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, Tracer):
        raise TracingError(f"graphc.random.{fn}: shape is a traced value; give sizes (x.shape)")
    try:
        items = tuple(shape)
    except TypeError:
        raise ShapeError(f"graphc.random.{fn}: shape {shape!r} is not a shape (a tuple of sizes)") from None
    out = []
    for d in items:
        if type(d) is SymbolicDim:
            out.append(str.__str__(d))
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            out.append(int(d))
        else:
            raise ShapeError(f"graphc.random.{fn}: shape {shape!r} has {d!r}; sizes are non-negative ints")
    return tuple(out)


def _float_dtype(fn: str, dtype: Any) -> str:
    if dtype is None:
        return "f64"
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt == np.float64:
        return "f64"
    if dt == np.float32:
        return "f32"
    raise ArgumentError(f"graphc.random.{fn}: dtype={dtype!r}; use float64 or float32")


def _traced_key(key: Tracer, fn: str) -> Tracer:
    """A traced key checked while tracing (int64, shape (2,)), with `fn` in the message."""
    _infer_key(fn, key.node)
    return key


def key_node(key: Any, like: Tracer, fn: str) -> Tracer:
    """A key as a value of the traced program of `like`: a traced key checked, a NumPy key as a
    constant of the program."""
    if isinstance(key, Tracer):
        return _traced_key(key, fn)
    k = check_key(key, fn)
    node = make("index_array", const(0.0, like.trace.dtype), values=(int(k[0]), int(k[1])), shape=(2,))
    return Tracer(node, like.trace)


def _traced_dtype(fn: str, dtype: Any, key: Tracer) -> str:
    dt = key.trace.dtype if dtype is None else _float_dtype(fn, dtype)
    if dt != key.trace.dtype:
        raise ArgumentError(f"graphc.random.{fn}: dtype={dtype!r} in a program traced in "
                            f"{DTYPE_NUMPY[key.trace.dtype]}: a traced program computes in one float dtype "
                            "(leave dtype out)")
    return dt


# ------------------------------------------------------------------ the public functions


def key(seed: Any) -> np.ndarray:
    """A key from an integer seed, as jax.random.PRNGKey(seed) (its key data): the seed's 64
    bits as two uint32 words (high, low); a negative seed is taken as int64 (two's complement)."""
    if isinstance(seed, Tracer):
        raise TracingError("graphc.random.key: seed is a traced value; make keys outside the traced function and "
                           "pass them in as arguments")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ArgumentError(f"graphc.random.key: seed is {describe(seed)}; give an int")
    s = int(seed)
    if not -(1 << 63) <= s < (1 << 64):
        raise ArgumentError(f"graphc.random.key: seed {s} does not fit in 64 bits")
    s &= (1 << 64) - 1
    return np.array([s >> 32, s & _MASK32], dtype=np.uint32)


class KeyArray(Tracer):
    """split's result in a traced program: an int64 array of shape (num, 2) that also unpacks
    into its `num` keys (k1, k2 = split(key)), as a NumPy array of keys does."""

    __slots__ = ()

    def __iter__(self):
        return iter([self[i] for i in range(self.node.shape[0])])

    def __len__(self) -> int:
        return self.node.shape[0]


def split(key: Any, num: int = 2) -> Any:
    """`num` new keys, as jax.random.split: an array of shape (num, 2), one key per row, each
    stream independent of the others and of `key`'s own."""
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ArgumentError(f"graphc.random.split: num={num!r}; give a positive int")
    if isinstance(key, Tracer):
        out = apply("random_split", _traced_key(key, "graphc.random.split"), num=int(num))
        return KeyArray(out.node, out.trace)
    return _split(check_key(key, "graphc.random.split"), int(num)).astype(np.uint32)


def uniform(key: Any, shape: Any = (), dtype: Any = None, minval: Any = 0.0, maxval: Any = 1.0) -> Any:
    """Uniform numbers on [minval, maxval), as jax.random.uniform: on [0, 1) the same numbers bit for
    bit; a range is JAX's u * (maxval - minval) + minval (to rounding: XLA may fuse it into one
    multiply-add). dtype float64 (default) or float32; in a traced program the program's."""
    if isinstance(key, Tracer):
        dt = _traced_dtype("uniform", dtype, _traced_key(key, "graphc.random.uniform"))
        u = apply("random_uniform", key, shape=_traced_shape("uniform", shape), dtype=dt)
    else:
        dt = _float_dtype("uniform", dtype)
        u = _uniform01(check_key(key, "graphc.random.uniform"), _concrete_shape("uniform", shape),
                       np.dtype(DTYPE_NUMPY[dt]))
    if isinstance(minval, (int, float)) and isinstance(maxval, (int, float)) and (minval, maxval) == (0.0, 1.0):
        return u
    return _scale(u, minval, maxval)


def _scale(u: Any, minval: Any, maxval: Any) -> Any:
    """u * (maxval - minval) + minval, at least minval (jax.random.uniform's last steps)."""
    from . import numpy as gnp

    if not isinstance(u, Tracer):
        dt = u.dtype
        lo, hi = np.asarray(minval, dtype=dt), np.asarray(maxval, dtype=dt)
        return np.maximum(lo, u * (hi - lo) + lo)
    return gnp.maximum(minval, u * (maxval - minval) + minval)


def normal(key: Any, shape: Any = (), dtype: Any = None) -> Any:
    """Standard normal numbers, as jax.random.normal: sqrt(2) erfinv(u), u uniform on (-1, 1)."""
    if isinstance(key, Tracer):
        dt = _traced_dtype("normal", dtype, _traced_key(key, "graphc.random.normal"))
        return apply("random_normal", key, shape=_traced_shape("normal", shape), dtype=dt)
    dt = _float_dtype("normal", dtype)
    return _normal(check_key(key, "graphc.random.normal"), _concrete_shape("normal", shape), np.dtype(DTYPE_NUMPY[dt]))


def bernoulli(key: Any, p: Any = 0.5, shape: Any = None) -> Any:
    """True with probability p, as jax.random.bernoulli: uniform(key, shape) < p (a mask; in a
    traced program a comparison, for graphc.numpy.where). shape None: p's shape."""
    if isinstance(p, (int, float, np.integer, np.floating)) and not isinstance(p, bool) and not 0.0 <= p <= 1.0:
        raise ArgumentError(f"graphc.random.bernoulli: p={p!r} is not a probability in [0, 1]")
    if shape is None:
        shape = tuple(p.shape) if isinstance(p, Tracer) else np.shape(p)
    if isinstance(key, Tracer):
        return uniform(key, shape) < p
    if isinstance(p, Tracer):
        raise TracingError("graphc.random.bernoulli: p is traced but key is a NumPy array: pass the key in as an "
                           "argument of the traced function")
    dtype = np.float32 if np.asarray(p).dtype == np.float32 else np.float64
    return uniform(key, shape, dtype) < np.asarray(p, dtype=dtype)


# ------------------------------------------------------------------ the registry ops


def _infer_key(op: str, k: Node) -> None:
    if k.dtype != "i64":
        raise ArgumentError(f"{op}: key is {k.type}, not a key: a key is an integer array of shape (2,) "
                            "(graphc.random.key(seed) or a row of graphc.random.split)")
    if tuple(k.shape) != (2,):
        raise ShapeError(f"{op}: key has shape {fmt_shape(k.shape)}; a key has shape (2,)"
                         + (" (split's result holds several keys: index a row, keys[0])" if k.type.ndim == 2 else ""))


def _only(op: str, attrs: dict, allowed: tuple[str, ...]) -> None:
    bad = [k for k in attrs if k not in allowed]
    if bad:
        raise IRError(f"{op}: unknown keyword argument {bad[0]}= (accepted: {', '.join(a + '=' for a in allowed)})")


def _infer_draw(op: str, args: tuple[Node, ...], attrs: dict[str, Any]):
    (k,) = args
    _only(op, attrs, ("shape", "dtype"))
    _infer_key(op, k)
    if "shape" not in attrs:
        raise IRError(f"{op}: needs shape=(...)")
    shape = canonical_shape(attrs["shape"])
    dt = attrs.get("dtype", "f64")
    if dt not in ("f64", "f32"):
        raise IRError(f"{op}: dtype {dt!r} is not f64 or f32")
    return {"shape": shape, "dtype": dt}, Type(dt, shape)


def _infer_split(op: str, args: tuple[Node, ...], attrs: dict[str, Any]):
    (k,) = args
    _only(op, attrs, ("num",))
    _infer_key(op, k)
    num = attrs.get("num", 2)
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise IRError(f"{op}: num must be a positive int, got {num!r}")
    return {"num": int(num)}, Type("i64", (int(num), 2))


def _np_key(k: Any, op: str) -> np.ndarray:
    k = np.asarray(k)
    _check_key_values(k, op)
    return k


def _np_uniform(k, shape, dtype):
    return _uniform01(_np_key(k, "random_uniform"), tuple(shape), np.dtype(DTYPE_NUMPY[dtype]))


def _np_normal(k, shape, dtype):
    return _normal(_np_key(k, "random_normal"), tuple(shape), np.dtype(DTYPE_NUMPY[dtype]))


def _np_split(k, num):
    return _split(_np_key(k, "random_split"), num).astype(np.int64)


def _numbers(values: np.ndarray) -> np.ndarray:
    """Concrete numbers as an object array of exact SymPy values (the SymPy form of a draw:
    the key is data, so the numbers are constants of the expression)."""
    import sympy

    out = np.empty(values.shape, dtype=object)
    for idx in np.ndindex(*values.shape):
        v = values[idx]
        out[idx] = sympy.Integer(int(v)) if values.dtype.kind in "iu" else sympy.Float(float(v), 30)
    return out


def _g_none(n: Node, g: Node):
    return (None,)


for _spec in [
    OpSpec("random_uniform", 1, _np_uniform, _g_none, None, "", "uniform numbers on [0, 1) from a key "
           "(graphc.random.uniform: Threefry-2x32, JAX's bits)", infer=_infer_draw,
           symbolic=lambda k, shape, dtype: _numbers(_np_uniform(np.asarray(k, dtype=np.int64), shape, dtype)),
           keywords=("shape", "dtype"), internal=True),
    OpSpec("random_normal", 1, _np_normal, _g_none, None, "", "standard normal numbers from a key "
           "(graphc.random.normal: sqrt(2) erfinv(u), as JAX)", infer=_infer_draw,
           symbolic=lambda k, shape, dtype: _numbers(_np_normal(np.asarray(k, dtype=np.int64), shape, dtype)),
           keywords=("shape", "dtype"), internal=True),
    OpSpec("random_split", 1, _np_split, _g_none, None, "", "num new keys from a key (graphc.random.split)",
           infer=_infer_split,
           symbolic=lambda k, num: _numbers(_np_split(np.asarray(k, dtype=np.int64), num)),
           keywords=("num",), internal=True),
]:
    register_op(_spec)


__all__ = ["key", "split", "uniform", "normal", "bernoulli", "bits", "threefry2x32", "KeyArray"]
