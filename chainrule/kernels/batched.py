"""The kernel table of batched arrays (inside ``cr.func.vmap``).

Most kernels are the reference ones: NumPy calls that :mod:`chainrule.batching` runs once on
the whole batch, one batching rule per call. A kernel that treats the leading dim N of its
(N, ...) operands as independent rows or images (pooling, im2col/col2im, a convolution's input
gradient with a shared weight, cross-entropy's per-row losses, relu) instead runs once on the
plain physical array with the vmap batch folded into N: (B, N, ...) -> (B·N, ...), through the
table of that plain array (the CPU's loops, or the GPU's), and its result is unfolded. Under
``vmap(grad(loss))`` over a CNN that is one kernel call where the reference kernel makes a dozen
batched NumPy calls (max pooling's running maximum, its one-hot gradient, the loss's row picks).

An operand batched at several levels, a shared operand that would have to be repeated, or a
Tensor (a backward recorded under ``create_graph``) takes the reference kernel.
"""

from __future__ import annotations

from chainrule.batching import BatchedArray
from chainrule.kernels.reference import Kernels

__all__ = ["BatchedKernels"]


_tables: list = []  # dispatch.kernels_for, handed over when dispatch makes this table


def _table(p):
    """The kernel table of plain array ``p`` (the CPU's, a GPU's)."""
    return _tables[0](p)


def _fold(x):
    """``x``'s physical array as (B·N, ...), or None if ``x`` is not batched at exactly one
    level with at least one logical dim."""
    if type(x) is not BatchedArray or not x.shape:
        return None
    p = x._p
    if type(p) is BatchedArray or not p.shape[0]:
        return None
    return p.reshape((p.shape[0] * p.shape[1],) + p.shape[2:])


def _unfold(r, like: BatchedArray) -> BatchedArray:
    """The (B·N, ...) result ``r`` as a batched array at ``like``'s level."""
    b = like._lv.size
    return BatchedArray(r.reshape((b, r.shape[0] // b) + r.shape[1:]), like._lv)


def _shape(like: BatchedArray, shape: tuple) -> tuple:
    """A logical (N, ...) shape as the folded (B·N, ...) one."""
    return (like._lv.size * shape[0],) + tuple(shape[1:])


def _same_level(*arrays) -> bool:
    first = arrays[0]
    return all(type(a) is BatchedArray and a._lv is first._lv for a in arrays)


class BatchedKernels(Kernels):
    """The table for :class:`~chainrule.batching.BatchedArray` values (see the module)."""

    name = "batched"

    def __init__(self, kernels_for) -> None:
        """``kernels_for``: the one dispatch function, for the tables of the plain arrays."""
        _tables[:] = [kernels_for]

    @staticmethod
    def relu(x):
        if type(x) is BatchedArray and type(x._p) is not BatchedArray:
            return BatchedArray(_table(x._p).relu(x._p), x._lv)
        return Kernels.relu(x)

    @staticmethod
    def relu_backward(g, y):
        if _same_level(g, y) and type(g._p) is not BatchedArray and g._p.shape == y._p.shape:
            return BatchedArray(_table(g._p).relu_backward(g._p, y._p), g._lv)
        return Kernels.relu_backward(g, y)

    @staticmethod
    def im2col(x, geom):
        f = _fold(x)
        if f is None or f.ndim != 4:
            return Kernels.im2col(x, geom)
        return _unfold(_table(f).im2col(f, geom), x)

    @staticmethod
    def col2im(cols, x_shape: tuple, geom):
        f = _fold(cols)
        if f is None or f.ndim != 6:
            return Kernels.col2im(cols, x_shape, geom)
        return _unfold(_table(f).col2im(f, _shape(cols, x_shape), geom), cols)

    @staticmethod
    def conv2d_columns(x, cols, geom):
        if type(x) is BatchedArray and type(cols) is BatchedArray:
            return cols  # arrays, not Tensors: nothing to differentiate, the saved columns do
        return Kernels.conv2d_columns(x, cols, geom)

    @staticmethod
    def conv2d_input_grad(g, w, x_shape: tuple, geom, groups: int):
        f = _fold(g)
        if f is None or f.ndim != 4 or type(w) is BatchedArray or not hasattr(w, "ndim"):
            return Kernels.conv2d_input_grad(g, w, x_shape, geom, groups)
        return _unfold(_table(f).conv2d_input_grad(f, w, _shape(g, x_shape), geom, groups), g)

    @staticmethod
    def max_pool2d(x, geom) -> tuple:
        f = _fold(x)
        if f is None or f.ndim != 4:
            return Kernels.max_pool2d(x, geom)
        y, idx = _table(f).max_pool2d(f, geom)
        return _unfold(y, x), _unfold(idx, x)

    @staticmethod
    def max_pool2d_backward(g, idx, x_shape: tuple, geom):
        f = _fold(g)
        if f is None or f.ndim != 4 or not _same_level(g, idx):
            return Kernels.max_pool2d_backward(g, idx, x_shape, geom)
        fi = _fold(idx)
        return _unfold(_table(f).max_pool2d_backward(f, fi, _shape(g, x_shape), geom), g)

    @staticmethod
    def cross_entropy(x, t, valid) -> tuple:
        f = _fold(x)
        if (f is None or f.ndim != 2 or not _same_level(x, t)
                or not (valid is None or _same_level(x, valid))):
            return Kernels.cross_entropy(x, t, valid)
        nll, p = _table(f).cross_entropy(f, _fold(t), None if valid is None else _fold(valid))
        return _unfold(nll, x), _unfold(p, x)

    @staticmethod
    def cross_entropy_backward(g, x, p, t, scale):
        f = _fold(p)
        if (f is None or f.ndim != 2 or not _same_level(x, p, t)
                or type(g) is not BatchedArray):
            return Kernels.cross_entropy_backward(g, x, p, t, scale)
        n = x.shape[0]
        if type(scale) is BatchedArray:
            if scale._lv is not x._lv or type(scale._p) is BatchedArray:
                return Kernels.cross_entropy_backward(g, x, p, t, scale)
            s = scale._p  # (B,): one number per example, or (B, N): one per row
            s = s.repeat(n) if s.ndim == 1 else s.reshape(-1)
        elif getattr(scale, "ndim", 0):
            return Kernels.cross_entropy_backward(g, x, p, t, scale)
        else:
            s = scale
        return _unfold(_table(f).cross_entropy_backward(g, f, f, _fold(t), s), p)
