"""Normalisation, dropout, embedding, attention, activations and losses for graphc.nn (issue 27).

Semantics are PyTorch's torch.nn.functional (each docstring names its reference), so model code
ports; each function records IR on traced values (inside graphc.value_and_grad / jit) and
evaluates eagerly on NumPy arrays, float64 and float32. They are compositions of registry ops,
so their gradients are the autodiff engine's and every target runs them:

- layer_norm / batch_norm: one mean, one centred pass (d = x - mean, var = mean(d * d)), so
  data far from 0 (1e8 + noise) loses nothing to sum(x^2) - n mean^2 cancellation;
- attention: the softmax op once (its gradient reuses its value); masks select with `where`;
- dropout: a mask drawn from an explicit graphc.random key (a host step; one program for
  every key), kept entries scaled by 1 / (1 - rate);
- the losses are the stable forms: softplus (never log(sigmoid)), pick for nll_loss.

Bad arguments raise ShapeError / ArgumentError naming the argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import numpy as gnp
from . import random as _random
from .describe import describe
from .errors import ArgumentError, ShapeError
from .ir import const, fmt_shape, make
from .trace import SymbolicDim, Tracer, TracingError, apply

_REDUCTIONS = ("mean", "sum", "none")


# ------------------------------------------------------------------ helpers


def _traced(*xs: Any) -> Tracer | None:
    for x in xs:
        if isinstance(x, Tracer):
            return x
    return None


def _float_arg(fn: str, name: str, x: Any) -> Any:
    """A float argument: a traced float value as it is, else a float NumPy array (integers as float64)."""
    if isinstance(x, Tracer):
        if x.node.dtype not in ("f64", "f32"):
            raise ArgumentError(f"{fn}: {name} is a traced {x.node.type} value; {name} must be floats")
        return x
    if isinstance(x, (bool, np.bool_)) or x is None:
        raise ArgumentError(f"{fn}: {name} is {describe(x)}; {name} must be a float array")
    try:
        a = np.asarray(x)
    except Exception:  # anything NumPy cannot read is a wrong argument
        raise ArgumentError(f"{fn}: {name} is {describe(x)}; {name} must be a float array") from None
    if a.dtype.kind == "f" and a.dtype in (np.float64, np.float32):
        return a
    if a.dtype.kind in "iu":
        return a.astype(np.float64)
    raise ArgumentError(f"{fn}: {name} is {describe(x)}; {name} must be a float array (float64 or float32)")


def _shape(x: Any) -> tuple:
    return tuple(x.shape) if isinstance(x, Tracer) else np.shape(x)


def _dim_eq(a: Any, b: Any) -> bool:
    """Two sizes equal, where either may be a traced dimension's name (never compared to an int)."""
    if type(a) is SymbolicDim or type(b) is SymbolicDim:
        return type(a) is type(b) and str.__eq__(a, b)
    return a == b


def _shape_eq(a: Sequence, b: Sequence) -> bool:
    return len(a) == len(b) and all(_dim_eq(x, y) for x, y in zip(a, b))


def _broadcasts_to(small: Sequence, big: Sequence) -> bool:
    """Whether NumPy broadcasting takes shape `small` to exactly `big`."""
    if len(small) > len(big):
        return False
    return all((type(s) is not SymbolicDim and s == 1) or _dim_eq(s, b) for s, b in zip(small[::-1], big[::-1]))


def _broadcast(fn: str, names: tuple[str, str], a: Sequence, b: Sequence) -> None:
    """A ShapeError naming both arguments when their shapes do not broadcast together."""
    for s, t in zip(a[::-1], b[::-1]):
        if not ((type(s) is not SymbolicDim and s == 1) or (type(t) is not SymbolicDim and t == 1) or _dim_eq(s, t)):
            raise ShapeError(f"{fn}: {names[0]} of shape {fmt_shape(a)} and {names[1]} of shape {fmt_shape(b)} do "
                             "not broadcast together")


def _axes(fn: str, axis: Any, nd: int, what: str = "axis") -> tuple[int, ...]:
    """axis (an int or a tuple of ints, negative from the end) -> sorted distinct axes."""
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    if not items:
        raise ArgumentError(f"{fn}: {what}=() names no axis")
    out: list[int] = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise ArgumentError(f"{fn}: {what} must be an int or a tuple of ints, got {axis!r}")
        if not -nd <= a < nd:
            raise ShapeError(f"{fn}: {what} {int(a)} is out of range for a value of {nd} dimension(s)")
        a = int(a) % nd
        if a in out:
            raise ShapeError(f"{fn}: {what} {a} is given twice in {axis!r}")
        out.append(a)
    return tuple(sorted(out))


def _positive(fn: str, name: str, v: Any) -> float:
    if isinstance(v, Tracer):
        raise TracingError(f"{fn}: {name} is a traced value; give a Python number")
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not v > 0 \
            or not math.isfinite(float(v)):
        raise ArgumentError(f"{fn}: {name}={v!r}; {name} must be a finite number > 0")
    return float(v)


def _reduction(fn: str, reduction: Any) -> str:
    if reduction not in _REDUCTIONS:
        raise ArgumentError(f"{fn}: reduction={reduction!r}; use 'mean' (the default), 'sum' or 'none'")
    return reduction


def _reduce(loss: Any, reduction: str) -> Any:
    if reduction == "none":
        return loss
    return gnp.mean(loss) if reduction == "mean" else gnp.sum(loss)


def _reshape(x: Any, shape: tuple) -> Any:
    if isinstance(x, Tracer):
        return apply("reshape", x, shape=shape)
    return np.reshape(x, shape)


def _where(mask: Any, a: Any, b: Any) -> Any:
    if _traced(mask, a, b) is not None:
        return apply("where", mask, a, b)
    out = np.where(mask, a, b)
    dt = np.result_type(*[v for v in (a, b) if isinstance(v, np.ndarray)])
    return out.astype(dt, copy=False)


def _params(fn: str, x: Any, axes: tuple[int, ...], weight: Any, bias: Any, what: str) -> tuple[Any, Any, tuple]:
    """weight and bias (None, or of the shape of x's `axes`: `what`) checked, and the shape
    they take to broadcast against x (x's shape with 1 on every other axis)."""
    xs = _shape(x)
    want = tuple(xs[a] for a in axes)
    keep = tuple(d if i in axes else 1 for i, d in enumerate(xs))
    out = []
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            out.append(None)
            continue
        p = _float_arg(fn, name, p)
        if not _shape_eq(_shape(p), want):
            raise ShapeError(f"{fn}: {name} has shape {fmt_shape(_shape(p))}; it must be {what} "
                             f"{fmt_shape(want)} for x of shape {fmt_shape(xs)}")
        out.append(p)
    return out[0], out[1], keep


def _affine(y: Any, weight: Any, bias: Any, keep: tuple, trailing: bool) -> Any:
    if weight is not None:
        y = y * (weight if trailing else _reshape(weight, keep))
    if bias is not None:
        y = y + (bias if trailing else _reshape(bias, keep))
    return y


def _normalise(x: Any, axes: tuple[int, ...], eps: float) -> tuple[Any, Any, Any]:
    """(x - mean) / sqrt(var + eps) over axes, with the mean and the biased variance (keepdims):
    one mean, then one pass over the centred values."""
    mu = gnp.mean(x, axis=axes, keepdims=True)
    d = x - mu
    var = gnp.mean(d * d, axis=axes, keepdims=True)
    return d * (1.0 / gnp.sqrt(var + eps)), mu, var


# ------------------------------------------------------------------ normalisation


def layer_norm(x: Any, axis: Any = -1, eps: float = 1e-5, weight: Any = None, bias: Any = None) -> Any:
    """torch.nn.functional.layer_norm over the axes `axis` (an int or a tuple; PyTorch's
    normalized_shape is the last len(normalized_shape) axes): (x - mean) / sqrt(var + eps)
    * weight + bias, the variance biased (divided by n) as PyTorch's. weight and bias have the
    shape of those axes. Mean-shifted: one mean, one pass over x - mean."""
    x = _float_arg("layer_norm", "x", x)
    nd = len(_shape(x))
    if nd == 0:
        raise ShapeError("layer_norm: x is a scalar; it needs at least one axis to normalise over")
    axes = _axes("layer_norm", axis, nd)
    eps = _positive("layer_norm", "eps", eps)
    weight, bias, keep = _params("layer_norm", x, axes, weight, bias, "the normalised axes' shape")
    y, _, _ = _normalise(x, axes, eps)
    return _affine(y, weight, bias, keep, axes == tuple(range(nd - len(axes), nd)))


def _count(x: Any, axes: tuple[int, ...]) -> Any:
    """The number of entries over axes: an int when the sizes are known, else a traced count."""
    sizes = [_shape(x)[a] for a in axes]
    if all(type(d) is not SymbolicDim for d in sizes):
        return int(np.prod(sizes, dtype=np.int64))
    return apply("count", x, axis=axes)


def batch_norm(x: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5, axis: int = 1,
               running_mean: Any = None, running_var: Any = None, training: bool = True,
               momentum: float = 0.1) -> Any:
    """torch.nn.functional.batch_norm: each channel (axis `axis`, PyTorch's 1) normalised by the
    mean and biased variance over every other axis (training=True, the default), then * weight
    + bias (shape (C,)). Functional running statistics: given running_mean and running_var
    (shape (C,)), training returns (y, new_running_mean, new_running_var) with PyTorch's update,
    (1 - momentum) * running + momentum * batch statistic (the variance unbiased, n / (n - 1));
    training=False normalises by them and returns y. Mean-shifted, as layer_norm."""
    fn = "batch_norm"
    x = _float_arg(fn, "x", x)
    xs = _shape(x)
    if len(xs) < 2:
        raise ShapeError(f"{fn}: x has shape {fmt_shape(xs)}; batch_norm needs (N, C, ...): at least 2 dimensions")
    if isinstance(axis, (tuple, list)):
        raise ArgumentError(f"{fn}: axis is the one channel axis, an int; got {axis!r}")
    (c,) = _axes(fn, axis, len(xs))
    eps = _positive(fn, "eps", eps)
    if not isinstance(training, (bool, np.bool_)):
        raise ArgumentError(f"{fn}: training={training!r}; give True or False")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
        raise ArgumentError(f"{fn}: momentum={momentum!r}; give a number in [0, 1]")
    weight, bias, keep = _params(fn, x, (c,), weight, bias, "(C,) =")
    stats = [None if s is None else _float_arg(fn, name, s)
             for name, s in (("running_mean", running_mean), ("running_var", running_var))]
    if (stats[0] is None) != (stats[1] is None):
        raise ArgumentError(f"{fn}: give running_mean and running_var together (or neither)")
    for name, s in zip(("running_mean", "running_var"), stats):
        if s is not None and not _shape_eq(_shape(s), (xs[c],)):
            raise ShapeError(f"{fn}: {name} has shape {fmt_shape(_shape(s))}; it must be (C,) = "
                             f"{fmt_shape((xs[c],))}, the size of x's channel axis {c}")
    axes = tuple(a for a in range(len(xs)) if a != c)
    if not training:
        if stats[0] is None:
            raise ArgumentError(f"{fn}: training=False normalises by running_mean and running_var: give both")
        mu, var = _reshape(stats[0], keep), _reshape(stats[1], keep)
        return _affine((x - mu) * (1.0 / gnp.sqrt(var + eps)), weight, bias, keep, False)
    n = _count(x, axes)
    if isinstance(n, int) and n <= 1:
        raise ShapeError(f"{fn}: expected more than 1 value per channel when training, got x of shape "
                         f"{fmt_shape(xs)} (PyTorch's rule: a variance of one value is no statistic)")
    y, mu, var = _normalise(x, axes, eps)
    y = _affine(y, weight, bias, keep, False)
    if stats[0] is None:
        return y
    mean_c, var_c = _reshape(mu, (xs[c],)), _reshape(var, (xs[c],))
    new_mean = stats[0] * (1.0 - momentum) + mean_c * momentum
    new_var = stats[1] * (1.0 - momentum) + var_c * (n / (n - 1.0)) * momentum
    return y, new_mean, new_var


# ------------------------------------------------------------------ dropout and embedding


def dropout(x: Any, rate: float, key: Any, training: bool = True) -> Any:
    """torch.nn.functional.dropout (inverted dropout) with an explicit key: each entry kept with
    probability 1 - rate (graphc.random.bernoulli(key, 1 - rate, x.shape)) and scaled by
    1 / (1 - rate), the others 0; the gradient is the same mask times the same scale. rate 0
    or training=False return x; rate 1 returns x * 0 (zeros), as PyTorch. The same key gives
    the same mask on every target and eagerly; a key passed into a traced function is data
    (one compiled program for every key)."""
    fn = "dropout"
    if isinstance(rate, Tracer):
        raise TracingError(f"{fn}: rate is a traced value; give a Python number in [0, 1]")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(rate) <= 1.0:
        raise ArgumentError(f"{fn}: rate={rate!r}; dropout probability has to be between 0 and 1")
    if not isinstance(training, (bool, np.bool_)):
        raise ArgumentError(f"{fn}: training={training!r}; give True or False")
    x = _float_arg(fn, "x", x)
    if not isinstance(key, Tracer):
        _random.check_key(key, fn)  # checked even when no mask is drawn
    rate = float(rate)
    if not training or rate == 0.0:
        return x
    if rate == 1.0:
        return x * 0.0
    keep, scale = 1.0 - rate, 1.0 / (1.0 - rate)
    if isinstance(x, Tracer):
        k = _random.key_node(key, x, fn)
        mask = _random.uniform(k, x.shape) < keep
        return apply("where", mask, x * scale, 0.0)
    if isinstance(key, Tracer):
        raise TracingError(f"{fn}: the key is traced but x is a NumPy array captured by the traced function: pass x "
                           "in as an argument")
    dt = x.dtype.type
    mask = _random.uniform(key, x.shape, x.dtype) < dt(keep)
    return np.where(mask, x * dt(scale), dt(0.0))


def embedding(W: Any, idx: Any) -> Any:  # noqa: N803 - PyTorch's weight matrix
    """torch.nn.functional.embedding(idx, W): the rows W[idx] of the (num_embeddings,
    embedding_dim) matrix W (the weight comes first here, as in graphc.numpy.take); the gradient
    is a scatter-add into W's rows (duplicates accumulate). Indices given as NumPy integers are
    checked (out of range, negative: an error, as PyTorch); traced int64 indices are data and
    clamp into range (JAX's rule: nothing is read out of bounds)."""
    fn = "embedding"
    W = _float_arg(fn, "W", W)  # noqa: N806
    ws = _shape(W)
    if len(ws) != 2:
        raise ShapeError(f"{fn}: W has shape {fmt_shape(ws)}; the weight is a 2-D (num_embeddings, embedding_dim) "
                         "matrix")
    if isinstance(idx, Tracer):
        if idx.node.dtype != "i64":
            raise ArgumentError(f"{fn}: idx is a traced {idx.node.type} value; indices must be integers (int64)")
        return gnp.take(W, idx, axis=0)
    a = np.asarray(idx)
    if a.dtype.kind not in "iu":
        raise ArgumentError(f"{fn}: idx is {describe(idx)}; indices must be integers")
    n = ws[0]
    if a.size and type(n) is not SymbolicDim and (int(a.min()) < 0 or int(a.max()) >= n):
        bad = int(a[(a < 0) | (a >= n)].flat[0])
        raise ShapeError(f"{fn}: idx holds {bad}, out of range for W's {n} rows (0..{n - 1})")
    return gnp.take(W, a.astype(np.int64), axis=0)


# ------------------------------------------------------------------ attention


def causal_mask(L: int, S: int | None = None) -> np.ndarray:  # noqa: N803 - PyTorch's names
    """The boolean causal mask of torch.nn.functional.scaled_dot_product_attention(is_causal=True):
    ones(L, S).tril(0), True where query i may attend to key j <= i."""
    for name, v in (("L", L), ("S", S)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
            raise ArgumentError(f"causal_mask: {name}={v!r}; give a non-negative int")
    S = L if S is None else S  # noqa: N806
    return np.tril(np.ones((int(L), int(S)), dtype=bool))


def _causal(L: Any, S: Any, like: Tracer) -> Tracer:  # noqa: N803
    """The causal mask in the traced program: column index <= row index (elementwise, fused
    into its users); a triangle of ones when a size is only known at run time."""
    dt = like.trace.dtype
    if type(L) is not SymbolicDim and type(S) is not SymbolicDim:
        rows = make("reshape", make("iota", const(0.0, dt), n=int(L)), shape=(int(L), 1))
        cols = make("reshape", make("iota", const(0.0, dt), n=int(S)), shape=(1, int(S)))
        return Tracer(make("le", cols, rows), like.trace)
    ones = make("broadcast_to", const(1.0, dt), shape=(str.__str__(L) if type(L) is SymbolicDim else L,
                                                       str.__str__(S) if type(S) is SymbolicDim else S))
    return Tracer(make("gt", make("triangle", ones, k=0, upper=False), const(0.5, dt)), like.trace)


def _mask_value(m: np.ndarray, like: Tracer) -> Tracer:
    """A NumPy boolean mask as a constant of the traced program (a causal one as its formula)."""
    if m.ndim == 2 and np.array_equal(m, np.tril(np.ones(m.shape, dtype=bool))):
        return _causal(m.shape[0], m.shape[1], like)
    dt = like.trace.dtype
    ints = make("index_array", const(0.0, dt), values=tuple(int(v) for v in m.ravel()), shape=m.shape)
    return Tracer(make("gt", make("to_float", ints, dtype=dt), const(0.5, dt)), like.trace)


def attention(q: Any, k: Any, v: Any, mask: Any = None, is_causal: bool = False, scale: Any = None) -> Any:
    """torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
    is_causal=is_causal, scale=scale): softmax(q @ k^T * scale + mask) @ v for q (..., L, E),
    k (..., S, E), v (..., S, Ev); scale defaults to 1 / sqrt(E). A boolean mask (broadcast to
    (..., L, S)) keeps the True entries (False excluded, integers: nonzero keeps); a float mask is
    added. A row with every entry excluded gives 0, as PyTorch's. The softmax is the fused
    softmax op, computed once; its gradient reuses its value."""
    fn = "attention"
    q, k, v = (_float_arg(fn, n, a) for n, a in (("q", q), ("k", k), ("v", v)))
    qs, ks, vs = _shape(q), _shape(k), _shape(v)
    for name, s in (("q", qs), ("k", ks), ("v", vs)):
        if len(s) < 2:
            raise ShapeError(f"{fn}: {name} has shape {fmt_shape(s)}; it needs at least 2 dimensions (..., L, E)")
    if not _dim_eq(qs[-1], ks[-1]):
        raise ShapeError(f"{fn}: q (..., L, E) has shape {fmt_shape(qs)} and k (..., S, E) {fmt_shape(ks)}: their "
                         "last axes (E) differ")
    if not _dim_eq(ks[-2], vs[-2]):
        raise ShapeError(f"{fn}: k (..., S, E) has shape {fmt_shape(ks)} and v (..., S, Ev) {fmt_shape(vs)}: their "
                         "S axes differ")
    if not isinstance(is_causal, (bool, np.bool_)):
        raise ArgumentError(f"{fn}: is_causal={is_causal!r}; give True or False")
    if is_causal and mask is not None:
        raise ArgumentError(f"{fn}: give mask or is_causal=True, not both (PyTorch's rule)")
    like = _traced(q, k, v, mask)
    if scale is None:
        e = qs[-1]
        scale = 1.0 / math.sqrt(e) if type(e) is not SymbolicDim else 1.0 / gnp.sqrt(apply("count", q, axis=(len(qs) - 1,)))
    elif isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating, Tracer)):
        raise ArgumentError(f"{fn}: scale={scale!r}; give a number (or None: 1 / sqrt(E))")
    scores = gnp.matmul(q, gnp.swapaxes(k, -1, -2)) * scale
    ss = _shape(scores)
    L, S = qs[-2], ks[-2]  # noqa: N806
    keep = None
    if is_causal:
        keep = causal_mask(L, S) if like is None else _causal(L, S, like)
    elif mask is not None:
        ms = _shape(mask)
        if not _broadcasts_to(ms, ss):
            raise ShapeError(f"{fn}: mask has shape {fmt_shape(ms)}; it must broadcast to the attention weights' "
                             f"(..., L, S) = {fmt_shape(ss)}")
        if isinstance(mask, Tracer):
            if mask.node.dtype == "bool":
                keep = mask
            elif mask.node.dtype == "i64":
                keep = mask != 0.0
            else:
                scores = scores + mask
                keep = scores > -math.inf
        else:
            m = np.asarray(mask)
            if m.dtype.kind == "f":
                scores = scores + m
                keep = scores > -np.inf
            elif m.dtype.kind in "biu":
                keep = m.astype(bool) if like is None else _mask_value(m.astype(bool), like)
            else:
                raise ArgumentError(f"{fn}: mask is {describe(mask)}; give a boolean (or float) mask")
    if keep is None:
        return gnp.matmul(apply("softmax", scores, axis=-1), v)
    weights = apply("softmax", _where(keep, scores, -math.inf), axis=-1)
    return gnp.matmul(_where(keep, weights, 0.0), v)


# ------------------------------------------------------------------ activations


def gelu_tanh(x: Any) -> Any:
    """PyTorch's gelu(approximate='tanh'), 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written
    x * sigmoid(2 z) (the same function, with no 1 + tanh cancellation for negative x)."""
    z = x * (x * x * 0.044715 + 1.0) * (2.0 * math.sqrt(2.0 / math.pi))
    return x * apply("sigmoid", z)


def silu(x: Any) -> Any:
    """torch.nn.functional.silu: x * sigmoid(x)."""
    x = _float_arg("silu", "x", x)
    return x * apply("sigmoid", x)


# ------------------------------------------------------------------ losses


def _pair(fn: str, input: Any, target: Any) -> tuple[Any, Any]:  # noqa: A002 - PyTorch's name
    input = _float_arg(fn, "input", input)  # noqa: A001
    target = _float_arg(fn, "target", target)
    _broadcast(fn, ("input", "target"), _shape(input), _shape(target))
    return input, target


def mse_loss(input: Any, target: Any, reduction: str = "mean") -> Any:  # noqa: A002 - PyTorch's name
    """torch.nn.functional.mse_loss: (input - target)^2, reduced: 'mean' (default), 'sum' or 'none'."""
    reduction = _reduction("mse_loss", reduction)
    input, target = _pair("mse_loss", input, target)  # noqa: A001
    d = input - target
    return _reduce(d * d, reduction)


def l1_loss(input: Any, target: Any, reduction: str = "mean") -> Any:  # noqa: A002
    """torch.nn.functional.l1_loss: |input - target|, reduced; |.|'(0) = 0 as PyTorch's."""
    reduction = _reduction("l1_loss", reduction)
    input, target = _pair("l1_loss", input, target)  # noqa: A001
    return _reduce(gnp.abs(input - target), reduction)


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any = None,  # noqa: A002
                                     reduction: str = "mean", pos_weight: Any = None) -> Any:
    """torch.nn.functional.binary_cross_entropy_with_logits:
    -weight (pos_weight y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))), reduced, computed as
    weight (pos_weight y softplus(-x) + (1 - y) softplus(x)): never log(sigmoid), exact for
    logits of any size. pos_weight broadcasts against the last (class) axis, weight against x."""
    fn = "binary_cross_entropy_with_logits"
    reduction = _reduction(fn, reduction)
    x = _float_arg(fn, "input", input)
    y = _float_arg(fn, "target", target)
    if not _shape_eq(_shape(x), _shape(y)):
        raise ShapeError(f"{fn}: target has shape {fmt_shape(_shape(y))}, input {fmt_shape(_shape(x))}; target "
                         "must have input's shape")
    pos = apply("softplus", -x)  # -log sigmoid(x)
    neg = apply("softplus", x)  # -log(1 - sigmoid(x))
    if pos_weight is not None:
        pos_weight = _float_arg(fn, "pos_weight", pos_weight)
        _broadcast(fn, ("pos_weight", "input"), _shape(pos_weight), _shape(x))
        pos = pos * pos_weight
    loss = y * pos + (1.0 - y) * neg
    if weight is not None:
        weight = _float_arg(fn, "weight", weight)
        if not _broadcasts_to(_shape(weight), _shape(x)):
            raise ShapeError(f"{fn}: weight has shape {fmt_shape(_shape(weight))}; it must broadcast to input's "
                             f"{fmt_shape(_shape(x))}")
        loss = loss * weight
    return _reduce(loss, reduction)


def nll_loss(log_probs: Any, target: Any, reduction: str = "mean") -> Any:
    """torch.nn.functional.nll_loss: -log_probs[n, target[n]] (classes on axis 1: input (N, C)
    or (N, C, d1, ...) with target (N, d1, ...), or (C,) with a 0-d target), reduced ('mean'
    over every target, 'sum' or 'none'). Integer targets; the `pick` op does the indexing."""
    fn = "nll_loss"
    reduction = _reduction(fn, reduction)
    x = _float_arg(fn, "log_probs", log_probs)
    xs = _shape(x)
    if len(xs) == 0:
        raise ShapeError(f"{fn}: log_probs is a scalar; it needs a class axis")
    like = _traced(x, target)
    if isinstance(target, Tracer):
        if target.node.dtype != "i64":
            raise ArgumentError(f"{fn}: target is a traced {target.node.type} value; targets are class indices "
                                "(int64)")
    else:
        t = np.asarray(target)
        if t.dtype.kind not in "iu":
            raise ArgumentError(f"{fn}: target is {describe(target)}; targets are integer class indices")
        target = t.astype(np.int64)
        c = xs[1] if len(xs) >= 2 else xs[0]
        if target.size and type(c) is not SymbolicDim and (int(target.min()) < 0 or int(target.max()) >= c):
            bad = int(target[(target < 0) | (target >= c)].flat[0])
            raise ShapeError(f"{fn}: target holds {bad}, out of range for {c} classes (0..{c - 1})")
    ts = _shape(target)
    want = xs[:1] + xs[2:] if len(xs) >= 2 else ()
    if not _shape_eq(ts, want):
        raise ShapeError(f"{fn}: target has shape {fmt_shape(ts)}; for log_probs of shape {fmt_shape(xs)} it must be "
                         f"{fmt_shape(want)} (log_probs without its class axis)")
    if like is not None and not isinstance(target, Tracer):  # NumPy targets: constants of the traced program
        node = make("index_array", const(0.0, like.trace.dtype), values=tuple(int(i) for i in target.ravel()),
                    shape=target.shape)
        target = Tracer(node, like.trace)
    if len(xs) == 1:
        x, target = _reshape(x, (1,) + tuple(xs)), _reshape(target, (1,))
    elif len(xs) > 2:
        x = gnp.moveaxis(x, 1, -1)
    picked = apply("pick", x, target)
    if len(xs) == 1:
        picked = _reshape(picked, ())
    return _reduce(-picked, reduction)


__all__ = ["layer_norm", "batch_norm", "dropout", "embedding", "attention", "causal_mask", "silu", "mse_loss",
           "l1_loss", "binary_cross_entropy_with_logits", "nll_loss"]
