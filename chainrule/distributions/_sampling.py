"""The random draws the distributions are built from, written as torch's samplers are (a plain
transform of rand / randn), so the draws equal torch's wherever the streams do."""

from __future__ import annotations

import math

from chainrule.creation import rand, randn
from chainrule.tensor import Tensor

__all__ = ["standard_normal", "uniform", "exponential", "cauchy"]


def standard_normal(shape: tuple, like: Tensor) -> Tensor:
    """N(0, 1) draws of ``like``'s dtype and device (``torch.empty(shape).normal_()``)."""
    return randn(tuple(shape), dtype=like.dtype, device=like.device)


def uniform(shape: tuple, like: Tensor, low: float = 0.0, high: float = 1.0) -> Tensor:
    """U[low, high) draws (``torch.empty(shape).uniform_(low, high)``)."""
    u = rand(tuple(shape), dtype=like.dtype, device=like.device)
    return u if (low, high) == (0.0, 1.0) else u * (high - low) + low


def exponential(shape: tuple, like: Tensor) -> Tensor:
    """Exp(1) draws by inversion, -log(1 - U) (``torch.empty(shape).exponential_()``)."""
    return -(-uniform(shape, like)).log1p()


def cauchy(shape: tuple, like: Tensor) -> Tensor:
    """Standard Cauchy draws by inversion, tan(π(U - ½)) (``torch.empty(shape).cauchy_()``)."""
    return (math.pi * (uniform(shape, like) - 0.5)).tan()
