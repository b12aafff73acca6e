"""Dropout, as functions (``F.dropout`` ...): each element (or channel) is zeroed with
probability p and the rest scaled by 1/(1 - p) (inverted dropout)."""

from __future__ import annotations

from chainrule.creation import _random
from chainrule.tensor import Tensor, wrap

__all__ = ["dropout", "dropout1d", "dropout2d"]


def _dropout_mask(input: Tensor, p: float, shape: tuple, name: str) -> Tensor:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"{name}: dropout probability has to be between 0 and 1, but got {p}")
    keep = 1.0 - p
    dt = input._data.dtype
    u = _random("uniform", shape, dt, input.device, None)
    if keep == 0.0:
        return wrap(u * 0)
    return wrap((u < keep).astype(dt) * dt.type(1.0 / keep))


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"dropout(): argument 'input' must be Tensor, not {type(input).__name__}")
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    return input * _dropout_mask(input, p, input._data.shape, "dropout")


def _channel_dropout(input: Tensor, p: float, training: bool, name: str, nd: int) -> Tensor:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{name}: expected {nd + 1}-D or {nd + 2}-D input, got shape "
                           f"{list(input.shape)}")
    if not training or p == 0.0:
        return input
    shape = input._data.shape[: -nd] + (1,) * nd
    return input * _dropout_mask(input, p, shape, name)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, L) input with probability p."""
    return _channel_dropout(input, p, training, "dropout1d", 1)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, H, W) input with probability p."""
    return _channel_dropout(input, p, training, "dropout2d", 2)
