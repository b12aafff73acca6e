"""Distances and similarities between rows: ``pairwise_distance``, ``pdist`` and
``cosine_similarity`` (PyTorch's definitions)."""

from __future__ import annotations

from chainrule.devices import np
from chainrule import devices
from chainrule.ops.reduce import norm
from chainrule.ops.shape import broadcast_tensors
from chainrule.tensor import Tensor, wrap

__all__ = ["pairwise_distance", "pdist", "cosine_similarity"]


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Tensor:
    """‖x1 - x2 + eps‖_p over the last dim (the inputs broadcast against each other)."""
    for t, name in ((x1, "x1"), (x2, "x2")):
        if not isinstance(t, Tensor):
            raise TypeError(f"pairwise_distance(): argument '{name}' must be Tensor, not "
                            f"{type(t).__name__}")
    out_dim = max(x1.ndim, x2.ndim)
    return norm(x1 - x2 + eps, p, out_dim - 1, keepdim)


def pdist(input: Tensor, p: float = 2) -> Tensor:
    """‖x_i - x_j‖_p for every pair of rows i < j of an (N, M) input, in row-major order."""
    if not isinstance(input, Tensor):
        raise TypeError(f"pdist(): argument 'input' must be Tensor, not {type(input).__name__}")
    if input.ndim != 2:
        raise RuntimeError(f"pdist only supports 2D tensors, got: {input.ndim}D")
    if p < 0:
        raise RuntimeError("pdist only supports non-negative p values")
    n = input.shape[0]
    i, j = np.triu_indices(n, 1)
    like = input._data
    rows_i = input.index_select(0, wrap(devices.asarray_on(i, like, np.int64)))
    rows_j = input.index_select(0, wrap(devices.asarray_on(j, like, np.int64)))
    return norm(rows_i - rows_j, p, 1)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Σ (x1/max(‖x1‖, eps))·(x2/max(‖x2‖, eps)) along ``dim``, after broadcasting the two
    (as torch: each is normalized first)."""
    x1, x2 = broadcast_tensors(x1, x2)
    n1 = norm(x1, 2, dim, True).clamp(min=eps)
    n2 = norm(x2, 2, dim, True).clamp(min=eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)
