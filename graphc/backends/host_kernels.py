"""Compiled forms of host steps whose NumPy forms are slow loops (issue 26's array rows).

- scatter-add (a gather's gradient, `x.at[idx].add(v)`): `numpy.add.at` runs a ufunc per
  element, about 8x a plain loop over rows of the update;
- cumsum along an axis: NumPy's accumulate strides along each line, a plain loop over
  contiguous lines is about 3x faster;
- gather (x[idx]): NumPy's fancy indexing is fast, but its result is a new array each
  call, whose pages fault in one by one (2-4 ms for 8 MB on this VM): here it is taken
  into a buffer the memory plan keeps.

Each has exactly its NumPy form's arguments and results, bit for bit (the same
additions in the same order). The compiled CPU targets' plans run them in place of
the NumPy forms (`FAST`, read by `schedule.plan.lower`, each writing into the
buffer the plan gives it); the numpy target keeps the
NumPy forms as the reference, and tests/test_host_kernels.py checks one against the
other. Numba compiles each on first use and caches it on disk.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from ..registry import REGISTRY


@functools.cache
def _kernels() -> Any:
    """The compiled loops, made on first use (importing Numba costs a few tenths of a second)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def add_rows(out, rows, v):  # pragma: no cover (compiled)
        m = out.shape[1]
        for i in range(rows.shape[0]):
            r = rows[i]
            for j in range(m):
                out[r, j] += v[i, j]

    @njit(cache=True, nogil=True)
    def cumsum_lines(x, out, reverse):  # pragma: no cover (compiled)
        # x, out: (before, n, after); each line along the middle axis summed in its order
        b, n, a = x.shape
        for i in range(b):
            for s in range(n):
                j = n - 1 - s if reverse else s
                if s == 0:
                    for k in range(a):
                        out[i, j, k] = x[i, j, k]
                else:
                    p = j + 1 if reverse else j - 1
                    for k in range(a):
                        out[i, j, k] = out[i, p, k] + x[i, j, k]

    @njit(cache=True, nogil=True)
    def cumsum_rows(x, out, reverse):  # pragma: no cover (compiled)
        # x, out: (rows, n) C-contiguous, each row summed along its length: a running sum in a register
        n = x.shape[1]
        for i in range(x.shape[0]):
            first = n - 1 if reverse else 0
            acc = x[i, first]  # in x's dtype (float32 stays float32)
            out[i, first] = acc
            if reverse:
                for j in range(n - 2, -1, -1):
                    acc += x[i, j]
                    out[i, j] = acc
            else:
                for j in range(1, n):
                    acc += x[i, j]
                    out[i, j] = acc

    return types.SimpleNamespace(add_rows=add_rows, cumsum_lines=cumsum_lines, cumsum_rows=cumsum_rows)


def _rows(idx: np.ndarray, sizes: tuple, clip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each index row of idx (last axis: one column per indexed axis) as one flat row number
    of the indexed axes (normalised as the NumPy forms do), and the mask of those in range."""
    from ..shape_ops import normalize_indices

    k = idx.shape[-1]
    j, inside = normalize_indices(idx, sizes, clip)
    j = j.reshape(-1, k)
    rows = np.ravel_multi_index(tuple(j[:, c] for c in range(k)), sizes) if k > 1 else j[:, 0]
    return np.ascontiguousarray(rows, dtype=np.int64), inside.reshape(-1)


def gather(x: Any, idx: Any, clip: bool, out: np.ndarray | None = None) -> np.ndarray:
    """The `gather` op as one numpy.take of rows, into `out` (a pooled buffer the plan
    reuses every call, where a fresh array would fault its pages in each time)."""
    x, idx = np.asarray(x), np.asarray(idx)
    k = idx.shape[-1]
    shape = idx.shape[:-1] + x.shape[k:]
    if out is None or x.dtype.kind != "f" or 0 in x.shape[:k] or 0 in idx.shape[:-1] or out.shape != shape:
        return REGISTRY["gather"].numpy(x, idx, clip=clip)
    rows, inside = _rows(idx, x.shape[:k], clip)
    flat = out.reshape((rows.shape[0],) + x.shape[k:])
    np.take(x.reshape((-1,) + x.shape[k:]), rows, axis=0, out=flat, mode="clip")
    if not inside.all():
        flat[~inside] = 0
    return out


def scatter(x: Any, v: Any, idx: Any, update: str, clip: bool, out: np.ndarray | None = None) -> np.ndarray:
    """The `scatter` op: update="add" as a compiled loop over the update's rows (in the
    order numpy.add.at applies them), into `out` where given; the other updates are the
    NumPy form."""
    x, v, idx = np.asarray(x), np.asarray(v), np.asarray(idx)
    if update != "add" or x.dtype.kind != "f" or v.dtype != x.dtype:
        return REGISTRY["scatter"].numpy(x, v, idx, update=update, clip=clip)
    k = idx.shape[-1]
    if out is None or out.shape != x.shape or not out.flags.c_contiguous:
        out = np.empty(x.shape, dtype=x.dtype)
    np.copyto(out, x)
    if out.size == 0 or 0 in idx.shape[:-1]:
        return out
    rows, keep = _rows(idx, x.shape[:k], clip)
    width = int(np.prod(x.shape[k:], dtype=np.int64))
    vals = np.ascontiguousarray(v).reshape(-1, width)
    if not keep.all():
        rows, vals = rows[keep], vals[keep]
    _kernels().add_rows(out.reshape(-1, width), rows, vals)
    return out


def cumsum(x: Any, axis: int, reverse: bool, out: np.ndarray | None = None) -> np.ndarray:
    """The `cumsum` op as a compiled loop over lines (numpy.cumsum's order of additions),
    into `out` where given."""
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.size == 0:
        return REGISTRY["cumsum"].numpy(x, axis=axis, reverse=reverse)
    shape = x.shape
    if out is None or out.shape != shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        out = np.empty(shape, dtype=x.dtype)
    before = int(np.prod(shape[:axis], dtype=np.int64))
    after = int(np.prod(shape[axis + 1:], dtype=np.int64))
    src = np.ascontiguousarray(x).reshape(before, shape[axis], after)
    if after == 1:  # lines along the last axis: each a running sum in a register
        _kernels().cumsum_rows(src.reshape(before, shape[axis]), out.reshape(before, shape[axis]), bool(reverse))
    else:
        _kernels().cumsum_lines(src, out.reshape(before, shape[axis], after), bool(reverse))
    return out


# op -> its compiled form, taking an `out=` buffer of the result's shape and dtype (the
# plan gives it a pooled one) and returning it
FAST: dict[str, Callable[..., Any]] = {"scatter": scatter, "cumsum": cumsum, "gather": gather}


# ---------------------------------------------------------------- convolutions and pools (issue 27)
#
# max pooling over windows that tile the image (`tile_max`, its VJP `tile_max_grad`) and
# im2col / col2im (`unfold`, `fold`) as compiled loops into the plan's buffers: their NumPy
# forms are strided copies and adds over small axes (a 2x2 window, an 8-wide image), where
# NumPy's per-axis overhead is most of the time. Each runs the same comparisons and the same
# additions in the same order as its NumPy form (conv_ops.py), so the two agree bit for bit.


NARROW_ROWS = 16  # unfold gathers below this many windows a row (measured: 4, 10 faster; 28 slower)


@functools.cache
def _conv_kernels() -> Any:
    """The compiled window loops, made on first use (cached on disk by Numba)."""
    from numba import njit, uint64

    @njit(cache=True, nogil=True, error_model="numpy")
    def tile_max(x, kh, kw, out):  # pragma: no cover (compiled)
        # out[a, b, p, q]: the window's entries in row order, the first largest kept, a NaN taken and kept
        n, c, oh, ow = out.shape
        for a in range(n):
            for b in range(c):
                for p in range(oh):
                    for q in range(ow):
                        m = x[a, b, p * kh, q * kw]
                        for i in range(kh):
                            for j in range(kw):
                                v = x[a, b, p * kh + i, q * kw + j]
                                m = v if (v > m) | (v != v) else m
                        out[a, b, p, q] = m

    @njit(cache=True, nogil=True, error_model="numpy")
    def tile_max22(x, out):  # pragma: no cover (compiled)
        # the 2x2 windows of a contiguous image, x viewed as (rows of windows, 2, ow, 2): the same comparisons
        r_, _, ow, _ = x.shape
        for r in range(r_):
            for q in range(ow):
                m = x[r, 0, q, 0]
                v = x[r, 0, q, 1]
                m = v if (v > m) | (v != v) else m
                v = x[r, 1, q, 0]
                m = v if (v > m) | (v != v) else m
                v = x[r, 1, q, 1]
                m = v if (v > m) | (v != v) else m
                out[r, q] = m

    @njit(cache=True, nogil=True, error_model="numpy")
    def tile_max_grad(x, g, kh, kw, zero, one, out):  # pragma: no cover (compiled)
        # out = g * (hit / ties) over each window (zero, one: x's dtype), 0 past the last window
        n, c, oh, ow = g.shape
        h, w = out.shape[2], out.shape[3]
        for a in range(n):
            for b in range(c):
                for r in range(oh * kh, h):
                    for s in range(w):
                        out[a, b, r, s] = zero
                for p in range(oh):
                    for i in range(kh):
                        for s in range(ow * kw, w):
                            out[a, b, p * kh + i, s] = zero
                    for q in range(ow):
                        m = x[a, b, p * kh, q * kw]
                        for i in range(kh):
                            for j in range(kw):
                                v = x[a, b, p * kh + i, q * kw + j]
                                m = v if (v > m) | (v != v) else m
                        ties = zero
                        for i in range(kh):
                            for j in range(kw):
                                ties += one if x[a, b, p * kh + i, q * kw + j] == m else zero
                        gv = g[a, b, p, q]
                        s1 = gv * (one / ties)  # = g * (hit / ties) where hit is one, and where it is zero:
                        s0 = gv * (zero / ties)
                        for i in range(kh):
                            for j in range(kw):
                                out[a, b, p * kh + i, q * kw + j] = s1 if x[a, b, p * kh + i, q * kw + j] == m else s0

    @njit(cache=True, nogil=True, error_model="numpy")
    def tile_max_grad22(x, g, zero, one, out):  # pragma: no cover (compiled)
        # tile_max_grad over 2x2 windows of a contiguous image ((rows of windows, 2, ow, 2) views); a window
        # with one maximum (ties = 1) skips the divisions: g * (1 / 1) is g * 1 and g * (0 / 1) is g * 0
        r_, _, ow, _ = x.shape
        for r in range(r_):
            for q in range(ow):
                a = x[r, 0, q, 0]
                b = x[r, 0, q, 1]
                c = x[r, 1, q, 0]
                d = x[r, 1, q, 1]
                m = a
                m = b if (b > m) | (b != b) else m
                m = c if (c > m) | (c != c) else m
                m = d if (d > m) | (d != d) else m
                ha, hb, hc, hd = a == m, b == m, c == m, d == m
                gv = g[r, q]
                if ha + hb + hc + hd == 1:
                    s1 = gv * one
                    s0 = gv * zero
                else:
                    ties = (one if ha else zero) + (one if hb else zero) + (one if hc else zero) + \
                        (one if hd else zero)
                    s1 = gv * (one / ties)
                    s0 = gv * (zero / ties)
                out[r, 0, q, 0] = s1 if ha else s0
                out[r, 0, q, 1] = s1 if hb else s0
                out[r, 1, q, 0] = s1 if hc else s0
                out[r, 1, q, 1] = s1 if hd else s0

    # unfold / fold over a padded copy of the image, so that every window row is a plain run; unfold of a
    # narrow image (rows of a few windows) as one gather per (image, channel, kernel offset) of its L windows'
    # entries through a table of their offsets, a loop LLVM vectorises (AVX-512 gathers: 1.2-1.3x faster than
    # the row copies at 4 and 10 windows a row, 0.9x at 28); flat arrays with unsigned indices, since a signed
    # index is checked for wrapping around (Python's negative indices) at every access, which stops vectorising

    # unfold: out[n, row, t] (or, merged, out[0, row, n*L + t]), row = (c*kh + i)*kw + j, t = p*ow + q, is
    # xpad[n, c, p*sh + i*dh, q*sw + j*dw], xpad = x padded with fill; two loops, each compiled when first used
    # (each pads inline: Numba does not cache a function that calls another made in this closure)

    @njit(cache=True, nogil=True)
    def unfold_narrow(x, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, fill, merged, out):  # pragma: no cover
        # narrow images: one gather per (image, channel, kernel offset) of its L windows' entries
        n_, c_, h, w = x.shape
        hp, wp = h + pt + pb, w + pl + pr
        oh = (hp - dh * (kh - 1) - 1) // sh + 1
        ow = (wp - dw * (kw - 1) - 1) // sw + 1
        xpf = x.ravel()
        if pt or pb or pl or pr:
            xf = xpf
            xpf = np.empty(n_ * c_ * hp * wp, dtype=x.dtype)
            for k in range(uint64(xpf.size)):
                xpf[k] = fill
            for a in range(n_ * c_):
                for r in range(h):
                    d = uint64((a * hp + r + pt) * wp + pl)
                    s = uint64((a * h + r) * w)
                    for k in range(uint64(w)):
                        xpf[d + k] = xf[s + k]
        L = oh * ow
        idx = np.empty(L, dtype=np.uint64)  # window t's first entry in the padded image
        for p in range(oh):
            for q in range(ow):
                idx[p * ow + q] = p * sh * wp + q * sw
        of = out.ravel()
        K = c_ * kh * kw
        for n in range(n_):
            for c in range(c_):
                for i in range(kh):
                    for j in range(kw):
                        row = (c * kh + i) * kw + j
                        d = uint64(row * (n_ * L) + n * L if merged else (n * K + row) * L)
                        s = uint64(((n * c_ + c) * hp + i * dh) * wp + j * dw)
                        for t in range(uint64(L)):
                            of[d + t] = xpf[s + idx[t]]

    @njit(cache=True, nogil=True)
    def unfold_wide(x, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, fill, merged, out):  # pragma: no cover
        # wide images: a plain (strided) copy per row of windows
        n_, c_, h, w = x.shape
        hp, wp = h + pt + pb, w + pl + pr
        oh = (hp - dh * (kh - 1) - 1) // sh + 1
        ow = (wp - dw * (kw - 1) - 1) // sw + 1
        xpf = x.ravel()
        if pt or pb or pl or pr:
            xf = xpf
            xpf = np.empty(n_ * c_ * hp * wp, dtype=x.dtype)
            for k in range(uint64(xpf.size)):
                xpf[k] = fill
            for a in range(n_ * c_):
                for r in range(h):
                    d = uint64((a * hp + r + pt) * wp + pl)
                    s = uint64((a * h + r) * w)
                    for k in range(uint64(w)):
                        xpf[d + k] = xf[s + k]
        of = out.ravel()
        L = oh * ow
        K = c_ * kh * kw
        step = uint64(sw)
        for c in range(c_):
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    for n in range(n_):
                        base = row * (n_ * L) + n * L if merged else (n * K + row) * L
                        src = ((n * c_ + c) * hp + i * dh) * wp + j * dw
                        for p in range(oh):
                            d = uint64(base + p * ow)
                            s = uint64(src + p * sh * wp)
                            if sw == 1:
                                for q in range(uint64(ow)):
                                    of[d + q] = xpf[s + q]
                            else:
                                for q in range(uint64(ow)):
                                    of[d + q] = xpf[s + q * step]

    @njit(cache=True, nogil=True)
    def fold(g, n_, c_, h, w, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, merged, add, zero, out):  # pragma: no cover
        # xpad (zeros) [n, c, p*sh + i*dh, q*sw + j*dw] += (add) or = (windows that do not overlap) each column
        # entry, kernel offset (i, j) after kernel offset: each entry's additions in fold's NumPy order;
        # out = xpad without its padding
        hp, wp = h + pt + pb, w + pl + pr
        oh = (hp - dh * (kh - 1) - 1) // sh + 1
        ow = (wp - dw * (kw - 1) - 1) // sw + 1
        gf = g.ravel()
        xpf = np.empty(n_ * c_ * hp * wp, dtype=out.dtype)
        for k in range(uint64(xpf.size)):
            xpf[k] = zero
        L = oh * ow
        K = c_ * kh * kw
        step = uint64(sw)
        for i in range(kh):
            for j in range(kw):
                for c in range(c_):
                    row = (c * kh + i) * kw + j
                    for n in range(n_):
                        base = row * (n_ * L) + n * L if merged else (n * K + row) * L
                        dst = ((n * c_ + c) * hp + i * dh) * wp + j * dw
                        for p in range(oh):
                            s = uint64(base + p * ow)
                            d = uint64(dst + p * sh * wp)
                            if not add:
                                for q in range(uint64(ow)):
                                    xpf[d + q * step] = gf[s + q]
                            elif sw == 1:
                                for q in range(uint64(ow)):
                                    xpf[d + q] += gf[s + q]
                            else:
                                for q in range(uint64(ow)):
                                    xpf[d + q * step] += gf[s + q]
        of = out.ravel()
        for a in range(n_ * c_):
            for r in range(h):
                d = uint64((a * h + r) * w)
                s = uint64((a * hp + r + pt) * wp + pl)
                for k in range(uint64(w)):
                    of[d + k] = xpf[s + k]

    return types.SimpleNamespace(tile_max=tile_max, tile_max22=tile_max22, tile_max_grad=tile_max_grad,
                                 tile_max_grad22=tile_max_grad22, unfold_narrow=unfold_narrow,
                                 unfold_wide=unfold_wide, fold=fold)


def _pairs(x: np.ndarray, kernel: tuple) -> bool:
    """2x2 windows tiling a contiguous image exactly: the straight-line loops apply."""
    return tuple(kernel) == (2, 2) and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0 and x.flags.c_contiguous


def _into(out: np.ndarray | None, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """`out` where it is a C-contiguous array of this shape and dtype, else a new one."""
    if out is None or out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        return np.empty(shape, dtype=dtype)
    return out


def tile_max(x: Any, kernel: tuple, out: np.ndarray | None = None) -> np.ndarray:
    """The `tile_max` op (max pooling, stride = kernel) as one compiled pass over x, into `out`."""
    x = np.asarray(x)
    kh, kw = kernel
    n, c, h, w = x.shape
    shape = (n, c, h // kh, w // kw)
    if x.dtype.kind != "f" or 0 in shape:
        return REGISTRY["tile_max"].numpy(x, kernel=kernel)
    out = _into(out, shape, x.dtype)
    k = _conv_kernels()
    if _pairs(x, kernel):
        k.tile_max22(x.reshape(n * c * (h // 2), 2, w // 2, 2), out.reshape(-1, w // 2))
    else:
        k.tile_max(x, kh, kw, out)
    return out


def tile_max_grad(x: Any, g: Any, kernel: tuple, out: np.ndarray | None = None) -> np.ndarray:
    """The `tile_max_grad` op (each window's gradient split among its maxima) as one compiled pass, into `out`."""
    x, g = np.asarray(x), np.asarray(g)
    if x.dtype.kind != "f" or g.dtype != x.dtype or 0 in x.shape:
        return REGISTRY["tile_max_grad"].numpy(x, g, kernel=kernel)
    out = _into(out, x.shape, x.dtype)
    kh, kw = kernel
    t, k = x.dtype.type, _conv_kernels()
    n, c, h, w = x.shape
    if _pairs(x, kernel) and g.flags.c_contiguous:
        rows = (n * c * (h // 2), 2, w // 2, 2)
        k.tile_max_grad22(x.reshape(rows), g.reshape(-1, w // 2), t(0), t(1), out.reshape(rows))
    else:
        k.tile_max_grad(x, g, kh, kw, t(0), t(1), out)
    return out


def unfold(x: Any, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple, pad_value: str = "0.0",
           merged: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """The `unfold` op (im2col) as compiled copies into `out` (gathers on narrow images, row copies on wide
    ones): every entry copied, none added."""
    from ..conv_ops import windows

    x = np.asarray(x)
    n, c, h, w = x.shape
    kh, kw = kernel
    oh, ow = windows((h, w), kernel, stride, padding, dilation)
    shape = (1, c * kh * kw, n * oh * ow) if merged else (n, c * kh * kw, oh * ow)
    if x.dtype.kind != "f" or 0 in shape:
        return REGISTRY["unfold"].numpy(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                                        pad_value=pad_value, merged=merged)
    out = _into(out, shape, x.dtype)
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, padding, dilation
    k = _conv_kernels()
    loop = k.unfold_narrow if ow < NARROW_ROWS else k.unfold_wide
    loop(np.ascontiguousarray(x), kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, x.dtype.type(float(pad_value)), bool(merged),
         out)
    return out


def fold(g: Any, output_size: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple,
         merged: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """The `fold` op (col2im) as compiled row adds into `out`, in the NumPy form's order (kernel offset by
    kernel offset, from zero), or copies where windows do not overlap, as the NumPy form."""
    from ..conv_ops import windows

    g = np.asarray(g)
    h, w = output_size
    kh, kw = kernel
    oh, ow = windows((h, w), kernel, stride, padding, dilation)
    d = g.shape[1]
    n = g.shape[2] // (oh * ow) if merged else g.shape[0]
    shape = (n, d // (kh * kw), h, w)
    if g.dtype.kind != "f" or 0 in shape:
        return REGISTRY["fold"].numpy(g, output_size=output_size, kernel=kernel, stride=stride, padding=padding,
                                      dilation=dilation, merged=merged)
    out = _into(out, shape, g.dtype)
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = stride, padding, dilation
    add = not (sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1)  # overlapping windows add; others are copied
    _conv_kernels().fold(np.ascontiguousarray(g), n, shape[1], h, w, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw,
                         bool(merged), add, g.dtype.type(0), out)
    return out


FAST.update({"tile_max": tile_max, "tile_max_grad": tile_max_grad, "unfold": unfold, "fold": fold})
