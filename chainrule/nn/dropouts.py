"""Alpha dropout (for SELU networks), its channel-wise form, and 3-d channel dropout
(PyTorch's ``torch.nn.functional`` forms; the masks come from ``cr.bernoulli``)."""

from __future__ import annotations

import math

from chainrule.tensor import Tensor

__all__ = ["alpha_dropout", "feature_alpha_dropout", "dropout3d"]

_ALPHA = 1.7580993408473766  # -SELU's scale·alpha: the value a dropped unit takes


def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _alpha(input: Tensor, p: float, training: bool, feature: bool) -> Tensor:
    """Keep each unit (or channel) with probability 1 - p, set the rest to -α', then
    y = a·(x·keep + α'·(1 - keep)) + b chosen so that mean and variance are preserved."""
    _check_p(p)
    if p == 0 or not training or input.numel() == 0:
        return input
    if p == 1:
        return input * 0.0
    from chainrule.creation import bernoulli, full

    if feature and input.ndim < 2:
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
    shape = tuple(input.shape[:2]) + (1,) * (input.ndim - 2) if feature else tuple(input.shape)
    noise = bernoulli(full(shape, 1.0 - p, dtype=input.dtype, device=input.device))
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p))
    b = (noise - 1) * (_ALPHA * a) + _ALPHA * a * p
    return input * (noise * a) + b


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False,
                  inplace: bool = False) -> Tensor:
    """Alpha dropout of single units (keeps SELU's self-normalisation); ``inplace`` computes out
    of place."""
    return _alpha(input, p, training, feature=False)


def feature_alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False,
                          inplace: bool = False) -> Tensor:
    """Alpha dropout of whole channels (dim 1)."""
    return _alpha(input, p, training, feature=True)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input with probability p (other
    ranks are refused; PyTorch only warns)."""
    from chainrule.nn.functional import _channel_dropout

    return _channel_dropout(input, p, training, "dropout3d", 3)
