"""Instance, RMS and local-response normalization (PyTorch's ``torch.nn.functional`` forms).

``instance_norm`` is batch normalization of the (1, N·C, *) reshaped input, exactly as PyTorch
computes it, so it reuses the fused batch-norm gate and its running-statistics update. The others
compose differentiable ops.
"""

from __future__ import annotations

from typing import Any

from chainrule.devices import np
from chainrule import devices
from chainrule.autograd.grad_mode import no_grad
from chainrule.tensor import Tensor, wrap

__all__ = ["instance_norm", "rms_norm", "local_response_norm"]


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
    from chainrule.nn.functional import batch_norm

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
    if eps is None:
        eps = float(np.finfo(input._data.dtype).eps)
    dims = tuple(range(input.ndim - k, input.ndim))
    y = input * ((input * input).mean(dims, keepdim=True) + eps).rsqrt()
    return y * weight if weight is not None else y


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> Tensor:
    """x / (k + α·mean of x² over ``size`` neighbouring channels)^β."""
    from chainrule.nn.pooling import avg_pool3d
    from chainrule.ops.conv import avg_pool2d
    from chainrule.ops.shape import pad

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
    from chainrule.ops.linalg import einsum

    scale = einsum("cj,njhw->nchw", wrap(member), input * input) * (alpha / size) + k
    return input * scale.pow(-beta)
