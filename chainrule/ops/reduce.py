"""Reductions: sum, mean, var/std, prod, max/min, cumsum, logsumexp, softmax, norm."""

from __future__ import annotations

import math

import builtins
from collections import namedtuple

from chainrule.amp import autocast_mode as _amp
from chainrule.dtypes import FLOAT_KINDS
from chainrule import devices
from chainrule import dtypes as _dt
from chainrule.devices import as_array, np
from chainrule.autograd.function import Op
from chainrule.kernels import kernels_for
from chainrule.ops import either
from chainrule.ops.binary import maximum, minimum, where
from chainrule.ops.elementwise import abs as t_abs
from chainrule.ops.shape import cat
from chainrule.ops.shape import normalize_dim, normalize_dims
from chainrule.tensor import Tensor, wrap

__all__ = [
    "sum", "mean", "var", "std", "var_mean", "std_mean", "prod", "max", "min", "amax", "amin",
    "argmax", "argmin", "cumsum", "cumprod", "logsumexp", "softmax", "log_softmax", "norm",
    "all", "any", "count_nonzero",
]

values_indices = namedtuple("values_indices", ["values", "indices"])


_raw = either.data


def _expand_back(g, axes, keepdim: bool, shape: tuple):
    """Broadcast a reduced gradient back over the reduced ``axes`` to ``shape``."""
    if not keepdim:
        g = either.expand_dims(g, axes if axes is not None else tuple(range(len(shape))))
    return either.broadcast_to(g, shape)


def _count(shape: tuple, axes) -> int:
    if axes is None:
        return math.prod(shape)  # (np.prod: ~3 µs a call through its Python wrapper)
    n = 1
    for a in axes:
        n *= shape[a]
    return n


# ---- sums and means ----------------------------------------------------------------------------
class Sum(Op):
    """y = Σ x over axes;  dy/dx = 1 (the gradient is copied back over the summed axes)"""

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        ctx.axes, ctx.keepdim, ctx.shape = axes, keepdim, x.shape
        return kernels_for(x).sum(x, axes, keepdim)

    @staticmethod
    def backward(ctx, g):
        return _expand_back(g, ctx.axes, ctx.keepdim, ctx.shape), None, None


class SumTo(Op):
    """y = x summed down to ``shape`` (the engine's broadcast undo);  dy/dx = broadcast back"""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        axes = either._sum_axes(x.shape, shape)
        return x.sum(axis=axes).reshape(shape) if axes else x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return either.broadcast_to(g, ctx.shape), None


def sum_to_size(input: Tensor, *size) -> Tensor:
    """``input`` summed down to ``size``, which it must broadcast from."""
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
    if either._sum_axes(tuple(input._data.shape), tuple(shape)) is None:
        raise RuntimeError(f"size {{{', '.join(map(str, shape))}}} is not expandable to size "
                           f"{{{', '.join(map(str, input._data.shape))}}}.")
    return SumTo.apply(input, tuple(shape))


class Mean(Op):
    """y = Σ x / n;  dy/dx = 1/n"""

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        ctx.axes, ctx.keepdim, ctx.shape = axes, keepdim, x.shape
        ctx.n = _count(x.shape, axes)
        return kernels_for(x).mean(x, axes, keepdim)

    @staticmethod
    def backward(ctx, g):
        return _expand_back(g / ctx.n, ctx.axes, ctx.keepdim, ctx.shape), None, None


class Var(Op):
    """y = Σ(x - x̄)² / (n - c);  dy/dx = 2(x - x̄)/(n - c)"""

    @staticmethod
    def forward(ctx, x, axes, correction, keepdim):
        ctx.save_for_backward(x)
        ctx.axes, ctx.keepdim, ctx.shape = axes, keepdim, x.shape
        ctx.dof = _count(x.shape, axes) - correction
        return np.var(x, axis=axes, ddof=correction, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        centered = x - either.sum(x, ctx.axes, True) / _count(ctx.shape, ctx.axes)
        g_e = _expand_back(g, ctx.axes, ctx.keepdim, ctx.shape)
        scale = 2 / ctx.dof if ctx.dof else float("nan")  # no degrees of freedom: nan, as torch
        return g_e * centered * scale, None, None, None


class Std(Op):
    """y = √var(x);  dy/dx = (x - x̄)/((n - c)·y)"""

    @staticmethod
    def forward(ctx, x, axes, correction, keepdim):
        y = np.std(x, axis=axes, ddof=correction, keepdims=keepdim)
        ctx.save_for_backward(x, y)
        ctx.axes, ctx.keepdim, ctx.shape = axes, keepdim, x.shape
        ctx.dof = _count(x.shape, axes) - correction
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        centered = x - either.sum(x, ctx.axes, True) / _count(ctx.shape, ctx.axes)
        flat = _raw(y) == 0  # a constant slice: gradient 0 (as torch), not 0/0
        safe_y = either.where(flat, 1.0, y) if np.any(flat) else y
        scale = _expand_back(g / (safe_y * ctx.dof), ctx.axes, ctx.keepdim, ctx.shape)
        return scale * centered, None, None, None


class Prod(Op):
    """y = Π x;  dy/dxᵢ = Π_{j≠i} xⱼ (handles zeros exactly)"""

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        y = np.prod(x, axis=axes, keepdims=keepdim)
        ctx.save_for_backward(x, y)
        ctx.axes, ctx.keepdim, ctx.shape = axes, keepdim, x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        axes, keepdim, shape = ctx.axes, ctx.keepdim, ctx.shape
        g_e = _expand_back(g, axes, keepdim, shape)
        if not shape or (axes is not None and builtins.all(shape[a] == 1 for a in axes)):
            return g_e, None, None  # one factor: dy/dx = 1, not y/x (torch's graph too)
        y_e = _expand_back(y, axes, keepdim, shape)
        is_zero = _raw(x) == 0
        if not is_zero.any():
            return g_e * y_e / x, None, None
        c = np.broadcast_to(is_zero.sum(axis=axes, keepdims=True), shape)  # zeros per slice
        x_nz = either.where(is_zero, 1.0, x)
        prod_nz = _expand_back(_prod(x_nz, axes, True), axes, True, shape)
        # The zeros themselves (value 0) stay in the formula, so double backward sees them:
        # zs = the slice's zero entry (c = 1), or the sum of its zero entries.
        zs = _expand_back(either.sum(either.where(is_zero, x, 0.0), axes, True), axes, True, shape)
        others = prod_nz / x_nz
        at_nonzero = either.where(c == 0, others, either.where(c == 1, others * zs, 0.0))
        at_zero = either.where(c == 1, prod_nz, either.where(c == 2, prod_nz * (zs - x), 0.0))
        return g_e * either.where(is_zero, at_zero, at_nonzero), None, None


def _prod(x, axes, keepdim):
    return either.prod(x, axes, keepdim)


# ---- max / min ----------------------------------------------------------------------------------
class Amax(Op):
    """y = max x over axes;  the gradient is shared evenly among the maxima (as PyTorch)"""

    fn = staticmethod(np.amax)
    nan_equal = False  # max()/min() of all elements: a NaN result shares among the NaNs

    @classmethod
    def forward(cls, ctx, x, axes, keepdim):
        y = cls.fn(x, axis=axes, keepdims=keepdim)
        ctx.save_for_backward(x, y)
        ctx.axes, ctx.keepdim, ctx.shape = axes, keepdim, x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        axes = ctx.axes or tuple(range(len(ctx.shape)))
        y_kept = _raw(y) if ctx.keepdim else np.expand_dims(_raw(y), axes)
        mask = _raw(x) == np.broadcast_to(y_kept, ctx.shape)
        if ctx.nan_equal:
            mask |= np.isnan(_raw(x)) & np.isnan(np.broadcast_to(y_kept, ctx.shape))
        with np.errstate(invalid="ignore"):  # (amax of NaNs: 0/0, NaN gradients as torch's)
            share = (mask / mask.sum(axis=ctx.axes, keepdims=True)).astype(_raw(x).dtype)
        return _expand_back(g, ctx.axes, ctx.keepdim, ctx.shape) * share, None, None


class Amin(Amax):
    """y = min x over axes;  the gradient is shared evenly among the minima"""

    fn = staticmethod(np.amin)


class MaxAll(Amax):
    """y = max of all elements (``max()``);  shared among the maxima, or among the NaNs"""

    nan_equal = True


class MinAll(Amin):
    """y = min of all elements (``min()``);  shared among the minima, or among the NaNs"""

    nan_equal = True


class NormInf(Amax):
    """y = max |x| over axes (the ∞-norm, of |x|);  as Amax, but a NaN norm's gradient is
    shared among the NaNs (torch's norm backward: zeros elsewhere, not NaN everywhere)"""

    nan_equal = True


class NormMinusInf(Amin):
    """y = min |x| over axes (the -∞-norm, of |x|);  a NaN norm's gradient as NormInf's"""

    nan_equal = True


class MaxDim(Op):
    """(values, indices) = max over one dim;  the gradient goes to the index returned"""

    pick = staticmethod(np.argmax)

    @classmethod
    def forward(cls, ctx, x, dim, keepdim):
        idx = np.expand_dims(cls.pick(x, axis=dim), dim)
        values = np.take_along_axis(x, idx, dim)
        ctx.idx, ctx.dim, ctx.keepdim, ctx.shape = idx, dim, keepdim, x.shape
        if not keepdim:
            return values.squeeze(dim), idx.squeeze(dim)
        return values, idx

    @staticmethod
    def backward(ctx, g, _g_indices=None):
        if not ctx.keepdim:
            g = either.expand_dims(g, (ctx.dim,))
        zeros = either.zeros(ctx.shape, g)
        return either.scatter_add(zeros, ctx.dim, ctx.idx, g), None, None


class MinDim(MaxDim):
    """(values, indices) = min over one dim;  the gradient goes to the index returned"""

    pick = staticmethod(np.argmin)


# ---- scans and normalized exponentials -----------------------------------------------------------
class Cumsum(Op):
    """yᵢ = Σ_{j≤i} xⱼ;  the gradient is the reversed cumulative sum"""

    @staticmethod
    def forward(ctx, x, dim):
        ctx.dim = dim
        return np.cumsum(x, axis=dim, dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        d = ctx.dim
        return either.flip(either.cumsum(either.flip(g, (d,)), d), (d,)), None


def _reversed_cumsum(a, d: int):
    """Σ_{j≥i} a_j along axis ``d`` (summed from the end)."""
    return either.flip(either.cumsum(either.flip(a, (d,)), d), (d,))


def _cum_dtype(dtype):
    """The dtype a running product accumulates in (torch's CPU kernels): float32 in float64,
    the half types in float32."""
    if dtype.kind != "f" and dtype.kind != "V":
        return dtype
    return np.dtype(np.float64) if dtype.itemsize >= 4 else np.dtype(np.float32)


class Cumprod(Op):
    """yᵢ = Π_{j≤i} xⱼ;  dL/dxₖ = Σ_{j≥k} gⱼ·yⱼ / xₖ.  Where a slice has zeros (torch's rule):
    that sum, up to its first zero z, for k < z; y_{z-1}·Σ_{z≤j<z'} gⱼ·Π_{z<i≤j} xᵢ at z
    (z' the second zero); 0 after z"""

    @staticmethod
    def forward(ctx, x, dim):
        flat = x.reshape(x.shape or (1,))  # a 0-d tensor is its own product
        with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN as torch, no warning
            y = np.cumprod(flat, axis=dim, dtype=_cum_dtype(x.dtype)).astype(x.dtype)
        y = y.reshape(x.shape)
        ctx.save_for_backward(x, y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        d = ctx.dim
        if x.ndim == 0 or x.shape[d] == 1:
            return g, None
        is_zero = x == 0
        with np.errstate(all="ignore"):
            if not is_zero.any():
                return _reversed_cumsum(y * g, d) / x, None
            seen = np.cumsum(is_zero, axis=d)  # zeros up to and including each place
            before = seen == 0
            gx = np.where(before, _reversed_cumsum(np.where(before, y * g, 0), d) / x, 0)
            first = is_zero & (seen == 1)
            span = (seen == 1) & ~first  # strictly between the first and the second zero
            inner = np.sum(np.cumprod(np.where(span, x, 1), axis=d) * np.where(seen == 1, g, 0),
                           axis=d, keepdims=True)
            y_before = np.sum(np.where(first, _shifted_in_one(y, d), 0), axis=d, keepdims=True)
            return np.where(first, inner * y_before, gx).astype(x.dtype, copy=False), None

    @staticmethod
    def differentiable_backward(ctx, g):
        """The same rule with tensor ops; with zeros, the O(n²) sum of omitted products
        Σ_{j≥k} gⱼ·Π_{i≤j, i≠k} xᵢ (torch's too), whose own derivatives are exact."""
        x, y = ctx.saved_tensors
        d = ctx.dim
        if x.ndim == 0 or x.shape[d] == 1:
            return g, None
        if not (either.data(x) == 0).any():
            return _reversed_cumsum(y * g, d) / x, None
        xm, ym, gm = x.movedim(d, -1), y.movedim(d, -1), g.movedim(d, -1)
        n = xm.shape[-1]
        xp = devices.xp_of(either.data(x))
        k, i = xp.arange(n)[:, None], xp.arange(n)[None, :]
        # omitted[k, j] = Π_{i≤j, i≠k} xᵢ = y_{k-1} · Π_{k<i≤j} xᵢ  (used for j ≥ k)
        from_k = cumprod(where(wrap(i > k), xm.unsqueeze(-2), 1.0), -1)
        ones = wrap(xp.ones(tuple(ym.shape[:-1]) + (1,), either.dtype_of(y)))
        until_k = cat([ones, ym.narrow(-1, 0, n - 1)], -1)
        omitted = until_k.unsqueeze(-1) * from_k
        gx = where(wrap(i >= k), omitted * gm.unsqueeze(-2), 0.0).sum(-1)
        return gx.movedim(-1, d), None


def _shifted_in_one(y, d: int):
    """y moved one place along axis ``d``, 1 at the front: yᵢ₋₁ (the exclusive product)."""
    head = [slice(None)] * y.ndim
    head[d] = slice(0, 1)
    body = list(head)
    body[d] = slice(0, -1)
    return np.concatenate([np.ones_like(y[tuple(head)]), y[tuple(body)]], axis=d)


def _stable_max(x, axes):
    if x.size == 0:  # an empty reduction: shift by 0 (logsumexp of nothing is -inf)
        return np.sum(x, axis=axes, keepdims=True)
    m = np.amax(x, axis=axes, keepdims=True)
    return np.where(np.isfinite(m), m, 0)


class Logsumexp(Op):
    """y = ln Σ e^x (computed around the max: finite at ±1000);  dy/dx = e^(x - y)"""

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        m = _stable_max(x, axes)
        y = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
        y = y if keepdim else y.squeeze(axes)
        ctx.save_for_backward(x, y)  # the output itself, so higher orders see it in the graph
        ctx.axes, ctx.keepdim, ctx.shape = axes, keepdim, x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        axes, keepdim, shape = ctx.axes, ctx.keepdim, ctx.shape
        y_e = _expand_back(y, axes, keepdim, shape)
        return _expand_back(g, axes, keepdim, shape) * either.exp(x - y_e), None, None


class Softmax(Op):
    """yᵢ = e^xᵢ / Σ e^x;  dx = y·(g - Σ g·y)"""

    @staticmethod
    def forward(ctx, x, dim):
        y = kernels_for(x).softmax(x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels_for(g).softmax_backward(g, y, ctx.dim), None


class LogSoftmax(Op):
    """y = x - ln Σ e^x;  dx = g - e^y·Σ g"""

    @staticmethod
    def forward(ctx, x, dim):
        y = kernels_for(x).log_softmax(x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return kernels_for(g).log_softmax_backward(g, y, ctx.dim), None


class Norm2(Op):
    """y = √Σ x²;  dy/dx = x / y (0 where y = 0)"""

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        y = np.sqrt(kernels_for(x).sum_squares(x, axes, keepdim))
        ctx.save_for_backward(x, y)
        ctx.axes, ctx.keepdim, ctx.shape = axes, keepdim, x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        safe_y = either.where(_raw(y) == 0, 1.0, y)
        scale = _expand_back(g / safe_y, ctx.axes, ctx.keepdim, ctx.shape)
        return scale * x, None, None


# ---- public functions ---------------------------------------------------------------------------
def sum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Σ input over ``dim`` (all dims if None)."""
    if _amp.active and (out := _amp.run("sum", sum, input, dim, keepdim, dtype=dtype)) is not None:
        return out
    if dtype is not None:
        input = input.to(dtype)
    elif input._data.dtype.kind in "bi" and input._data.dtype != np.int64:
        input = wrap(input._data.astype(np.int64))
    axes = normalize_dims(dim, input._data.ndim, "sum")
    return Sum.apply(input, axes, keepdim)


def mean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Average of input over ``dim``."""
    if _amp.active and (out := _amp.run(
            "mean", mean, input, dim, keepdim, dtype=dtype)) is not None:
        return out
    if dtype is not None:
        input = input.to(dtype)
    if input._data.dtype.kind not in FLOAT_KINDS:
        raise RuntimeError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point or "
            f"complex dtype. Got: {input.dtype.name}"
        )
    axes = normalize_dims(dim, input._data.ndim, "mean")
    return Mean.apply(input, axes, keepdim)


def _correction(unbiased, correction) -> int:
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def var(input: Tensor, dim=None, unbiased=None, keepdim=False, *, correction=None) -> Tensor:
    """Variance over ``dim`` with Bessel's ``correction`` (1 by default)."""
    if _amp.active and (out := _amp.run(
            "var", var, input, dim, unbiased, keepdim, correction=correction)) is not None:
        return out
    if isinstance(dim, builtins.bool):
        dim, unbiased = None, dim
    axes = normalize_dims(dim, input._data.ndim, "var")
    return Var.apply(input, axes, _correction(unbiased, correction), keepdim)


def std(input: Tensor, dim=None, unbiased=None, keepdim=False, *, correction=None) -> Tensor:
    """Standard deviation over ``dim`` with Bessel's ``correction`` (1 by default)."""
    if _amp.active and (out := _amp.run(
            "std", std, input, dim, unbiased, keepdim, correction=correction)) is not None:
        return out
    if isinstance(dim, builtins.bool):
        dim, unbiased = None, dim
    axes = normalize_dims(dim, input._data.ndim, "std")
    return Std.apply(input, axes, _correction(unbiased, correction), keepdim)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def prod(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Π input over ``dim`` (all elements if None)."""
    if _amp.active and (out := _amp.run(
            "prod", prod, input, dim, keepdim, dtype=dtype)) is not None:
        return out
    if dtype is not None:
        input = input.to(dtype)
    axes = normalize_dims(dim, input._data.ndim, "prod")
    return Prod.apply(input, axes, keepdim)


def _max_min(input: Tensor, dim, keepdim, other, name, full_op, dim_op, pairwise):
    if isinstance(dim, Tensor):
        other, dim = dim, None
    if other is not None:
        return pairwise(input, other)
    if dim is None:
        _check_reducible(input, None, name)
        return full_op.apply(input, None, False)
    d = normalize_dim(dim, input._data.ndim, name)
    if input._data.ndim == 0:  # a 0-d tensor is its own max/min, at index 0
        values, indices = dim_op.apply(input.reshape(1), 0, False)
        return values_indices(values.reshape(()), indices.reshape(()))
    _check_reducible(input, (d,), name)
    values, indices = dim_op.apply(input, d, keepdim)
    return values_indices(values, indices)


def _check_reducible(input: Tensor, axes, name: str, error=RuntimeError) -> None:
    """max-like reductions have no identity: refuse empty slices as PyTorch does."""
    shape = input._data.shape
    if input._data.size == 0 and axes is None:
        raise error(
            f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
            "Specify the reduction dim with the 'dim' argument."
        )
    for a in axes or ():
        if shape and shape[a] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {a} to have non-zero size.")


def max(input: Tensor, dim=None, keepdim: bool = False, *, other=None):
    """The maximum (no dim), ``(values, indices)`` along ``dim``, or elementwise with a tensor."""

    return _max_min(input, dim, keepdim, other, "max", MaxAll, MaxDim, maximum)


def min(input: Tensor, dim=None, keepdim: bool = False, *, other=None):
    """The minimum (no dim), ``(values, indices)`` along ``dim``, or elementwise with a tensor."""

    return _max_min(input, dim, keepdim, other, "min", MinAll, MinDim, minimum)


def amax(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Maximum over ``dim`` (all dims when empty); ties share the gradient."""
    axes = normalize_dims(dim if dim != () else None, input._data.ndim, "amax")
    _check_reducible(input, axes, "amax")
    return Amax.apply(input, axes, keepdim)


def amin(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Minimum over ``dim`` (all dims when empty); ties share the gradient."""
    axes = normalize_dims(dim if dim != () else None, input._data.ndim, "amin")
    _check_reducible(input, axes, "amin")
    return Amin.apply(input, axes, keepdim)


def _arg(np_fn, name):
    def fn(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
        x = input._data
        if dim is None:
            _check_reducible(input, None, name, IndexError)
            out = np_fn(x.reshape(-1))
            if keepdim:
                out = out.reshape((1,) * x.ndim)
            return wrap(out.astype(np.int64))
        d = normalize_dim(dim, x.ndim, name)
        _check_reducible(input, (d,), name, IndexError)
        if x.ndim == 0:  # its own arg-max, index 0 (CuPy refuses axis 0 of a 0-d array)
            return wrap(np_fn(x.reshape(1), axis=0).astype(np.int64).reshape(()))
        return wrap(np_fn(x, axis=d, keepdims=keepdim).astype(np.int64))

    fn.__name__ = name
    fn.__doc__ = f"Index of the {name[3:]} (first one on ties)."
    return fn


argmax = _arg(np.argmax, "argmax")
argmin = _arg(np.argmin, "argmin")


def cumsum(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running sum along ``dim``."""
    if _amp.active and (out := _amp.run("cumsum", cumsum, input, dim, dtype=dtype)) is not None:
        return out
    if dtype is not None:
        input = input.to(dtype)
    elif input._data.dtype.kind in "biu":
        input = wrap(input._data.astype(np.int64))
    return Cumsum.apply(input, normalize_dim(dim, input._data.ndim, "cumsum"))


def cumprod(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running product along ``dim`` (integers and bools as int64, as torch)."""
    if _amp.active and (out := _amp.run("cumprod", cumprod, input, dim, dtype=dtype)) is not None:
        return out
    if dtype is not None:
        input = input.to(dtype)
    elif input._data.dtype.kind in "biu":
        input = wrap(input._data.astype(np.int64))
    return Cumprod.apply(input, normalize_dim(dim, input._data.ndim, "cumprod"))


def logsumexp(input: Tensor, dim, keepdim: bool = False) -> Tensor:
    """ln Σ exp(input) over ``dim``, stable for large inputs."""
    if _amp.active and (out := _amp.run("logsumexp", logsumexp, input, dim, keepdim)) is not None:
        return out
    if input._data.dtype.kind not in FLOAT_KINDS:
        input = input.to(_dt.get_default_dtype())
    axes = normalize_dims(dim, input._data.ndim, "logsumexp")
    return Logsumexp.apply(input, axes, keepdim)


def _softmax_input(input, dim, dtype, name):
    if dtype is not None:
        input = input.to(dtype)
    elif input._data.dtype.kind not in FLOAT_KINDS:
        input = input.to(_dt.get_default_dtype())
    if dim is None:
        dim = 0 if input._data.ndim in (0, 1, 3) else 1  # PyTorch's legacy implicit dim
    return input, normalize_dim(dim, input._data.ndim, name)


def softmax(input: Tensor, dim=None, dtype=None) -> Tensor:
    """e^x / Σ e^x along ``dim``."""
    if _amp.active and (out := _amp.run("softmax", softmax, input, dim, dtype=dtype)) is not None:
        return out
    x = input._data
    if (type(dim) is int and dtype is None and x.dtype.kind in FLOAT_KINDS
            and -x.ndim <= dim < x.ndim):
        return Softmax.apply(input, dim % x.ndim)  # (the common case: no conversion, no call)
    input, d = _softmax_input(input, dim, dtype, "softmax")
    if input._data.ndim == 0:
        return Softmax.apply(input.reshape(1), 0).reshape(())
    return Softmax.apply(input, d)


def log_softmax(input: Tensor, dim=None, dtype=None) -> Tensor:
    """x - ln Σ e^x along ``dim``."""
    if _amp.active and (out := _amp.run(
            "log_softmax", log_softmax, input, dim, dtype=dtype)) is not None:
        return out
    x = input._data
    if (type(dim) is int and dtype is None and x.dtype.kind in FLOAT_KINDS
            and -x.ndim <= dim < x.ndim):
        return LogSoftmax.apply(input, dim % x.ndim)  # (the common case: no conversion, no call)
    input, d = _softmax_input(input, dim, dtype, "log_softmax")
    if input._data.ndim == 0:
        return LogSoftmax.apply(input.reshape(1), 0).reshape(())
    return LogSoftmax.apply(input, d)


def norm(input: Tensor, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """The vector p-norm (2/'fro' by default, also 1, inf, -inf, 0 and any real p) over ``dim``."""
    if _amp.active and (out := _amp.run(
            "norm", norm, input, p, dim, keepdim, dtype=dtype)) is not None:
        return out

    if dtype is not None:
        input = input.to(dtype)
    axes = normalize_dims(dim, input._data.ndim, "norm")
    if p in ("fro", 2, 2.0, None):
        return Norm2.apply(input, axes, keepdim)
    if p == "nuc":
        raise NotImplementedError("norm: the nuclear norm is not supported")
    if p == float("inf") or p == float("-inf"):
        check_inf_norm(input, dim, p)
        return (NormInf if p > 0 else NormMinusInf).apply(t_abs(input), axes, keepdim)
    if p == 0:
        return sum((input != 0).to(input.dtype), axes, keepdim)
    if p == 1:
        return sum(t_abs(input), axes, keepdim)
    s = sum(t_abs(input) ** p, axes, keepdim)
    zero = s._data == 0
    if np.any(zero):  # a zero slice: norm 0 with gradient 0 (as torch), not 0·∞ = nan

        return where(zero, 0.0, where(zero, 1.0, s) ** (1.0 / p))
    return s ** (1.0 / p)


def check_inf_norm(input: Tensor, dim, p: float) -> None:
    """torch's refusal of an ±∞-norm over nothing (max and min have no identity)."""
    shape = input._data.shape
    if input._data.size:
        return
    start = f"linalg.vector_norm cannot compute the {'inf' if p > 0 else '-inf'} norm on "
    if dim is None:
        raise RuntimeError(start + "an empty tensor because the operation does not have an "
                           "identity")
    for d in (dim if isinstance(dim, (tuple, list)) else (dim,)):
        if shape[normalize_dim(d, len(shape), "norm")] == 0:
            raise RuntimeError(start + f"the dimension {d}because this dimension is empty and "
                               "the operation does not have an identity")


def all(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = normalize_dims(dim, input._data.ndim, "all")
    return wrap(as_array(np.all(input._data, axis=axes, keepdims=keepdim)))


def any(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    axes = normalize_dims(dim, input._data.ndim, "any")
    return wrap(as_array(np.any(input._data, axis=axes, keepdims=keepdim)))


def count_nonzero(input: Tensor, dim=None) -> Tensor:
    axes = normalize_dims(dim, input._data.ndim, "count_nonzero")
    return wrap(as_array(np.count_nonzero(input._data, axis=axes)).astype(np.int64))


# ---- more of torch's reductions (composed: their gradients follow) ------------------------------
MinMax = namedtuple("aminmax", ["min", "max"])


class NanToZero(Op):
    """y = 0 where x is NaN, else x;  dx = g·[x not NaN] (a product, as torch: a NaN or ±inf
    upstream gradient gives NaN at the NaN inputs)"""

    @staticmethod
    def forward(ctx, x):
        keep = ~np.isnan(x)
        ctx.keep = keep.astype(x.dtype)
        return np.where(keep, x, 0)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.keep


def nansum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Σ over ``dim`` with NaN counted as 0."""
    if input._data.dtype.kind in _dt.FLOAT_KINDS:
        input = NanToZero.apply(input)
    return sum(input, dim, keepdim, dtype=dtype)


def nanmean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The mean over ``dim`` of the non-NaN values."""
    if input._data.dtype.kind not in FLOAT_KINDS:
        raise RuntimeError("nanmean(): expected input to have floating point or complex dtype "
                           f"but got {input.dtype.name.title()}")
    count = sum(wrap(~np.isnan(input._data)), dim, keepdim)
    return nansum(input, dim, keepdim, dtype=dtype) / count.to(dtype or input.dtype)


def aminmax(input: Tensor, *, dim=None, keepdim: bool = False):
    """(min, max) over ``dim`` (all elements when None)."""
    if dim is None:
        if keepdim:
            axes = tuple(range(input._data.ndim))
            return MinMax(amin(input, axes, True), amax(input, axes, True))
        return MinMax(amin(input), amax(input))
    return MinMax(amin(input, dim, keepdim), amax(input, dim, keepdim))


def logcumsumexp(input: Tensor, dim: int) -> Tensor:
    """ln Σ_{j≤i} e^xⱼ along ``dim``, shifted by the max for stability."""
    d = normalize_dim(dim, builtins.max(input._data.ndim, 1), "logcumsumexp")
    if input._data.ndim == 0:
        return input.clone()
    m = np.amax(input._data, axis=d, keepdims=True) if input._data.size else 0
    m = np.where(np.isfinite(m), m, 0)
    from chainrule.ops.elementwise import exp, log

    return log(cumsum(exp(input - wrap(m)), d)) + wrap(m)


def trace(input: Tensor) -> Tensor:
    """The sum of a matrix's diagonal."""
    if input._data.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim "
                           f"{input._data.ndim}")
    from chainrule.ops.shape import diagonal

    return sum(diagonal(input, 0, 0, 1))


def diff(input: Tensor, n: int = 1, dim: int = -1, prepend=None, append=None) -> Tensor:
    """The n-th forward difference along ``dim`` (``prepend``/``append`` joined first)."""
    from chainrule.ops.shape import cat, narrow

    d = normalize_dim(dim, input._data.ndim, "diff")
    parts = [p for p in (prepend, input, append) if p is not None]
    x = cat(parts, d) if len(parts) > 1 else input
    for _ in range(n):
        size = x._data.shape[d]
        if size == 0:
            break
        a, b = narrow(x, d, 1, size - 1), narrow(x, d, 0, size - 1)
        x = (a != b) if x._data.dtype == bool else a - b
    return x


def cov(input: Tensor, *, correction: int = 1, fweights=None, aweights=None) -> Tensor:
    """The covariance matrix of the variables in ``input``'s rows (observations in columns)."""
    x = input if input._data.ndim == 2 else input.reshape(1, -1)
    if x._data.dtype.kind not in FLOAT_KINDS:
        x = x.to(_dt.get_default_dtype())
    n = x._data.shape[1]
    w = None
    if fweights is not None:
        w = fweights.to(x.dtype)
    if aweights is not None:
        w = aweights.to(x.dtype) if w is None else w * aweights.to(x.dtype)
    if w is None:
        mean_ = x.mean(1, keepdim=True)
        norm_ = n - correction
        xc = x - mean_
        c = (xc @ xc.mT) / norm_
    else:
        wsum = w.sum()
        mean_ = (x * w).sum(1, keepdim=True) / wsum
        if correction == 0:
            norm_ = wsum
        elif aweights is None:
            norm_ = wsum - correction
        else:
            norm_ = wsum - correction * (w * aweights.to(x.dtype)).sum() / wsum
        xc = x - mean_
        c = ((xc * w) @ xc.mT) / norm_
    return c.squeeze() if input._data.ndim < 2 else c


def corrcoef(input: Tensor) -> Tensor:
    """Pearson's correlation coefficients of the rows, clipped to [-1, 1]."""
    c = cov(input)
    if c._data.ndim == 0:
        return c / c
    d = c.diagonal(0, 0, 1) if c._data.ndim == 2 else c
    from chainrule.ops.elementwise import sqrt

    s = sqrt(d)
    r = c / s.unsqueeze(1) / s.unsqueeze(0)
    return r.clamp(-1, 1)


def renorm(input: Tensor, p, dim: int, maxnorm) -> Tensor:
    """Each slice along ``dim`` rescaled to p-norm ``maxnorm`` where its norm is larger."""
    d = normalize_dim(dim, input._data.ndim, "renorm")
    others = tuple(i for i in range(input._data.ndim) if i != d)
    nrm = norm(input, p, others, True)
    factor = where(nrm._data > maxnorm, maxnorm / (nrm + 1e-7), 1.0)
    return input * factor


def dist(input: Tensor, other: Tensor, p=2) -> Tensor:
    """‖input - other‖_p."""
    return norm(input - other, p)


def trapezoid(y: Tensor, x=None, *, dx=None, dim: int = -1) -> Tensor:
    """∫ y by the trapezoid rule along ``dim`` (spacing ``dx``, 1 by default, or samples x)."""
    from chainrule.ops.shape import narrow

    d = normalize_dim(dim, y._data.ndim, "trapezoid")
    n = y._data.shape[d]
    if n == 0:
        return sum(y, d)
    left, right = narrow(y, d, 0, n - 1), narrow(y, d, 1, n - 1)
    if x is None:
        return sum(left + right, d) * ((1.0 if dx is None else dx) / 2)
    if not isinstance(x, Tensor):
        return sum(left + right, d) * (x / 2)
    xd = x if x._data.ndim == 1 else x
    if x._data.ndim == 1:
        shape = [1] * y._data.ndim
        shape[d] = n
        xd = x.reshape(shape)
    dxs = narrow(xd, d if x._data.ndim != 1 else d, 1, n - 1) - narrow(xd, d, 0, n - 1)
    return sum((left + right) * dxs, d) / 2


trapz = trapezoid


def cumulative_trapezoid(y: Tensor, x=None, *, dx=None, dim: int = -1) -> Tensor:
    """The running trapezoid-rule integral of y along ``dim``."""
    from chainrule.ops.shape import narrow

    d = normalize_dim(dim, y._data.ndim, "cumulative_trapezoid")
    n = y._data.shape[d]
    left, right = narrow(y, d, 0, n - 1), narrow(y, d, 1, n - 1)
    if x is None or not isinstance(x, Tensor):
        step = (1.0 if dx is None else dx) if x is None else x
        return cumsum((left + right) * (step / 2), d)
    xd = x
    if x._data.ndim == 1:
        shape = [1] * y._data.ndim
        shape[d] = n
        xd = x.reshape(shape)
    dxs = narrow(xd, d, 1, n - 1) - narrow(xd, d, 0, n - 1)
    return cumsum((left + right) * dxs / 2, d)


__all__ += [
    "nansum", "nanmean", "aminmax", "logcumsumexp", "trace", "diff", "cov", "corrcoef",
    "renorm", "dist", "trapezoid", "trapz", "cumulative_trapezoid",
]
