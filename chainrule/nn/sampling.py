"""Resampling and rearranging pixels: ``interpolate`` (nearest, nearest-exact, linear, bilinear,
bicubic, trilinear, area), the deprecated ``upsample*`` forms, ``pixel_shuffle``,
``pixel_unshuffle`` and ``channel_shuffle`` (PyTorch's semantics, index rules and errors).

Every interpolation mode is separable: along each spatial axis an output position reads a few
input positions ("taps") with fixed weights, y[..., i, ...] = Σ_t w[i, t]·x[..., idx[i, t], ...].
The taps and weights follow PyTorch's CPU kernels exactly (the same source-index formulas,
computed in the same precision); the resampling itself is ``index_select`` and products, so
gradients (the adjoint: each input position sums what its taps received) and higher orders come
for free.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

from chainrule.devices import np
from chainrule.nn.pooling import adaptive_avg_pool3d
from chainrule.ops.conv import adaptive_avg_pool1d, adaptive_avg_pool2d, resample
from chainrule.tensor import Tensor

__all__ = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "pixel_shuffle",
           "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle"]

_LINEAR_MODES = {"linear": 3, "bilinear": 4, "trilinear": 5, "bicubic": 4}
_A = -0.75  # the cubic convolution constant PyTorch uses


# ---- taps and weights along one axis (PyTorch's UpSample.h) -------------------------------------
def _scale(in_size: int, out_size: int, align_corners: bool, scale: float | None, dt) -> Any:
    """The source step per output step, in the kernel's precision ``dt``."""
    if align_corners:
        return dt(in_size - 1) / dt(out_size - 1) if out_size > 1 else dt(0)
    if scale is not None and scale > 0:
        return dt(1.0 / scale)
    return dt(in_size) / dt(out_size)


def _nearest_taps(in_size: int, out_size: int, scale: float | None, exact: bool):
    """Source index of every output index (float32 arithmetic, as PyTorch's nearest kernels)."""
    i = np.arange(out_size)
    if not exact and out_size == in_size:
        return i[:, None]
    if not exact and out_size == 2 * in_size:
        return (i >> 1)[:, None]
    s = _scale(in_size, out_size, False, scale, np.float32)
    if exact:
        src = np.floor(((i + 0.5) * np.float64(s)).astype(np.float32))
    else:
        src = np.floor(i.astype(np.float32) * s)
    return np.minimum(src.astype(np.int64), in_size - 1)[:, None]


def _guard(real, in_size: int, dt):
    """(⌊real⌋ clamped to in_size - 1, the fraction clamped to [0, 1]) (guard_index_and_lambda)."""
    idx = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    lam = np.clip(real - idx.astype(dt), dt(0), dt(1)).astype(dt)
    return idx, lam


def _linear_taps(in_size: int, out_size: int, align_corners: bool, scale: float | None, dt):
    """(indices, weights), each (out, 2): the two neighbours and their linear weights."""
    i = np.arange(out_size)
    if out_size == in_size:
        return np.stack([i, i], 1), np.stack([np.ones(out_size, dt), np.zeros(out_size, dt)], 1)
    s = _scale(in_size, out_size, align_corners, scale, dt)
    if align_corners:
        real = (s * i.astype(dt)).astype(dt)
    else:
        real = (s * (i.astype(dt) + dt(0.5)) - dt(0.5)).astype(dt)
        real = np.maximum(real, dt(0))
    i0, lam1 = _guard(real, in_size, dt)
    i1 = i0 + (i0 < in_size - 1)
    return np.stack([i0, i1], 1), np.stack([(dt(1) - lam1).astype(dt), lam1], 1)


def _cubic_taps(in_size: int, out_size: int, align_corners: bool, scale: float | None, dt):
    """(indices, weights), each (out, 4): Keys' cubic convolution (A = -0.75), edges clamped."""
    i = np.arange(out_size)
    s = _scale(in_size, out_size, align_corners, scale, dt)
    if align_corners:
        real = (s * i.astype(dt)).astype(dt)
    else:
        real = (s * (i.astype(dt) + dt(0.5)) - dt(0.5)).astype(dt)
    i0, t = _guard(real, in_size, dt)
    a = dt(_A)

    def near(x):  # |x| ≤ 1
        return ((a + dt(2)) * x - (a + dt(3))) * x * x + dt(1)

    def far(x):  # 1 < |x| < 2
        return ((a * x - dt(5) * a) * x + dt(8) * a) * x - dt(4) * a

    one = dt(1)
    weights = np.stack([far(t + one), near(t), near(one - t), far(one - t + one)], 1).astype(dt)
    idx = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
    return idx, weights


# ---- interpolate --------------------------------------------------------------------------------
def _is_integer(v: Any) -> bool:
    if isinstance(v, Tensor):
        return v._data.dtype.kind in "iu"
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _sizes_and_scales(input: Tensor, size: Any, scale_factor: Any, mode: str,
                      recompute_scale_factor: bool | None) -> tuple:
    """(output sizes, scale factors or Nones) per spatial dim, as PyTorch's interpolate works
    them out."""
    dim = input.ndim - 2
    spatial = list(input.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise ValueError(
                    "Input and output must have the same number of spatial dimensions, but got "
                    f"input with spatial dimensions of {spatial} and output size of {size}. "
                    "Please provide input tensor in (N, C, d1, d2, ...,dK) format and output "
                    "size in (o1, o2, ...,oK) format."
                )
            if not all(_is_integer(s) for s in size):
                raise TypeError(
                    "expected size to be one of int or Tuple[int] or Tuple[int, int] or "
                    f"Tuple[int, int, int], but got size with types {[type(s) for s in size]}"
                )
            out = [int(s) for s in size]
        else:
            out = [int(size)] * dim
        scales = [None] * dim
    elif scale_factor is not None:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != dim:
                raise ValueError(
                    "Input and scale_factor must have the same number of spatial dimensions, but "
                    f"got input with spatial dimensions of {spatial} and scale_factor of shape "
                    f"{scale_factor}. Please provide input tensor in (N, C, d1, d2, ...,dK) "
                    "format and scale_factor in (s1, s2, ...,sK) format."
                )
            scales = [float(s) for s in scale_factor]
        else:
            scales = [float(scale_factor)] * dim
        out = [int(math.floor(float(n) * s)) for n, s in zip(spatial, scales)]
        if recompute_scale_factor or mode == "area":
            scales = [None] * dim
    else:
        raise ValueError("either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
    if any(o <= 0 for o in out):
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got input "
                           f"({', '.join(map(str, spatial))}) and output "
                           f"({', '.join(map(str, out))})")
    return out, scales


def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resize the spatial dims of an (N, C, d1[, d2[, d3]]) input to ``size`` or by
    ``scale_factor`` with ``mode`` (PyTorch's index rules; ``antialias`` is not supported)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate(): argument 'input' must be Tensor, not "
                        f"{type(input).__name__}")
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating "
                             "modes: linear | bilinear | bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    nd = input.ndim
    if nd not in (3, 4, 5) or mode not in ("nearest", "nearest-exact", "area", "linear",
                                           "bilinear", "trilinear", "bicubic"):
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {nd}D) for the modes: "
            "nearest | linear | bilinear | bicubic | trilinear | lanczos | area | nearest-exact "
            f"(got {mode})"
        )
    wanted = _LINEAR_MODES.get(mode)
    if wanted is not None and wanted != nd:
        raise NotImplementedError(f"Got {nd}D input, but {mode} mode needs {wanted}D input")
    out, scales = _sizes_and_scales(input, size, scale_factor, mode, recompute_scale_factor)
    if antialias:
        if not (mode in ("bilinear", "bicubic") and nd == 4):
            raise ValueError("Anti-alias option is restricted to bilinear, bicubic, and lanczos "
                             "modes and requires a 4-D tensor as input")
        raise NotImplementedError("interpolate: antialias=True is not supported by chainrule")
    if input._data.dtype.kind != "f" and mode != "nearest" and mode != "nearest-exact":
        raise NotImplementedError(f"interpolate: mode {mode!r} needs a floating point input, "
                                  f"got {input.dtype}")
    if mode == "area":
        return (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d)[nd - 3](input, out)
    dt = input._data.dtype.type
    y = input
    for d, (n_in, n_out, s) in enumerate(zip(input.shape[2:], out, scales)):
        if mode in ("nearest", "nearest-exact"):
            idx, w = _nearest_taps(n_in, n_out, s, mode == "nearest-exact"), None
        elif mode == "bicubic":
            idx, w = _cubic_taps(n_in, n_out, align_corners, s, dt)
        else:
            idx, w = _linear_taps(n_in, n_out, align_corners, s, dt)
        y = resample(y, 2 + d, idx, w)
    return y


def upsample(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
             align_corners: bool | None = None) -> Tensor:
    """Deprecated: ``interpolate(input, size, scale_factor, mode, align_corners)``."""
    warnings.warn("`nn.functional.upsample` is deprecated. Use `nn.functional.interpolate` "
                  "instead.", stacklevel=2)
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: Tensor, size: Any = None, scale_factor: Any = None) -> Tensor:
    """Deprecated: ``interpolate(input, size, scale_factor, mode='nearest')``."""
    warnings.warn("`nn.functional.upsample_nearest` is deprecated. Use "
                  "`nn.functional.interpolate` instead.", stacklevel=2)
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input: Tensor, size: Any = None, scale_factor: Any = None) -> Tensor:
    """Deprecated: ``interpolate(..., mode='bilinear', align_corners=True)``."""
    warnings.warn("`nn.functional.upsample_bilinear` is deprecated. Use "
                  "`nn.functional.interpolate` instead.", stacklevel=2)
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# ---- rearranging --------------------------------------------------------------------------------
def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(*, C·r², H, W) -> (*, C, H·r, W·r): each r×r block of the output comes from r² channels."""
    r = int(upscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_shuffle expects input to have at least 3 dimensions, but got "
                           f"input with {input.ndim} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be "
                           f"divisible by the square of upscale_factor, but input.size(-3)={c} "
                           f"is not divisible by {r * r}")
    k = len(lead)
    y = input.reshape(*lead, c // (r * r), r, r, h, w)
    y = y.permute(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return y.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(*, C, H·r, W·r) -> (*, C·r², H, W): the inverse of ``pixel_shuffle``."""
    r = int(downscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_unshuffle expects input to have at least 3 dimensions, but "
                           f"got input with {input.ndim} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if h % r:
        raise RuntimeError(f"pixel_unshuffle expects height to be divisible by "
                           f"downscale_factor, but input.size(-2)={h} is not divisible by {r}")
    if w % r:
        raise RuntimeError(f"pixel_unshuffle expects width to be divisible by "
                           f"downscale_factor, but input.size(-1)={w} is not divisible by {r}")
    k = len(lead)
    y = input.reshape(*lead, c, h // r, r, w // r, r)
    y = y.permute(*range(k), k, k + 2, k + 4, k + 1, k + 3)
    return y.reshape(*lead, c * r * r, h // r, w // r)


def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    """(N, C, *) with C = g·k: channel j·k + i moves to i·g + j (ShuffleNet)."""
    g = int(groups)
    if input.ndim < 3:
        raise RuntimeError(f"channel_shuffle expects input to have at least 3 dimensions, but "
                           f"got input with {input.ndim} dimension(s)")
    if g <= 0:
        raise RuntimeError(f"Number of groups to divide channels in must be positive. Value of "
                           f"groups:{g}")
    n, c, *rest = input.shape
    if c % g:
        raise RuntimeError(f"Number of channels must be divisible by groups. Got {c} channels "
                           f"and {g} groups.")
    return input.reshape(n, g, c // g, *rest).transpose(1, 2).reshape(n, c, *rest)


native_channel_shuffle = channel_shuffle
