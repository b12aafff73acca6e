"""Sorting and order statistics: sort, topk, kthvalue, median, mode, quantile; counting and
binning: unique, searchsorted, bucketize, bincount, histc, histogram.

The order is found on the raw array (it has no gradient); values are then gathered from the
input with the ``Gather`` gate, so the gradient flows back to the positions they came from.
"""

from __future__ import annotations

import builtins
from collections import namedtuple

from chainrule import devices
from chainrule import dtypes as _dt
from chainrule.batching import (NoBatchingRule, axis_host, dynamic_shape_error, is_batched,
                                stack_host)
from chainrule.devices import np
from chainrule.ops.index import Gather, gather
from chainrule.ops.shape import normalize_dim
from chainrule.tensor import Tensor, wrap

__all__ = [
    "sort", "argsort", "msort", "topk", "kthvalue", "median", "nanmedian", "mode", "quantile",
    "nanquantile", "unique", "unique_consecutive", "searchsorted", "bucketize", "bincount",
    "histc", "histogram", "cummax", "cummin",
]

SortResult = namedtuple("sort", ["values", "indices"])
TopkResult = namedtuple("topk", ["values", "indices"])
KthvalueResult = namedtuple("kthvalue", ["values", "indices"])
MedianResult = namedtuple("median", ["values", "indices"])
ModeResult = namedtuple("mode", ["values", "indices"])
CumResult = namedtuple("cummax", ["values", "indices"])
HistogramResult = namedtuple("histogram", ["hist", "bin_edges"])


def _order(x, axis: int, descending: bool):
    """Stable argsort along ``axis``; descending keeps equal values in their original order and
    puts NaN first (as torch)."""
    xp = devices.xp_of(x)
    if not descending:
        return xp.argsort(x, axis=axis, kind="stable")
    n = x.shape[axis]
    rev = xp.flip(x, axis)
    return (n - 1) - xp.flip(xp.argsort(rev, axis=axis, kind="stable"), axis)


def _gathered(input: Tensor, d: int, idx) -> Tensor:
    return Gather.apply(input, d, idx)


def _dim(input: Tensor, dim, name: str) -> int:
    return normalize_dim(dim, builtins.max(input._data.ndim, 1), name)


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices) sorted along ``dim`` (stable: ties keep their order)."""
    if input._data.ndim == 0:
        return SortResult(input.clone(), wrap(np.zeros((), np.int64)))
    d = _dim(input, dim, "sort")
    idx = _order(input._data, d, descending).astype(np.int64)
    return SortResult(_gathered(input, d, idx), wrap(idx))


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """The indices that sort ``input`` along ``dim``."""
    return sort(input, dim, descending, stable).indices


def msort(input: Tensor) -> Tensor:
    """``input`` sorted along its first dim."""
    return sort(input, 0).values


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """The ``k`` largest (or smallest) values along ``dim`` and their indices."""
    d = _dim(input, dim, "topk")
    n = input._data.shape[d] if input._data.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError("selected index k out of range")
    if input._data.ndim == 0:
        return TopkResult(input.clone(), wrap(np.zeros((), np.int64)))
    xp = devices.xp_of(input._data)
    idx = _order(input._data, d, largest).astype(np.int64)
    idx = xp.take(idx, xp.arange(k), axis=d)
    return TopkResult(_gathered(input, d, idx), wrap(idx))


def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False):
    """The k-th smallest value along ``dim`` (1-based ``k``) and its index."""
    d = _dim(input, dim, "kthvalue")
    n = input._data.shape[d] if input._data.ndim else 1
    if not 1 <= k <= n:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    if input._data.ndim == 0:
        return KthvalueResult(input.clone(), wrap(np.zeros((), np.int64)))
    xp = devices.xp_of(input._data)
    idx = xp.take(_order(input._data, d, False), [k - 1], axis=d).astype(np.int64)
    values = _gathered(input, d, idx)
    if not keepdim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return KthvalueResult(values, wrap(idx))


def _median(input: Tensor, dim, keepdim: bool, ignore_nan: bool, name: str):
    x = input._data
    xp = devices.xp_of(x)
    if dim is None:
        flat = input.reshape(-1)
        if flat._data.size == 0:
            return wrap(xp.full((), xp.nan, x.dtype))
        values, idx = _median(flat, 0, False, ignore_nan, name)
        return values
    d = _dim(input, dim, name)
    if x.ndim == 0:
        return MedianResult(input.clone(), wrap(np.zeros((), np.int64)))
    order = _order(x, d, False)
    n = x.shape[d]
    if ignore_nan:  # the lower median of the non-NaN values (NaN sort last)
        count = (~xp.isnan(x)).sum(axis=d, keepdims=True)
        pos = xp.maximum((count - 1) // 2, 0)
    else:  # NaN anywhere in the slice: the median is NaN, at the first NaN
        has_nan = xp.isnan(x).any(axis=d, keepdims=True)
        pos = xp.where(has_nan, n - xp.isnan(x).sum(axis=d, keepdims=True), (n - 1) // 2)
    idx = xp.take_along_axis(order, pos.astype(np.int64), d).astype(np.int64)
    values = _gathered(input, d, idx)
    if not keepdim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return MedianResult(values, wrap(idx))


def median(input: Tensor, dim=None, keepdim: bool = False):
    """The lower median (of all elements, or ``(values, indices)`` along ``dim``); NaN if any."""
    return _median(input, dim, keepdim, False, "median")


def nanmedian(input: Tensor, dim=None, keepdim: bool = False):
    """The lower median ignoring NaN."""
    return _median(input, dim, keepdim, True, "nanmedian")


@axis_host
def _mode_index(x, d: int):
    """The index (the last occurrence) of the most frequent value along axis ``d``, kept as a
    size-1 axis."""
    xp = devices.xp_of(x)
    moved = xp.moveaxis(x, d, -1)
    n = moved.shape[-1]
    a = moved.reshape(-1, n)
    s = xp.sort(a, axis=1)  # runs of equal values (NaNs together, last), smallest first
    same = (s[:, 1:] == s[:, :-1]) | (xp.isnan(s[:, 1:]) & xp.isnan(s[:, :-1]))
    starts = xp.concatenate([xp.ones((a.shape[0], 1), bool), ~same], axis=1)
    flat_starts = starts.reshape(-1)
    first = xp.nonzero(flat_starts)[0]  # where each run starts (every row starts one)
    run = xp.cumsum(flat_starts) - 1
    length = (xp.arange(flat_starts.shape[0]) - first[run] + 1).reshape(a.shape)  # run so far
    first_best = xp.argmax(length == length.max(axis=1, keepdims=True), axis=1)
    best = xp.take_along_axis(s, first_best[:, None], 1)  # the smallest most frequent value
    hit = (a == best) | (xp.isnan(a) & xp.isnan(best))
    last = n - 1 - xp.argmax(hit[:, ::-1], axis=1)  # torch returns the last occurrence
    idx = last.astype(np.int64).reshape(moved.shape[:-1])
    return xp.expand_dims(idx, d)


def mode(input: Tensor, dim: int = -1, keepdim: bool = False):
    """The most frequent value along ``dim`` (the smallest on ties) and an index of it."""
    d = _dim(input, dim, "mode")
    x = input._data
    if x.ndim == 0:
        return ModeResult(input.clone(), wrap(np.zeros((), np.int64)))
    idx = _mode_index(x, d)
    values = _gathered(input, d, idx)
    if not keepdim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return ModeResult(values, wrap(idx))


def _quantile(input: Tensor, q, dim, keepdim: bool, interpolation: str, ignore_nan: bool,
              name: str) -> Tensor:
    if interpolation not in ("linear", "lower", "higher", "midpoint", "nearest"):
        raise RuntimeError(f"{name}() interpolation must be one of linear, lower, higher, "
                           f"midpoint or nearest. Got {interpolation}")
    if input._data.dtype.kind not in _dt.FLOAT_KINDS:
        raise RuntimeError(f"{name}() input tensor must be either float or double dtype")
    scalar_q = not isinstance(q, Tensor)
    qv = np.asarray(q if scalar_q else devices.to_device(q._data, "cpu"), np.float64)
    if qv.ndim > 1:
        raise RuntimeError(f"{name}() q must be a scalar or 1D tensor")
    if ((qv < 0) | (qv > 1)).any():
        raise RuntimeError(f"{name}() q values must be in the range [0, 1]")
    x = input if dim is not None else input.reshape(-1)
    d = 0 if dim is None else _dim(x, dim, name)
    if x._data.ndim == 0:
        x, d = x.reshape(1), 0
    s = sort(x, d).values
    xp = devices.xp_of(x._data)
    n = x._data.shape[d]
    if ignore_nan:
        count = (~xp.isnan(x._data)).sum(axis=d, keepdims=True).astype(np.float64)
    else:
        count = xp.full(tuple(1 if i == d else sz for i, sz in enumerate(x._data.shape)), n,
                        np.float64)
    outs = []
    for qi in qv.reshape(-1):
        pos = qi * (count - 1)
        lo = xp.floor(pos)
        hi = xp.ceil(pos)
        if interpolation == "lower":
            hi = lo
        elif interpolation == "higher":
            lo = hi
        elif interpolation == "nearest":
            lo = hi = xp.round(pos)  # round half to even, as torch
        lo_i = xp.clip(lo, 0, n - 1).astype(np.int64)
        hi_i = xp.clip(hi, 0, n - 1).astype(np.int64)
        vlo = gather(s, d, wrap(lo_i))
        vhi = gather(s, d, wrap(hi_i))
        if interpolation == "midpoint":
            w = xp.where(hi > lo, 0.5, 0.0)
        else:
            w = pos - lo
        if interpolation in ("lower", "higher", "nearest"):
            v = vlo  # the value itself (no arithmetic: an infinity stays one, as torch)
        else:  # torch's lerp, from the nearer end (so infinities and overflow go as torch's)
            from chainrule.ops.binary import where

            wt = wrap(w.astype(x._data.dtype))
            v = where(wrap(w < 0.5), vlo + (vhi - vlo) * wt, vhi - (vhi - vlo) * (1 - wt))
        if ignore_nan:
            v = v.masked_fill(wrap(count == 0), float("nan"))
        elif xp.isnan(x._data).any():
            v = v.masked_fill(wrap(xp.isnan(x._data).any(axis=d, keepdims=True)), float("nan"))
        if not keepdim:
            v = v.squeeze(d)
        elif dim is None:
            v = v.reshape((1,) * input._data.ndim)
        outs.append(v)
    if scalar_q or qv.ndim == 0:
        return outs[0]
    from chainrule.ops.shape import stack

    return stack(outs, 0)


def quantile(input: Tensor, q, dim=None, keepdim: bool = False, *,
             interpolation: str = "linear") -> Tensor:
    """The q-th quantiles along ``dim`` (of all elements when None), interpolated."""
    return _quantile(input, q, dim, keepdim, interpolation, False, "quantile")


def nanquantile(input: Tensor, q, dim=None, keepdim: bool = False, *,
                interpolation: str = "linear") -> Tensor:
    """``quantile`` ignoring NaN."""
    return _quantile(input, q, dim, keepdim, interpolation, True, "nanquantile")


# ---- running max / min --------------------------------------------------------------------------
def _cum(input: Tensor, dim: int, name: str, better):
    d = _dim(input, dim, name)
    x = input._data
    if x.ndim == 0:
        return CumResult(input.clone(), wrap(np.zeros((), np.int64)))
    idx = _cum_index(x, d, better)
    return CumResult(_gathered(input, d, idx), wrap(idx))


@axis_host
def _cum_index(x, d: int, better):
    """The index of the running best along axis ``d`` (NaN wins and stays, ties move on)."""
    host = np.moveaxis(np.asarray(devices.to_device(x, "cpu")), d, 0)
    idx = np.zeros(host.shape, np.int64)
    best = host[0].copy()
    for i in range(1, host.shape[0]):
        v = host[i]
        take = better(v, best) | np.isnan(v) | ((v == best) & ~np.isnan(best))
        take &= ~np.isnan(best) | np.isnan(v)
        best = np.where(take, v, best)
        idx[i] = np.where(take, i, idx[i - 1])
    return devices.to_device(np.ascontiguousarray(np.moveaxis(idx, 0, d)), devices.device_of(x))


def cummax(input: Tensor, dim: int):
    """(running maximum, the index where it was reached) along ``dim``."""
    return _cum(input, dim, "cummax", np.greater)


def cummin(input: Tensor, dim: int):
    """(running minimum, the index where it was reached) along ``dim``."""
    return _cum(input, dim, "cummin", np.less)


# ---- counting and binning (no gradients) --------------------------------------------------------
def unique(input: Tensor, sorted: bool = True, return_inverse: bool = False,
           return_counts: bool = False, dim=None):
    """The distinct values (sorted), with the inverse indices and counts on request."""
    x = input._data
    if is_batched(x):
        raise dynamic_shape_error("_unique2")
    xp = devices.xp_of(x)
    if dim is None:
        vals, inv, counts = xp.unique(x.reshape(-1), return_inverse=True, return_counts=True)
        inv = inv.reshape(x.shape)
    else:
        d = _dim(input, dim, "unique")
        vals, inv, counts = np.unique(np.asarray(devices.to_device(x, "cpu")), axis=d,
                                      return_inverse=True, return_counts=True)
        vals, inv, counts = (devices.to_device(a, input.device) for a in (vals, inv.reshape(-1),
                                                                          counts))
    out = [wrap(vals)]
    if return_inverse:
        out.append(wrap(inv.astype(np.int64)))
    if return_counts:
        out.append(wrap(counts.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def unique_consecutive(input: Tensor, return_inverse: bool = False,
                       return_counts: bool = False, dim=None):
    """Collapse runs of equal values (of slices along ``dim``) to one."""
    x = input._data
    if is_batched(x):
        raise dynamic_shape_error("unique_consecutive")
    xp = devices.xp_of(x)
    if dim is None:
        flat = x.reshape(-1)
        if flat.size == 0:
            starts = xp.zeros(0, bool)
        else:
            starts = xp.concatenate([xp.ones(1, bool), flat[1:] != flat[:-1]])
        vals = flat[starts]
    else:
        d = _dim(input, dim, "unique_consecutive")
        moved = xp.moveaxis(x, d, 0).reshape(x.shape[d], -1)
        change = (moved[1:] != moved[:-1]).any(axis=1)
        starts = xp.concatenate([xp.ones(1, bool), change])
        vals = xp.take(x, xp.nonzero(starts)[0], axis=d)
    out = [wrap(vals)]
    group = xp.cumsum(starts) - 1
    if return_inverse:
        out.append(wrap(group.reshape(x.shape if dim is None else (-1,)).astype(np.int64)))
    if return_counts:
        pos = xp.nonzero(starts)[0]
        ends = xp.concatenate([pos[1:], xp.asarray([starts.shape[0]])])
        out.append(wrap((ends - pos).astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def searchsorted(sorted_sequence: Tensor, input, *, out_int32: bool = False,
                 right: bool = False, side=None, sorter=None) -> Tensor:
    """Where each value would be inserted to keep the innermost dim of ``sorted_sequence``
    sorted (the first such place, or the last with ``right=True`` / ``side="right"``)."""
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(f"torch.searchsorted(): side can only be 'left' or 'right' but "
                               f"got {side}")
        if right and side == "left":
            raise RuntimeError("torch.searchsorted(): side and right can't be set to opposites, "
                               "got side of left while right was True")
        right = side == "right"
    seq = sorted_sequence._data
    if sorter is not None:
        seq = np.take_along_axis(seq, sorter._data, -1) if seq.ndim else seq
    vals = input._data if isinstance(input, Tensor) else np.asarray(input)
    xp = devices.xp_of(seq)
    how = "right" if right else "left"
    dt = np.int32 if out_int32 else np.int64
    if seq.ndim <= 1:
        return wrap(devices.as_array(xp.searchsorted(seq, vals, side=how)).astype(dt))
    if seq.shape[:-1] != vals.shape[:-1]:
        raise RuntimeError(
            "torch.searchsorted(): boundaries tensor should be 1 dimension or the first N-1 "
            "dimensions of boundaries tensor and input value tensor must match, but we got "
            f"boundaries tensor {list(seq.shape)} and input value tensor {list(vals.shape)}")
    s2 = seq.reshape(-1, seq.shape[-1])
    v2 = vals.reshape(-1, vals.shape[-1])
    out = xp.stack([xp.searchsorted(s2[i], v2[i], side=how) for i in range(s2.shape[0])])
    return wrap(out.reshape(vals.shape).astype(dt))


def bucketize(input, boundaries: Tensor, *, out_int32: bool = False,
              right: bool = False) -> Tensor:
    """The bucket of each value among 1-d ``boundaries`` (right=False: b[i-1] < x ≤ b[i])."""
    if boundaries._data.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim("
                           f"{boundaries._data.ndim})")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


def bincount(input: Tensor, weights=None, minlength: int = 0) -> Tensor:
    """How often each value 0, 1, ... occurs in the 1-d non-negative integer ``input``
    (weighted: the sum of the weights)."""
    x = input._data
    if x.ndim != 1 or x.dtype.kind not in "iu":
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if x.size and (x < 0).any():
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if minlength < 0:
        raise RuntimeError("minlength should be >= 0")
    xp = devices.xp_of(x)
    if weights is None:
        return wrap(xp.bincount(x, minlength=minlength).astype(np.int64))
    w = weights._data
    if w.shape != x.shape:
        raise RuntimeError("weights should be 1-d and have the same length as input")
    out_dt = w.dtype if w.dtype.kind == "f" else np.float64
    if w.dtype == np.float32:
        out_dt = np.float32
    return wrap(xp.bincount(x, weights=w.astype(np.float64), minlength=minlength).astype(out_dt))


@stack_host
def _uniform_histograms(rows, bins: int, lo: float, hi: float, pad: float,
                        density: bool = False, weighted: bool = False):
    """(counts, edges) of each row of ``rows`` (..., N) in ``bins`` equal bins over [lo, hi]
    (each row's own [min, max] when lo == hi; ±pad around a constant row), as np.histogram
    bins them (the last bin closed; values outside ignored); counts in the rows' dtype.
    ``weighted``: ``rows`` is (..., 2, N), values then their weights."""
    xp = devices.xp_of(rows)
    w = None
    if weighted:
        rows, w = rows[..., 0, :], rows[..., 1, :].reshape(-1)
    lead = rows.shape[:-1]
    a = rows.reshape(-1, rows.shape[-1])
    m, n = a.shape
    if lo == hi:
        if n:
            los, his = a.min(1).astype(np.float64), a.max(1).astype(np.float64)
        else:
            los, his = xp.full(m, lo), xp.full(m, hi)
        flat_row = los == his
        los, his = xp.where(flat_row, los - pad, los), xp.where(flat_row, his + pad, his)
    else:
        los, his = xp.full(m, lo), xp.full(m, hi)
    los, his = los[:, None], his[:, None]
    step = xp.arange(bins + 1) / bins
    edges = xp.where(step == 1, his, los + (his - los) * step).astype(a.dtype)  # linspace
    keep = (a >= edges[:, :1]) & (a <= edges[:, -1:])
    with np.errstate(invalid="ignore"):
        f = (a - los.astype(a.dtype)) * (bins / (his - los)).astype(a.dtype)
    idx = xp.clip(xp.where(keep, f, 0), 0, bins - 1).astype(np.intp)
    idx = idx - (a < xp.take_along_axis(edges, idx, 1))
    idx = idx + ((a >= xp.take_along_axis(edges, idx + 1, 1)) & (idx != bins - 1))
    pos = (idx + xp.arange(m)[:, None] * bins)[keep]
    w = None if w is None else w.reshape(a.shape)[keep]
    counts = xp.bincount(pos, w, minlength=m * bins).reshape(m, bins).astype(np.float64)
    if density:
        counts = counts / (counts.sum(1, keepdims=True) * xp.diff(edges, axis=1))
    return (counts.astype(a.dtype).reshape(lead + (bins,)),
            edges.reshape(lead + (bins + 1,)))


def histc(input: Tensor, bins: int = 100, min=0, max=0) -> Tensor:
    """Counts of ``input`` in ``bins`` equal bins over [min, max] (the data's range when both
    are 0); values outside are ignored; the result has input's float dtype."""
    x = input._data
    if x.dtype.kind not in _dt.FLOAT_KINDS:
        raise RuntimeError(
            f"\"histogram_cpu\" not implemented for '{_dt.scalar_type_name(input.dtype)}'")
    if bins <= 0:
        raise RuntimeError("torch.histc: bins must be > 0, but got " + str(bins))
    lo, hi = float(min), float(max)
    if lo > hi:
        raise RuntimeError("torch.histc: max must be larger than min")
    if is_batched(x):  # each example's histogram (its own range when min == max) in one pass
        return wrap(_uniform_histograms(x.reshape(1, -1), bins, lo, hi, 1.0)[0][0])
    xp = devices.xp_of(x)
    if lo == hi and x.size:
        lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    if lo > hi:
        raise RuntimeError("torch.histc: max must be larger than min")
    counts, _ = xp.histogram(x.reshape(-1), bins=bins, range=(lo, hi))
    return wrap(counts.astype(x.dtype))


def histogram(input: Tensor, bins=100, *, range=None, weight=None, density: bool = False):
    """(hist, bin_edges): counts (or weights, or a density) of ``input`` in ``bins`` (a count
    or a tensor of edges)."""
    if input._data.dtype.kind not in _dt.FLOAT_KINDS:
        raise RuntimeError(f"torch.histogram: input tensor and bins tensors should have the "
                           f"same dtype, but got input {input.dtype.name} and bins "
                           f"{input.dtype.name}")
    if is_batched(input._data) or (weight is not None and is_batched(weight._data)):
        # each example's histogram and edges in one pass
        if isinstance(bins, Tensor):
            raise NoBatchingRule("vmap: histogram with a bins tensor has no batching rule "
                                 "(give an int bins count)")
        lo, hi = (0.0, 0.0) if range is None else (float(range[0]), float(range[1]))
        if lo > hi:
            raise ValueError("max must be larger than min in range parameter.")
        rows = input._data.reshape(1, -1)
        if weight is not None:  # values and weights stacked: one array to batch
            rows = np.stack([rows, weight._data.reshape(1, -1).astype(rows.dtype)], 1)
        counts, edges = _uniform_histograms(rows, bins, lo, hi, 0.5, density,
                                           weight is not None)
        return HistogramResult(wrap(counts[0]), wrap(edges[0]))
    x = np.asarray(devices.to_device(input._data, "cpu"))
    b = np.asarray(devices.to_device(bins._data, "cpu")) if isinstance(bins, Tensor) else bins
    w = None if weight is None else np.asarray(devices.to_device(weight._data, "cpu"))
    if range is None and not isinstance(bins, Tensor) and x.size:
        range = (float(x.min()), float(x.max()))
    hist, edges = np.histogram(x.reshape(-1), bins=b, range=range,
                               weights=None if w is None else w.reshape(-1), density=density)
    dev = input.device
    return HistogramResult(wrap(devices.to_device(hist.astype(x.dtype), dev)),
                           wrap(devices.to_device(edges.astype(x.dtype), dev)))
