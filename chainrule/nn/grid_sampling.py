"""Spatial transformers: ``affine_grid`` and ``grid_sample`` (PyTorch's coordinate conventions,
padding modes and interpolation kernels, 2-d and 3-d).

``grid_sample`` reads every output location from a few input positions ("taps") per spatial
axis with weights that depend on the sampling coordinate: two linear taps, one nearest tap or
four cubic taps. The output is the sum over tap combinations of the product of their weights
times ``gather`` of the input, so the gradient reaches both the input (through the gather) and
the grid (through the weights), and higher orders come for free.
"""

from __future__ import annotations

import warnings
from typing import Any

from chainrule.devices import np
from chainrule import devices
from chainrule.creation import _torch_linspace
from chainrule.ops.binary import where
from chainrule.tensor import Tensor, wrap

__all__ = ["affine_grid", "grid_sample"]

_A = -0.75


def _warn_align_corners() -> None:
    warnings.warn("Default grid_sample and affine_grid behavior has changed to "
                  "align_corners=False since 1.3.0. Please specify align_corners=True if the old "
                  "behavior is desired. See the documentation of grid_sample for details.",
                  stacklevel=3)


def _base_coords(n: int, align_corners: bool, dt) -> np.ndarray:
    """The n normalized sample positions along one axis, in [-1, 1]."""
    if n <= 1:
        return np.zeros(max(n, 0), dt)
    x = _torch_linspace(-1.0, 1.0, n, np.dtype(dt))  # torch.linspace's values, bit for bit
    return x if align_corners else (x * (n - 1) / n).astype(dt)


def affine_grid(theta: Tensor, size: Any, align_corners: bool | None = None) -> Tensor:
    """The sampling grid (N, H, W, 2) (or (N, D, H, W, 3)) of the affine maps ``theta``
    (N, 2, 3) (or (N, 3, 4)) over the normalized output coordinates."""
    if align_corners is None:
        _warn_align_corners()
        align_corners = False
    if theta._data.dtype.kind != "f":
        raise ValueError(f"Expected theta to have floating point type, but got {theta.dtype}")
    size = list(size)
    if len(size) == 4:
        if theta.ndim != 3 or tuple(theta.shape[-2:]) != (2, 3):
            raise ValueError(f"Expected a batch of 2D affine matrices of shape Nx2x3 for size "
                             f"{size}. Got {theta.shape}.")
        spatial = size[-2:]
    elif len(size) == 5:
        if theta.ndim != 3 or tuple(theta.shape[-2:]) != (3, 4):
            raise ValueError(f"Expected a batch of 3D affine matrices of shape Nx3x4 for size "
                             f"{size}. Got {theta.shape}.")
        spatial = size[-3:]
    else:
        raise NotImplementedError(f"affine_grid only supports 4D and 5D sizes, for 2D and 3D "
                                  f"affine transforms, respectively. Got size {size}.")
    if align_corners and min(spatial) == 1:
        warnings.warn("Since version 1.3.0, affine_grid behavior has changed for unit-size grids "
                      "when align_corners=True. This is not an intended use case of affine_grid. "
                      "See the documentation of affine_grid for details.", stacklevel=2)
    elif min(size) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {size}")
    dt = theta._data.dtype
    axes = [_base_coords(s, align_corners, dt) for s in spatial]  # (D,) H, W
    mesh = np.meshgrid(*axes, indexing="ij")
    # homogeneous coordinates in PyTorch's order: x (width) first, then y (, z), then 1
    base = np.stack(list(mesh[::-1]) + [np.ones_like(mesh[0])], -1).reshape(-1, len(spatial) + 1)
    base = wrap(devices.asarray_on(base, theta._data, dt))
    grid = base @ theta.transpose(1, 2)  # (N, points, dims)
    return grid.reshape(size[0], *spatial, len(spatial))


def _unnormalize(coord: Tensor, size: int, align_corners: bool) -> Tensor:
    if align_corners:
        return (coord + 1) / 2 * (size - 1)
    return ((coord + 1) * size - 1) / 2


def _reflect(x: Any, twice_low: int, twice_high: int) -> Any:
    """Reflect coordinates into [low, high] (works on Tensors and on raw float arrays)."""
    if twice_low == twice_high:
        return x * 0.0
    low = twice_low / 2
    span = (twice_high - twice_low) / 2
    x = (x - low).abs() if isinstance(x, Tensor) else np.abs(x - low)
    raw = x._data if isinstance(x, Tensor) else x
    flips = np.floor(raw / span)
    extra = x - wrap(flips * span) if isinstance(x, Tensor) else x - flips * span
    even = (flips % 2) == 0
    if isinstance(x, Tensor):
        return where(wrap(even), extra + low, (extra * -1.0) + (span + low))
    return np.where(even, extra + low, span - extra + low)


def _pad_coords(x: Any, size: int, padding_mode: str, align_corners: bool) -> Any:
    """PyTorch's compute_coordinates: clip ('border') or reflect ('reflection')."""
    if padding_mode == "border":
        return x.clamp(0, size - 1) if isinstance(x, Tensor) else np.clip(x, 0, size - 1)
    if padding_mode == "reflection":
        if align_corners:
            x = _reflect(x, 0, 2 * (size - 1))
        else:
            x = _reflect(x, -1, 2 * size - 1)
        return x.clamp(0, size - 1) if isinstance(x, Tensor) else np.clip(x, 0, size - 1)
    return x


def _cubic_weights(t: Tensor) -> list:
    """Keys' cubic convolution weights (A = -0.75) of the four taps at offsets -1, 0, 1, 2."""
    def near(x):
        return ((x * (_A + 2) - (_A + 3)) * x) * x + 1

    def far(x):
        return ((x * _A - 5 * _A) * x + 8 * _A) * x - 4 * _A

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _axis_taps(coord: Tensor, size: int, mode: str, padding_mode: str,
               align_corners: bool) -> list:
    """Per tap: (integer positions (raw), in-bounds mask (raw), weight Tensor)."""
    x = _unnormalize(coord, size, align_corners)
    if mode == "bicubic":
        x0 = np.floor(x._data)
        weights = _cubic_weights(x - wrap(x0))
        taps = []
        for k, w in zip(range(-1, 3), weights):
            pos = _pad_coords(x0 + k, size, padding_mode, align_corners)
            idx = np.trunc(pos).astype(np.int64)  # static_cast<int64_t>
            taps.append((idx, (idx >= 0) & (idx < size), w))
        return taps
    x = _pad_coords(x, size, padding_mode, align_corners)
    if mode == "nearest":
        nearest = x.round()  # nearbyint (half to even); its gradient is zero, as PyTorch's
        idx = nearest._data.astype(np.int64)
        return [(idx, (idx >= 0) & (idx < size), nearest * 0.0 + 1.0)]
    x0 = np.floor(x._data)
    frac = x - wrap(x0)
    i0 = x0.astype(np.int64)
    return [(i0, (i0 >= 0) & (i0 < size), 1 - frac),
            (i0 + 1, (i0 + 1 >= 0) & (i0 + 1 < size), frac)]


def grid_sample(input: Tensor, grid: Tensor, mode: str = "bilinear",
                padding_mode: str = "zeros", align_corners: bool | None = None) -> Tensor:
    """Sample (N, C, H, W) (or (N, C, D, H, W)) ``input`` at the normalized locations of
    ``grid`` (N, H_out, W_out, 2) (x first) with bilinear, nearest or bicubic interpolation."""
    if mode not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"nn.functional.grid_sample(): expected mode to be 'bilinear', "
                         f"'nearest' or 'bicubic', but got: '{mode}'")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"nn.functional.grid_sample(): expected padding_mode to be 'zeros', "
                         f"'border', or 'reflection', but got: '{padding_mode}'")
    if align_corners is None:
        _warn_align_corners()
        align_corners = False
    nd = input.ndim - 2
    if nd not in (2, 3) or grid.ndim != input.ndim or grid.shape[-1] != nd:
        raise RuntimeError(f"grid_sampler(): expected 4D or 5D input and grid with the same "
                           f"number of dimensions and grid.size(-1) == {nd}, but got input of "
                           f"shape {list(input.shape)} and grid of shape {list(grid.shape)}")
    if grid.shape[0] != input.shape[0]:
        raise RuntimeError(f"grid_sampler(): expected grid and input to have same batch size, "
                           f"but got input with sizes {list(input.shape)} and grid with sizes "
                           f"{list(grid.shape)}")
    if mode == "bicubic" and nd != 2:
        raise RuntimeError("grid_sampler(): bicubic interpolation only supports 4D input")
    if input._data.dtype != grid._data.dtype:
        raise RuntimeError(f"grid_sampler(): expected input and grid to have the same dtype, but "
                           f"input has {input.dtype} and grid has {grid.dtype}")
    n, c, *spatial = input.shape
    out_spatial = tuple(grid.shape[1:-1])
    # grid's last dim is (x, y[, z]): axis j of the input (D, H, W order) is component nd-1-j
    taps = [_axis_taps(grid[..., nd - 1 - j], spatial[j], mode, padding_mode, align_corners)
            for j in range(nd)]
    flat = input.reshape(n, c, -1)
    like = input._data
    out = None
    combos = [[]]
    for axis_taps in taps:
        combos = [prev + [t] for prev in combos for t in axis_taps]
    for combo in combos:
        index = 0
        valid = True
        weight = None
        for j, (idx, ok, w) in enumerate(combo):
            index = index * spatial[j] + np.clip(idx, 0, spatial[j] - 1)
            valid = valid & ok
            if w is not None:
                weight = w if weight is None else weight * w
        index = devices.asarray_on(index.reshape(n, 1, -1), like, np.int64)
        index = devices.xp_of(like).broadcast_to(index, (n, c, index.shape[-1]))
        vals = flat.gather(2, wrap(index)).reshape(n, c, *out_spatial)
        coef = wrap(devices.asarray_on(valid, like, like.dtype))
        if weight is not None:
            coef = weight * coef
        term = vals * coef.unsqueeze(1)
        out = term if out is None else out + term
    return out
