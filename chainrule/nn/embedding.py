"""Embedding lookup and one-hot rows (PyTorch's ``torch.nn.functional.embedding``/``one_hot``);
``embedding_bag`` (sums, means and maxima of bags of rows) lives in ``nn/embedding_bag.py``."""

from __future__ import annotations

from chainrule import devices
from chainrule.autograd.function import Op
from chainrule.autograd.grad_mode import no_grad
from chainrule.devices import np
from chainrule.kernels import kernels_for
from chainrule.nn.checks import gpu_unchecked, shape_of
from chainrule.tensor import Tensor, wrap

__all__ = ["embedding", "one_hot"]


class Embedding(Op):
    """y = W[idx];  dW = the rows of g added at idx (the padding row gets none)"""

    @staticmethod
    def forward(ctx, w, idx, padding_idx):
        ctx.wshape, ctx.idx, ctx.padding_idx = w.shape, idx, padding_idx
        return w.take(idx, axis=0)  # w[idx], without fancy indexing's overhead (4× on small)

    @staticmethod
    def backward(ctx, g):
        shape, idx, pad_i = ctx.wshape, ctx.idx, ctx.padding_idx
        return kernels_for(g).embedding_backward(g, idx, shape, pad_i), None, None


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` looked up by the integer ``input``; ``padding_idx`` gets no gradient."""
    idx = input._data if isinstance(input, Tensor) else devices.asarray_on(input, weight._data)
    if idx.dtype.kind not in "iu":
        raise RuntimeError(
            f"embedding(): Expected tensor for argument 'indices' to have one of the following "
            f"scalar types: Long, Int; but got {idx.dtype} instead"
        )
    if weight.ndim != 2:
        raise RuntimeError(f"embedding(): 'weight' must be 2-D, got shape {shape_of(weight)}")
    num = weight.shape[0]
    if idx.size and not gpu_unchecked(idx) and (idx.min() < 0 or idx.max() >= num):
        bad = idx.max() if idx.max() >= num else idx.min()
        raise IndexError(f"index out of range in self (embedding(): index {int(bad)} with "
                         f"num_embeddings={num})")
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding(): padding_idx must be within num_embeddings={num}, got "
                             f"{padding_idx}")
        padding_idx = padding_idx % num
    if max_norm is not None:
        with no_grad():
            rows = np.unique(idx)
            w = weight._data
            norms = np.linalg.norm(w[rows], ord=norm_type, axis=1, keepdims=True)
            scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(w.dtype)
            w[rows] = w[rows] * scale
            weight._bump_version()  # torch's embedding_renorm_
    return Embedding.apply(weight, idx, padding_idx)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """(..., ) class indices → (..., num_classes) int64 one-hot rows."""
    idx = tensor._data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if idx.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensor (got dtype "
                           f"{idx.dtype}).")
    if num_classes == -1:
        if idx.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(idx.max()) + 1
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise RuntimeError(f"one_hot: Class values must be non-negative and smaller than "
                           f"num_classes={num_classes} (got values in [{int(idx.min())}, "
                           f"{int(idx.max())}])")
    xp = devices.xp_of(idx)
    out = (idx[..., None] == xp.arange(num_classes)).astype(np.int64)
    return wrap(out)
