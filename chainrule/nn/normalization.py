"""Normalization (PyTorch's ``torch.nn.functional`` forms): batch and layer norm as fused gates,
group norm, ``normalize``, then instance, RMS and local-response normalization.

``instance_norm`` is batch normalization of the (1, N·C, *) reshaped input, exactly as PyTorch
computes it, so it reuses the fused batch-norm gate and its running-statistics update. The others
compose differentiable ops.
"""

from __future__ import annotations

import math
from typing import Any

from chainrule import devices
from chainrule import dtypes as _dt
from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import Op
from chainrule.autograd.grad_mode import no_grad
from chainrule.devices import np
from chainrule.kernels import kernels_for
from chainrule.nn.checks import check_tensor, shape_of
from chainrule.nn.pooling import avg_pool3d
from chainrule.ops.conv import avg_pool2d
from chainrule.ops.linalg import einsum
from chainrule.ops.reduce import norm
from chainrule.ops.shape import pad
from chainrule.tensor import Tensor, wrap

__all__ = ["batch_norm", "layer_norm", "group_norm", "normalize", "instance_norm", "rms_norm",
           "local_response_norm"]


# ---- batch, layer and group norm ----------------------------------------------------------------
def _channel_shape(input: Tensor) -> tuple:
    return (1, input.shape[1]) + (1,) * (input.ndim - 2)


class BatchNorm(Op):
    """y = x̂·w + b with x̂ = (x - mean)/√(var + eps) per channel over the batch (and spatial)
    dims; dx = (ĝ - mean ĝ - x̂·mean(ĝ·x̂))/σ with ĝ = g·w;  dw = Σ g·x̂;  db = Σ g"""

    @staticmethod
    def forward(ctx, x, w, b, xhat, rstd, axes, eps):
        # x̂ and 1/σ come from batch_norm (which also needs the batch statistics); they are
        # constants here and are recomputed from x under create_graph.
        ctx.save_for_backward(x, w, xhat, rstd)
        ctx.axes, ctx.eps = axes, eps
        return kernels_for(xhat).channel_affine(xhat, w, b)

    @staticmethod
    def backward(ctx, g):
        x, w, xhat, rstd = ctx.saved_tensors
        K = kernels_for(g)
        xhat, rstd = K.norm_stats(x, xhat, rstd, ctx.axes, ctx.eps)
        gx, gw, gb = K.batch_norm_backward(g, w, xhat, rstd, ctx.axes, ctx.needs_input_grad[:3])
        return gx, gw, gb, None, None, None, None


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dim 1) by batch statistics (training) or running ones (eval);
    in training, update the running stats in place (running_var with the unbiased variance)."""
    if _amp.active and (out := _amp.run("batch_norm", batch_norm, input, running_mean,
                                        running_var, weight, bias, training, momentum,
                                        eps)) is not None:
        return out
    check_tensor(input, "batch_norm")
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected 2D or more input, got shape {shape_of(input)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and shape_of(t) != (c,):
            raise RuntimeError(
                f"batch_norm: {name} should contain {c} elements (input shape {shape_of(input)}), "
                f"got shape {shape_of(t)}"
            )
    cshape = _channel_shape(input)
    if training:
        axes = (0,) + tuple(range(2, input.ndim))
        n = input.numel() // c
        if n <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size "
                f"{input.shape}"
            )
        x = input._data
        xhat, rstd, mean, var = kernels_for(x).batch_norm_stats(x, axes, float(eps))
        if running_mean is not None or running_var is not None:
            with no_grad():
                m = momentum
                if running_mean is not None:
                    bm = mean.reshape(c).astype(running_mean._data.dtype)
                    running_mean._data = running_mean._data * (1 - m) + bm * m
                if running_var is not None:
                    bv = var.reshape(c).astype(running_var._data.dtype) * (n / (n - 1))
                    running_var._data = running_var._data * (1 - m) + bv * m
        return BatchNorm.apply(input, weight, bias, xhat, rstd, axes, float(eps))
    if running_mean is None or running_var is None:
        raise RuntimeError("batch_norm: running_mean and running_var must be defined in "
                           "evaluation mode")
    # eval: y = x·scale + shift with per-channel scale = w/σ and shift = b - mean·scale
    rv = running_var._data.reshape(cshape)
    rstd = wrap((1 / np.sqrt(rv + rv.dtype.type(eps))).astype(input._data.dtype, copy=False))
    rm = wrap(running_mean._data.reshape(cshape).astype(input._data.dtype, copy=False))
    scale = rstd if weight is None else weight.reshape(cshape) * rstd
    shift = -(rm * scale) if bias is None else bias.reshape(cshape) - rm * scale
    return input * scale + shift


class LayerNorm(Op):
    """y = x̂·w + b with x̂ = (x - mean)/√(var + eps) over the last k dims;
    dx = (ĝ - mean ĝ - x̂·mean(ĝ·x̂))/σ with ĝ = g·w;  dw = Σ g·x̂;  db = Σ g"""

    @staticmethod
    def forward(ctx, x, w, b, k, eps):
        ctx.axes, ctx.eps = tuple(range(x.ndim - k, x.ndim)), eps
        y, xhat, rstd = kernels_for(x).layer_norm(x, w, b, k, eps)
        ctx.save_for_backward(x, w, xhat, rstd)  # x̂, 1/σ: constants, recomputed under create_graph
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, xhat, rstd = ctx.saved_tensors
        gx, gw, gb = kernels_for(g).layer_norm_backward(g, x, w, xhat, rstd, ctx.axes, ctx.eps,
                                                        ctx.needs_input_grad)
        return gx, gw, gb, None, None


def layer_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dims, then scale and shift."""
    if _amp.active and (out := _amp.run(
            "layer_norm", layer_norm, input, normalized_shape, weight, bias, eps)) is not None:
        return out
    check_tensor(input, "layer_norm")
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or input.ndim < k or shape_of(input)[-k:] != ns:
        raise RuntimeError(
            f"layer_norm: Given normalized_shape={list(ns)}, expected input with shape "
            f"[*, {', '.join(map(str, ns))}], but got input of size{list(input.shape)}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and shape_of(t) != ns:
            raise RuntimeError(f"layer_norm: {name} of shape {shape_of(t)} does not match "
                               f"normalized_shape {list(ns)}")
    if weight is not None and bias is not None and weight._data.dtype != bias._data.dtype:
        raise RuntimeError(f"layer_norm: weight ({weight.dtype}) and bias ({bias.dtype}) must "
                           f"have the same dtype")
    if math.prod(ns) == 0:  # nothing to normalize: an empty result, still connected to w, b
        out = input * 1.0
        out = out * weight if weight is not None else out
        return out + bias if bias is not None else out
    return LayerNorm.apply(input, weight, bias, k, float(eps))


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over groups of channels (and all spatial positions) per sample."""
    if _amp.active and (out := _amp.run(
            "group_norm", group_norm, input, num_groups, weight, bias, eps)) is not None:
        return out
    check_tensor(input, "group_norm")
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise RuntimeError(
            f"group_norm: Expected number of channels in input to be divisible by num_groups, "
            f"but got input of shape {list(input.shape)} and num_groups={num_groups}"
        )
    x = input.reshape(input.shape[0], num_groups, -1)
    mean = x.mean(2, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(2, keepdim=True)
    out = (centered * (var + eps).rsqrt()).reshape(*input.shape)
    cshape = _channel_shape(input)
    if weight is not None:
        out = out * weight.reshape(cshape)
    if bias is not None:
        out = out + bias.reshape(cshape)
    return out


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: Any = None) -> Tensor:
    """x / max(‖x‖_p, eps) along ``dim``."""
    return input / norm(input, p, dim, keepdim=True).clamp(min=eps)


# ---- instance, RMS and local-response norm ------------------------------------------------------
def _verify_spatial_size(shape: tuple) -> None:
    size = 1
    for s in shape[2:]:
        size *= s
    if size == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size "
                         f"{list(shape)}")


def instance_norm(input: Tensor, running_mean: Tensor | None = None,
                  running_var: Tensor | None = None, weight: Tensor | None = None,
                  bias: Tensor | None = None, use_input_stats: bool = True, momentum: float = 0.1,
                  eps: float = 1e-5) -> Tensor:
    """Normalize each (sample, channel) plane over its spatial dims, then a per-channel affine;
    the running statistics, when given, take the batch average of the per-instance update."""
    if use_input_stats:
        _verify_spatial_size(tuple(input.shape))
    n, c = input.shape[:2]
    x = input.reshape(1, n * c, *input.shape[2:])
    w = weight.repeat(n) if weight is not None else None
    b = bias.repeat(n) if bias is not None else None
    rm = running_mean.repeat(n).detach() if running_mean is not None else None
    rv = running_var.repeat(n).detach() if running_var is not None else None
    y = batch_norm(x, rm, rv, w, b, use_input_stats, momentum, eps)
    with no_grad():
        if running_mean is not None:
            running_mean.copy_(rm.reshape(n, c).mean(0))
        if running_var is not None:
            running_var.copy_(rv.reshape(n, c).mean(0))
    return y.reshape(*input.shape)


def rms_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    """x / √(mean(x²) + eps) over the trailing ``normalized_shape`` dims, times ``weight``;
    ``eps`` defaults to the dtype's machine epsilon."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    shape = tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if k == 0 or tuple(input.shape[input.ndim - k:]) != shape or input.ndim < k:
        raise RuntimeError(
            f"rms_norm: Given normalized_shape={list(shape)}, expected input with shape "
            f"[*, {', '.join(map(str, shape))}], but got input of size{list(input.shape)}")
    if weight is not None and tuple(weight.shape) != shape:
        raise RuntimeError(f"rms_norm: Expected weight to be of same shape as normalized_shape, "
                           f"but got weight of shape {list(weight.shape)} and normalized_shape "
                           f"= {list(shape)}")
    if input._data.dtype.kind not in _dt.FLOAT_KINDS:
        raise RuntimeError(
            f"\"rms_norm\" not implemented for '{_dt.scalar_type_name(input._data.dtype)}'")
    if eps is None:
        eps = float(np.finfo(input._data.dtype).eps)
    dims = tuple(range(input.ndim - k, input.ndim))
    y = input * ((input * input).mean(dims, keepdim=True) + eps).rsqrt()
    if weight is None:
        return y
    y = y * weight
    return y if y.dtype == input.dtype else y.to(input.dtype)  # torch: the input's dtype


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:
    """x / (k + α·mean of x² over ``size`` neighbouring channels)^β."""
    dim = input.ndim
    if dim < 3:
        raise ValueError(f"Expected 3D or higher dimensionality                          input "
                         f"(got {dim} dimensions)")
    if input.numel() == 0:
        return input
    div = input * input
    if dim == 3:
        div = pad(div.unsqueeze(1), (0, 0, size // 2, (size - 1) // 2))
        div = avg_pool2d(div, (size, 1), stride=1).squeeze(1)
    else:
        sizes = tuple(input.shape)
        div = div.reshape(sizes[0], 1, sizes[1], sizes[2], -1)
        div = pad(div, (0, 0, 0, 0, size // 2, (size - 1) // 2))
        div = avg_pool3d(div, (size, 1, 1), stride=1).squeeze(1).reshape(*sizes)
    return input / (div * alpha + k).pow(beta)


def _cross_map_windows(channels: int, size: int) -> np.ndarray:
    """(C, C) 0/1 matrix: which channels' squares make up each channel's scale, following the
    running-sum recurrence of PyTorch's legacy CrossMapLRN2d (the first channel is never
    dropped from the sum)."""
    pre_pad = int((size - 1) / 2 + 1)
    member = np.zeros((channels, channels))
    member[0, :min(pre_pad, channels)] = 1
    for c in range(1, channels):
        member[c] = member[c - 1]
        if c < channels - pre_pad + 1:
            member[c, c + pre_pad - 1] += 1
        if c > pre_pad:
            member[c, c - pre_pad] -= 1
    return member


def cross_map_lrn2d(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                    k: float = 1.0) -> Tensor:
    """x·(k + α/size·Σ_window x²)^-β over channels of an (N, C, H, W) input (CrossMapLRN2d)."""
    if input.ndim != 4:
        raise ValueError(f"CrossMapLRN2d: Expected input to be 4D, got {input.ndim}D instead.")
    member = devices.asarray_on(_cross_map_windows(input.shape[1], size), input._data,
                                input._data.dtype)
    scale = einsum("cj,njhw->nchw", wrap(member), input * input) * (alpha / size) + k
    return input * scale.pow(-beta)
