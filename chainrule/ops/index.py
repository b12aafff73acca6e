"""Indexing gates: x[index], gather/scatter_add, index_select, take_along_dim.

Each pair here is adjoint: the backward of reading at an index is adding at that index
(repeated indices accumulate), and the backward of that is reading again.
"""

from __future__ import annotations

from chainrule.batching import copy_for, is_batched, stack_host
from chainrule.devices import np
from chainrule import devices
from chainrule.autograd.function import Op
from chainrule.creation import as_tensor
from chainrule.kernels import kernels_for
from chainrule.kernels.reference import along as _along
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
    """out[index] += values, repeated indices accumulating (the kernel table's scatter-add)."""
    kernels_for(out).add_at(out, index, values)


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
        need_x, need_v = ctx.needs_input_grad[:2]
        gx = None
        if need_x:
            outside = either.ones_like_data(g)
            outside[ctx.index] = 0
            gx = g * outside
        return gx, (g[ctx.index] if need_v else None), None


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


class Gather(Op):
    """y[i][j] = x[i][index[i][j]] (along dim);  the gradient is scatter-added back"""

    @staticmethod
    def forward(ctx, x, dim, index):
        if ctx is not None:
            ctx.dim, ctx.index, ctx.shape = dim, index, x.shape
        return kernels_for(x).gather(x, dim, index)

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
        kernels_for(out).scatter_add(out, dim, index, src[region])
        return out

    @staticmethod
    def backward(ctx, g):
        if not ctx.needs_input_grad[3]:
            return g, None, None, None
        g_src = either.gather(g, ctx.dim, ctx.index)
        if tuple(ctx.index.shape) != tuple(ctx.src_shape):
            g_src = either.pad_zeros(
                g_src, [(0, s - i) for s, i in zip(ctx.src_shape, ctx.index.shape)]
            )
        return g, None, None, g_src


class Scatter(Op):
    """y = x, then y[...index...] = src (a repeated target keeps one of its writes, as torch);
    dy/dx = 1 where nothing was written, dy/dsrc = gather at index (every write, as torch)"""

    @staticmethod
    def forward(ctx, x, dim, index, src):
        ctx.dim, ctx.index, ctx.src_shape = dim, index, src.shape
        out = x.copy()
        region = tuple(slice(0, s) for s in index.shape)
        out[_along(index, dim)] = src[region]
        written = devices.xp_of(x).zeros(x.shape, bool)
        written[_along(index, dim)] = True
        ctx.written = written
        return out

    @staticmethod
    def backward(ctx, g):
        g_x = either.where(ctx.written, 0.0, g) if ctx.needs_input_grad[0] else None
        g_src = None
        if ctx.needs_input_grad[3]:
            g_src = either.gather(g, ctx.dim, ctx.index)
            if tuple(ctx.index.shape) != tuple(ctx.src_shape):
                g_src = either.pad_zeros(
                    g_src, [(0, s - i) for s, i in zip(ctx.src_shape, ctx.index.shape)])
        return g_x, None, None, g_src


def _raw_index(index, name: str, like) -> np.ndarray:
    idx = index._data if isinstance(index, Tensor) else devices.asarray_on(index, like)
    if type(idx) is not np.ndarray or type(like) is not np.ndarray:  # (two NumPy arrays: CPU)
        devices.check_same_device((like, idx), f"{name}()", " (index)")
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"{name}(): Expected dtype int64 for index, got {idx.dtype}")
    return idx


def _check_along(input: Tensor, dim: int, idx: np.ndarray, name: str) -> None:
    shape, ishape = input._data.shape, idx.shape
    if len(ishape) != len(shape) and not (len(ishape) <= 1 and len(shape) <= 1):
        raise RuntimeError(
            f"{name}(): Index tensor must have the same number of dimensions as input tensor "
            f"(index shape {list(idx.shape)}, input shape {list(shape)})"
        )
    if ishape[:dim] != shape[:dim] or ishape[dim + 1:] != shape[dim + 1:]:  # (alike: none)
        for d, (i, s) in enumerate(zip(ishape, shape)):
            if d != dim and i > s:
                raise RuntimeError(
                    f"{name}(): Size does not match at dimension {d} expected index "
                    f"{list(idx.shape)} to be smaller than self {list(shape)} apart from "
                    f"dimension {dim}"
                )
    # no wrap-around, as torch (one pass: a negative index is a huge one as unsigned)
    if idx.size and not kernels_for(idx).index_in_range(idx, shape[dim]):
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
    if not isinstance(src, Tensor):
        return scatter(input, d, idx, value=src)
    if src._data.dtype != input._data.dtype:
        raise RuntimeError(f"scatter(): Expected self.dtype to be equal to src.dtype (got "
                           f"{input.dtype} and {src.dtype})")
    _check_along(input, d, idx, "scatter")
    return Scatter.apply(input, d, idx, src)


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


# ---- more of torch's indexing functions ----------------------------------------------------------
def _along_dim(index, dim: int, like_shape: tuple):
    """A 1-d ``index`` along ``dim`` spread to ``like_shape`` (for scatter/gather forms)."""
    xp = devices.xp_of(index)
    view = [1] * len(like_shape)
    view[dim] = -1
    return xp.broadcast_to(index.reshape(view), like_shape).copy()


def _index_vector(index, name: str, like, dim: int, size: int):
    idx = _raw_index(index, name, like).reshape(-1)
    n = like.shape[dim] if like.ndim else 1
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"{name}(): index out of range in self (index values must be in "
                         f"[{-n}, {n}) for dim {dim} of size {n})")
    if idx.shape[0] != size:
        raise RuntimeError(f"{name}(): Number of indices ({idx.shape[0]}) should be equal to "
                           f"source.size(dim) ({size})")
    return idx % builtins_max(n, 1)


def builtins_max(a, b):
    return a if a > b else b


_SCALAR_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half", "bfloat16": "BFloat16",
                 "int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
                 "bool": "Bool", "complex64": "ComplexFloat", "complex128": "ComplexDouble"}


def _same_scalar_type(input: Tensor, source: Tensor, name: str) -> None:
    """torch's check that ``source`` has ``input``'s dtype (index_add/index_copy/index_reduce)."""
    a, b = input._data.dtype, source._data.dtype
    if a != b:
        sa, sb = (_SCALAR_NAMES.get(t.name, t.name) for t in (a, b))
        if name == "index_copy":
            raise RuntimeError(f"index_copy_(): self and source expected to have the same dtype, "
                               f"but got (self) {sa} and (source) {sb}")
        raise RuntimeError(f"{name}_(): self ({sa}) and source ({sb}) must have the same scalar "
                           f"type")


def index_add(input: Tensor, dim: int, index, source: Tensor, *, alpha=1) -> Tensor:
    """``input`` with ``alpha·source`` slices added at ``index`` along ``dim`` (repeats add)."""
    d = normalize_dim(dim, input._data.ndim, "index_add")
    _same_scalar_type(input, source, "index_add")
    src = source if source._data.ndim else source.reshape(1)
    idx = _index_vector(index, "index_add", input._data, d, src._data.shape[d] if
                        src._data.ndim else 1)
    full = _along_dim(idx, d, src._data.shape)
    return ScatterAdd.apply(input, d, full, src if alpha == 1 else src * alpha)


def index_copy(input: Tensor, dim: int, index, source: Tensor) -> Tensor:
    """``input`` with ``source`` slices written at ``index`` along ``dim``."""
    d = normalize_dim(dim, input._data.ndim, "index_copy")
    _same_scalar_type(input, source, "index_copy")
    idx = _index_vector(index, "index_copy", input._data, d, source._data.shape[d] if
                        source._data.ndim else 1)
    return Scatter.apply(input, d, _along_dim(idx, d, source._data.shape), source)


def index_fill(input: Tensor, dim: int, index, value) -> Tensor:
    """``input`` with the slices at ``index`` along ``dim`` set to ``value``."""
    d = normalize_dim(dim, builtins_max(input._data.ndim, 1), "index_fill")
    idx = _raw_index(index, "index_fill", input._data).reshape(-1)
    xp = devices.xp_of(input._data)
    mask = xp.zeros(input._data.shape, bool)
    if input._data.ndim:
        sel = [slice(None)] * input._data.ndim
        sel[d] = idx
        mask[tuple(sel)] = True
    else:
        mask[...] = True
    if isinstance(value, Tensor):
        if value._data.ndim:
            raise RuntimeError("index_fill_ only supports a 0-dimensional value tensor, but got "
                               f"tensor with {value._data.ndim} dimension(s).")
        from chainrule.ops.binary import where

        return where(wrap(mask), value, input)
    return input.masked_fill(wrap(mask), value)


def index_put(input: Tensor, indices, values, accumulate: bool = False) -> Tensor:
    """``input`` with ``values`` written (or added, ``accumulate=True``) at ``input[indices]``."""
    key = tuple(indices)
    if accumulate:
        return input + _place(input, key, values)
    out = input.clone()
    out[key] = values
    return out


def _place(input: Tensor, key, values) -> Tensor:
    """zeros like input with ``values`` added at ``key`` (repeats accumulate)."""
    xp = devices.xp_of(input._data)
    raw_key = tuple(_raw(k) for k in key)
    v = values if isinstance(values, Tensor) else wrap(xp.asarray(values, input._data.dtype))
    target = xp.zeros(input._data.shape, bool)[raw_key].shape
    v = v.expand(*target) if tuple(v._data.shape) != tuple(target) else v
    return IndexPut.apply(v, tuple(input._data.shape), raw_key)


def _raw(k):
    return k._data if isinstance(k, Tensor) else k


def masked_scatter(input: Tensor, mask: Tensor, source: Tensor) -> Tensor:
    """``input`` with the True places of ``mask`` filled from ``source``'s elements in order."""
    m = mask._data
    if m.dtype != bool:
        raise RuntimeError(f"masked_scatter_: expected BoolTensor for mask, got {mask.dtype}")
    xp = devices.xp_of(m)
    shape = np.broadcast_shapes(tuple(input._data.shape), tuple(m.shape))
    mb = xp.broadcast_to(m, shape)
    n = int(mb.sum())
    if n > source._data.size:
        raise RuntimeError("masked_scatter: expected source to have at least as many elements "
                           "as ones in mask")
    pos = (xp.cumsum(mb.reshape(-1)) - 1).clip(0).reshape(shape)
    picked = take_along_dim(source.reshape(-1), wrap(pos.reshape(-1)), None).reshape(shape)
    from chainrule.ops.binary import where

    return where(wrap(mb), picked, input)


def put(input: Tensor, index, source: Tensor, accumulate: bool = False) -> Tensor:
    """``input`` (seen flat) with ``source`` written (or added) at the flat ``index``."""
    idx = _raw_index(index, "put", input._data).reshape(-1)
    n = input._data.size
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"put(): index out of range (size {n})")
    idx = idx % builtins_max(n, 1)
    flat = input.reshape(-1)
    src = source.reshape(-1)
    if accumulate:
        out = ScatterAdd.apply(flat, 0, idx, src)
    else:
        out = Scatter.apply(flat, 0, idx, src)
    return out.reshape(tuple(input._data.shape))


class ScatterReduce(Op):
    """y = input reduced with src at index ("sum", "prod", "mean", "amax", "amin");
    the gradient follows each reduction (amax/amin: shared evenly among the winners)"""

    @staticmethod
    def forward(ctx, x, dim, index, src, reduce, include_self):
        xp = devices.xp_of(x)
        region = tuple(slice(0, s) for s in index.shape)
        s = src[region]
        where = _along(index, dim)
        ufunc = {"sum": np.add, "mean": np.add, "prod": np.multiply, "amax": np.maximum,
                 "amin": np.minimum}[reduce]
        hit = xp.zeros(x.shape, bool)
        hit[where] = True
        count = xp.zeros(x.shape, np.int64)
        np.add.at(count, where, 1)
        if include_self:
            out = x.copy()
        else:
            ident = {"sum": 0, "mean": 0, "prod": 1, "amax": -np.inf, "amin": np.inf}[reduce]
            out = np.where(hit, ident, x).astype(x.dtype)
        ufunc.at(out, where, s)
        if reduce == "mean":
            denom = count + (1 if include_self else 0)
            out = np.where(hit, out / np.maximum(denom, 1), out)
            if x.dtype.kind in "iu":
                out = np.floor(out)
            out = out.astype(x.dtype)
        ctx.save_for_backward(x, src, out)
        ctx.dim, ctx.index, ctx.reduce, ctx.include_self = dim, index, reduce, include_self
        ctx.hit, ctx.count = hit, count
        return out

    @staticmethod
    def backward(ctx, g):
        x, src, out = ctx.saved_tensors
        dim, index, red = ctx.dim, ctx.index, ctx.reduce
        keep_self = ctx.include_self
        g_self_mask = either.where(ctx.hit, 1.0 if keep_self else 0.0, 1.0)
        if red == "sum":
            return g * g_self_mask, None, None, _pad_src(either.gather(g, dim, index), src), \
                None, None
        if red == "mean":
            denom = either.where(ctx.hit, ctx.count + (1 if keep_self else 0), 1)
            gs = g / denom
            return gs * g_self_mask, None, None, _pad_src(either.gather(gs, dim, index), src), \
                None, None
        if red == "prod":
            s_part = _region(src, index)
            if not ((either.data(s_part) == 0).any() or (keep_self and (
                    (either.data(x) == 0) & ctx.hit).any())):
                # d out / d v = out / v (no zeros among the factors)
                g_x = g * out / x * g_self_mask if keep_self else g * g_self_mask
                g_s = either.gather(g * out, dim, index) / s_part
                return g_x, None, None, _pad_src(g_s, src), None, None
            d_x, d_s = _prod_partials(either.data(x), either.data(s_part), dim, index,
                                      keep_self, ctx.hit)
            g_x = g * either.where(ctx.hit, d_x if keep_self else 0.0, 1.0)
            g_s = either.gather(g, dim, index) * d_s
            return g_x, None, None, _pad_src(g_s, src), None, None
        # amax / amin: the gradient shared evenly among the values equal to the result
        dt = either.data(g).dtype
        s_part = _region(src, index)
        win_s = either.astype(either.data(s_part) == either.data(either.gather(out, dim, index)),
                              dt)
        self_wins = (either.data(x) == either.data(out)) if keep_self else False
        win_x = either.astype(devices.xp_of(ctx.hit).where(ctx.hit, self_wins, True), dt)
        n = either.scatter_add(win_x, dim, index, win_s)
        share = g / either.where(n == 0, 1.0, n)
        return share * win_x, None, None, _pad_src(either.gather(share, dim, index) * win_s,
                                                   src), None, None


def _prod_partials(x, s, dim, index, keep_self, hit):
    """∂(product)/∂(each factor) of scatter_reduce "prod", exact with zero factors: the
    product of the other factors (the non-zero product, where the factor is the only zero)."""
    where_ = _along(index, dim)
    nz = np.ones(x.shape, np.float64)
    zeros = np.zeros(x.shape, np.int64)
    if keep_self:
        nz = np.where(hit & (x != 0), x, 1.0)
        zeros = (hit & (x == 0)).astype(np.int64)
    np.multiply.at(nz, where_, np.where(s == 0, 1.0, s))
    np.add.at(zeros, where_, (s == 0).astype(np.int64))

    def partial(v, nz_v, z_v):
        with np.errstate(all="ignore"):
            return np.where(z_v == 0, nz_v / np.where(v == 0, 1.0, v),
                            np.where((z_v == 1) & (v == 0), nz_v, 0.0))

    d_x = partial(x, nz, zeros).astype(x.dtype)
    d_s = partial(s, nz[where_], zeros[where_]).astype(s.dtype)
    return d_x, d_s


def _region(src, index):
    return src[tuple(slice(0, s) for s in index.shape)]


def _pad_src(g_src, src):
    if tuple(g_src.shape) != tuple(src.shape):
        g_src = either.pad_zeros(g_src, [(0, s - i) for s, i in zip(src.shape, g_src.shape)])
    return g_src


def scatter_reduce(input: Tensor, dim: int, index, src: Tensor, reduce: str, *,
                   include_self: bool = True) -> Tensor:
    """``input`` with ``src`` combined in at ``index`` along ``dim`` by ``reduce``."""
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got "
                           f"{reduce}")
    d = normalize_dim(dim, input._data.ndim, "scatter_reduce")
    idx = _raw_index(index, "scatter_reduce", input._data)
    _check_along(input, d, idx, "scatter_reduce")
    if src._data.dtype != input._data.dtype:
        raise RuntimeError(f"scatter_reduce(): Expected self.dtype to be equal to src.dtype "
                           f"(got {input.dtype} and {src.dtype})")
    return ScatterReduce.apply(input, d, idx, src, reduce, include_self)


__all__ += ["index_add", "index_copy", "index_fill", "index_put", "masked_scatter", "put",
            "scatter_reduce"]


def index_reduce(input: Tensor, dim: int, index, source: Tensor, reduce: str, *,
                 include_self: bool = True) -> Tensor:
    """``input`` with ``source``'s slices combined in at ``index`` along ``dim`` by ``reduce``
    ("prod", "mean", "amax", "amin")."""
    if reduce not in ("prod", "mean", "amax", "amin"):
        raise RuntimeError(f"index_reduce(): Expected reduce to be one of prod, mean, amax or "
                           f"amin but got {reduce}.")
    d = normalize_dim(dim, input._data.ndim, "index_reduce")
    _same_scalar_type(input, source, "index_reduce")
    if reduce == "mean" and input._data.dtype == np.bool_:
        raise NotImplementedError("\"div_floor_cpu\" not implemented for 'Bool'")
    idx = _index_vector(index, "index_reduce", input._data, d, source._data.shape[d] if
                        source._data.ndim else 1)
    return ScatterReduce.apply(input, d, _along_dim(idx, d, source._data.shape), source,
                               reduce, include_self)


def nonzero_static(input: Tensor, *, size: int, fill_value: int = -1) -> Tensor:
    """``nonzero`` padded with ``fill_value`` (or cut) to exactly ``size`` rows."""
    if is_batched(input._data):  # each example's first `size` positions, in one pass
        rows = input._data.reshape(1, -1)
        return wrap(_first_nonzero(rows, tuple(input._data.shape), size, fill_value)[0])
    xp = devices.xp_of(input._data)
    nz = xp.argwhere(input._data).astype(np.int64)[:size]
    pad = xp.full((size - nz.shape[0], input._data.ndim), fill_value, np.int64)
    return wrap(xp.concatenate([nz, pad], 0))


@stack_host
def _first_nonzero(rows, shape: tuple, size: int, fill_value):
    """For each row of ``rows`` (..., N) (an array of ``shape`` flattened): the indices of its
    first ``size`` nonzero elements, padded with ``fill_value``: (..., size, len(shape))."""
    xp = devices.xp_of(rows)
    lead = rows.shape[:-1]
    flat = rows.reshape(-1, rows.shape[-1]) != 0
    rank = xp.cumsum(flat, axis=1) - 1
    r, j = xp.nonzero(flat & (rank < size))
    out = xp.full((flat.shape[0], size, len(shape)), fill_value, np.int64)
    if len(shape):
        out[r, rank[r, j]] = xp.stack(xp.unravel_index(j, shape), -1)
    return out.reshape(lead + (size, len(shape)))


def _strided_positions(input: Tensor, size, stride, storage_offset: int):
    """Flat positions (in ``input``'s contiguous order) an as_strided view reads."""
    pos = np.full(tuple(size), storage_offset, np.int64)
    for d, (n, s) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[d] = n
        pos = pos + (np.arange(n) * s).reshape(shape)
    if pos.size and (pos.min() < 0 or pos.max() >= input._data.size):
        raise RuntimeError(f"setStorage: sizes {list(size)}, strides {list(stride)}, storage "
                           f"offset {storage_offset} is out of bounds for storage of size "
                           f"{input._data.size}")
    return devices.to_device(pos, input.device)


def _own_offset(input: Tensor, storage_offset, name: str) -> int:
    """torch's ``storage_offset`` (absolute in the storage; None: the input's own) as an offset
    from the input's first element, the only elements chainrule reads."""
    if storage_offset is None:
        return 0
    own = input.storage_offset()
    if storage_offset < own:
        raise RuntimeError(
            f"{name}(): storage offset {storage_offset} lies before the input's first element "
            f"(its storage offset is {own}): chainrule reads only the input's own elements")
    return storage_offset - own


def as_strided(input: Tensor, size, stride, storage_offset: int | None = None) -> Tensor:
    """The elements of ``input`` (read in its contiguous order) at ``storage_offset + Σ iₖ·strideₖ``
    (a copy here, not a view; the gradient adds back where elements repeat)."""
    if not input.is_contiguous():  # torch reads the storage, which a view shares with its base
        raise RuntimeError(
            f"as_strided(): the input (shape {list(input.shape)}, strides {input.stride()}) is "
            "not contiguous: chainrule reads its elements in their logical order, torch its "
            "storage, and the two differ here; call .contiguous() first")
    offset = _own_offset(input, storage_offset, "as_strided")
    pos = _strided_positions(input, tuple(size), tuple(stride), offset)
    return take_along_dim(input.reshape(-1), wrap(pos.reshape(-1)), None).reshape(tuple(size))


def as_strided_scatter(input: Tensor, src: Tensor, size, stride,
                       storage_offset: int | None = None) -> Tensor:
    """``input`` with the elements an ``as_strided`` view reads replaced by ``src``."""
    if not input.is_contiguous():
        raise RuntimeError(
            f"as_strided_scatter(): the input (shape {list(input.shape)}, strides "
            f"{input.stride()}) is not contiguous: chainrule reads its elements in their logical "
            "order, torch its storage, and the two differ here; call .contiguous() first")
    offset = _own_offset(input, storage_offset, "as_strided_scatter")
    pos = _strided_positions(input, tuple(size), tuple(stride), offset)
    flat = Scatter.apply(input.reshape(-1), 0, pos.reshape(-1), src.reshape(-1))
    return flat.reshape(tuple(input._data.shape))


__all__ += ["index_reduce", "nonzero_static", "as_strided", "as_strided_scatter"]
