"""Convolution and pooling gates, vectorized with im2col.

A convolution is one matrix multiply once every input window is laid out as a column
(*im2col*): ``y[n, o, p] = Σ_k W[o, k] · cols[n, k, p]``. Its gradient is two more matrix
multiplies: ``dW = dY · colsᵀ`` and ``dcols = Wᵀ · dY``, and *col2im* (the adjoint of im2col)
adds each column's gradient back onto the pixels of its window. ``Im2Col`` and ``Col2Im`` are
gates that are each other's backward, so every backward rule here is itself differentiable
(double backward, Hessians) without extra code.

Geometry: a window grid is described by ``_Geom`` (kernel, stride, dilation, padding per side
and output size), shared by convolution, transposed convolution and pooling.
"""

from __future__ import annotations

from typing import NamedTuple

from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np
from chainrule import devices
from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import Op
from chainrule.kernels import kernels_for
from chainrule.kernels.reference import pad_image, window_view
from chainrule.ops.binary import where as _where
from chainrule.tensor import Tensor, wrap

__all__ = [
    "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "max_pool1d", "max_pool2d",
    "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "unfold", "fold",
]


class _Geom(NamedTuple):
    """A grid of (kh × kw) windows over a (H × W) image padded by (pt, pb, pl, pr)."""

    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pb: int
    pl: int
    pr: int
    oh: int
    ow: int


# ---- the gates ----------------------------------------------------------------------------------
class Im2Col(Op):
    """cols = the pixels under every window;  dx = col2im(dcols) (each pixel sums its windows)"""

    @staticmethod
    def forward(ctx, x, geom):
        ctx.shape, ctx.geom = x.shape, geom
        return kernels_for(x).im2col(x, geom)

    @staticmethod
    def backward(ctx, g):
        return kernels_for(g).col2im(g, ctx.shape, ctx.geom), None


class Col2Im(Op):
    """x = window columns added back onto their pixels;  dcols = im2col(dx)"""

    @staticmethod
    def forward(ctx, cols, x_shape, geom):
        ctx.geom = geom
        return kernels_for(cols).col2im(cols, x_shape, geom)

    @staticmethod
    def backward(ctx, g):
        return kernels_for(g).im2col(g, ctx.geom), None, None


class Conv2d(Op):
    """y = W · im2col(x) + b per group;  dW = dy · colsᵀ, dx = col2im(Wᵀ · dy), db = Σ dy"""

    @staticmethod
    def forward(ctx, x, w, b, geom, groups):
        y, cols = kernels_for(x).conv2d(x, w, geom, groups)  # cols: im2col(x), for dW
        if b is not None:
            y = kernels_for(y).add_channel_bias(y, b)
        ctx.geom, ctx.groups = geom, groups
        ctx.save_for_backward(x, w, cols)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, cols = ctx.saved_tensors
        geom, groups = ctx.geom, ctx.groups
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        K = kernels_for(g)
        gx = gw = gb = None
        if need_w and need_x:  # (the table may share work between the two)
            gx, gw = K.conv2d_grads(g, x, w, cols, geom, groups)
        elif need_w:  # with the columns of x (recomputed when differentiable)
            gw = K.conv2d_weight_grad(g, x, cols, tuple(w.shape), geom, groups)
        elif need_x:
            gx = K.conv2d_input_grad(g, w, tuple(x.shape), geom, groups)
        if need_b:
            gb = K.channel_sums(g)
        return gx, gw, gb, None, None


class ConvTranspose2d(Op):
    """y = col2im(Wᵀ · x) + b per group (conv2d's input gradient, x as dy);
    dx = W · im2col(dy) (conv2d of dy), dW = Σ x · im2col(dy)ᵀ (conv2d's dW, x as dy)"""

    @staticmethod
    def forward(ctx, x, w, b, geom, groups, out_shape):
        # saved: what the table's backward reuses (the pixel-major route: x's and w's rows)
        y, saved = kernels_for(x).conv_transpose2d(x, w, out_shape, geom, groups)
        if b is not None:
            y = y + b.reshape(-1, 1, 1)
        elif y.base is not None:
            y = y.copy()
        ctx.geom, ctx.groups = geom, groups
        ctx.save_for_backward(x, w, saved)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, saved = ctx.saved_tensors
        geom, groups = ctx.geom, ctx.groups
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        K = kernels_for(g)
        gx = gw = gb = None
        if need_x or need_w:  # dx = conv2d(dy) (also when only dW is wanted: its columns)
            gx, gw = K.conv_transpose2d_grads(g, x, w, saved, geom, groups, need_w)
        if need_b:
            gb = K.channel_sums(g)
        return gx if need_x else None, gw, gb, None, None, None


class MaxPool2d(Op):
    """y = max over each window;  the gradient goes to the (first) maximum of its window"""

    @staticmethod
    def forward(ctx, x, geom):
        y, idx = kernels_for(x).max_pool2d(x, geom)  # idx: the offset of each window's maximum
        ctx.idx, ctx.shape, ctx.geom = idx, x.shape, geom
        return y, idx

    @staticmethod
    def backward(ctx, g, _g_idx=None):
        return kernels_for(g).max_pool2d_backward(g, ctx.idx, ctx.shape, ctx.geom), None


class AvgPool2d(Op):
    """y = Σ window / divisor;  each pixel of a window gets dy / divisor"""

    @staticmethod
    def forward(ctx, x, geom, recip):
        xp = pad_image(x, geom)
        y = window_view(xp, geom, 0, 0).copy()
        for t in range(1, geom.kh * geom.kw):
            y += window_view(xp, geom, t // geom.kw, t % geom.kw)
        y *= recip
        ctx.shape, ctx.geom, ctx.recip = x.shape, geom, recip
        return y

    @staticmethod
    def backward(ctx, g):
        gs = g * ctx.recip  # recip: a NumPy scalar, or an array on g's device
        return kernels_for(gs).avg_pool2d_backward(gs, ctx.shape, ctx.geom), None, None


# ---- argument checking --------------------------------------------------------------------------
def _tuple(value, n: int, name: str, op: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = tuple(value) * n
        if len(value) != n:
            raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _check_float(t, name: str, op: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}(): argument '{name}' must be Tensor, not {type(t).__name__}")
    if t._data.dtype.kind not in FLOAT_KINDS:
        raise RuntimeError(
            f"{op}: expected {name} to be a floating point tensor, but got {t.dtype} "
            f"(shape {list(t._data.shape)})"
        )


def _batched(input: Tensor, dims: int, op: str, names: str) -> tuple:
    """Accept (N, C, *spatial) or unbatched (C, *spatial); return the batched tensor and a flag."""
    _check_float(input, "input", op)
    nd = input._data.ndim
    if nd == dims + 2:
        return input, False
    if nd == dims + 1:
        return input.unsqueeze(0), True
    raise RuntimeError(
        f"{op}: Expected {dims + 1}D (unbatched) or {dims + 2}D (batched) input"
        f"{' ' + names if names else ''}, but got input of size: {list(input._data.shape)}"
    )


def _out_size(size: int, k: int, s: int, d: int, lo: int, hi: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def _conv_padding(padding, kernel: tuple, dilation: tuple, stride: tuple, op: str) -> tuple:
    """Padding per side ((top, bottom), (left, right)); 'same' may be asymmetric."""
    if isinstance(padding, str):
        if padding == "valid":
            return tuple((0, 0) for _ in kernel)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        raise ValueError(
            f"{op}: Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}"
        )
    pads = _tuple(padding, len(kernel), "padding", op)
    if any(p < 0 for p in pads):
        raise RuntimeError(f"{op}: negative padding is not supported, got padding={padding!r}")
    return tuple((p, p) for p in pads)


def _check_positive(values: tuple, name: str, op: str) -> None:
    if any(v <= 0 for v in values):
        raise RuntimeError(f"{op}: {name} should be greater than zero, but got {name}={values}")


def _same_dtype(input: Tensor, weight: Tensor, bias, op: str) -> None:
    if weight._data.dtype != input._data.dtype or (
        bias is not None and bias._data.dtype != input._data.dtype
    ):
        bias_part = f", bias {bias.dtype}" if bias is not None else ""
        raise RuntimeError(
            f"{op}: expected input, weight and bias to have the same dtype, but got input "
            f"{input.dtype}, weight {weight.dtype}{bias_part}"
        )


# ---- convolution --------------------------------------------------------------------------------
def _check_weight_bias(x, weight, bias, op: str, spatial: int) -> None:
    """Float weight with 4 dims (as the user's conv1d/2d sees it: spatial + 2), float bias,
    and one dtype for input, weight and bias."""
    _check_float(weight, "weight", op)
    if weight._data.ndim != 4:
        raise RuntimeError(
            f"{op}: weight should have {spatial + 2} dimensions, but got weight of size "
            f"{list(_user_shape(weight._data.shape, spatial))}"
        )
    if bias is not None:
        _check_float(bias, "bias", op)
    _same_dtype(x, weight, bias, op)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D cross-correlation: y[n, o] = Σ_c W[o, c] ⋆ x[n, c] + b[o] (PyTorch's conv2d)."""
    if _amp.active and (out := _amp.run(
            "conv2d", conv2d, input, weight, bias, stride, padding, dilation, groups)) is not None:
        return out
    return _conv2d(input, weight, bias, stride, padding, dilation, groups, "conv2d")


def _conv2d(input, weight, bias, stride, padding, dilation, groups, op, spatial=2):
    x, unbatched = _batched(input, 2, op, "to conv2d" if spatial == 2 else "to conv1d")
    _check_weight_bias(x, weight, bias, op, spatial)
    n, c, h, w = x._data.shape
    o, cg, kh, kw = weight._data.shape
    wshape = list(_user_shape(weight._data.shape, spatial))
    xshape = list(_user_shape(x._data.shape, spatial))
    if groups <= 0:
        raise RuntimeError(f"{op}: non-positive groups is not supported (groups={groups})")
    if c != cg * groups:
        raise RuntimeError(
            f"{op}: Given groups={groups}, weight of size {wshape}, expected input{xshape} to "
            f"have {cg * groups} channels, but got {c} channels instead"
        )
    if o % groups:
        raise RuntimeError(
            f"{op}: Given groups={groups}, expected weight{wshape} to be divisible by {groups} "
            f"at dimension 0"
        )
    if bias is not None and tuple(bias._data.shape) != (o,):
        raise RuntimeError(
            f"{op}: Given weight of size {wshape}, expected bias to be 1-dimensional with {o} "
            f"elements, but got bias of size {list(bias._data.shape)} instead"
        )
    stride = _tuple(stride, 2, "stride", op)
    dilation = _tuple(dilation, 2, "dilation", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    (pt, pb), (pl, pr) = _conv_padding(padding, (kh, kw), dilation, stride, op)
    oh = _out_size(h, kh, stride[0], dilation[0], pt, pb)
    ow = _out_size(w, kw, stride[1], dilation[1], pl, pr)
    if oh <= 0 or ow <= 0:
        raise RuntimeError(
            f"{op}: Calculated padded input size per channel: ({h + pt + pb} x {w + pl + pr}). "
            f"Kernel size: ({dilation[0] * (kh - 1) + 1} x {dilation[1] * (kw - 1) + 1}). Kernel "
            f"size can't be greater than actual input size (input{xshape}, weight{wshape})"
        )
    geom = _Geom(kh, kw, stride[0], stride[1], dilation[0], dilation[1], pt, pb, pl, pr, oh, ow)
    y = Conv2d.apply(x, weight, bias, geom, int(groups))
    return y.squeeze(0) if unbatched else y


def _user_shape(shape: tuple, spatial: int) -> tuple:
    """Hide the dummy height axis that 1-d ops add."""
    return tuple(shape[:2]) + tuple(shape[3:]) if spatial == 1 else tuple(shape)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """1-D cross-correlation over (N, C, L) (PyTorch's conv1d), computed as a 2-D one."""
    if _amp.active and (out := _amp.run(
            "conv1d", conv1d, input, weight, bias, stride, padding, dilation, groups)) is not None:
        return out
    _check_float(input, "input", "conv1d")
    _check_float(weight, "weight", "conv1d")
    if input._data.ndim not in (2, 3):
        raise RuntimeError(
            f"conv1d: Expected 2D (unbatched) or 3D (batched) input to conv1d, but got input of "
            f"size: {list(input._data.shape)}"
        )
    if weight._data.ndim != 3:
        raise RuntimeError(
            f"conv1d: weight should have 3 dimensions, but got weight of size "
            f"{list(weight._data.shape)}"
        )
    if not isinstance(padding, str):
        padding = (0, _tuple(padding, 1, "padding", "conv1d")[0])
    y = _conv2d(input.unsqueeze(-2), weight.unsqueeze(2), bias,
                (1, _tuple(stride, 1, "stride", "conv1d")[0]), padding,
                (1, _tuple(dilation, 1, "dilation", "conv1d")[0]), groups, "conv1d", 1)
    return y.squeeze(-2)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """2-D transposed convolution (the gradient of conv2d in its input), PyTorch's layout."""
    if _amp.active and (out := _amp.run(
            "conv_transpose2d", conv_transpose2d, input, weight, bias, stride,
            padding, output_padding, groups, dilation)) is not None:
        return out
    return _conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups,
                             dilation, "conv_transpose2d")


def _conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation,
                      op, spatial=2):
    x, unbatched = _batched(input, 2, op, f"to {op}")
    _check_weight_bias(x, weight, bias, op, spatial)
    n, c, h, w = x._data.shape
    cin, cout_g, kh, kw = weight._data.shape
    wshape = list(_user_shape(weight._data.shape, spatial))
    xshape = list(_user_shape(x._data.shape, spatial))
    if groups <= 0 or cin % groups:
        raise RuntimeError(f"{op}: weight{wshape} is not divisible into groups={groups}")
    if c != cin:
        raise RuntimeError(
            f"{op}: Given transposed=1, weight of size {wshape}, expected input{xshape} to have "
            f"{cin} channels, but got {c} channels instead"
        )
    cout = cout_g * groups
    if bias is not None and tuple(bias._data.shape) != (cout,):
        raise RuntimeError(
            f"{op}: Given transposed=1, weight of size {wshape}, expected bias to be 1-dimensional "
            f"with {cout} elements, but got bias of size {list(bias._data.shape)} instead"
        )
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple, got {padding!r}")
    stride = _tuple(stride, 2, "stride", op)
    dilation = _tuple(dilation, 2, "dilation", op)
    pads = _tuple(padding, 2, "padding", op)
    opad = _tuple(output_padding, 2, "output_padding", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    for p_, s_, d_ in zip(opad, stride, dilation):
        if p_ < 0 or (p_ >= s_ and p_ >= d_):
            raise RuntimeError(
                f"{op}: output padding must be smaller than either stride or dilation, but got "
                f"output_padding={opad}, stride={stride}, dilation={dilation}"
            )
    out_h = (h - 1) * stride[0] - 2 * pads[0] + dilation[0] * (kh - 1) + opad[0] + 1
    out_w = (w - 1) * stride[1] - 2 * pads[1] + dilation[1] * (kw - 1) + opad[1] + 1
    if out_h <= 0 or out_w <= 0:
        raise RuntimeError(
            f"{op}: Given input size per channel: ({h} x {w}), calculated output size per "
            f"channel: ({out_h} x {out_w}). Output size is too small (input{xshape}, "
            f"weight{wshape})"
        )
    # Padding may exceed what the windows cover; the windows must stay within the padded image.
    geom = _Geom(kh, kw, stride[0], stride[1], dilation[0], dilation[1], pads[0], pads[0],
                 pads[1], pads[1], h, w)
    out_shape = (n, cout, out_h, out_w)
    y = ConvTranspose2d.apply(x, weight, bias, geom, int(groups), out_shape)
    return y.squeeze(0) if unbatched else y


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """1-D transposed convolution over (N, C, L), computed as a 2-D one."""
    if _amp.active and (out := _amp.run(
            "conv_transpose1d", conv_transpose1d, input, weight, bias, stride,
            padding, output_padding, groups, dilation)) is not None:
        return out
    _check_float(input, "input", "conv_transpose1d")
    _check_float(weight, "weight", "conv_transpose1d")
    if input._data.ndim not in (2, 3) or weight._data.ndim != 3:
        raise RuntimeError(
            f"conv_transpose1d: expected a 2D or 3D input and a 3D weight, but got input of size "
            f"{list(input._data.shape)} and weight of size {list(weight._data.shape)}"
        )

    def one(v, name):
        return (1 if name != "padding" and name != "output_padding" else 0,
                _tuple(v, 1, name, "conv_transpose1d")[0])

    y = _conv_transpose2d(input.unsqueeze(-2), weight.unsqueeze(2), bias, one(stride, "stride"),
                          one(padding, "padding"), one(output_padding, "output_padding"), groups,
                          one(dilation, "dilation"), "conv_transpose1d", 1)
    return y.squeeze(-2)


# ---- pooling ------------------------------------------------------------------------------------
def _pool_geom(shape: tuple, kernel_size, stride, padding, dilation, ceil_mode: bool, op: str,
               spatial: int = 2) -> _Geom:
    kernel = _tuple(kernel_size, 2, "kernel_size", op)
    stride = kernel if stride is None or stride == () or stride == [] else _tuple(
        stride, 2, "stride", op)
    pads = _tuple(padding, 2, "padding", op)
    dil = _tuple(dilation, 2, "dilation", op)
    _check_positive(kernel, "kernel_size", op)
    _check_positive(stride, "stride", op)
    _check_positive(dil, "dilation", op)
    for p, k, d in zip(pads, kernel, dil):
        if p < 0 or p > (d * (k - 1) + 1) // 2:
            raise RuntimeError(
                f"{op}: pad should be at most half of effective kernel size, but got "
                f"pad={p}, kernel_size={k} and dilation={d}"
            )
    h, w = shape[-2:]
    outs, extra = [], []
    for size, k, s, p, d in zip((h, w), kernel, stride, pads, dil):
        span = size + 2 * p - d * (k - 1) - 1
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1
        outs.append(o)
        extra.append(max(0, (o - 1) * s + d * (k - 1) + 1 - (size + 2 * p)))
    if outs[0] <= 0 or outs[1] <= 0:
        dims = "x".join(str(v) for v in _user_shape((1, 1) + tuple(shape[-2:]), spatial)[2:])
        odims = "x".join(str(v) for v in _user_shape((1, 1, outs[0], outs[1]), spatial)[2:])
        raise RuntimeError(
            f"{op}: Given input size: ({shape[-3]}x{dims}). Calculated output size: "
            f"({shape[-3]}x{odims}). Output size is too small"
        )
    return _Geom(kernel[0], kernel[1], stride[0], stride[1], dil[0], dil[1], pads[0],
                 pads[0] + extra[0], pads[1], pads[1] + extra[1], outs[0], outs[1])


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """y = max over each (kh × kw) window (PyTorch's max_pool2d); indices index each H·W plane."""
    return _max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                       "max_pool2d")


def _max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, op,
                spatial=2):
    x, unbatched = _batched(input, 2, op, "")
    if 0 in x._data.shape[1:]:
        raise RuntimeError(f"{op}: Expected input with non-zero sizes, got {list(input.shape)}")
    geom = _pool_geom(x._data.shape, kernel_size, stride, padding, dilation, ceil_mode, op,
                      spatial)
    y, idx = MaxPool2d.apply(x, geom)
    if unbatched:
        y = y.squeeze(0)
    if not return_indices:
        return y
    flat = wrap(_flat_indices(idx._data, geom, x._data.shape[-1]))
    return y, flat.squeeze(0) if unbatched else flat


def _flat_indices(idx, geom: _Geom, width: int):
    """Window-offset indices -> PyTorch's indices into each flattened input plane."""
    idx, xp = idx.astype(np.int64), devices.xp_of(idx)
    rows = (xp.arange(geom.oh).reshape(-1, 1) * geom.sh - geom.pt) + (idx // geom.kw) * geom.dh
    cols = (xp.arange(geom.ow) * geom.sw - geom.pl) + (idx % geom.kw) * geom.dw
    return rows * width + cols


def _avg_recip(size: int, k: int, s: int, p: int, o: int, count_include_pad: bool):
    start = np.arange(o) * s - p
    end = np.minimum(start + k, size + p)
    full = end - start
    inside = np.minimum(end, size) - np.maximum(start, 0)
    return full if count_include_pad else inside


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None) -> Tensor:
    """y = mean over each (kh × kw) window (PyTorch's avg_pool2d)."""
    if _amp.active and (out := _amp.run(
            "avg_pool2d", avg_pool2d, input, kernel_size, stride,
            padding, ceil_mode, count_include_pad, divisor_override)) is not None:
        return out
    return _avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                       divisor_override, "avg_pool2d")


def _avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override, op, spatial=2):
    x, unbatched = _batched(input, 2, op, "")
    geom = _pool_geom(x._data.shape, kernel_size, stride, padding, 1, ceil_mode, op, spatial)
    dtype = x._data.dtype
    if divisor_override is not None:
        if divisor_override == 0:
            raise RuntimeError(f"{op}: divisor must be not zero")
        recip = dtype.type(1.0 / divisor_override)
    else:
        h, w = x._data.shape[-2:]
        dh = _avg_recip(h, geom.kh, geom.sh, geom.pt, geom.oh, count_include_pad)
        dw = _avg_recip(w, geom.kw, geom.sw, geom.pl, geom.ow, count_include_pad)
        recip = devices.asarray_on(1.0 / np.outer(dh, dw), x._data, dtype)
    y = AvgPool2d.apply(x, geom, recip)
    return y.squeeze(0) if unbatched else y


def adaptive_windows(size: int, o: int) -> tuple:
    """(pos, valid), each (1, o, k): the positions of PyTorch's adaptive windows
    [⌊i·size/o⌋, ⌈(i+1)·size/o⌉) padded to the longest k, and which of them are inside."""
    i = np.arange(o)
    start = (i * size) // o
    end = -((-(i + 1) * size) // o)
    k = int((end - start).max())
    pos = start[:, None] + np.arange(k)[None, :]
    return pos[None], (pos < end[:, None])[None]


def resample(x: Tensor, axis: int, idx, weights, valid=None) -> Tensor:
    """y[..., i, ...] = Σ_t weights[i, t]·x[..., idx[i, t], ...] along ``axis``; where ``valid``
    is given, only over the valid t: the others are selected out, not weighted by 0, so an inf
    or NaN of x (or of the gradient) there stays out, as torch's."""
    like = x._data
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    out = None
    for t in range(idx.shape[1]):
        taken = x.index_select(axis, wrap(devices.asarray_on(idx[:, t], like, np.int64)))
        if valid is not None and not valid[:, t].all():
            inside = devices.asarray_on(valid[:, t].reshape(shape), like, bool)
            taken = _where(wrap(inside), taken, 0.0)
        if weights is not None:
            w = devices.asarray_on(weights[:, t].reshape(shape), like, like.dtype)
            taken = taken * wrap(w)
        out = taken if out is None else out + taken
    return out


def average_along(x: Tensor, axis: int, pos, valid, weights) -> Tensor:
    """Windows' weighted averages along ``axis`` (see :func:`resample`); positions past the
    edges (padding, a shorter window's end) must be marked not ``valid``."""
    return resample(x, axis, np.clip(pos, 0, x.shape[axis] - 1), weights, valid)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Average pooling to a fixed output size (PyTorch's adaptive windows)."""
    if _amp.active and (out := _amp.run(
            "adaptive_avg_pool2d", adaptive_avg_pool2d, input, output_size)) is not None:
        return out
    return _adaptive_avg_pool2d(input, output_size, "adaptive_avg_pool2d")


def _adaptive_avg_pool2d(input, output_size, op):
    x, unbatched = _batched(input, 2, op, "")
    h, w = x._data.shape[-2:]
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{op}: output_size must be 2, got {output_size!r}")
        oh, ow = (h if output_size[0] is None else int(output_size[0]),
                  w if output_size[1] is None else int(output_size[1]))
    else:
        oh = ow = int(output_size)
    if oh <= 0 or ow <= 0:
        raise RuntimeError(f"{op}: output_size must be positive, got {output_size!r}")
    if h == 0 or w == 0:
        raise RuntimeError(f"{op}: Expected input with non-zero sizes, got {list(input.shape)}")
    if (oh, ow) == (1, 1):
        y = x.mean((-2, -1), keepdim=True)
    elif h % oh == 0 and w % ow == 0:
        y = AvgPool2d.apply(x, _Geom(h // oh, w // ow, h // oh, w // ow, 1, 1, 0, 0, 0, 0, oh, ow),
                            x._data.dtype.type(1.0 / ((h // oh) * (w // ow))))
    else:  # the windows of each axis in turn (not as products with an averaging matrix, whose
        y = x  # zeros would make 0·inf a NaN)
        for axis, (n, o) in ((2, (h, oh)), (3, (w, ow))):
            pos, valid = (a[0] for a in adaptive_windows(n, o))
            weights = (valid / valid.sum(1, keepdims=True)).astype(x._data.dtype)
            y = average_along(y, axis, pos, valid, weights)
    return y.squeeze(0) if unbatched else y


# ---- 1-d pooling (as 2-d with a dummy height) ---------------------------------------------------
def _one(v, fill: int):
    if v is None:
        return None
    return (fill, _tuple(v, 1, "size", "pool1d")[0])


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """y = max over each window of (N, C, L) (PyTorch's max_pool1d)."""
    _check_float(input, "input", "max_pool1d")
    out = _max_pool2d(input.unsqueeze(-2), _one(kernel_size, 1), _one(stride, 1),
                      _one(padding, 0), _one(dilation, 1), ceil_mode, return_indices,
                      "max_pool1d", 1)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """y = mean over each window of (N, C, L) (PyTorch's avg_pool1d)."""
    if _amp.active and (out := _amp.run(
            "avg_pool1d", avg_pool1d, input, kernel_size, stride,
            padding, ceil_mode, count_include_pad)) is not None:
        return out
    _check_float(input, "input", "avg_pool1d")
    return _avg_pool2d(input.unsqueeze(-2), _one(kernel_size, 1), _one(stride, 1),
                       _one(padding, 0), ceil_mode, count_include_pad, None, "avg_pool1d",
                       1).squeeze(-2)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """Average pooling of (N, C, L) to a fixed length (PyTorch's adaptive windows)."""
    _check_float(input, "input", "adaptive_avg_pool1d")
    size = output_size[0] if isinstance(output_size, (tuple, list)) else output_size
    return _adaptive_avg_pool2d(input.unsqueeze(-2), (1, size),
                                "adaptive_avg_pool1d").squeeze(-2)


# ---- unfold / fold (im2col as a public op) ------------------------------------------------------
def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """im2col: (N, C, H, W) -> (N, C·kh·kw, L), every sliding window as a column."""
    x, unbatched = _batched(input, 2, "unfold", "")
    k = _tuple(kernel_size, 2, "kernel_size", "unfold")
    s = _tuple(stride, 2, "stride", "unfold")
    d = _tuple(dilation, 2, "dilation", "unfold")
    p = _tuple(padding, 2, "padding", "unfold")
    n, c, h, w = x._data.shape
    oh = _out_size(h, k[0], s[0], d[0], p[0], p[0])
    ow = _out_size(w, k[1], s[1], d[1], p[1], p[1])
    if oh <= 0 or ow <= 0:
        raise RuntimeError(
            f"unfold: the sliding blocks of kernel_size={k}, dilation={d}, padding={p}, "
            f"stride={s} do not fit in input of size {list(input.shape)}"
        )
    geom = _Geom(k[0], k[1], s[0], s[1], d[0], d[1], p[0], p[0], p[1], p[1], oh, ow)
    y = Im2Col.apply(x, geom).reshape(n, c * k[0] * k[1], oh * ow)
    return y.squeeze(0) if unbatched else y


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """col2im: (N, C·kh·kw, L) -> (N, C, H, W), overlaps summed (the adjoint of unfold)."""
    _check_float(input, "input", "fold")
    unbatched = input._data.ndim == 2
    x = input.unsqueeze(0) if unbatched else input
    if x._data.ndim != 3:
        raise RuntimeError(
            f"fold: Expected 2D or 3D (batch mode) tensor for input with possibly 0 batch size "
            f"and non-zero dimensions for input, but got: {list(input.shape)}"
        )
    h, w = _tuple(output_size, 2, "output_size", "fold")
    k = _tuple(kernel_size, 2, "kernel_size", "fold")
    s = _tuple(stride, 2, "stride", "fold")
    d = _tuple(dilation, 2, "dilation", "fold")
    p = _tuple(padding, 2, "padding", "fold")
    n, ck, length = x._data.shape
    oh = _out_size(h, k[0], s[0], d[0], p[0], p[0])
    ow = _out_size(w, k[1], s[1], d[1], p[1], p[1])
    if ck % (k[0] * k[1]) or oh * ow != length or oh <= 0 or ow <= 0:
        raise RuntimeError(
            f"fold: expected input of size (N, C×{k[0]}×{k[1]}, {max(oh, 0) * max(ow, 0)}) for "
            f"output_size={(h, w)}, kernel_size={k}, dilation={d}, padding={p}, stride={s}, but "
            f"got input of size {list(input.shape)}"
        )
    c = ck // (k[0] * k[1])
    geom = _Geom(k[0], k[1], s[0], s[1], d[0], d[1], p[0], p[0], p[1], p[1], oh, ow)
    y = Col2Im.apply(x.reshape(n, c, k[0], k[1], oh, ow), (n, c, h, w), geom)
    return y.squeeze(0) if unbatched else y
