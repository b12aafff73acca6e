"""Helpers shared by the distributions (PyTorch's ``distributions.utils``)."""

from __future__ import annotations

from functools import update_wrapper
from numbers import Number
from typing import Any
from collections.abc import Callable

from chainrule.devices import np
from chainrule.autograd.grad_mode import enable_grad
from chainrule.tensor import Tensor

__all__ = ["broadcast_all", "logits_to_probs", "probs_to_logits", "clamp_probs", "lazy_property",
           "euler_constant", "tril_matrix_to_vec", "vec_to_tril_matrix"]

euler_constant = 0.57721566490153286060  # Euler–Mascheroni constant


def broadcast_all(*values: Tensor | Number) -> tuple[Tensor, ...]:
    """Broadcast Tensors and numbers together (numbers take the first Tensor's dtype/device,
    or the default dtype)."""
    import chainrule as cr

    if not all(isinstance(v, (Tensor, Number)) for v in values):
        raise ValueError("Input arguments must all be instances of Number, torch.Tensor or "
                         "objects implementing __torch_function__.")
    if not all(isinstance(v, Tensor) for v in values):
        options: dict[str, Any] = {"dtype": cr.get_default_dtype()}
        for v in values:
            if isinstance(v, Tensor):
                options = {"dtype": v.dtype, "device": v.device}
                break
        values = tuple(v if isinstance(v, Tensor) else cr.tensor(v, **options) for v in values)
    return tuple(cr.broadcast_tensors(*values))


def finfo(t: Tensor):
    """NumPy's finfo of a floating Tensor's dtype (eps, tiny, max)."""
    return np.finfo(t._data.dtype)


def logits_to_probs(logits: Tensor, is_binary: bool = False) -> Tensor:
    """Probabilities from logits: sigmoid (binary) or softmax over the last dim."""
    if is_binary:
        return logits.sigmoid()
    return logits.softmax(-1)


def clamp_probs(probs: Tensor) -> Tensor:
    """Probabilities clamped to [eps, 1 - eps] of their dtype."""
    eps = float(finfo(probs).eps)
    return probs.clamp(min=eps, max=1 - eps)


def probs_to_logits(probs: Tensor, is_binary: bool = False) -> Tensor:
    """Logits from probabilities (clamped first): log p - log(1 - p), or log p."""
    ps = clamp_probs(probs)
    if is_binary:
        return ps.log() - (-ps).log1p()
    return ps.log()


class lazy_property:
    """A property computed on first access (with gradients recorded), then cached on the
    instance."""

    def __init__(self, wrapped: Callable) -> None:
        self.wrapped = wrapped
        update_wrapper(self, wrapped)  # type: ignore[arg-type]

    def __get__(self, instance: Any, obj_type: Any = None) -> Any:
        if instance is None:
            return _lazy_property_and_property(self.wrapped)
        with enable_grad():
            value = self.wrapped(instance)
        setattr(instance, self.wrapped.__name__, value)
        return value


class _lazy_property_and_property(lazy_property, property):
    """A lazy_property seen on the class: also a property (for documentation tools)."""

    def __init__(self, wrapped: Callable) -> None:
        property.__init__(self, wrapped)


def tril_matrix_to_vec(mat: Tensor, diag: int = 0) -> Tensor:
    """The lower triangle (from diagonal ``diag``) of the last two dims, row by row."""
    n = mat.shape[-1]
    rows, cols = np.tril_indices(n, k=diag)
    return mat[..., rows, cols]


def vec_to_tril_matrix(vec: Tensor, diag: int = 0) -> Tensor:
    """The inverse of :func:`tril_matrix_to_vec`."""
    import chainrule as cr

    m = vec.shape[-1]
    n = int((-(1 + 2 * diag) + ((1 + 2 * diag) ** 2 + 8 * m + 4 * abs(diag) * (diag + 1))
             ** 0.5) / 2)
    rows, cols = np.tril_indices(n, k=diag)
    flat = cr.zeros(tuple(vec.shape[:-1]) + (n * n,), dtype=vec.dtype, device=vec.device)
    index = cr.tensor(rows * n + cols).expand(tuple(vec.shape[:-1]) + (m,))
    return flat.scatter_add(-1, index, vec).reshape(tuple(vec.shape[:-1]) + (n, n))
