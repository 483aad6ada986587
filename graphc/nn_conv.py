"""Convolution and pooling for graphc.nn (issue 27): PyTorch's torch.nn.functional semantics.

Each function works on traced values (inside graphc.value_and_grad) and eagerly on NumPy arrays,
in float64 and float32, with torch.nn.functional's names, parameters, layouts (NCL / NCHW inputs,
OIL / OIHW weights, (in, out/groups, kH, kW) for the transposed convolution), output sizes and
errors, which name the argument (ShapeError for shapes and sizes, ArgumentError for a value of the
wrong kind, UnsupportedError for an option graphc does not honour). Unbatched inputs (no N axis)
are accepted as PyTorch accepts them.

They lower to the ops of `conv_ops.py`: a convolution is `unfold` (im2col), a reshape, one matmul
with the reshaped weight (a batch of GEMMs, one per image; batched over groups as well), a reshape and
the bias; conv1d is conv2d over a (N, C, 1, L) view; the transposed convolution a matmul then `fold`;
max pooling over windows that tile the image (stride = kernel, no padding or dilation: the usual
`max_pool2d(x, 2)`) is `tile_max`, one pass over x (its VJP `tile_max_grad` one more), and the other
pools an `unfold` (padded with -inf for max) and graphc's max or mean over the window axis. Their
gradients are the ops' VJPs -- folds, unfolds and matmuls, i.e. convolutions in the same IR -- so
they fuse with the rest of the program and run on every tensor target; the compiled CPU targets run
unfold, fold, tile_max and tile_max_grad as compiled loops into the plan's buffers
(`backends/host_kernels.py`). Max pooling's gradient goes to the window's maximum, ties split evenly
(graphc's `max`; PyTorch gives it to one of them).

`MERGED = True` lays a known batch's windows side by side as the columns of one (C*kh*kw, N*L)
matrix (`unfold(merged=True)`), so the product and both of its gradients are one 2-D GEMM each (plan
`gemm:` steps into pooled buffers) instead of one per image. It is off: measured on the 2-core
machine (benchmarks/RESULTS-cnn.md), the per-image GEMMs are as fast with one BLAS thread (the digits
CNN's step 3.4 ms against 3.6 ms, LeNet-5's 31 ms against 36 ms: OpenBLAS is slow on the weight
gradient's long, thin product), and the merged ones are big enough for OpenBLAS to start its threads,
which on a machine whose cores are busy took the step from ~4 ms to 15-75 ms.
"""

from __future__ import annotations

from typing import Any

from . import conv_ops  # noqa: F401  (registers unfold and fold)
from .conv_ops import windows
from .errors import ArgumentError, ShapeError, UnsupportedError
from .trace import Tracer, apply

__all__: list[str] = ["conv1d", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d"]

MERGED = False  # True: a known batch's windows as the columns of one matrix, one GEMM a product (see above)


# ------------------------------------------------------------------ helpers


def _shape(x: Any) -> tuple:
    if isinstance(x, Tracer):
        return tuple(x.shape)
    import numpy as np

    return np.shape(x)


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _int(v: Any) -> bool:
    import numpy as np

    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _tuple(fn: str, name: str, v: Any, n: int, lo: int) -> tuple[int, ...]:
    """An int (the same on every axis) or a tuple of n ints, each >= lo (PyTorch's _pair)."""
    items = (v,) * n if _int(v) else v
    if not isinstance(items, (tuple, list)) or len(items) != n or not all(_int(i) for i in items):
        raise ArgumentError(f"{fn}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    items = tuple(int(i) for i in items)
    if any(i < lo for i in items):
        what = {0: "negative {} is not supported", 1: "non-positive {} is not supported"}[lo].format(name)
        raise ShapeError(f"{fn}: {what}, got {name}={v!r}")
    return items


def _reshape(x: Any, shape: tuple) -> Any:
    return x if tuple(_shape(x)) == tuple(shape) else apply("reshape", x, shape=tuple(shape))


def _input(fn: str, x: Any, nd: int) -> tuple[Any, bool]:
    """The input with its batch axis ((nd+1)-D unbatched inputs get one) and whether it had one."""
    shape = _shape(x)
    if len(shape) == nd + 2:
        return x, True
    if len(shape) == nd + 1:
        return _reshape(x, (1,) + shape), False
    raise ShapeError(f"{fn}: expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input, but got input of shape "
                     f"{_fmt(shape)}")


def _known(fn: str, name: str, shape: tuple, axes: range) -> None:
    for a in axes:
        if not _int(shape[a]):
            raise ShapeError(f"{fn}: axis {a} of {name} (shape {_fmt(shape)}) must have a known size")


def _too_small(fn: str, size: tuple, kernel: tuple, dilation: tuple, pads: tuple, what: str) -> None:
    """PyTorch's 'kernel size can't be greater than actual input size', naming the sizes."""
    padded = tuple(size[a] + pads[2 * a] + pads[2 * a + 1] for a in range(len(size)))
    span = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in range(len(size)))
    if any(s > p for s, p in zip(span, padded)):
        raise ShapeError(f"{fn}: the kernel of size {_fmt(kernel)} (dilation {_fmt(dilation)}: it spans "
                         f"{_fmt(span)}) is bigger than {what} padded to {_fmt(padded)}")


def _groups(fn: str, groups: Any) -> int:
    if not _int(groups):
        raise ArgumentError(f"{fn}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ShapeError(f"{fn}: non-positive groups is not supported, got groups={groups}")
    return int(groups)


def _bias(fn: str, bias: Any, channels: int) -> None:
    if bias is not None and tuple(_shape(bias)) != (channels,):
        raise ShapeError(f"{fn}: bias of shape {_fmt(_shape(bias))} must have shape ({channels},): one entry per "
                         "output channel")


def _add_bias(y: Any, bias: Any, channels: int) -> Any:
    return y if bias is None else y + _reshape(bias, (channels, 1, 1))


# ------------------------------------------------------------------ convolutions


def _conv_padding(fn: str, padding: Any, kernel: tuple, stride: tuple, dilation: tuple) -> tuple[int, ...]:
    """(before, after) per spatial axis, flattened: an int, a tuple, 'valid' (none) or 'same'
    (output size = input size; an odd total puts the extra entry at the end, as PyTorch)."""
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * nd)
        if padding != "same":
            raise ArgumentError(f"{fn}: invalid padding string {padding!r}, should be one of 'valid', 'same' "
                                "(or an int, or a tuple of ints)")
        if any(s != 1 for s in stride):
            raise ShapeError(f"{fn}: padding='same' is not supported for strided convolutions (stride="
                             f"{_fmt(stride)}), as in PyTorch")
        out: list[int] = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]
        return tuple(out)
    return tuple(p for p in _tuple(fn, "padding", padding, nd, 0) for _ in range(2))


def _conv(fn: str, x: Any, w: Any, b: Any, stride: Any, padding: Any, dilation: Any, groups: Any, nd: int) -> Any:
    x, batched = _input(fn, x, nd)
    xs, ws = _shape(x), _shape(w)
    if len(ws) != nd + 2:
        dims = ", ".join(("kH", "kW") if nd == 2 else ("kL",))
        raise ShapeError(f"{fn}: weight of shape {_fmt(ws)} must have {nd + 2} dimensions (out_channels, "
                         f"in_channels/groups, {dims})")
    stride = _tuple(fn, "stride", stride, nd, 1)
    dilation = _tuple(fn, "dilation", dilation, nd, 1)
    groups = _groups(fn, groups)
    _known(fn, "input", xs, range(1, nd + 2))
    _known(fn, "weight", ws, range(nd + 2))
    c, o, cg, kernel = xs[1], ws[0], ws[1], tuple(ws[2:])
    if c % groups:
        raise ShapeError(f"{fn}: input of shape {_fmt(xs)} has {c} channels, not divisible by groups={groups}")
    if o % groups:
        raise ShapeError(f"{fn}: weight of shape {_fmt(ws)} has {o} output channels, not divisible by "
                         f"groups={groups}")
    if cg * groups != c:
        raise ShapeError(f"{fn}: weight of shape {_fmt(ws)} expects {cg} channels per group, {cg * groups} in all "
                         f"(groups={groups}), but input of shape {_fmt(xs)} has {c} channels")
    if any(k < 1 for k in kernel):
        raise ShapeError(f"{fn}: weight of shape {_fmt(ws)} has an empty kernel")
    _bias(fn, b, o)
    pads = _conv_padding(fn, padding, kernel, stride, dilation)
    _too_small(fn, tuple(xs[2:]), kernel, dilation, pads, f"input of shape {_fmt(xs)}")
    if nd == 1:  # a (N, C, 1, L) image: the same windows
        x = _reshape(x, (xs[0], c, 1, xs[2]))
        w = _reshape(w, (o, cg, 1, kernel[0]))
        kernel, stride, dilation, pads = (1,) + kernel, (1,) + stride, (1,) + dilation, (0, 0) + pads
    n, size = xs[0], (1,) + tuple(xs[2:]) if nd == 1 else tuple(xs[2:])
    oh, ow = windows(size, kernel, stride, pads, dilation)
    geo = {"kernel": kernel, "stride": stride, "padding": pads, "dilation": dilation}
    k = cg * kernel[0] * kernel[1]
    if MERGED and _int(n):
        # a known batch: its windows merged into the columns of one (C*kh*kw, N*L) matrix, so the product and
        # both its gradients are one GEMM each (per group), not one per image; the result (O, N, oh, ow) is
        # read through a transposed view (a batch named while tracing keeps the per-image layout)
        cols = _reshape(apply("unfold", x, merged=True, **geo), (groups * k, n * oh * ow))
        if groups == 1:
            y = apply("matmul", _reshape(w, (o, k)), cols)  # (O, N*L)
        else:
            y = apply("matmul", _reshape(w, (groups, o // groups, k)), _reshape(cols, (groups, k, n * oh * ow)))
        y = apply("transpose", _reshape(y, (o, n, oh, ow)), axes=(1, 0, 2, 3))
    else:
        cols = apply("unfold", x, **geo)  # (N, C*kh*kw, L)
        if groups == 1:
            y = apply("matmul", _reshape(w, (o, k)), cols)  # (N, O, L)
        else:
            cols = _reshape(cols, (n, groups, k, oh * ow))
            y = apply("matmul", _reshape(w, (groups, o // groups, k)), cols)  # (N, G, O/G, L)
    y = _add_bias(_reshape(y, (n, o, oh, ow)), b, o)
    if nd == 1:
        y = _reshape(y, (n, o, ow))
    return y if batched else _reshape(y, _shape(y)[1:])


def conv1d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Any:
    """torch.nn.functional.conv1d: input (N, C_in, L) or (C_in, L), weight (C_out, C_in/groups, kL), bias
    (C_out,); cross-correlation; padding an int, a 1-tuple, 'valid' or 'same'."""
    return _conv("conv1d", input, weight, bias, stride, padding, dilation, groups, 1)


def conv2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Any:
    """torch.nn.functional.conv2d: input (N, C_in, H, W) or (C_in, H, W), weight (C_out, C_in/groups, kH, kW),
    bias (C_out,); cross-correlation; stride, padding and dilation an int or a pair, padding also 'valid' or
    'same' (stride 1; an odd total padding puts the extra row/column at the end, as PyTorch)."""
    return _conv("conv2d", input, weight, bias, stride, padding, dilation, groups, 2)


def _span(size: int, full: int, p: int) -> tuple[int, int, int]:
    """Along one axis of a transposed convolution: the output's rows are the full result's
    (`full` long) from row p on, zeros past its end. (before, after, rows) for fold: the
    padding that crops the full result to the rows the output shows, and their number."""
    rows = min(size, full - p)
    return (p, full - p - rows, rows) if rows > 0 else (0, 0, 0)


def conv_transpose2d(input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Any:
    """torch.nn.functional.conv_transpose2d (the gradient of conv2d with respect to its input): input
    (N, C_in, H, W) or (C_in, H, W), weight (C_in, C_out/groups, kH, kW), bias (C_out,); output size
    (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1, output_padding smaller than
    stride or dilation."""
    fn = "conv_transpose2d"
    x, batched = _input(fn, input, 2)
    w = weight
    xs, ws = _shape(x), _shape(w)
    if len(ws) != 4:
        raise ShapeError(f"{fn}: weight of shape {_fmt(ws)} must have 4 dimensions (in_channels, "
                         "out_channels/groups, kH, kW)")
    stride = _tuple(fn, "stride", stride, 2, 1)
    dilation = _tuple(fn, "dilation", dilation, 2, 1)
    pad = _tuple(fn, "padding", padding, 2, 0)
    opad = _tuple(fn, "output_padding", output_padding, 2, 0)
    groups = _groups(fn, groups)
    _known(fn, "input", xs, range(1, 4))
    _known(fn, "weight", ws, range(4))
    n, c, h, wd = xs
    cin, og, kh, kw = ws
    if c % groups:
        raise ShapeError(f"{fn}: input of shape {_fmt(xs)} has {c} channels, not divisible by groups={groups}")
    if cin != c:
        raise ShapeError(f"{fn}: weight of shape {_fmt(ws)} expects {cin} input channels (its first axis), but "
                         f"input of shape {_fmt(xs)} has {c}")
    if kh < 1 or kw < 1:
        raise ShapeError(f"{fn}: weight of shape {_fmt(ws)} has an empty kernel")
    if any(op >= max(s, d) for op, s, d in zip(opad, stride, dilation)):
        raise ShapeError(f"{fn}: output padding must be smaller than either stride or dilation, got "
                         f"output_padding={_fmt(opad)}, stride={_fmt(stride)}, dilation={_fmt(dilation)}")
    o = og * groups
    _bias(fn, bias, o)
    full = tuple((i - 1) * s + d * (k - 1) + 1 for i, s, d, k in zip((h, wd), stride, dilation, (kh, kw)))
    size = tuple(f - 2 * p + op for f, p, op in zip(full, pad, opad))
    if size[0] < 1 or size[1] < 1:
        raise ShapeError(f"{fn}: input of shape {_fmt(xs)} gives an output of size {_fmt(size)}: too small "
                         f"(padding={_fmt(pad)})")
    k = og * kh * kw
    if groups == 1:
        cols = apply("matmul", apply("transpose", _reshape(w, (c, k))), _reshape(x, (n, c, h * wd)))  # (N, K, L)
    else:
        wt = apply("transpose", _reshape(w, (groups, c // groups, k)), axes=(0, 2, 1))  # (G, K, C/G)
        cols = apply("matmul", wt, _reshape(x, (n, groups, c // groups, h * wd)))  # (N, G, K, L)
        cols = _reshape(cols, (n, groups * k, h * wd))
    (t, bt, rows), (lf, rt, colsn) = _span(size[0], full[0], pad[0]), _span(size[1], full[1], pad[1])
    if rows and colsn:
        y = apply("fold", cols, output_size=(rows, colsn), kernel=(kh, kw), stride=stride, padding=(t, bt, lf, rt),
                  dilation=dilation)
    else:  # the output lies past the full result's end: only zeros (and the bias)
        y = apply("fold", cols, output_size=full, kernel=(kh, kw), stride=stride, padding=0, dilation=dilation)
        y = apply("slice", y, start=(0, 0, 0, 0), step=(1, 1, 1, 1), shape=(n, o, rows, colsn))
    if (rows, colsn) != size:  # rows past the full result's end (output_padding beyond padding): zeros
        y = apply("unslice", y, start=(0, 0, 0, 0), step=(1, 1, 1, 1), shape=(n, o) + size)
    y = _add_bias(y, bias, o)
    return y if batched else _reshape(y, _shape(y)[1:])


# ------------------------------------------------------------------ pooling


def _pool(fn: str, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any, reduce: str) -> Any:
    x, batched = _input(fn, x, 2)
    xs = _shape(x)
    kernel = _tuple(fn, "kernel_size", kernel_size, 2, 1)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) else \
        _tuple(fn, "stride", stride, 2, 1)
    pad = _tuple(fn, "padding", padding, 2, 0)
    dilation = _tuple(fn, "dilation", dilation, 2, 1)
    if any(p > k // 2 for p, k in zip(pad, kernel)):  # PyTorch's rule, whatever the dilation
        raise ShapeError(f"{fn}: padding should be at most half of the kernel size, got padding={_fmt(pad)} for "
                         f"kernel_size={_fmt(kernel)}")
    _known(fn, "input", xs, range(1, 4))
    pads = (pad[0], pad[0], pad[1], pad[1])
    _too_small(fn, tuple(xs[2:]), kernel, dilation, pads, f"input of shape {_fmt(xs)}")
    n, c = xs[0], xs[1]
    oh, ow = windows(tuple(xs[2:]), kernel, stride, pads, dilation)
    if reduce == "amax" and stride == kernel and not any(pad) and dilation == (1, 1):
        # windows that tile the image (the usual max_pool2d(x, k)): one pass over x each way, no im2col; the
        # same values and gradients (ties split evenly) as the unfold and max below
        y = apply("tile_max", x, kernel=kernel)
        return y if batched else _reshape(y, _shape(y)[1:])
    extra = {"pad_value": "-inf"} if reduce == "amax" else {}
    cols = apply("unfold", x, kernel=kernel, stride=stride, padding=pads, dilation=dilation, **extra)
    cols = _reshape(cols, (n, c, kernel[0] * kernel[1], oh, ow))
    y = apply(reduce, cols, axis=2, keepdims=False)
    return y if batched else _reshape(y, _shape(y)[1:])


def max_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """torch.nn.functional.max_pool2d: the largest entry of each window of (N, C, H, W) or (C, H, W);
    stride defaults to kernel_size; padding (at most half the kernel) counts as -inf, so a dilated window
    of padding only is -inf, as PyTorch's. The gradient goes to each window's maximum, ties split evenly
    (graphc's max). ceil_mode and return_indices are refused."""
    if ceil_mode or return_indices:
        raise UnsupportedError("max_pool2d: " + ("ceil_mode=True" if ceil_mode else "return_indices=True")
                               + " is not supported (graphc honours only the default, False)")
    return _pool("max_pool2d", input, kernel_size, stride, padding, dilation, "amax")


def avg_pool2d(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: Any = None) -> Any:
    """torch.nn.functional.avg_pool2d: the mean of each window of (N, C, H, W) or (C, H, W); stride
    defaults to kernel_size; padding (at most half the kernel) counts as zeros in the mean
    (count_include_pad=True, PyTorch's default). Other ceil_mode, count_include_pad or divisor_override
    values are refused."""
    for name, value, default in (("ceil_mode", ceil_mode, False), ("count_include_pad", count_include_pad, True),
                                 ("divisor_override", divisor_override, None)):
        if value is not default and value != default:
            raise UnsupportedError(f"avg_pool2d: {name}={value!r} is not supported (graphc honours only "
                                   f"{name}={default!r})")
    return _pool("avg_pool2d", input, kernel_size, stride, padding, 1, "mean")
