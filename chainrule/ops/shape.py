"""Shape gates: reshape, permute, expand, repeat, flip, roll, cat/stack/split, pad, tril/triu/diag.

They move values around without changing them, so each backward moves the gradient back.
"""

from __future__ import annotations

import builtins
import operator

from chainrule.devices import np
from chainrule import devices
from chainrule import dtypes as _dt
from chainrule.autograd.function import Op
from chainrule.batching import is_batched
from chainrule.kernels.dispatch import kernels_for
from chainrule.ops import either
from chainrule.tensor import Tensor, wrap

__all__ = [
    "reshape", "view", "flatten", "unflatten", "transpose",
    "swapaxes", "swapdims", "permute", "movedim", "squeeze", "unsqueeze", "expand", "expand_as",
    "broadcast_to", "repeat", "tile", "flip", "fliplr", "flipud", "roll", "cat", "concat",
    "concatenate", "stack", "hstack", "vstack", "split", "chunk", "unbind", "narrow", "pad",
    "tril", "triu", "diag", "diagonal", "atleast_1d", "broadcast_tensors", "broadcast_shapes",
    "ravel", "t", "select",
]


def normalize_dim(dim, ndim: int, op: str) -> int:
    """A dim in [-ndim, ndim) as a non-negative int; IndexError naming the op otherwise."""
    if type(dim) is int and -ndim <= dim < ndim:  # (the common case: one test)
        return dim % ndim
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"{op}(): dim must be an int, got {type(dim).__name__}") from None
    lo, hi = (-ndim, ndim - 1) if ndim > 0 else (-1, 0)
    if not lo <= d <= hi:
        raise IndexError(
            f"{op}(): Dimension out of range (expected to be in range of [{lo}, {hi}], but got "
            f"{d}) for a tensor with ndim {ndim}"
        )
    return d % ndim if ndim > 0 else 0


def normalize_dims(dim, ndim: int, op: str):
    """``dim`` (None, int, or tuple/list of ints) as a sorted tuple of axes, or None for all."""
    if dim is None:
        return None
    if type(dim) is int and -ndim <= dim < ndim:  # (the common case: one test)
        return (dim % ndim,)
    if isinstance(dim, (tuple, list)):
        if len(dim) == 0:
            return None
        axes = tuple(normalize_dim(d, ndim, op) for d in dim)
        if len(set(axes)) != len(axes):
            raise RuntimeError(f"{op}(): dim {axes} appears multiple times in the list of dims")
        return tuple(sorted(axes)) if ndim > 0 else None
    d = normalize_dim(dim, ndim, op)
    return (d,) if ndim > 0 else None


def _sizes(args) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    return tuple(operator.index(a) for a in args)


# ---- the gates ----------------------------------------------------------------------------------
class Alias(Op):
    """y = x as a new gate on the same array: a node where an inner graph starts that is still
    connected to the outer one (cr.func's inputs, the RNN layers' higher-order fallback)."""

    is_view = True

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, g):
        return g


class Reshape(Op):
    """y = x with a new shape;  the gradient is reshaped back"""

    is_view = True  # where NumPy can reshape without a copy (as torch)

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return either.reshape(g, ctx.shape), None


class Permute(Op):
    """y = x with axes reordered;  the gradient is permuted by the inverse order"""

    is_view = True

    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx, g):
        return either.permute(g, tuple(np.argsort(ctx.axes))), None


class Expand(Op):
    """y = x broadcast to a larger shape;  the gradient is summed back (sum_to)"""

    is_view = True

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return np.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):
        return either.sum_to(g, ctx.shape), None


class Repeat(Op):
    """y = x tiled ``reps`` times per dim;  the gradient sums the tiles"""

    @staticmethod
    def forward(ctx, x, reps):
        x = x.reshape((1,) * (len(reps) - x.ndim) + x.shape)
        ctx.in_shape, ctx.reps = x.shape, tuple(reps)
        return np.tile(x, reps)

    @staticmethod
    def backward(ctx, g):
        shape, reps = ctx.in_shape, ctx.reps  # (not g's shape ÷ shape: sizes may be 0)
        split = [v for r, s in zip(reps, shape) for v in (r, s)]
        g = either.reshape(g, tuple(split))
        return either.sum(g, tuple(range(0, 2 * len(shape), 2))), None


class Flip(Op):
    """y = x reversed along axes;  the gradient is reversed back"""

    @staticmethod
    def forward(ctx, x, axes):
        ctx.axes = axes
        return np.flip(x, axes).copy()  # a copy, as torch's (NumPy's flip is a view)

    @staticmethod
    def backward(ctx, g):
        return either.flip(g, ctx.axes), None


def _roll_array(x, shifts, axes):
    """np.roll(x, shifts, axes); along one axis as one join of the two slices (np.roll's general
    code costs several µs more per call on small arrays)."""
    if axes is None or len(axes) != 1:
        return np.roll(x, shifts, axes)
    ax, n = axes[0], x.shape[axes[0]]
    k = (shifts[0] if isinstance(shifts, tuple) else shifts) % n if n else 0
    if k == 0:
        return x.copy()
    lead = (slice(None),) * ax
    return np.concatenate((x[lead + (slice(n - k, None),)], x[lead + (slice(0, n - k),)]), ax)


class Roll(Op):
    """y = x rolled by shifts;  the gradient is rolled back"""

    @staticmethod
    def forward(ctx, x, shifts, axes):
        ctx.shifts, ctx.axes = shifts, axes
        return _roll_array(x, shifts, axes)

    @staticmethod
    def backward(ctx, g):
        neg = tuple(-s for s in ctx.shifts) if isinstance(ctx.shifts, tuple) else -ctx.shifts
        return either.roll(g, neg, ctx.axes), None, None


class Cat(Op):
    """y = [x₁, x₂, ...] joined along a dim;  each input gets its slice of the gradient"""

    @staticmethod
    def forward(ctx, axis, *xs):
        ctx.axis = axis
        ctx.sizes = list(map(len, xs)) if axis == 0 else [x.shape[axis] for x in xs]
        return kernels_for(xs[0]).cat(xs, axis)

    @staticmethod
    def backward(ctx, g):
        lead = (slice(None),) * ctx.axis
        grads, lo = [None], 0
        for n in ctx.sizes:
            grads.append(g[lead + (slice(lo, lo + n),)])
            lo += n
        return tuple(grads)


class Stack(Op):
    """y = [x₁, x₂, ...] joined along a new dim;  each input gets its slice of the gradient"""

    @staticmethod
    def forward(ctx, axis, *xs):
        ctx.axis = axis
        return np.stack(xs, axis)

    @staticmethod
    def backward(ctx, g):
        lead = (slice(None),) * ctx.axis
        return (None,) + tuple(g[lead + (i,)] for i in range(g.shape[ctx.axis]))


class Split(Op):
    """(y₁, y₂, ...) = x cut along a dim;  the gradients are joined back (zeros where unused)"""

    is_view = multi_view = True

    @staticmethod
    def forward(ctx, x, axis, bounds):
        ctx.axis = axis
        lead = (slice(None),) * axis
        return tuple(x[lead + (slice(bounds[i], bounds[i + 1]),)] for i in range(len(bounds) - 1))

    @staticmethod
    def backward(ctx, *grads):
        return either.concat(grads, ctx.axis), None, None


class Unbind(Op):
    """(y₁, y₂, ...) = the slices of x along a dim;  the gradients are stacked back"""

    is_view = multi_view = True

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        lead = (slice(None),) * axis
        return tuple(x[lead + (i, Ellipsis)] for i in range(x.shape[axis]))

    @staticmethod
    def backward(ctx, *grads):
        return either.concat([either.expand_dims(g, (ctx.axis,)) for g in grads], ctx.axis), None


class ConstantPad(Op):
    """y = x surrounded by a constant;  the gradient is the inner slice"""

    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.widths = widths
        ctx.shape = x.shape
        crop = any(lo < 0 or hi < 0 for lo, hi in widths)
        if crop:  # negative padding crops
            x = x[tuple(slice(-lo if lo < 0 else 0, s + hi if hi < 0 else s)
                        for (lo, hi), s in zip(widths, x.shape))]
        pos = tuple((builtins.max(lo, 0), builtins.max(hi, 0)) for lo, hi in widths)
        return np.pad(x, pos, constant_values=value)

    @staticmethod
    def backward(ctx, g):
        gshape = g.shape
        inner = tuple(slice(builtins.max(lo, 0), gs - builtins.max(hi, 0))
                      for (lo, hi), gs in zip(ctx.widths, gshape))
        g = g[inner]
        if any(lo < 0 or hi < 0 for lo, hi in ctx.widths):
            g = either.pad_zeros(g, [(builtins.max(-lo, 0), builtins.max(-hi, 0))
                                     for lo, hi in ctx.widths])
        return g, None, None


class Tril(Op):
    """y = lower triangle of x;  the gradient keeps the same triangle"""

    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return np.tril(x, k)

    @staticmethod
    def backward(ctx, g):
        return either.tril(g, ctx.k), None


class Triu(Op):
    """y = upper triangle of x;  the gradient keeps the same triangle"""

    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return np.triu(x, k)

    @staticmethod
    def backward(ctx, g):
        return either.triu(g, ctx.k), None


class Diag(Op):
    """vector → diagonal matrix, or matrix → its diagonal;  the gradient goes the other way"""

    @staticmethod
    def forward(ctx, x, k):
        ctx.k, ctx.ndim, ctx.shape = k, x.ndim, x.shape
        out = np.diag(x, k).copy()
        if x.ndim == 2:  # where the diagonal sits in a (possibly non-square) matrix
            n = devices.xp_of(x).arange(out.shape[0])
            ctx.index = (n + builtins.max(-k, 0), n + builtins.max(k, 0))
        return out

    @staticmethod
    def backward(ctx, g):
        if ctx.ndim == 2:
            return either.index_put(ctx.shape, ctx.index, g), None
        return either.diag(g, ctx.k), None


def _diagonal_view(x, offset: int, d1: int, d2: int):
    """The writable view of ``x``'s diagonal (NumPy's own is read-only)."""
    xp = devices.xp_of(x)
    if xp is not np and not is_batched(x):
        return xp.diagonal(x, offset, d1, d2)
    y = np.moveaxis(x, (d1, d2), (-2, -1))
    y = y[..., :, offset:] if offset >= 0 else y[..., -offset:, :]
    n = builtins.max(0, builtins.min(y.shape[-2], y.shape[-1]))
    return xp.lib.stride_tricks.as_strided(y, y.shape[:-2] + (n,),
                                           y.strides[:-2] + (y.strides[-2] + y.strides[-1],))


class Diagonal(Op):
    """y = the (d1, d2) diagonal of x;  the gradient is placed back on that diagonal"""

    is_view = True

    @staticmethod
    def forward(ctx, x, offset, d1, d2):
        ctx.shape, ctx.args = x.shape, (offset, d1, d2)
        return _diagonal_view(x, offset, d1, d2)

    @staticmethod
    def backward(ctx, g):
        return _diagonal_put(g, ctx.shape, *ctx.args), None, None, None


class DiagonalScatter(Op):
    """y = zeros(shape) with g on the (d1, d2) diagonal;  dy/dg = that diagonal"""

    @staticmethod
    def forward(ctx, g, shape, offset, d1, d2):
        out = devices.xp_of(g).zeros(shape, g.dtype)
        _diagonal_view(out, offset, d1, d2)[...] = g
        if ctx is not None:
            ctx.args = (offset, d1, d2)
        return out

    @staticmethod
    def backward(ctx, gg):
        offset, d1, d2 = ctx.args
        if isinstance(gg, Tensor):
            return Diagonal.apply(gg, offset, d1, d2), None, None, None, None
        return _diagonal_view(gg, offset, d1, d2), None, None, None, None


def _diagonal_put(g, shape, offset, d1, d2):
    if isinstance(g, Tensor):
        return DiagonalScatter.apply(g, shape, offset, d1, d2)
    return DiagonalScatter.forward(None, g, shape, offset, d1, d2)


# ---- public functions ---------------------------------------------------------------------------
def reshape(input: Tensor, *shape) -> Tensor:
    """The same elements in a new shape (one dim may be -1)."""
    shape = _sizes(shape)
    try:
        return Reshape.apply(input, shape)
    except ValueError:
        raise RuntimeError(
            f"reshape: shape '{list(shape)}' is invalid for input of size {input._data.size} "
            f"(input shape {list(input._data.shape)})"
        ) from None


def view(input: Tensor, *shape) -> Tensor:
    """The same memory in a new shape; refused (as torch) where that needs a copy."""
    if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list)):
        return _view_dtype(input, shape[0])
    out = reshape(input, *shape)
    if input._data.size > 1 and not _shares_memory(out._data, input._data):
        raise RuntimeError(
            "view size is not compatible with input tensor's size and stride (at least one "
            "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
    return out


def _view_dtype(input: Tensor, dtype) -> Tensor:
    if _dt.to_dtype(dtype).np == input._data.dtype:
        return reshape(input, input._data.shape)
    raise NotImplementedError(f"view(dtype): reinterpreting {input.dtype} memory as {dtype} is "
                              "not supported by chainrule")


def _shares_memory(a, b) -> bool:
    if isinstance(a, np.generic) or isinstance(b, np.generic):
        return a.size == 1 and b.size == 1
    return devices.xp_of(a).may_share_memory(a, b)


def ravel(input: Tensor) -> Tensor:
    return reshape(input, -1)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim..end_dim`` into one."""
    shape = input._data.shape
    if not shape:
        return reshape(input, 1)
    s = normalize_dim(start_dim, len(shape), "flatten")
    e = normalize_dim(end_dim, len(shape), "flatten")
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    n = 1
    for v in shape[s:e + 1]:
        n *= v
    return reshape(input, shape[:s] + (n,) + shape[e + 1:])


def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    """Split dim ``dim`` into ``sizes``."""
    shape = input._data.shape
    d = normalize_dim(dim, len(shape), "unflatten")
    sizes = tuple(sizes)
    known = int(np.prod([s for s in sizes if s != -1]))
    if (shape[d] % known if -1 in sizes and known else shape[d] != known):
        raise RuntimeError(
            f"unflatten: Provided sizes {list(sizes)} don't multiply up to the size of dim {dim} "
            f"({shape[d]}) in the input tensor of shape {list(shape)}"
        )
    return reshape(input, shape[:d] + sizes + shape[d + 1:])


def permute(input: Tensor, *dims) -> Tensor:
    """Reorder the dims."""
    dims = _sizes(dims)
    nd = input._data.ndim
    if len(dims) != nd:
        raise RuntimeError(
            f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
            f"length of the desired ordering of dimensions i.e. input.dim() = {nd} is not equal "
            f"to len(dims) = {len(dims)}"
        )
    axes = tuple(normalize_dim(d, nd, "permute") for d in dims)
    if len(set(axes)) != nd:
        raise RuntimeError(f"permute(): duplicate dims are not allowed (got {dims})")
    return Permute.apply(input, axes)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dims."""
    nd = input._data.ndim
    if nd == 0:
        return input
    a, b = normalize_dim(dim0, nd, "transpose"), normalize_dim(dim1, nd, "transpose")
    axes = list(range(nd))
    axes[a], axes[b] = b, a
    return Permute.apply(input, tuple(axes))


swapaxes = swapdims = transpose


def t(input: Tensor) -> Tensor:
    if input._data.ndim > 2:
        raise RuntimeError(
            f"t() expects a tensor with <= 2 dimensions, but self is {input._data.ndim}D"
        )
    return transpose(input, 0, 1) if input._data.ndim == 2 else input


def movedim(input: Tensor, source, destination) -> Tensor:
    nd = input._data.ndim
    source = (source,) if isinstance(source, int) else source
    destination = (destination,) if isinstance(destination, int) else destination
    src = [normalize_dim(s, nd, "movedim") for s in source]
    dst = [normalize_dim(s, nd, "movedim") for s in destination]
    order = [d for d in range(nd) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return Permute.apply(input, tuple(order))


def squeeze(input: Tensor, dim=None) -> Tensor:
    """Drop dims of size 1 (all, or those in ``dim``)."""
    shape = input._data.shape
    if dim is None:
        new = tuple(s for s in shape if s != 1)
    else:
        dims = normalize_dims(dim, len(shape), "squeeze") or ()
        new = tuple(s for i, s in enumerate(shape) if not (i in dims and s == 1))
    return Reshape.apply(input, new)


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """Insert a dim of size 1 at ``dim``."""
    shape = input._data.shape
    d = normalize_dim(dim, len(shape) + 1, "unsqueeze")
    return Reshape.apply(input, shape[:d] + (1,) + shape[d:])


def expand(input: Tensor, *sizes) -> Tensor:
    """Broadcast to ``sizes`` (-1 keeps a dim) without copying."""
    sizes = _sizes(sizes)
    shape = input._data.shape
    if len(sizes) < len(shape):
        raise RuntimeError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to the "
            f"number of dimensions in the tensor ({len(shape)})"
        )
    lead = len(sizes) - len(shape)
    target = []
    for i, s in enumerate(sizes):
        if s == -1:
            if i < lead:
                raise RuntimeError("expand: -1 is not allowed in a leading, non-existing dimension")
            s = shape[i - lead]
        elif i >= lead and shape[i - lead] != 1 and shape[i - lead] != s:
            raise RuntimeError(
                f"expand: The expanded size of the tensor ({s}) must match the existing size "
                f"({shape[i - lead]}) at non-singleton dimension {i}. Target sizes: "
                f"{list(sizes)}. Tensor sizes: {list(shape)}"
            )
        target.append(s)
    target = tuple(target)
    if target == shape:
        return input
    return Expand.apply(input, target)


def expand_as(input: Tensor, other: Tensor) -> Tensor:
    return expand(input, other._data.shape)


def broadcast_to(input: Tensor, size) -> Tensor:
    """Broadcast to ``size``."""
    try:
        return expand(input, tuple(size))
    except RuntimeError as e:
        raise RuntimeError(f"broadcast_to: {str(e).removeprefix('expand: ')}") from None


def broadcast_shapes(*shapes) -> tuple:
    try:
        return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError as e:
        raise RuntimeError(f"broadcast_shapes: {e}") from None


def broadcast_tensors(*tensors) -> tuple:
    shape = broadcast_shapes(*[t._data.shape for t in tensors])
    return tuple(expand(t, shape) for t in tensors)


def repeat(input: Tensor, *sizes) -> Tensor:
    """Tile the tensor ``sizes[i]`` times along dim i (Tensor.repeat)."""
    reps = _sizes(sizes)
    if len(reps) < input._data.ndim:
        raise RuntimeError(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions of "
            "tensor"
        )
    return Repeat.apply(input, reps)


def tile(input: Tensor, dims) -> Tensor:
    """Like repeat, but missing leading reps count as 1."""
    reps = _sizes((dims,))
    reps = (1,) * (input._data.ndim - len(reps)) + reps
    return Repeat.apply(input, reps)


def flip(input: Tensor, dims) -> Tensor:
    """Reverse the order of elements along ``dims``."""
    if isinstance(dims, int):
        dims = (dims,)
    axes = normalize_dims(tuple(dims), input._data.ndim, "flip")
    if axes is None:
        return input.clone()
    return Flip.apply(input, axes)


def fliplr(input: Tensor) -> Tensor:
    return flip(input, (1,))


def flipud(input: Tensor) -> Tensor:
    return flip(input, (0,))


def roll(input: Tensor, shifts, dims=None) -> Tensor:
    """Shift elements cyclically along ``dims`` (flattened when None)."""
    if dims is None:
        return Reshape.apply(Roll.apply(reshape(input, -1), shifts, None), input._data.shape)
    if isinstance(dims, int):
        dims, shifts = (dims,), (shifts,) if isinstance(shifts, int) else tuple(shifts)
    shifts = tuple(shifts) if not isinstance(shifts, int) else (shifts,)
    if len(shifts) != len(tuple(dims)):
        raise RuntimeError(
            f"roll: shifts and dimensions must align. shifts: {len(shifts)}, dims: {len(dims)}"
        )
    axes = tuple(normalize_dim(d, input._data.ndim, "roll") for d in dims)
    return Roll.apply(input, shifts, axes)


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dim."""
    if type(tensors) is not list and type(tensors) is not tuple:
        tensors = list(tensors)
    if tensors:  # the common case (alike shapes and dtypes, an int dim): one test per tensor
        x0 = tensors[0]._data
        ref, dt = x0.shape, x0.dtype
        nd = len(ref)
        if type(dim) is int and -nd <= dim < nd:
            for t in tensors[1:]:
                x = t._data
                if x.shape != ref or x.dtype != dt:
                    break
            else:
                return Cat.apply(dim % nd, *tensors)
    return _cat_checked(tensors, dim)


def _cat_checked(tensors, dim) -> Tensor:
    """cat's general case: legacy empty tensors skipped, shapes checked, dtypes promoted."""
    shapes = [t._data.shape for t in tensors]
    if (0,) in shapes:  # PyTorch skips legacy empty 1-d tensors in cat
        kept = [i for i, s in enumerate(shapes) if s != (0,)] or range(len(tensors))
        tensors, shapes = [tensors[i] for i in kept], [shapes[i] for i in kept]
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")  # (torch 2.13)
    ref = shapes[0]
    nd = len(ref)
    if nd == 0:
        raise RuntimeError("zero-dimensional tensor (at position 0) cannot be concatenated")
    d = normalize_dim(dim, nd, "cat")
    if shapes.count(ref) != len(shapes):  # (all alike, the common case: nothing to compare)
        head, tail = ref[:d], ref[d + 1:]
        for i, s in enumerate(shapes):
            if s != ref and (len(s) != nd or s[:d] != head or s[d + 1:] != tail):
                raise RuntimeError(
                    f"cat: Sizes of tensors must match except in dimension {d}. Expected shape "
                    f"{list(ref)} but got {list(s)} for tensor number {i} in the list."
                )
    return Cat.apply(d, *_promoted(tensors))


concat = concatenate = cat


def _promoted(tensors: list) -> list:
    """The tensors in their common dtype (torch's promotion for cat and stack)."""
    dt = tensors[0]._data.dtype
    for t in tensors:
        if t._data.dtype != dt:
            break
    else:
        return tensors
    target = _dt.result_type(*[t._data for t in tensors])
    return [t if t._data.dtype == target else t.to(_dt.from_numpy_dtype(target)) for t in tensors]


def stack(tensors, dim: int = 0) -> Tensor:
    """Join tensors of equal shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    ref = tensors[0]._data.shape
    for i, t in enumerate(tensors):
        if t._data.shape != ref:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(ref)} at entry 0 and "
                f"{list(t._data.shape)} at entry {i}"
            )
    d = normalize_dim(dim, len(ref) + 1, "stack")
    return Stack.apply(d, *_promoted(tensors))


def hstack(tensors) -> Tensor:
    tensors = list(tensors)
    return cat(tensors, 0 if tensors[0]._data.ndim == 1 else 1)


def vstack(tensors) -> Tensor:
    return cat([t if t._data.ndim > 1 else unsqueeze(t, 0) for t in tensors], 0)


def split(tensor: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Cut into pieces of a given size (last may be smaller) or of the listed sizes."""
    d = normalize_dim(dim, tensor._data.ndim, "split")
    n = tensor._data.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got {step}")
        sizes = [builtins.min(step, n - i) for i in range(0, n, step)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size "
                f"at dimension {d}), but got split_sizes={sizes}"
            )
    bounds = np.cumsum([0] + sizes).tolist()
    out = Split.apply(tensor, d, bounds)
    return out if isinstance(out, tuple) else (out,)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    """Cut into ``chunks`` nearly equal pieces."""
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0, got: " + str(chunks))
    d = normalize_dim(dim, input._data.ndim, "chunk")
    n = input._data.shape[d]
    step = -(-n // chunks) if n else 1
    return split(input, step, d)


def unbind(input: Tensor, dim: int = 0) -> tuple:
    """The slices along ``dim``, as a tuple."""
    d = normalize_dim(dim, input._data.ndim, "unbind")
    if input._data.shape[d] == 0:
        return ()
    out = Unbind.apply(input, d)
    return out if isinstance(out, tuple) else (out,)


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    """The slice [start, start + length) of ``input`` along ``dim`` (a view)."""
    d = normalize_dim(dim, input._data.ndim, "narrow")
    size = input._data.shape[d]
    start, length = operator.index(start), operator.index(length)
    if not -size <= start <= size:
        raise IndexError(f"start out of range (expected to be in range of [{-size}, {size}], "
                         f"but got {start})")
    if start < 0:
        start += size
    if length < 0:
        raise RuntimeError("narrow(): length must be non-negative.")
    if start + length > size:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size "
                           f"({size}).")
    idx = (slice(None),) * d + (slice(start, start + length),)
    return input[idx]


def pad(input: Tensor, pad, mode: str = "constant", value=None) -> Tensor:
    """Pad the last dims; ``pad`` lists (before, after) pairs from the last dim backwards."""
    pad = tuple(pad)
    if len(pad) % 2:
        raise RuntimeError(f"pad: Padding length must be divisible by 2, got {len(pad)}")
    nd = input._data.ndim
    if len(pad) // 2 > nd:
        raise RuntimeError(
            f"pad: Padding length should be less than or equal to two times the input dimension "
            f"but got padding length {len(pad)} and input of dimension {nd}"
        )
    widths = [(0, 0)] * nd
    for i in range(len(pad) // 2):
        widths[nd - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if mode == "constant":
        return ConstantPad.apply(input, tuple(widths), 0.0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} is not supported")
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    out = input
    for axis, (lo, hi) in enumerate(widths):
        if lo or hi:
            index = np.pad(np.arange(input._data.shape[axis]), (lo, hi), mode=np_mode)
            out = out.index_select(axis, wrap(devices.asarray_on(index, input._data)))
    return out


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle (below and on ``diagonal``); the rest zero."""
    _check_matrix(input, "tril")
    return Tril.apply(input, diagonal)


def _check_matrix(input: Tensor, name: str) -> None:
    if input._data.ndim < 2:
        raise RuntimeError(
            f"{name}: input tensor must have at least 2 dimensions (got shape "
            f"{list(input._data.shape)})"
        )


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle (above and on ``diagonal``); the rest zero."""
    _check_matrix(input, "triu")
    return Triu.apply(input, diagonal)


def diag(input: Tensor, diagonal: int = 0) -> Tensor:
    """A 1-d input becomes a diagonal matrix; a 2-d input gives its diagonal."""
    if input._data.ndim not in (1, 2):
        raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input._data.ndim}D")
    return Diag.apply(input, diagonal)


def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of the (dim1, dim2) planes, shifted by ``offset``, as the last dim (a view
    of ``input``, as torch's)."""
    d1 = normalize_dim(dim1, input._data.ndim, "diagonal")
    d2 = normalize_dim(dim2, input._data.ndim, "diagonal")
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    return Diagonal.apply(input, operator.index(offset), d1, d2)



def _diagonal_positions(rows: int, cols: int, offset: int):
    """Row and column indices of the (offset) diagonal of a rows × cols matrix."""
    k = builtins.max(0, builtins.min(rows + builtins.min(offset, 0),
                                     cols - builtins.max(offset, 0)))
    return np.arange(k) + builtins.max(-offset, 0), np.arange(k) + builtins.max(offset, 0)


def select(input: Tensor, dim: int, index: int) -> Tensor:
    """``input`` at ``index`` along ``dim``, that dim removed (a view)."""
    ndim = input._data.ndim
    if ndim == 0:
        raise IndexError("select() cannot be applied to a 0-dim tensor.")
    d = normalize_dim(dim, ndim, "select")
    size = input._data.shape[d]
    index = operator.index(index)
    if not -size <= index < size:
        raise IndexError(f"select(): index {index} out of range for tensor of size "
                         f"{list(input._data.shape)} at dimension {d}")
    return input[(slice(None),) * d + (index,)]


def atleast_1d(input: Tensor) -> Tensor:
    return reshape(input, 1) if input._data.ndim == 0 else input


# ---- more of torch's shape functions (composed: their gradients follow) -------------------------
def atleast_2d(*tensors):
    """Each tensor with at least 2 dims (a vector becomes a row)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        return tuple(atleast_2d(t) for t in tensors[0])
    out = [t.reshape(1, 1) if t._data.ndim == 0 else t.unsqueeze(0) if t._data.ndim == 1 else t
           for t in tensors]
    return out[0] if len(out) == 1 else tuple(out)


def atleast_3d(*tensors):
    """Each tensor with at least 3 dims ((n,) → (1, n, 1), (m, n) → (m, n, 1))."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        return tuple(atleast_3d(t) for t in tensors[0])
    out = []
    for t in tensors:
        nd = t._data.ndim
        out.append(t.reshape(1, 1, 1) if nd == 0 else t.reshape(1, -1, 1) if nd == 1 else
                   t.unsqueeze(-1) if nd == 2 else t)
    return out[0] if len(out) == 1 else tuple(out)


def dstack(tensors) -> Tensor:
    """Concatenate along the third dim (after atleast_3d)."""
    return cat([atleast_3d(t) for t in tensors], 2)


def column_stack(tensors) -> Tensor:
    """Vectors as columns, matrices side by side."""
    return cat([t.reshape(-1, 1) if t._data.ndim <= 1 else t for t in tensors], 1)


row_stack = vstack
moveaxis = movedim


def tensor_split(input: Tensor, indices_or_sections, dim: int = 0) -> tuple:
    """Split into n nearly equal parts (the first ones one longer), or at the given indices."""
    d = normalize_dim(dim, input._data.ndim, "tensor_split")
    n = input._data.shape[d]
    if isinstance(indices_or_sections, Tensor):
        indices_or_sections = indices_or_sections.tolist()
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        if k <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {k}")
        q, r = divmod(n, k)
        bounds, start = [], 0
        for i in range(k):
            start += q + (1 if i < r else 0)
            bounds.append(start)
        bounds = bounds[:-1]
    else:
        bounds = list(indices_or_sections)
    edges = [0] + [builtins.min(builtins.max(b, 0), n) for b in bounds] + [n]
    return tuple(narrow(input, d, a, builtins.max(b - a, 0)) for a, b in zip(edges, edges[1:]))


def _split_by(name: str, dim: int):
    def fn(input: Tensor, indices_or_sections) -> tuple:
        if input._data.ndim <= dim if dim else input._data.ndim < 1:
            raise RuntimeError(f"torch.{name} requires a tensor with at least {dim + 1} "
                               f"dimension, but got a tensor with {input._data.ndim} dimensions!")
        d = 0 if (name == "hsplit" and input._data.ndim == 1) else dim
        if isinstance(indices_or_sections, int) and input._data.shape[d] % indices_or_sections:
            raise RuntimeError(f"torch.{name} attempted to split along dimension {d}, but the "
                               f"size of the dimension {input._data.shape[d]} is not divisible "
                               f"by the split_size {indices_or_sections}!")
        return tensor_split(input, indices_or_sections, d)

    fn.__name__ = name
    return fn


hsplit = _split_by("hsplit", 1)
vsplit = _split_by("vsplit", 0)
dsplit = _split_by("dsplit", 2)


def split_with_sizes(input: Tensor, split_sizes, dim: int = 0) -> tuple:
    return split(input, list(split_sizes), dim)


unsafe_split = split
unsafe_chunk = chunk
unsafe_split_with_sizes = split_with_sizes


def rot90(input: Tensor, k: int = 1, dims=(0, 1)) -> Tensor:
    """Rotate by 90° k times in the plane of ``dims`` (from the first towards the second)."""
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    nd = input._data.ndim
    d0, d1 = (normalize_dim(d, nd, "rot90") for d in dims)
    if d0 == d1:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {d0} and "
                           f"dim1 = {d1}")
    k %= 4
    if k == 1:
        return transpose(flip(input, [d1]), d0, d1)
    if k == 2:
        return flip(input, [d0, d1])
    if k == 3:
        return flip(transpose(input, d0, d1), [d1])
    return input.clone()


def diag_embed(input: Tensor, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """Each last-dim vector as the (offset) diagonal of a matrix on dims ``dim1``, ``dim2``."""
    length = input._data.shape[-1] if input._data.ndim else 1
    n = length + abs(offset)
    lead = tuple(input._data.shape[:-1])
    zeros = np.zeros_like(input._data, shape=lead + (n, n))  # batched like input inside vmap
    out = wrap(devices.to_device(zeros, input.device))
    r, c = _diagonal_positions(n, n, offset)
    out[..., r, c] = input
    nd = out._data.ndim
    d1, d2 = normalize_dim(dim1, nd, "diag_embed"), normalize_dim(dim2, nd, "diag_embed")
    return movedim(out, (nd - 2, nd - 1), (d1, d2))


def diagflat(input: Tensor, offset: int = 0) -> Tensor:
    """The flattened input as the (offset) diagonal of a square matrix."""
    return diag_embed(reshape(input, -1), offset)


def block_diag(*tensors) -> Tensor:
    """The tensors (each 0-, 1- or 2-d) as blocks on the diagonal of one matrix."""
    mats = [t.reshape(1, 1) if t._data.ndim == 0 else t.reshape(1, -1) if t._data.ndim == 1
            else t for t in tensors]
    if not mats:
        return wrap(np.zeros((0, 0)))
    cols = builtins.sum(m._data.shape[1] for m in mats)
    rows, left = [], 0
    dtype = _dt.result_type(*[m._data for m in mats]) if len(mats) > 1 else mats[0]._data.dtype
    for m in mats:
        h, w = m._data.shape
        zl = wrap(devices.to_device(np.zeros((h, left), dtype), m.device))
        zr = wrap(devices.to_device(np.zeros((h, cols - left - w), dtype), m.device))
        rows.append(cat([zl, m.to(_dt.from_numpy_dtype(dtype)), zr], 1))
        left += w
    return cat(rows, 0)


def meshgrid(*tensors, indexing: str | None = None) -> tuple:
    """Coordinate grids from 1-d tensors ('ij' indexing by default, as torch; 'xy' swaps the
    first two)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f"torch.meshgrid: indexing must be one of \"xy\" or \"ij\", but "
                           f"received: {indexing}")
    for t in tensors:
        if t._data.ndim > 1:
            raise RuntimeError("torch.meshgrid: Expected 0D or 1D tensor in the tensor list but "
                               f"got: {t}")
    ts = [t.reshape(-1) for t in tensors]
    shape = tuple(t._data.shape[0] for t in ts)
    out = []
    for i, t in enumerate(ts):
        view = [1] * len(ts)
        view[i] = -1
        out.append(expand(reshape(t, tuple(view)), shape))
    if indexing == "xy" and len(ts) >= 2:  # the first two dims swapped
        out = [transpose(o, 0, 1) for o in out]
    return tuple(out)


def cartesian_prod(*tensors) -> Tensor:
    """All combinations of the 1-d tensors' elements, one per row."""
    if len(tensors) == 1:
        return tensors[0]
    grids = meshgrid(*tensors, indexing="ij")
    return stack([g.reshape(-1) for g in grids], 1)


def combinations(input: Tensor, r: int = 2, with_replacement: bool = False) -> Tensor:
    """The length-r combinations of a 1-d tensor's elements, one per row."""
    import itertools

    if input._data.ndim != 1:
        raise RuntimeError(f"Expect a 1D vector, but got shape {list(input._data.shape)}")
    n = input._data.shape[0]
    pick = (itertools.combinations_with_replacement if with_replacement
            else itertools.combinations)(range(n), r)
    idx = np.array(list(pick), dtype=np.int64).reshape(-1, r)
    if idx.size == 0:
        return wrap(devices.to_device(np.zeros((0,) if r else (0,), input._data.dtype),
                                      input.device))
    return input[idx]


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None) -> Tensor:
    """Each element (or slice along ``dim``) repeated ``repeats`` times, in place."""
    if repeats is None:  # torch.repeat_interleave(repeats): indices repeated by their counts
        counts = np.asarray(devices.to_device(input._data, "cpu"))
        return wrap(np.repeat(np.arange(counts.shape[0]), counts).astype(np.int64))
    if dim is None:
        input, dim = reshape(input, -1), 0
    d = normalize_dim(dim, input._data.ndim, "repeat_interleave")
    n = input._data.shape[d]
    reps = repeats.tolist() if isinstance(repeats, Tensor) else repeats
    if isinstance(reps, int):
        reps = [reps] * n
    elif len(reps) == 1:
        reps = reps * n
    if len(reps) != n:
        raise RuntimeError("repeats must have the same size as input along dim")
    idx = np.repeat(np.arange(n), reps).astype(np.int64)
    return input.index_select(d, wrap(devices.to_device(idx, input.device)))


def tensor_unfold(input: Tensor, dimension: int, size: int, step: int) -> Tensor:
    """Tensor.unfold: all windows of ``size`` along ``dimension``, ``step`` apart, as a new
    last dim."""
    d = normalize_dim(dimension, builtins.max(input._data.ndim, 1), "unfold")
    n = input._data.shape[d] if input._data.ndim else 1
    if size > n:
        raise RuntimeError(f"maximum size for tensor at dimension {d} is {n} but size is {size}")
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")
    if input._data.ndim == 0:
        return reshape(input, (1,))
    count = (n - size) // step + 1
    idx = (np.arange(count)[:, None] * step + np.arange(size)[None, :]).reshape(-1)
    picked = input.index_select(d, wrap(devices.to_device(idx.astype(np.int64), input.device)))
    shape = list(input._data.shape)
    shape[d: d + 1] = [count, size]
    return movedim(reshape(picked, tuple(shape)), d + 1, -1)


def _scatter_into(input: Tensor, src: Tensor, region) -> Tensor:
    """``input`` with ``src`` written over ``input[region]`` (out of place, differentiable in
    both: the gradient of the overwritten part of input is 0)."""
    out = input.clone()
    out[region] = src
    return out


def select_scatter(input: Tensor, src: Tensor, dim: int, index: int) -> Tensor:
    """``input`` with the slice at ``index`` along ``dim`` replaced by ``src``."""
    d = normalize_dim(dim, input._data.ndim, "select_scatter")
    region = (slice(None),) * d + (index,)
    return _scatter_into(input, src, region)


def slice_scatter(input: Tensor, src: Tensor, dim: int = 0, start=None, end=None,
                  step: int = 1) -> Tensor:
    """``input`` with ``input[start:end:step]`` along ``dim`` replaced by ``src``."""
    d = normalize_dim(dim, input._data.ndim, "slice_scatter")
    region = (slice(None),) * d + (slice(start, end, step),)
    return _scatter_into(input, src, region)


def diagonal_scatter(input: Tensor, src: Tensor, offset: int = 0, dim1: int = 0,
                     dim2: int = 1) -> Tensor:
    """``input`` with its (offset) diagonal on ``dim1``, ``dim2`` replaced by ``src``."""
    nd = input._data.ndim
    d1, d2 = normalize_dim(dim1, nd, "diagonal_scatter"), normalize_dim(dim2, nd,
                                                                         "diagonal_scatter")
    r, c = _diagonal_positions(input._data.shape[d1], input._data.shape[d2], offset)
    moved = movedim(input.clone(), (d1, d2), (-2, -1))
    moved[..., r, c] = src
    return movedim(moved, (-2, -1), (d1, d2))


__all__ += [
    "atleast_2d", "atleast_3d", "dstack", "column_stack", "row_stack", "moveaxis",
    "tensor_split", "hsplit", "vsplit", "dsplit", "split_with_sizes", "unsafe_split",
    "unsafe_chunk", "unsafe_split_with_sizes", "rot90", "diag_embed", "diagflat", "block_diag",
    "meshgrid", "cartesian_prod", "combinations", "select", "repeat_interleave",
    "select_scatter", "slice_scatter", "diagonal_scatter",
]
