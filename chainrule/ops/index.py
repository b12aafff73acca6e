"""Indexing gates: x[index], gather/scatter_add, index_select, take_along_dim.

Each pair here is adjoint: the backward of reading at an index is adding at that index
(repeated indices accumulate), and the backward of that is reading again.
"""

from __future__ import annotations

from chainrule.batching import copy_for
from chainrule.devices import np
from chainrule import devices
from chainrule.autograd.function import Op
from chainrule.creation import as_tensor
from chainrule.ops import either
from chainrule.ops.shape import normalize_dim
from chainrule.tensor import Tensor, wrap

__all__ = [
    "gather", "scatter_add", "scatter", "index_select",
    "take_along_dim", "nonzero", "masked_select", "take", "argwhere",
]

_BASIC = (int, slice, type(None), type(Ellipsis))


def _index_part(k, like):
    if isinstance(k, Tensor):
        k = k._data
    if isinstance(k, (list,)):
        k = devices.asarray_on(k, like)
        if k.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    if devices.is_array(k):
        if devices.is_cpu_array(k) and not devices.is_cpu_array(like):  # as torch: a CPU index
            k = devices.asarray_on(k, like)                              # works on a GPU tensor
        if k.dtype.kind not in "biu":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        if k.ndim == 0 and k.dtype.kind != "b":
            return int(k)
    return k


def normalize_index(key, like):
    """Tensors and lists in an index become arrays on the device of ``like`` (ints stay ints)."""
    if isinstance(key, _BASIC):
        return key
    if isinstance(key, tuple):
        return tuple(k if isinstance(k, _BASIC) else _index_part(k, like) for k in key)
    return _index_part(key, like)


def _is_basic(index) -> bool:
    if isinstance(index, tuple):
        return all(isinstance(k, _BASIC) for k in index)
    return isinstance(index, _BASIC)


def _without_bool_masks(index):
    """Boolean masks as the integer index arrays they select (np.add.at wants those)."""
    parts = index if isinstance(index, tuple) else (index,)
    out = []
    for k in parts:
        if devices.is_array(k) and k.dtype.kind == "b":
            out.extend(k.nonzero())
        else:
            out.append(k)
    return tuple(out)


def _add_at(out, index, values) -> None:
    """out[index] += values, repeated indices accumulating (CuPy's add.at on the GPU: NumPy's
    protocol does not pass ufunc methods on to CuPy)."""
    devices.xp_of(out).add.at(out, index, values)


class Index(Op):
    """y = x[index];  the gradient is added back at the same places"""

    is_view = True  # for basic indices (ints, slices, None, ...): a view, as torch's

    @staticmethod
    def forward(ctx, x, index):
        ctx.shape, ctx.index = x.shape, index
        y = x[index]
        if type(y) is not type(x) and _is_basic(index):
            y = x[(index if isinstance(index, tuple) else (index,)) + (Ellipsis,)]  # a 0-d view
        return y

    @staticmethod
    def backward(ctx, g):
        return either.index_put(ctx.shape, ctx.index, g), None


class IndexAssign(Op):
    """y = x with y[index] = v;  dy/dx = 1 outside index, dy/dv = g[index]"""

    @staticmethod
    def forward(ctx, x, v, index):
        ctx.index = index
        out = copy_for(x, v)
        out[index] = v
        return out

    @staticmethod
    def backward(ctx, g):
        outside = either.ones_like_data(g)
        outside[ctx.index] = 0
        return g * outside, g[ctx.index], None


def is_basic(index) -> bool:
    """Ints, slices, None and ``...`` only (a view of the tensor, not a gather)."""
    return _is_basic(index)


def index_assign(input: Tensor, index, values) -> Tensor:
    """``input`` with ``input[index] = values`` (what ``input[index] = values`` writes)."""
    index = normalize_index(index, input._data)
    if isinstance(values, Tensor):
        if values.device != input.device:
            values = values.to(input.device)
    elif not isinstance(values, (int, float, bool)):
        values = as_tensor(values, dtype=input.dtype, device=input.device)
    try:
        return IndexAssign.apply(input, values, index)
    except (ValueError, IndexError) as e:
        kind = IndexError if isinstance(e, IndexError) else RuntimeError  # torch's types
        raise kind(f"__setitem__ on a tensor of shape {list(input._data.shape)}: {e}") from None


class IndexPut(Op):
    """y = zeros(shape) with g added at index (repeats accumulate);  dy/dg = read at index"""

    @staticmethod
    def forward(ctx, g, shape, index):
        if ctx is not None:
            ctx.index = index
        out = devices.xp_of(g).zeros(shape, g.dtype)
        if _is_basic(index):
            out[index] = g
        else:
            _add_at(out, _without_bool_masks(index), g)
        return out

    @staticmethod
    def backward(ctx, gg):
        return gg[ctx.index], None, None


def _along(index: np.ndarray, dim: int) -> tuple:
    """Full NumPy index addressing ``index`` along ``dim`` and position elsewhere."""
    nd, xp = index.ndim, devices.xp_of(index)
    parts = [xp.arange(s).reshape((-1,) + (1,) * (nd - a - 1)) for a, s in enumerate(index.shape)]
    parts[dim] = index
    return tuple(parts)


class Gather(Op):
    """y[i][j] = x[i][index[i][j]] (along dim);  the gradient is scatter-added back"""

    @staticmethod
    def forward(ctx, x, dim, index):
        if ctx is not None:
            ctx.dim, ctx.index, ctx.shape = dim, index, x.shape
        return x[_along(index, dim)]

    @staticmethod
    def backward(ctx, g):
        zeros = either.zeros(ctx.shape, g)
        return either.scatter_add(zeros, ctx.dim, ctx.index, g), None, None


class ScatterAdd(Op):
    """y = x, then y[...index...] += src;  dy/dx = 1, dy/dsrc = gather at index"""

    @staticmethod
    def forward(ctx, x, dim, index, src):
        if ctx is not None:
            ctx.dim, ctx.index, ctx.src_shape = dim, index, src.shape
        out = copy_for(x, src)
        region = tuple(slice(0, s) for s in index.shape)
        _add_at(out, _along(index, dim), src[region])
        return out

    @staticmethod
    def backward(ctx, g):
        g_src = either.gather(g, ctx.dim, ctx.index)
        if tuple(ctx.index.shape) != tuple(ctx.src_shape):
            g_src = either.pad_zeros(
                g_src, [(0, s - i) for s, i in zip(ctx.src_shape, ctx.index.shape)]
            )
        return g, None, None, g_src


def _raw_index(index, name: str, like) -> np.ndarray:
    idx = index._data if isinstance(index, Tensor) else devices.asarray_on(index, like)
    devices.check_same_device((like, idx), f"{name}()", " (index)")
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"{name}(): Expected dtype int64 for index, got {idx.dtype}")
    return idx


def _check_along(input: Tensor, dim: int, idx: np.ndarray, name: str) -> None:
    shape = input._data.shape
    if idx.ndim != len(shape) and not (idx.ndim <= 1 and len(shape) <= 1):
        raise RuntimeError(
            f"{name}(): Index tensor must have the same number of dimensions as input tensor "
            f"(index shape {list(idx.shape)}, input shape {list(shape)})"
        )
    for d, (i, s) in enumerate(zip(idx.shape, shape)):
        if d != dim and i > s:
            raise RuntimeError(
                f"{name}(): Size does not match at dimension {d} expected index {list(idx.shape)}"
                f" to be smaller than self {list(shape)} apart from dimension {dim}"
            )
    if idx.size and (idx.min() < 0 or idx.max() >= shape[dim]):  # no wrap-around, as torch
        raise RuntimeError(
            f"{name}(): index {int(idx.max() if idx.max() >= shape[dim] else idx.min())} is out "
            f"of bounds for dimension {dim} with size {shape[dim]}"
        )


def getitem(input: Tensor, key) -> Tensor:
    """input[key]: ints, slices (negative steps too), None, ..., int arrays and bool masks."""
    try:
        return Index.apply(input, normalize_index(key, input._data))
    except IndexError as e:
        raise IndexError(f"index: {e} (tensor of shape {list(input._data.shape)})") from None


def gather(input: Tensor, dim: int, index) -> Tensor:
    """Values of ``input`` at ``index`` along ``dim``."""
    d = normalize_dim(dim, input._data.ndim, "gather")
    idx = _raw_index(index, "gather", input._data)
    _check_along(input, d, idx, "gather")
    return Gather.apply(input, d, idx)


def scatter_add(input: Tensor, dim: int, index, src: Tensor) -> Tensor:
    """``input`` with ``src`` added at ``index`` along ``dim`` (repeats accumulate)."""
    d = normalize_dim(dim, input._data.ndim, "scatter_add")
    idx = _raw_index(index, "scatter_add", input._data)
    if isinstance(src, Tensor) and src._data.dtype != input._data.dtype:
        raise RuntimeError(
            f"scatter_add(): Expected self.dtype to be equal to src.dtype (got {input.dtype} "
            f"and {src.dtype})"
        )
    _check_along(input, d, idx, "scatter_add")
    return ScatterAdd.apply(input, d, idx, src)


def scatter(input: Tensor, dim: int, index, src=None, value=None) -> Tensor:
    """``input`` with values written at ``index`` (gradient flows to the kept entries of input)."""
    d = normalize_dim(dim, input._data.ndim, "scatter")
    idx = _raw_index(index, "scatter", input._data)
    xp = devices.xp_of(input._data)
    mask = xp.zeros(input._data.shape, bool)
    mask[_along(idx, d)] = True
    if src is None:
        src_vals = xp.full(idx.shape, value, input._data.dtype)
        written = xp.zeros(input._data.shape, input._data.dtype)
        written[_along(idx, d)] = src_vals
        return input.masked_fill(wrap(mask), 0) + wrap(written)
    placed = scatter_add(input * 0, d, idx, src) if isinstance(src, Tensor) else None
    return input.masked_fill(wrap(mask), 0) + placed


def index_select(input: Tensor, dim: int, index) -> Tensor:
    """The slices of ``input`` at the 1-d ``index`` along ``dim``."""
    d = normalize_dim(dim, input._data.ndim, "index_select")
    idx = _raw_index(index, "index_select", input._data)
    if idx.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    n = input._data.shape[d] if input._data.ndim else 1
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(
            f"index_select(): index out of range in self (index {idx.tolist()}, size {n} at "
            f"dim {d})"
        )
    if input._data.ndim == 0:
        return input.reshape(1)[idx.reshape(-1)]
    return Index.apply(input, (slice(None),) * d + (idx.reshape(-1),))


def take_along_dim(input: Tensor, indices, dim=None) -> Tensor:
    """Values of ``input`` at ``indices`` along ``dim`` (flattened when None), broadcasting."""
    idx = _raw_index(indices, "take_along_dim", input._data)
    if dim is None:
        return Gather.apply(input.reshape(-1), 0, idx.reshape(-1))
    d = normalize_dim(dim, input._data.ndim, "take_along_dim")
    shape_in, shape_idx = list(input._data.shape), list(idx.shape)
    shape_in[d] = shape_idx[d] = 1
    common = np.broadcast_shapes(tuple(shape_in), tuple(shape_idx))
    in_shape = list(common)
    in_shape[d] = input._data.shape[d]
    idx_shape = list(common)
    idx_shape[d] = idx.shape[d]
    x = input.expand(*in_shape) if tuple(in_shape) != input._data.shape else input
    return Gather.apply(x, d, devices.xp_of(idx).broadcast_to(idx, idx_shape))


def take(input: Tensor, index) -> Tensor:
    return take_along_dim(input, index, None).reshape(_raw_index(index, "take", input._data).shape)


def nonzero(input: Tensor, *, as_tuple: bool = False):
    """Indices of the non-zero elements: (n, ndim) int64, or a tuple of 1-d index tensors."""
    xp = devices.xp_of(input._data)
    nz = xp.atleast_1d(input._data).nonzero()
    if as_tuple:
        return tuple(wrap(a.astype(np.int64)) for a in nz)
    return wrap(xp.stack(nz, axis=1).astype(np.int64))


argwhere = nonzero


def masked_select(input: Tensor, mask) -> Tensor:
    m = mask._data if isinstance(mask, Tensor) else devices.asarray_on(mask, input._data)
    shape = np.broadcast_shapes(input._data.shape, m.shape)
    x = input.expand(*shape) if shape != input._data.shape else input
    return x[devices.xp_of(m).broadcast_to(m, shape)]
