"""Math for backward rules that accepts either raw arrays or Tensors.

A plain backward pass runs rules on raw arrays (no graph, no wrapper objects: fast); under
``create_graph=True`` the same rules run on Tensors, so they are recorded and can themselves be
differentiated. Operators (``+ - * / @ > ...``) and indexing already work on both; the few
functions rules need are here, each taking the array route or the Tensor route by its argument.
The Tensor routes are chainrule's ops, reached through ``_late.ops`` (the one import circle,
see ``chainrule/tensor.py``).
"""

from __future__ import annotations

import math

from chainrule import devices
from chainrule.devices import np
from chainrule.kernels.matmul import matmul as _matmul
from chainrule.tensor import TensorBase, late as _late

__all__ = [
    "np", "data", "dtype_of", "to_device", "sum", "prod", "sum_to", "broadcast_to", "reshape",
    "astype", "exp", "log", "log1p", "sign", "sin", "cos", "sinh", "cosh", "sigmoid", "where",
    "expand_dims", "permute",
    "swapaxes", "flip", "cumsum", "roll", "zeros_like", "zeros", "ones_like_data",
    "index_put", "gather", "scatter_add", "maximum", "abs", "sqrt", "tanh", "concat",
    "pad_zeros", "tril", "triu", "diag", "einsum", "matmul",
]


def data(x):
    """The raw array of ``x`` (an array or a Tensor): for constants such as masks, which carry
    no gradient."""
    return x._data if isinstance(x, TensorBase) else x


def dtype_of(x):
    """The NumPy dtype of an array or a Tensor."""
    return x._data.dtype if isinstance(x, TensorBase) else x.dtype


def sum(a, axis=None, keepdims=False):
    if isinstance(a, TensorBase):
        return _late.ops.sum(a, axis, keepdims)
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


def prod(a, axis=None, keepdims=False):
    if isinstance(a, TensorBase):
        return _late.ops.Prod.apply(a, axis, keepdims)
    return np.prod(a, axis=axis, keepdims=keepdims)


def sum_to(g, shape: tuple, node=None):
    """Sum a broadcast gradient back to ``shape`` (undoing broadcasting, in one place)."""
    gshape = tuple(g.shape)
    axes = _sum_axes(gshape, tuple(shape))
    if axes is None:
        who = f"Function {node.name()}" if node is not None else "a backward rule"
        raise RuntimeError(
            f"{who} returned an invalid gradient - got shape {list(gshape)} but expected shape "
            f"compatible with {list(shape)}"
        )
    if isinstance(g, TensorBase):
        return _late.ops.sum_to_size(g, tuple(shape))
    return g.sum(axis=axes).reshape(shape) if axes else g.reshape(shape)


def to_device(a, device):
    if isinstance(a, TensorBase):
        return _late.ops.move(a, device)
    return devices.to_device(a, device)


def broadcast_to(a, shape):
    if isinstance(a, TensorBase):
        return a.expand(*shape)
    return np.broadcast_to(a, shape)


def reshape(a, shape):
    return a.reshape(*shape) if isinstance(a, TensorBase) else a.reshape(shape)


def astype(a, np_dtype):
    if isinstance(a, TensorBase):
        return _late.ops.cast(a, np_dtype)
    return a.astype(np_dtype)


def _unary(name, np_name=None, domain=None):
    """``name`` of a Tensor (recorded) or of an array. On arrays NumPy's divide/invalid warnings
    are silenced (as torch: inf/nan, no warning); ``domain``: where that is needed (the rest
    never warn so, and skip ``np.errstate``'s cost), and a NumPy scalar inside it needs none."""
    np_fn = getattr(np, np_name or name)

    def fn(a):
        if isinstance(a, TensorBase):
            return getattr(a, name)()
        if domain is None or (type(a) in _FLOAT_SCALARS and domain(a)):
            return np_fn(a)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np_fn(a)

    fn.__name__ = name
    return fn


_FLOAT_SCALARS = (np.float64, np.float32, np.float16)
_finite = math.isfinite


exp = _unary("exp")
log = _unary("log", domain=lambda x: x > 0)
log1p = _unary("log1p", domain=lambda x: x > -1)


def sign(a):
    """-1, 0 or 1; 0 for NaN (torch's sign)."""
    if isinstance(a, TensorBase):
        return a.sign()
    s = np.sign(a)
    return np.where(s != s, 0, s).astype(s.dtype) if np.isnan(s).any() else s


sin = _unary("sin", domain=_finite)
cos = _unary("cos", domain=_finite)
sinh = _unary("sinh")
cosh = _unary("cosh")
abs = _unary("abs")
sqrt = _unary("sqrt", domain=lambda x: x >= 0)
tanh = _unary("tanh")


def sigmoid(a):
    """1/(1 + e^-a), split by sign on arrays so that exp never overflows."""
    if isinstance(a, TensorBase):
        return a.sigmoid()
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(dtype_of(a), copy=False)


def where(cond, a, b):
    if isinstance(cond, TensorBase) or isinstance(a, TensorBase) or isinstance(b, TensorBase):
        return _late.ops.where(cond, a, b)
    return np.where(cond, a, b)


def maximum(a, b):
    if isinstance(a, TensorBase) or isinstance(b, TensorBase):
        return _late.ops.maximum(a, b)
    return np.maximum(a, b)


def expand_dims(a, axes):
    if isinstance(a, TensorBase):
        for ax in sorted(axes):
            a = a.unsqueeze(ax)
        return a
    return np.expand_dims(a, axes)


def permute(a, axes):
    return a.permute(*axes) if isinstance(a, TensorBase) else np.transpose(a, axes)


def swapaxes(a, i, j):
    return a.transpose(i, j) if isinstance(a, TensorBase) else np.swapaxes(a, i, j)


def flip(a, axes):
    return a.flip(axes) if isinstance(a, TensorBase) else np.flip(a, axes)


def cumsum(a, axis):
    return a.cumsum(axis) if isinstance(a, TensorBase) else np.cumsum(a, axis)


def roll(a, shifts, axes):
    return a.roll(shifts, axes) if isinstance(a, TensorBase) else np.roll(a, shifts, axes)


def zeros_like(a):
    if isinstance(a, TensorBase):
        return _late.creation.zeros_like(a)
    return np.zeros_like(a)


def zeros(shape, like, dtype=None):
    """A raw zeros array on the device of ``like`` (an array or a Tensor), of its dtype unless
    ``dtype`` is given."""
    raw = data(like)
    return devices.xp_of(raw).zeros(shape, raw.dtype if dtype is None else dtype)


def ones_like_data(like):
    """A raw (writable) ones array of the shape, dtype and device of ``like``."""
    raw = data(like)
    return devices.xp_of(raw).ones(raw.shape, raw.dtype)


def index_put(shape, index, g):
    """zeros(shape) with ``g`` added at ``index`` (repeats accumulate): the adjoint of indexing."""
    if isinstance(g, TensorBase):
        return _late.ops.IndexPut.apply(g, tuple(shape), index)
    return _late.ops.IndexPut.forward(None, g, tuple(shape), index)


def gather(a, dim, index):
    if isinstance(a, TensorBase):
        return _late.ops.Gather.apply(a, dim, index)
    return _late.ops.Gather.forward(None, a, dim, index)


def scatter_add(a, dim, index, src):
    if isinstance(a, TensorBase) or isinstance(src, TensorBase):
        return _late.ops.ScatterAdd.apply(_late.creation.as_tensor(a), dim, index,
                                          _late.creation.as_tensor(src))
    return _late.ops.ScatterAdd.forward(None, a, dim, index, src)


def concat(parts, axis):
    if any(isinstance(p, TensorBase) for p in parts):
        return _late.ops.cat(parts, axis)
    return np.concatenate(parts, axis)


def pad_zeros(a, widths):
    """Zero padding with ``widths`` as NumPy's ((before, after), ...) per axis."""
    if isinstance(a, TensorBase):
        return _late.ops.ConstantPad.apply(a, tuple(widths), 0.0)
    return np.pad(a, widths)


def tril(a, k):
    return a.tril(k) if isinstance(a, TensorBase) else np.tril(a, k)


def triu(a, k):
    return a.triu(k) if isinstance(a, TensorBase) else np.triu(a, k)


def diag(a, k):
    return a.diag(k) if isinstance(a, TensorBase) else np.diag(a, k)


def einsum(eq, *ops):
    if any(isinstance(o, TensorBase) for o in ops):
        return _late.ops.einsum(eq, *ops)
    return np.einsum(eq, *ops, optimize=len(ops) > 2)


def matmul(a, b):
    """a @ b; raw arrays go through :mod:`chainrule.kernels.matmul` (MKL, NumPy or cuBLAS)."""
    if isinstance(a, TensorBase) or isinstance(b, TensorBase):
        return a @ b
    return _matmul(a, b)

