"""Math for backward rules that accepts either raw arrays or Tensors.

A plain backward pass runs rules on raw arrays (no graph, no wrapper objects: fast); under
``create_graph=True`` the same rules run on Tensors, so they are recorded and can themselves be
differentiated. Operators (``+ - * / @ > ...``) and indexing already work on both; the few
functions rules need are here, each dispatching on its first argument.
"""

from __future__ import annotations

from chainrule.backend import np
from chainrule import backend, blas
from chainrule.tensor import Tensor

__all__ = [
    "np", "is_tensor", "sum", "sum_to", "broadcast_to", "reshape", "astype", "exp", "log", "sign",
    "sin", "cos", "where", "expand_dims", "permute", "swapaxes", "flip", "cumsum", "roll",
    "zeros_like", "zeros", "index_put", "gather", "scatter_add", "maximum", "abs", "sqrt", "tanh",
    "concat", "pad_zeros", "tril", "triu", "diag", "einsum", "matmul",
]


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def _any_tensor(*xs) -> bool:
    return any(isinstance(x, Tensor) for x in xs)


def sum(a, axis=None, keepdims=False):
    if isinstance(a, Tensor):
        from chainrule.ops.reduce import sum as t_sum

        return t_sum(a, axis, keepdims)
    return a.sum(axis=axis, keepdims=keepdims)


def _sum_axes(from_shape: tuple, to_shape: tuple):
    lead = len(from_shape) - len(to_shape)
    if lead < 0:
        return None
    axes = list(range(lead))
    for i, s in enumerate(to_shape):
        f = from_shape[i + lead]
        if s == 1 and f != 1:
            axes.append(i + lead)
        elif s != f:
            return None
    return tuple(axes)


def sum_to(g, shape: tuple, node=None):
    """Sum a broadcast gradient back to ``shape`` (undoing broadcasting, in one place)."""
    gshape = g._data.shape if isinstance(g, Tensor) else g.shape
    axes = _sum_axes(gshape, shape)
    if axes is None:
        who = f"Function {node.name()}" if node is not None else "a backward rule"
        raise RuntimeError(
            f"{who} returned an invalid gradient - got shape {list(gshape)} but expected shape "
            f"compatible with {list(shape)}"
        )
    if isinstance(g, Tensor):
        from chainrule.ops.reduce import SumTo

        return SumTo.apply(g, tuple(shape))
    return g.sum(axis=axes).reshape(shape) if axes else g.reshape(shape)


def broadcast_to(a, shape):
    if isinstance(a, Tensor):
        return a.expand(*shape)
    return np.broadcast_to(a, shape)


def reshape(a, shape):
    return a.reshape(shape) if not isinstance(a, Tensor) else a.reshape(*shape)


def astype(a, np_dtype):
    if isinstance(a, Tensor):
        from chainrule.ops.elementwise import cast

        return cast(a, np_dtype)
    return a.astype(np_dtype)


def _unary(name):
    np_fn = getattr(np, name)

    def fn(a):
        return getattr(a, name)() if isinstance(a, Tensor) else np_fn(a)

    fn.__name__ = name
    return fn


exp = _unary("exp")
log = _unary("log")
sign = _unary("sign")
sin = _unary("sin")
cos = _unary("cos")
abs = _unary("abs")
sqrt = _unary("sqrt")
tanh = _unary("tanh")


def where(cond, a, b):
    if _any_tensor(cond, a, b):
        from chainrule.ops.binary import where as t_where

        return t_where(cond, a, b)
    return np.where(cond, a, b)


def maximum(a, b):
    if _any_tensor(a, b):
        from chainrule.ops.binary import maximum as t_max

        return t_max(a, b)
    return np.maximum(a, b)


def expand_dims(a, axes):
    if isinstance(a, Tensor):
        for ax in sorted(axes):
            a = a.unsqueeze(ax)
        return a
    return np.expand_dims(a, axes)


def permute(a, axes):
    return a.permute(*axes) if isinstance(a, Tensor) else np.transpose(a, axes)


def swapaxes(a, i, j):
    return a.transpose(i, j) if isinstance(a, Tensor) else np.swapaxes(a, i, j)


def flip(a, axes):
    return a.flip(axes) if isinstance(a, Tensor) else np.flip(a, axes)


def cumsum(a, axis):
    return a.cumsum(axis) if isinstance(a, Tensor) else np.cumsum(a, axis)


def roll(a, shifts, axes):
    return a.roll(shifts, axes) if isinstance(a, Tensor) else np.roll(a, shifts, axes)


def zeros_like(a):
    if isinstance(a, Tensor):
        from chainrule.creation import zeros_like as t_zeros_like

        return t_zeros_like(a)
    return np.zeros_like(a)


def zeros(shape, like, dtype=None):
    """A raw zeros array on the device of ``like`` (an array or a Tensor), of its dtype unless
    ``dtype`` is given."""
    raw = like._data if isinstance(like, Tensor) else like
    return backend.xp_of(raw).zeros(shape, raw.dtype if dtype is None else dtype)


def index_put(shape, index, g):
    """zeros(shape) with ``g`` added at ``index`` (repeats accumulate): the adjoint of indexing."""
    from chainrule.ops.index import IndexPut

    if isinstance(g, Tensor):
        return IndexPut.apply(g, tuple(shape), index)
    return IndexPut.forward(None, g, tuple(shape), index)


def gather(a, dim, index):
    from chainrule.ops.index import Gather

    if isinstance(a, Tensor):
        return Gather.apply(a, dim, index)
    return Gather.forward(None, a, dim, index)


def scatter_add(a, dim, index, src):
    from chainrule.ops.index import ScatterAdd

    if _any_tensor(a, src):
        from chainrule.creation import as_tensor

        return ScatterAdd.apply(as_tensor(a), dim, index, as_tensor(src))
    return ScatterAdd.forward(None, a, dim, index, src)


def concat(parts, axis):
    if _any_tensor(*parts):
        from chainrule.ops.shape import cat

        return cat(parts, axis)
    return np.concatenate(parts, axis)


def pad_zeros(a, widths):
    """Zero padding with ``widths`` as NumPy's ((before, after), ...) per axis."""
    if isinstance(a, Tensor):
        from chainrule.ops.shape import ConstantPad

        return ConstantPad.apply(a, tuple(widths), 0.0)
    return np.pad(a, widths)


def tril(a, k):
    return a.tril(k) if isinstance(a, Tensor) else np.tril(a, k)


def triu(a, k):
    return a.triu(k) if isinstance(a, Tensor) else np.triu(a, k)


def diag(a, k):
    if isinstance(a, Tensor):
        return a.diag(k)
    return np.diag(a, k)


def einsum(eq, *ops):
    if _any_tensor(*ops):
        from chainrule.ops.linalg import einsum as t_einsum

        return t_einsum(eq, *ops)
    return np.einsum(eq, *ops, optimize=len(ops) > 2)


def matmul(a, b):
    """a @ b; raw CPU arrays go through ``chainrule.blas`` (MKL's GEMM when installed)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return a @ b
    return blas.matmul(a, b)
