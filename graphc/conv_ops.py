"""Convolution's index ops (issue 27): `unfold` (im2col) and `fold` (col2im), and max pooling over
windows that tile the image (`tile_max`, its VJP `tile_max_grad`), registry entries with every tensor
facet. graphc.nn's convolutions and pools (`nn_conv.py`) lower to them, so a convolution is an
unfold, reshapes and one matmul (a GEMM per batch entry, or one for the batch with merged=True), a
transposed convolution a matmul and a fold, a pool an unfold and graphc's max/mean reduction, or
tile_max.

- `unfold(x, kernel=, stride=, padding=, dilation=, pad_value=)`: x of shape (N, C, H, W) ->
  (N, C*kh*kw, L), torch.nn.functional.unfold: column c*kh*kw + i*kw + j, window l = p*ow + q
  holds xpad[n, c, p*sh + i*dh, q*sw + j*dw], xpad being x padded by (top, bottom, left, right)
  = `padding` entries of `pad_value` (0; max pooling pads with "-inf"). L = oh*ow windows.
- `fold(g, output_size=, kernel=, stride=, padding=, dilation=)`: its transpose (col2im,
  torch.nn.functional.fold): every column entry added into an (N, C, H, W) result at the place
  unfold read it from, overlapping windows summed, entries landing in the padding dropped.
- `merged=True` (both): the batch's images side by side as one image of N*L windows, columns
  (1, C*kh*kw, N*L), column n*L + l image n's window l: a convolution's product is then one GEMM.
- `tile_max(x, kernel=)`: (N, C, H, W) -> (N, C, H // kh, W // kw), the largest entry of each
  kh x kw window of windows that tile the image (rows and columns past the last window read by none;
  max_pool2d with stride = kernel, no padding); the first largest in row order is kept, a NaN taken.
- `tile_max_grad(x, g, kernel=)`: its VJP, g[window] * (hit / ties) at each window's entries, hit 1
  where the entry equals the window's max: ties split evenly, a window holding NaN all NaN, as the
  VJP of graphc's max (amax) over an unfold, bit for bit. Linear in g (its VJP there: each window's
  share of the cotangent, summed), piecewise constant in x (no gradient).

unfold and fold are each other's VJP (both are linear in their argument; the pad value is a constant), so
a convolution's gradients are convolutions in the same IR, and Hessians come out too. Padding
is four ints, so PyTorch's padding="same" with an even kernel (one more at the end) is exact.
`pad_value` is kept as text ("-inf" has no literal in the IR's attribute syntax) and only
when it is not 0. The NumPy forms are vectorised: unfold one sliding_window_view, fold one
strided add per kernel offset (kh*kw adds of whole windows, never a loop over pixels; channels-last
for narrow images, so each add runs over long rows), or, where windows do not overlap (a pool's
gradient), one copy through a writable window view; the SymPy forms are the same adds over object
arrays. These NumPy forms are the numpy target's (the reference); the compiled CPU targets run the
four ops as compiled loops into the plan's buffers (`backends/host_kernels.py`), tested against them
bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from .errors import IRError, ShapeError
from .ir import Node, Type, const, fmt_shape, make
from .registry import OpSpec, register_op

GEOMETRY = ("kernel", "stride", "padding", "dilation")
NARROW = 8  # fold accumulates channels-last below this many windows a row (measured: 4 wide 5x faster, 8 slower)


# ------------------------------------------------------------------ attributes


def _called(x: Node, otherwise: str) -> str:
    return str(x.attr) if x.op == "input" else otherwise


def _ints(op: str, name: str, v: Any, n: int, lo: int) -> tuple[int, ...]:
    """An int (repeated) or a tuple of n ints, each >= lo."""
    items = (v,) * n if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
    if not isinstance(items, (tuple, list)) or len(items) != n or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in items):
        raise IRError(f"{op}: {name}= must be an int or a tuple of {n} ints, got {v!r}")
    if any(i < lo for i in items):
        raise ShapeError(f"{op}: {name}={tuple(int(i) for i in items)} must be {'positive' if lo else 'non-negative'}")
    return tuple(int(i) for i in items)


def _padding(op: str, v: Any) -> tuple[int, int, int, int]:
    """(top, bottom, left, right); an int or (ph, pw) means the same on both sides."""
    if isinstance(v, (tuple, list)) and len(v) == 2:
        ph, pw = _ints(op, "padding", v, 2, 0)
        return ph, ph, pw, pw
    return _ints(op, "padding", v, 4, 0)  # type: ignore[return-value]


def _pad_value(op: str, v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise IRError(f"{op}: pad_value= must be a number (or '-inf'), got {v!r}") from None
    return repr(f)


def _geometry(op: str, attrs: dict[str, Any]) -> dict[str, Any]:
    if "kernel" not in attrs:
        raise IRError(f"{op}: needs kernel=(kh, kw)")
    return {"kernel": _ints(op, "kernel", attrs["kernel"], 2, 1),
            "stride": _ints(op, "stride", attrs.get("stride", 1), 2, 1),
            "padding": _padding(op, attrs.get("padding", 0)),
            "dilation": _ints(op, "dilation", attrs.get("dilation", 1), 2, 1)}


def _only(op: str, attrs: dict[str, Any], allowed: Sequence[str]) -> None:
    bad = [k for k in attrs if k not in allowed]
    if bad:
        raise IRError(f"{op}: unknown attribute {bad[0]}= (accepted: {', '.join(f'{k}=' for k in allowed)})")


def windows(size: tuple[int, int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
            dilation: Sequence[int]) -> tuple[int, int]:
    """The number of window positions (oh, ow) over an (H, W) image, PyTorch's formula
    floor((H + pads - dilation*(k-1) - 1) / stride) + 1 per axis (<= 0: none fits)."""
    out = []
    for ax in range(2):
        padded = size[ax] + padding[2 * ax] + padding[2 * ax + 1]
        out.append((padded - dilation[ax] * (kernel[ax] - 1) - 1) // stride[ax] + 1)
    return out[0], out[1]


def _known(op: str, x: Node, axes: Sequence[int], what: str) -> None:
    for ax in axes:
        if not isinstance(x.shape[ax], int):
            raise ShapeError(f"{op}: the {what} of {_called(x, 'the argument')} (axis {ax} of "
                             f"{fmt_shape(x.shape)}) must be known while tracing")


def _fits(op: str, size: tuple[int, int], geo: dict[str, Any], what: str) -> tuple[int, int]:
    oh, ow = windows(size, **geo)
    if oh < 1 or ow < 1:
        kh, kw = geo["kernel"]
        dh, dw = geo["dilation"]
        pt, pb, pl, pr = geo["padding"]
        raise ShapeError(f"{op}: the kernel ({kh}, {kw}) with dilation ({dh}, {dw}) spans "
                         f"({dh * (kh - 1) + 1}, {dw * (kw - 1) + 1}), bigger than {what} padded to "
                         f"({size[0] + pt + pb}, {size[1] + pl + pr})")
    return oh, ow


# ------------------------------------------------------------------ unfold (im2col)


def _merged(op: str, attrs: dict[str, Any]) -> bool:
    v = attrs.get("merged", False)
    if not isinstance(v, (bool, np.bool_)):
        raise IRError(f"{op}: merged= must be True or False, got {v!r}")
    return bool(v)


def _infer_unfold(op, args, attrs):
    (x,) = args
    _only(op, attrs, GEOMETRY + ("pad_value", "merged"))
    if not x.type.is_float:
        raise IRError(f"unfold: argument is {x.type}; unfold takes floats")
    if x.type.ndim != 4:
        raise ShapeError(f"unfold: {_called(x, 'the input')} of shape {fmt_shape(x.shape)} is not (N, C, H, W) "
                         "(4 dimensions)")
    _known(op, x, (1, 2, 3), "channels and image size")
    geo = _geometry(op, attrs)
    _, c, h, w = x.shape
    oh, ow = _fits(op, (h, w), geo, f"{_called(x, 'the input')} of shape {fmt_shape(x.shape)}")
    pad = _pad_value(op, attrs.get("pad_value", 0.0))
    kh, kw = geo["kernel"]
    if float(pad) != 0.0:  # kept only when it is not 0 (-0.0 pads as 0.0)
        geo["pad_value"] = pad
    if _merged(op, attrs):  # kept only when True
        _known(op, x, (0,), "batch size (merged into the columns)")
        geo["merged"] = True
        return geo, Type(x.dtype, (1, c * kh * kw, x.shape[0] * oh * ow))
    return geo, Type(x.dtype, (x.shape[0], c * kh * kw, oh * ow))


def _unfold(x: np.ndarray, kernel, stride, padding, dilation, fill, merged=False) -> np.ndarray:
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    pt, pb, pl, pr = padding
    if any(padding):
        xp = np.full((n, c, h + pt + pb, w + pl + pr), fill, dtype=x.dtype)
        xp[:, :, pt:pt + h, pl:pl + w] = x
    else:
        xp = x
    oh, ow = windows((h, w), kernel, stride, padding, dilation)
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    if merged:  # (1, C*kh*kw, N*L): the batch's images side by side, as one image of N*L windows
        out = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
        out[...] = win.transpose(1, 4, 5, 0, 2, 3)
        return out.reshape(1, c * kh * kw, n * oh * ow)
    out = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)  # a new array, never a view of x (memory plan)
    out[...] = win.transpose(0, 1, 4, 5, 2, 3)
    return out.reshape(n, c * kh * kw, oh * ow)


def _np_unfold(x, kernel, stride, padding, dilation, pad_value="0.0", merged=False):
    x = np.asarray(x)
    return _unfold(x, kernel, stride, padding, dilation, x.dtype.type(float(pad_value)), merged)


def _sym_unfold(x, kernel, stride, padding, dilation, pad_value="0.0", merged=False):
    import sympy as sp

    v = float(pad_value)
    fill = sp.Integer(0) if v == 0 else sp.S.NegativeInfinity if v == -np.inf else sp.S.Infinity if v == np.inf \
        else sp.Float(v, 30)
    return _unfold(_obj(x), kernel, stride, padding, dilation, fill, merged)


def _layout(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a[k] for k in GEOMETRY} | ({"merged": True} if a.get("merged") else {})


def _g_unfold(n, g):
    x = n.args[0]
    return (make("fold", g, output_size=tuple(x.shape[2:]), **_layout(n.attrs)),)


# ------------------------------------------------------------------ fold (col2im)


def _infer_fold(op, args, attrs):
    (g,) = args
    _only(op, attrs, ("output_size",) + GEOMETRY + ("merged",))
    if not g.type.is_float:
        raise IRError(f"fold: argument is {g.type}; fold takes floats")
    merged = _merged(op, attrs)
    if g.type.ndim != 3 or merged and g.shape[0] != 1:
        raise ShapeError(f"fold: {_called(g, 'the columns')} of shape {fmt_shape(g.shape)} are not " +
                         ("(1, C*kh*kw, N*L) (merged=True)" if merged else "(N, C*kh*kw, L) (3 dimensions)"))
    _known(op, g, (1, 2), "column and window counts")
    if "output_size" not in attrs:
        raise IRError("fold: needs output_size=(H, W)")
    size = _ints(op, "output_size", attrs["output_size"], 2, 1)
    geo = _geometry(op, attrs)
    kh, kw = geo["kernel"]
    d, L = g.shape[1], g.shape[2]
    if d % (kh * kw):
        raise ShapeError(f"fold: {_called(g, 'the columns')} of shape {fmt_shape(g.shape)} have {d} rows, not a "
                         f"multiple of the kernel's {kh}*{kw} = {kh * kw} entries")
    oh, ow = _fits(op, size, geo, f"the output size {size}")
    if merged:
        if L % (oh * ow):
            raise ShapeError(f"fold: {_called(g, 'the columns')} of shape {fmt_shape(g.shape)} hold {L} windows, "
                             f"not a whole batch of an output of size {size}'s {oh}*{ow} = {oh * ow} (merged=True)")
        return {"output_size": size, **geo, "merged": True}, Type(g.dtype, (L // (oh * ow), d // (kh * kw)) + size)
    if oh * ow != L:
        raise ShapeError(f"fold: {_called(g, 'the columns')} of shape {fmt_shape(g.shape)} hold {L} windows, but "
                         f"an output of size {size} with kernel {geo['kernel']}, stride {geo['stride']}, padding "
                         f"{geo['padding']} and dilation {geo['dilation']} has {oh}*{ow} = {oh * ow}")
    return {"output_size": size, **geo}, Type(g.dtype, (g.shape[0], d // (kh * kw)) + size)


def _fold(g: np.ndarray, output_size, kernel, stride, padding, dilation, zero, merged=False) -> np.ndarray:
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    h, w = output_size
    pt, pb, pl, pr = padding
    oh, ow = windows((h, w), kernel, stride, padding, dilation)
    if merged:  # (1, C*kh*kw, N*L): every entry lands where it does unmerged, the columns are only ordered otherwise
        d, n = g.shape[1], g.shape[2] // (oh * ow)
        c = d // (kh * kw)
        g6 = g.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)
    else:
        n, d, _ = g.shape
        c = d // (kh * kw)
        g6 = g.reshape(n, c, kh, kw, oh, ow)
    numeric = g.dtype != object
    if numeric and sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1:
        # windows that do not overlap (a pool's gradient): one copy through a writable window view
        out = np.zeros((n, c, h + pt + pb, w + pl + pr), dtype=g.dtype)
        st = out.strides
        view = as_strided(out, (n, c, oh, ow, kh, kw), (st[0], st[1], sh * st[2], sw * st[3], dh * st[2], dw * st[3]))
        view[...] = g6.transpose(0, 1, 4, 5, 2, 3)
    elif numeric and ow < NARROW:
        # narrow windows: accumulate channels-last, so each strided add runs over N*C entries at a time
        cols = g6.reshape(n * c, kh, kw, oh, ow).transpose(1, 2, 3, 4, 0)
        last = np.zeros((h + pt + pb, w + pl + pr, n * c), dtype=g.dtype)
        for i in range(kh):
            for j in range(kw):
                last[i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[i, j]
        return np.ascontiguousarray(last[pt:pt + h, pl:pl + w].transpose(2, 0, 1)).reshape(n, c, h, w)
    else:
        cols = g6
        out = np.full((n, c, h + pt + pb, w + pl + pr), zero, dtype=g.dtype)
        for i in range(kh):  # one strided add of every window's entry at this kernel offset
            for j in range(kw):
                out[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += \
                    cols[:, :, i, j]
    return np.ascontiguousarray(out[:, :, pt:pt + h, pl:pl + w]) if any(padding) else out


def _np_fold(g, output_size, kernel, stride, padding, dilation, merged=False):
    g = np.asarray(g)
    return _fold(g, output_size, kernel, stride, padding, dilation, g.dtype.type(0), merged)


def _sym_fold(g, output_size, kernel, stride, padding, dilation, merged=False):
    import sympy as sp

    return _fold(_obj(g), output_size, kernel, stride, padding, dilation, sp.Integer(0), merged)


def _g_fold(n, g):
    return (make("unfold", g, **_layout(n.attrs)),)


def _obj(v: Any) -> np.ndarray:
    return v if isinstance(v, np.ndarray) and v.dtype == object else np.asarray(v, dtype=object)


# ------------------------------------------------------------------ tile_max (max pooling over windows that tile the image)


def _infer_tile_kernel(op: str, x: Node, attrs: dict[str, Any]) -> tuple[dict[str, Any], tuple]:
    """kernel=, checked against x (N, C, H, W) of known H, W; the windows' grid (oh, ow)."""
    _only(op, attrs, ("kernel",))
    if not x.type.is_float:
        raise IRError(f"{op}: argument is {x.type}; {op} takes floats")
    if x.type.ndim != 4:
        raise ShapeError(f"{op}: {_called(x, 'the input')} of shape {fmt_shape(x.shape)} is not (N, C, H, W) "
                         "(4 dimensions)")
    _known(op, x, (2, 3), "image size")
    if "kernel" not in attrs:
        raise IRError(f"{op}: needs kernel=(kh, kw)")
    kh, kw = _ints(op, "kernel", attrs["kernel"], 2, 1)
    h, w = x.shape[2], x.shape[3]
    if kh > h or kw > w:
        raise ShapeError(f"{op}: the kernel ({kh}, {kw}) is bigger than {_called(x, 'the input')} of shape "
                         f"{fmt_shape(x.shape)}")
    return {"kernel": (kh, kw)}, (h // kh, w // kw)


def _infer_tile_max(op, args, attrs):
    (x,) = args
    attrs, (oh, ow) = _infer_tile_kernel(op, x, attrs)
    return attrs, Type(x.dtype, x.shape[:2] + (oh, ow))


def _tiles(x: np.ndarray, kernel) -> tuple[np.ndarray, int, int]:
    """The windows of x as a (N, C, oh, kh, ow, kw) array (rows and columns past the last window left out)."""
    (kh, kw), (n, c, h, w) = kernel, x.shape
    oh, ow = h // kh, w // kw
    return x[:, :, :oh * kh, :ow * kw].reshape(n, c, oh, kh, ow, kw), oh, ow


def _np_tile_max(x, kernel):
    # the window's entries in order (row by row), the first largest kept, a NaN taken and kept (as numpy.max):
    # host_kernels.tile_max runs the same comparisons, so the two agree bit for bit
    x = np.asarray(x)
    t, _, _ = _tiles(x, kernel)
    kh, kw = kernel
    out = np.array(t[:, :, :, 0, :, 0])
    with np.errstate(invalid="ignore"):
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    v = t[:, :, :, i, :, j]
                    np.copyto(out, v, where=(v > out) | (v != v))
    return out


def _sym_tile_max(x, kernel):
    import sympy as sp

    t, oh, ow = _tiles(_obj(x), kernel)
    out = np.empty(t.shape[:3] + (ow,), dtype=object)
    for idx in np.ndindex(*out.shape):
        a, b, p, q = idx
        out[idx] = sp.Max(*t[a, b, p, :, q, :].ravel())
    return out


def _g_tile_max(n, g):
    return (make("tile_max_grad", n.args[0], g, kernel=n.attrs["kernel"]),)


def _infer_tile_max_grad(op, args, attrs):
    x, g = args
    attrs, (oh, ow) = _infer_tile_kernel(op, x, attrs)
    want = x.shape[:2] + (oh, ow)
    if g.type.dtype != x.type.dtype or g.shape != want:
        raise ShapeError(f"{op}: {_called(g, 'the gradient')} of {g.type} must be {x.dtype} of shape "
                         f"{fmt_shape(want)}, the windows of {_called(x, 'the input')} of shape {fmt_shape(x.shape)}")
    return attrs, x.type


def _np_tile_max_grad(x, g, kernel):
    # the amax VJP's arithmetic exactly: g * (hit / ties), hit 1 at each window's maxima (0 elsewhere)
    x, g = np.asarray(x), np.asarray(g)
    m = _np_tile_max(x, kernel)
    t, oh, ow = _tiles(x, kernel)
    kh, kw = kernel
    out = np.zeros_like(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = (t == m[:, :, :, None, :, None]).astype(x.dtype)
        ties = hit.sum(axis=(3, 5), keepdims=True, dtype=x.dtype)
        out[:, :, :oh * kh, :ow * kw] = (g[:, :, :, None, :, None] * (hit / ties)).reshape(
            x.shape[:2] + (oh * kh, ow * kw))
    return out


def _sym_tile_max_grad(x, g, kernel):
    import sympy as sp

    x, g = _obj(x), _obj(g)
    t, oh, ow = _tiles(x, kernel)
    kh, kw = kernel
    out = np.full(x.shape, sp.Integer(0), dtype=object)
    for a, b, p, q in np.ndindex(*g.shape):
        win = t[a, b, p, :, q, :]
        m = sp.Max(*win.ravel())
        hit = np.vectorize(lambda v, m=m: sp.Piecewise((1, sp.Eq(v, m)), (0, True)), otypes=[object])(win)
        ties = sum(hit.ravel())
        out[a, b, p * kh:(p + 1) * kh, q * kw:(q + 1) * kw] = g[a, b, p, q] * (hit / ties)
    return out


def _g_tile_max_grad(n, h):
    # linear in g: each window's share of h, summed over the window; piecewise constant in x (no gradient)
    x, g = n.args
    kh, kw = n.attrs["kernel"]
    (oh, ow), (nb, c) = g.shape[2:], x.shape[:2]
    share = make("tile_max_grad", x, make("broadcast_to", const(1.0, x.dtype), shape=g.shape), kernel=(kh, kw))
    part = make("mul", share, h)
    if x.shape[2:] != (oh * kh, ow * kw):
        part = make("slice", part, start=(0, 0, 0, 0), step=(1, 1, 1, 1), shape=(nb, c, oh * kh, ow * kw))
    return None, make("sum", make("reshape", part, shape=(nb, c, oh, kh, ow, kw)), axis=(3, 5))


# ------------------------------------------------------------------ registry


register_op(OpSpec(
    "unfold", 1, _np_unfold, _g_unfold, None, "",
    "im2col: (N, C, H, W) -> (N, C*kh*kw, L) windows (torch.nn.functional.unfold; padding "
    "(top, bottom, left, right) of pad_value; merged=True: (1, C*kh*kw, N*L), the batch merged into the columns)",
    infer=_infer_unfold, symbolic=_sym_unfold, keywords=GEOMETRY + ("pad_value", "merged"), internal=True))
register_op(OpSpec(
    "fold", 1, _np_fold, _g_fold, None, "",
    "col2im, unfold's transpose: (N, C*kh*kw, L) windows summed into (N, C, H, W) (torch.nn.functional.fold)",
    infer=_infer_fold, symbolic=_sym_fold, keywords=("output_size",) + GEOMETRY + ("merged",), internal=True))
register_op(OpSpec(
    "tile_max", 1, _np_tile_max, _g_tile_max, None, "",
    "max pooling over windows that tile the image (stride = kernel, no padding; torch.nn.functional.max_pool2d): "
    "(N, C, H, W) -> (N, C, H // kh, W // kw)", infer=_infer_tile_max, symbolic=_sym_tile_max, keywords=("kernel",),
    internal=True))
register_op(OpSpec(
    "tile_max_grad", 2, _np_tile_max_grad, _g_tile_max_grad, None, "",
    "tile_max's VJP: each window's gradient split evenly among its maxima (torch.nn.functional.max_pool2d's "
    "backward, ties split)", infer=_infer_tile_max_grad, symbolic=_sym_tile_max_grad, keywords=("kernel",),
    internal=True))
