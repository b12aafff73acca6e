"""Dropout, as functions (``F.dropout`` ...): each element (or channel) is zeroed with
probability p and the rest scaled by 1/(1 - p) (inverted dropout), with PyTorch's draws."""

from __future__ import annotations

import math
import warnings

from chainrule import batching, devices
from chainrule import random
from chainrule.autograd.inplace import apply_inplace
from chainrule.creation import _laid_out, _like_axes
from chainrule.tensor import Tensor, wrap

__all__ = ["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
           "feature_alpha_dropout"]


def _dropout_mask(input: Tensor, p: float, shape: tuple) -> Tensor:
    """PyTorch's noise: bernoulli_(1 - p) on an empty tensor of the input's dtype (and, for
    elementwise dropout, the input's memory layout: ``empty_like``), then divided
    by 1 - p (so the kept entries are 1 / (1 - p) in that dtype). Inside vmap the noise is
    a new random tensor (torch.func's rule): one mask for the batch with randomness="same",
    one per example with "different"."""
    noise = _keep_noise(input, p, shape)
    noise._data /= input._data.dtype.type(1.0 - p)
    return noise


def _keep_noise(input: Tensor, p: float, shape: tuple) -> Tensor:
    """torch's ``noise.bernoulli_(1 - p)`` (a scalar p) on an empty tensor of the input's dtype:
    ``empty_like(input)`` for elementwise noise, a C-order ``shape`` for per-channel noise."""
    levels = random.vmap_levels()
    xp = devices.xp_of(batching.deep(input._data))
    noise = wrap(batching.from_physical(
        xp.empty(batching.layout_shape(levels, shape), input._data.dtype), levels))
    if not levels and shape == input._data.shape:  # torch's empty_like: the input's layout
        noise = _laid_out(noise, _like_axes(input))
    random.bernoulli_(noise, 1.0 - p)
    return noise


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"dropout(): argument 'input' must be Tensor, not {type(input).__name__}")
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if inplace:
        return apply_inplace(input, dropout, p, training)
    if p == 1.0:  # no draws, as in PyTorch
        return input * 0.0
    return input * _dropout_mask(input, p, input._data.shape)


def _feature_dropout(input: Tensor, p: float, training: bool, name: str, nd: int,
                     inplace: bool = False) -> Tensor:
    """One draw per (sample, channel): the noise has the input's first two dims and 1 elsewhere
    (an unbatched input counts as a batch of one)."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{name}: expected {nd + 1}-D or {nd + 2}-D input, got shape "
                           f"{list(input.shape)}")
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if inplace:
        return apply_inplace(input, _feature_dropout, p, training, name, nd)
    if p == 1.0:
        return input * 0.0
    batched = input.shape if input.ndim == nd + 2 or name == "dropout2d" else (1,) + input.shape
    noise = (batched[0], batched[1]) + (1,) * (len(batched) - 2)
    mask = _dropout_mask(input, p, noise)
    return input * (mask if len(batched) == input.ndim else mask.reshape(noise[1:]))


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, L) input with probability p."""
    return _feature_dropout(input, p, training, "dropout1d", 1, inplace)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, H, W) input with probability p (a 3-D input is taken as
    (N, C, L), as PyTorch does)."""
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that "
                      "channel-wise 1D dropout behavior is desired - input is interpreted as "
                      "shape (N, C, L), where C is the channel dim. This behavior will change in "
                      "a future release to interpret the input as one without a batch "
                      "dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout "
                      "behavior, please switch to using dropout1d instead.", stacklevel=2)
    return _feature_dropout(input, p, training, "dropout2d", 2, inplace)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, D, H, W) input with probability p."""
    return _feature_dropout(input, p, training, "dropout3d", 3, inplace)


_ALPHA = 1.7580993408473766  # -SELU's scale·alpha: the value a dropped unit takes


def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _alpha(input: Tensor, p: float, training: bool, feature: bool,
           inplace: bool = False) -> Tensor:
    """Keep each unit (or channel) with probability 1 - p, set the rest to -α', then
    y = a·(x·keep + α'·(1 - keep)) + b chosen so that mean and variance are preserved."""
    _check_p(p)
    if p == 0 or not training or input.numel() == 0:
        return input
    if inplace:
        apply_inplace(input, _alpha, p, training, feature)
        if p != 1:  # torch's steps: mul_ then add_, two versions
            input._bump_version()
        return input
    if p == 1:
        return input * 0.0
    if feature and input.ndim < 2:
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
    shape = tuple(input.shape[:2]) + (1,) * (input.ndim - 2) if feature else tuple(input.shape)
    noise = _keep_noise(input, p, shape)
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p))
    b = (noise - 1) * (_ALPHA * a) + _ALPHA * a * p
    return input * (noise * a) + b


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False,
                  inplace: bool = False) -> Tensor:
    """Alpha dropout of single units (keeps SELU's self-normalisation)."""
    return _alpha(input, p, training, False, inplace)


def feature_alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False,
                          inplace: bool = False) -> Tensor:
    """Alpha dropout of whole channels (dim 1)."""
    return _alpha(input, p, training, True, inplace)
