"""Pooling beyond ``ops/conv.py``'s 1-d/2-d gates: 3-d max/avg pooling, adaptive max and 3-d
adaptive average pooling, fractional max pooling, power-average (LP) pooling and max unpooling
(PyTorch's ``torch.nn.functional`` names, output sizes, index layout and errors).

Max pooling of any kind is "choose, then gather": the winning input position of every window is
found on the raw arrays (PyTorch's scan: the first maximum, NaN wins), and the output is
``gather`` of the input at those flat indices, so the gradient goes to exactly the position
PyTorch's kernel routes it to, and higher orders come for free. Average pooling is separable:
along each spatial axis every output averages a few input positions ("taps"), so 3-d average
pooling is three 1-d passes of ``index_select`` and products.
"""

from __future__ import annotations

import math
from typing import Any

from chainrule.devices import np
from chainrule.batching import index_plain
from chainrule import devices
from chainrule.creation import rand, zeros
from chainrule.ops import conv as _conv
from chainrule.ops.elementwise import relu
from chainrule.tensor import Tensor, wrap

__all__ = [
    "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "avg_pool3d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices", "fractional_max_pool2d", "fractional_max_pool3d",
    "fractional_max_pool2d_with_indices", "fractional_max_pool3d_with_indices", "lp_pool1d",
    "lp_pool2d", "lp_pool3d", "max_unpool1d", "max_unpool2d", "max_unpool3d",
]


def _ntuple(value: Any, n: int, name: str, op: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = tuple(value) * n
        if len(value) != n:
            raise RuntimeError(f"{op}: {name} must either be a single int, or a tuple of {n} "
                               f"ints")
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _batched(input: Tensor, nd: int, op: str) -> tuple:
    """(input as (N, C, *spatial), was it unbatched)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}(): argument 'input' must be Tensor, not {type(input).__name__}")
    if input.ndim == nd + 2:
        x, unbatched = input, False
    elif input.ndim == nd + 1:
        x, unbatched = input.unsqueeze(0), True
    else:
        raise RuntimeError(f"{op}: non-empty {nd + 1}D or {nd + 2}D (batch mode) tensor expected "
                           f"for input, but got input of size {list(input.shape)}")
    if any(s == 0 for s in x.shape[1:]):
        raise RuntimeError(f"{op}: Expected input's non-batch dimensions to have positive "
                           f"length, but input has a shape of {list(input.shape)}")
    return x, unbatched


def _out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape: the last window must start inside the (left-padded)
    input."""
    span = size + 2 * p - d * (k - 1) - 1
    o = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (o - 1) * s >= size + p:
        o -= 1
    return o


# ---- windows: per spatial dim, the input position of every (output, offset) pair --------------
def _regular_windows(size: int, k: int, s: int, p: int, d: int, o: int) -> tuple:
    pos = np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d
    return pos[None], ((pos >= 0) & (pos < size))[None]


def _choose(x, windows: list) -> Any:
    """Flat (per N·C plane) index of the maximum of every window of the raw (N, C, *S) array
    ``x``; ``windows[j]`` = (pos, valid), each (P, out_j, k_j) with P = 1 or N·C."""
    n, c, *spatial = x.shape
    nd = len(spatial)
    planes = x.reshape((n * c,) + tuple(spatial))
    outs = [w[0].shape[1] for w in windows]
    ks = [w[0].shape[2] for w in windows]
    index: list = [np.arange(n * c).reshape((-1,) + (1,) * (2 * nd))]
    valid = True
    for j, ((pos, ok), size) in enumerate(zip(windows, spatial)):
        shape = [pos.shape[0]] + [1] * (2 * nd)
        shape[1 + j], shape[1 + nd + j] = outs[j], ks[j]
        index.append(np.clip(pos, 0, size - 1).reshape(shape))
        valid = valid & ok.reshape(shape)
    xp = devices.xp_of(x)
    index = [devices.asarray_on(i, x) for i in index]
    win = planes[tuple(index)]  # (N·C, *out, *k)
    win = xp.where(devices.asarray_on(valid, x), win, -np.inf)
    flat = win.reshape(win.shape[:1 + nd] + (-1,))
    nan = xp.isnan(flat)
    # PyTorch keeps the first maximum, and a NaN replaces the running maximum
    arg = xp.where(nan.any(-1), flat.shape[-1] - 1 - xp.argmax(nan[..., ::-1], -1),
                   xp.argmax(flat, -1))
    offsets = np.unravel_index(devices.to_device(arg, "cpu"), ks)
    flat_idx = 0
    for j, ((pos, _), size) in enumerate(zip(windows, spatial)):
        out_j = np.arange(outs[j]).reshape([1] * (1 + j) + [-1] + [1] * (nd - 1 - j))
        plane = np.arange(pos.shape[0]).reshape((-1,) + (1,) * nd) if pos.shape[0] > 1 else 0
        coord = index_plain(pos, (plane, out_j, offsets[j]))  # pos[...]; offsets may be vmap's
        flat_idx = flat_idx * size + coord
    flat_idx = np.broadcast_to(flat_idx, (n * c,) + tuple(outs))
    return devices.asarray_on(flat_idx.reshape((n, c) + tuple(outs)), x, np.int64)


def _gather_max(x: Tensor, idx) -> Tensor:
    """y = x at the chosen flat indices (the gradient goes to those positions only)."""
    n, c = x.shape[:2]
    out_shape = tuple(idx.shape)
    y = x.reshape(n, c, -1).gather(2, wrap(idx.reshape(n, c, -1)))
    return y.reshape(*out_shape)


def _finish(y: Tensor, idx, unbatched: bool, return_indices: bool) -> Any:
    if unbatched:
        y = y.squeeze(0)
        idx = idx[0]
    return (y, wrap(idx)) if return_indices else y


def _check_float(input: Tensor, op: str) -> None:
    if input._data.dtype.kind != "f":
        raise RuntimeError(f"{op}: expected a floating point input, but got {input.dtype}")


# ---- max pooling --------------------------------------------------------------------------------
def _max_pool_nd(input, nd, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                 op):
    x, unbatched = _batched(input, nd, op)
    _check_float(x, op)
    k = _ntuple(kernel_size, nd, "kernel_size", op)
    s = k if stride is None or stride == [] or stride == () else _ntuple(stride, nd, "stride", op)
    p = _ntuple(padding, nd, "padding", op)
    d = _ntuple(dilation, nd, "dilation", op)
    if any(v <= 0 for v in k + s + d):
        raise RuntimeError(f"{op}: kernel_size, stride and dilation should be greater than zero, "
                           f"but got kernel_size={k}, stride={s}, dilation={d}")
    for pj, kj, dj in zip(p, k, d):
        if pj < 0 or pj > (dj * (kj - 1) + 1) // 2:
            raise RuntimeError(f"{op}: pad should be at most half of effective kernel size, but "
                               f"got pad={pj}, kernel_size={kj} and dilation={dj}")
    spatial = x.shape[2:]
    outs = [_out_size(n, *a, ceil_mode) for n, a in zip(spatial, zip(k, s, p, d))]
    if any(o <= 0 for o in outs):
        raise RuntimeError(f"{op}: Given input size: ({'x'.join(map(str, x.shape[1:]))}). "
                           f"Calculated output size: ({x.shape[1]}x{'x'.join(map(str, outs))}). "
                           "Output size is too small")
    windows = [_regular_windows(n, *a) for n, a in zip(spatial, zip(k, s, p, d, outs))]
    idx = _choose(x._data, windows)
    return _finish(_gather_max(x, idx), idx, unbatched, return_indices)


def max_pool3d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """Max over each (kd × kh × kw) window of (N, C, D, H, W); indices index each D·H·W volume."""
    return _max_pool_nd(input, 3, kernel_size, stride, padding, dilation, ceil_mode,
                        return_indices, "max_pool3d")


def max_pool3d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode: bool = False, return_indices: bool = False) -> tuple:
    """``max_pool3d`` returning (output, indices)."""
    return max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode: bool = False, return_indices: bool = False) -> tuple:
    """``max_pool2d`` returning (output, indices)."""
    return _conv.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool1d_with_indices(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode: bool = False, return_indices: bool = False) -> tuple:
    """``max_pool1d`` returning (output, indices)."""
    return _conv.max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


# ---- adaptive pooling ---------------------------------------------------------------------------
def _output_size(output_size: Any, spatial: tuple, op: str) -> list:
    nd = len(spatial)
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != nd:
            raise RuntimeError(f"{op}: output_size must be {nd}")
        out = [n if o is None else int(o) for o, n in zip(output_size, spatial)]
    else:
        out = [int(output_size)] * nd
    if any(o < 0 for o in out):
        raise RuntimeError(f"{op}: elements of output_size must be greater than or equal to 0 "
                           f"but received {tuple(out)}")
    return out


def _adaptive_max(input, nd, output_size, return_indices, op):
    x, unbatched = _batched(input, nd, op)
    _check_float(x, op)
    out = _output_size(output_size, tuple(x.shape[2:]), op)
    windows = [_conv.adaptive_windows(n, o) for n, o in zip(x.shape[2:], out)]
    idx = _choose(x._data, windows)
    return _finish(_gather_max(x, idx), idx, unbatched, return_indices)


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False) -> Any:
    """Max pooling of (N, C, L) to a fixed length (PyTorch's adaptive windows)."""
    return _adaptive_max(input, 1, output_size, return_indices, "adaptive_max_pool1d")


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False) -> Any:
    """Max pooling of (N, C, H, W) to a fixed (H_out, W_out) (None keeps that size)."""
    return _adaptive_max(input, 2, output_size, return_indices, "adaptive_max_pool2d")


def adaptive_max_pool3d(input: Tensor, output_size, return_indices: bool = False) -> Any:
    """Max pooling of (N, C, D, H, W) to a fixed (D_out, H_out, W_out)."""
    return _adaptive_max(input, 3, output_size, return_indices, "adaptive_max_pool3d")


def adaptive_max_pool1d_with_indices(input: Tensor, output_size,
                                     return_indices: bool = False) -> tuple:
    """``adaptive_max_pool1d`` returning (output, indices)."""
    return adaptive_max_pool1d(input, output_size, True)


def adaptive_max_pool2d_with_indices(input: Tensor, output_size,
                                     return_indices: bool = False) -> tuple:
    """``adaptive_max_pool2d`` returning (output, indices)."""
    return adaptive_max_pool2d(input, output_size, True)


def adaptive_max_pool3d_with_indices(input: Tensor, output_size,
                                     return_indices: bool = False) -> tuple:
    """``adaptive_max_pool3d`` returning (output, indices)."""
    return adaptive_max_pool3d(input, output_size, True)


# ---- average pooling, one axis at a time --------------------------------------------------------
def avg_pool3d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over each (kd × kh × kw) window of (N, C, D, H, W) (PyTorch's divisors)."""
    op = "avg_pool3d"
    x, unbatched = _batched(input, 3, op)
    _check_float(x, op)
    k = _ntuple(kernel_size, 3, "kernel_size", op)
    s = k if stride is None or stride == [] or stride == () else _ntuple(stride, 3, "stride", op)
    p = _ntuple(padding, 3, "padding", op)
    if any(v <= 0 for v in k + s):
        raise RuntimeError(f"{op}: kernel_size and stride should be greater than zero, but got "
                           f"kernel_size={k}, stride={s}")
    for pj, kj in zip(p, k):
        if pj < 0 or pj > kj // 2:
            raise RuntimeError(f"{op}: pad should be at most half of kernel size, but got "
                               f"pad={pj} and kernel_size={kj}")
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError(f"{op}: divisor must be not zero")
    dt = x._data.dtype.type
    y = x
    for j, (n, kj, sj, pj) in enumerate(zip(x.shape[2:], k, s, p)):
        o = _out_size(n, kj, sj, pj, 1, ceil_mode)
        if o <= 0:
            raise RuntimeError(f"{op}: Given input size: ({'x'.join(map(str, x.shape[1:]))}). "
                               "Calculated output size is too small")
        pos, valid = (a[0] for a in _regular_windows(n, kj, sj, pj, 1, o))
        start = np.arange(o) * sj - pj
        if divisor_override is not None:
            count = np.ones(o)
        elif count_include_pad:
            count = np.minimum(start + kj, n + pj) - start
        else:
            count = np.minimum(start + kj, n) - np.maximum(start, 0)
        weights = (valid / count[:, None]).astype(dt)
        y = _conv.average_along(y, 2 + j, pos, valid, weights)
    if divisor_override is not None:
        y = y * (1.0 / divisor_override)
    return y.squeeze(0) if unbatched else y


def adaptive_avg_pool3d(input: Tensor, output_size) -> Tensor:
    """Mean pooling of (N, C, D, H, W) to a fixed (D_out, H_out, W_out) (None keeps that size)."""
    op = "adaptive_avg_pool3d"
    x, unbatched = _batched(input, 3, op)
    _check_float(x, op)
    out = _output_size(output_size, tuple(x.shape[2:]), op)
    dt = x._data.dtype.type
    y = x
    for j, (n, o) in enumerate(zip(x.shape[2:], out)):
        pos, valid = (a[0] for a in _conv.adaptive_windows(n, o))
        weights = (valid / valid.sum(1, keepdims=True)).astype(dt)
        y = _conv.average_along(y, 2 + j, pos, valid, weights)
    return y.squeeze(0) if unbatched else y


# ---- power-average pooling ----------------------------------------------------------------------
def _lp(input, norm_type, kernel_size, stride, ceil_mode, nd, max_fn, avg_fn):
    if norm_type == math.inf:
        return max_fn(input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == -math.inf:
        return -max_fn(-input.abs(), kernel_size, stride, 0, 1, ceil_mode)
    k = _ntuple(kernel_size, nd, "kernel_size", "lp_pool")
    out = (avg_fn(input.pow(norm_type), kernel_size, stride, 0, ceil_mode) if stride is not None
           else avg_fn(input.pow(norm_type), kernel_size, padding=0, ceil_mode=ceil_mode))
    return (out.sign() * relu(out.abs())).mul(math.prod(k)).pow(1.0 / norm_type)


def lp_pool1d(input: Tensor, norm_type: float, kernel_size, stride=None,
              ceil_mode: bool = False) -> Tensor:
    """(Σ_window x^p)^(1/p) over (N, C, L)."""
    return _lp(input, norm_type, kernel_size, stride, ceil_mode, 1, _conv.max_pool1d,
               _conv.avg_pool1d)


def lp_pool2d(input: Tensor, norm_type: float, kernel_size, stride=None,
              ceil_mode: bool = False) -> Tensor:
    """(Σ_window x^p)^(1/p) over (N, C, H, W)."""
    return _lp(input, norm_type, kernel_size, stride, ceil_mode, 2, _conv.max_pool2d,
               _conv.avg_pool2d)


def lp_pool3d(input: Tensor, norm_type: float, kernel_size, stride=None,
              ceil_mode: bool = False) -> Tensor:
    """(Σ_window x^p)^(1/p) over (N, C, D, H, W)."""
    return _lp(input, norm_type, kernel_size, stride, ceil_mode, 3, max_pool3d, avg_pool3d)


# ---- fractional max pooling ---------------------------------------------------------------------
def _intervals(samples, in_size: int, out_size: int, k: int, dt):
    """Window starts per plane (PyTorch's generate_intervals, in the input's precision)."""
    i = np.arange(out_size, dtype=dt)
    seq = np.zeros(samples.shape + (out_size,), np.int64)
    if out_size > 1:
        alpha = dt(in_size - k) / dt(out_size - 1)
        u = samples.astype(dt)[..., None]
        seq = (((i + u) * alpha).astype(dt).astype(np.int64)
               - (u * alpha).astype(dt).astype(np.int64))
    seq[..., out_size - 1] = in_size - k
    return seq


def _fractional(input, nd, kernel_size, output_size, output_ratio, return_indices,
                _random_samples, op):
    if output_size is None and output_ratio is None:
        raise ValueError(f"{op} requires specifying either an output_size or an output_ratio")
    x, unbatched = _batched(input, nd, op)
    _check_float(x, op)
    k = _ntuple(kernel_size, nd, "kernel_size", op)
    spatial = tuple(x.shape[2:])
    if output_size is None:
        ratio = output_ratio if isinstance(output_ratio, (tuple, list)) else (output_ratio,) * nd
        if len(ratio) > nd:
            raise ValueError(f"{op} requires output_ratio to either be a single Int or tuple of "
                             "Ints.")
        ratio = tuple(ratio) * nd if len(ratio) == 1 else tuple(ratio)
        out = [int(n * r) for n, r in zip(spatial, ratio)]
    else:
        out = list(_ntuple(output_size, nd, "output_size", op))
    for n, o, kj in zip(spatial, out, k):
        if o + kj - 1 > n:
            raise RuntimeError(f"{op}_out(): pool size {kj} too large relative to input size "
                               f"{n} for output size {o}")
    n_batch, c = x.shape[:2]
    if _random_samples is None:
        _random_samples = rand(n_batch, c, nd, dtype=x.dtype, device=x.device)
    samples = devices.to_device(_random_samples._data, "cpu").reshape(n_batch * c, nd)
    dt = x._data.dtype.type
    # PyTorch's sample order: 2-d uses (width, height), 3-d uses (time, height, width)
    which = (1, 0) if nd == 2 else tuple(range(nd))
    windows = []
    for j, (n, o, kj) in enumerate(zip(spatial, out, k)):
        starts = _intervals(samples[:, which[j]], n, o, kj, dt)
        pos = starts[:, :, None] + np.arange(kj)[None, None, :]
        windows.append((pos, np.ones(pos.shape, bool)))
    idx = _choose(x._data, windows)
    return _finish(_gather_max(x, idx), idx, unbatched, return_indices)


def fractional_max_pool2d(input: Tensor, kernel_size, output_size=None, output_ratio=None,
                          return_indices: bool = False, _random_samples=None) -> Any:
    """Max over pseudo-random (kh × kw) windows that step a fractional amount (Graham 2014)."""
    return _fractional(input, 2, kernel_size, output_size, output_ratio, return_indices,
                       _random_samples, "fractional_max_pool2d")


def fractional_max_pool3d(input: Tensor, kernel_size, output_size=None, output_ratio=None,
                          return_indices: bool = False, _random_samples=None) -> Any:
    """Max over pseudo-random (kd × kh × kw) windows that step a fractional amount."""
    return _fractional(input, 3, kernel_size, output_size, output_ratio, return_indices,
                       _random_samples, "fractional_max_pool3d")


def fractional_max_pool2d_with_indices(input: Tensor, kernel_size, output_size=None,
                                       output_ratio=None, return_indices: bool = False,
                                       _random_samples=None) -> tuple:
    """``fractional_max_pool2d`` returning (output, indices)."""
    return fractional_max_pool2d(input, kernel_size, output_size, output_ratio, True,
                                 _random_samples)


def fractional_max_pool3d_with_indices(input: Tensor, kernel_size, output_size=None,
                                       output_ratio=None, return_indices: bool = False,
                                       _random_samples=None) -> tuple:
    """``fractional_max_pool3d`` returning (output, indices)."""
    return fractional_max_pool3d(input, kernel_size, output_size, output_ratio, True,
                                 _random_samples)


# ---- max unpooling ------------------------------------------------------------------------------
def _unpool_size(input: Tensor, k: tuple, s: tuple, p: tuple, output_size: Any) -> list:
    nd = len(k)
    default = [(input.shape[-nd + j] - 1) * s[j] + k[j] - 2 * p[j] for j in range(nd)]
    if output_size is None:
        return default
    output_size = list(output_size)
    if len(output_size) == nd + 2:
        output_size = output_size[2:]
    if len(output_size) != nd:
        raise ValueError(f"output_size should be a sequence containing {nd} or {nd + 2} "
                         f"elements, but it has a length of '{len(output_size)}'")
    for j in range(nd):
        lo, hi = default[j] - s[j], default[j] + s[j]
        if not lo < output_size[j] < hi:
            raise ValueError(f'invalid output_size "{output_size}" (dim {j} must be between {lo} '
                             f'and {hi})')
    return [int(v) for v in output_size]


def _max_unpool(input, indices, nd, kernel_size, stride, padding, output_size, op):
    if not isinstance(input, Tensor) or not isinstance(indices, Tensor):
        raise TypeError(f"{op}(): input and indices must be Tensors")
    k = _ntuple(kernel_size, nd, "kernel_size", op)
    s = k if stride is None else _ntuple(stride, nd, "stride", op)
    p = _ntuple(padding, nd, "padding", op)
    out = _unpool_size(input, k, s, p, output_size)
    if tuple(indices.shape) != tuple(input.shape):
        raise RuntimeError(f"{op}: Expected shape of indices to be same as that of the input "
                           f"tensor ({list(input.shape)}) but got indices tensor with shape: "
                           f"{list(indices.shape)}")
    if indices._data.dtype != np.int64:
        raise RuntimeError(f"{op}: elements in indices should be type int64 but got: "
                           f"{indices.dtype}")
    unbatched = input.ndim == nd + 1
    x = input.unsqueeze(0) if unbatched else input
    idx = indices._data[None] if unbatched else indices._data
    n, c = x.shape[:2]
    volume = math.prod(out)
    flat = idx.reshape(n, c, -1)
    if flat.size and (flat.min() < 0 or flat.max() >= volume):
        bad = int(flat.max() if flat.max() >= volume else flat.min())
        raise RuntimeError(f"{op}: Found an invalid max index: {bad} (output volumes are of "
                           f"size {'x'.join(map(str, out))})")
    base = zeros(n, c, volume, dtype=x.dtype, device=x.device)
    y = base.scatter_add(2, wrap(flat), x.reshape(n, c, -1)).reshape(n, c, *out)
    return y.squeeze(0) if unbatched else y


def max_unpool1d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0,
                 output_size=None) -> Tensor:
    """The inverse of max_pool1d: each value goes to its index, the rest are zero."""
    return _max_unpool(input, indices, 1, kernel_size, stride, padding, output_size,
                       "max_unpool1d")


def max_unpool2d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0,
                 output_size=None) -> Tensor:
    """The inverse of max_pool2d: each value goes to its index, the rest are zero."""
    return _max_unpool(input, indices, 2, kernel_size, stride, padding, output_size,
                       "max_unpool2d")


def max_unpool3d(input: Tensor, indices: Tensor, kernel_size, stride=None, padding=0,
                 output_size=None) -> Tensor:
    """The inverse of max_pool3d: each value goes to its index, the rest are zero."""
    return _max_unpool(input, indices, 3, kernel_size, stride, padding, output_size,
                       "max_unpool3d")
