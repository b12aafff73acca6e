"""Activation functions beyond the common ones in ``functional.py``: shrinkage, thresholds,
gated and parametric units, randomized leaky ReLU and Gumbel-softmax (PyTorch's
``torch.nn.functional`` names and arguments).

Each composes differentiable ops (``where``, ``sigmoid``, products), so gradients of any order
come for free and route exactly as PyTorch's kernels route them at the kinks.
"""

from __future__ import annotations

import warnings
from typing import Any

from chainrule.ops.binary import where
from chainrule.ops.elementwise import sigmoid
from chainrule.ops.reduce import softmax
from chainrule.tensor import Tensor

__all__ = ["hardshrink", "softshrink", "threshold", "glu", "prelu", "rrelu", "gumbel_softmax"]


def _check(input: Any, fn: str) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(input).__name__}")


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """y = x where |x| > λ, else 0."""
    _check(input, "hardshrink")
    return where((input > lambd) | (input < -lambd), input, 0.0)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """y = x - λ above λ, x + λ below -λ, 0 in between."""
    _check(input, "softshrink")
    if lambd < 0:
        raise RuntimeError(f"softshrink: lambda must be greater or equal to 0, but found to be "
                           f"{lambd}.")
    return where(input > lambd, input - lambd, where(input < -lambd, input + lambd, 0.0))


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """y = x where x > threshold, else ``value`` (``inplace`` computes out of place)."""
    _check(input, "threshold")
    return where(input <= threshold, value, input)  # (NaN stays NaN, as torch's)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """Gated linear unit: a·σ(b), where a and b are the two halves of ``input`` along ``dim``."""
    _check(input, "glu")
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    n = input.shape[dim]
    if n % 2:
        d = dim % input.ndim
        raise RuntimeError(f"glu: Halving dimension must be even, but dimension {d} is size {n}")
    a, b = input.split(n // 2, dim)
    return a * sigmoid(b)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """y = x for x > 0, else w·x, with one learnable slope per channel (dim 1) or one for all."""
    _check(input, "prelu")
    k = weight.numel()
    if k != 1:
        if input.ndim == 0:
            raise RuntimeError("prelu: Not allow zero-dim input tensor.")
        channels = input.shape[1] if input.ndim > 1 else 1
        if channels != k:
            raise RuntimeError(f"prelu: Mismatch of parameter numbers and input channel size. "
                               f"Found parameter numbers = {k} and channel size = {channels}.")
    if input.ndim >= 2:
        w = weight.reshape(-1, *([1] * (input.ndim - 2)))
    else:
        w = weight.reshape(-1) if input.ndim == 1 else weight.reshape(())
    return where(input > 0, input, input * w)


def rrelu(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
          training: bool = False, inplace: bool = False) -> Tensor:
    """Randomized leaky ReLU: in training each x ≤ 0 is scaled by a slope drawn from
    U(lower, upper) (one draw per such element, in order); in eval the slope is their mean."""
    _check(input, "rrelu")
    if not training or upper - lower <= 1e-6:
        slope = (lower + upper) / 2.0
        return where(input > 0, input, input * slope)
    from chainrule.creation import empty, ones_like
    from chainrule import float64

    neg = (input <= 0)._data
    slopes = ones_like(input)
    count = int(neg.sum())
    if count:
        draws = empty(count, dtype=float64, device=input.device).uniform_(lower, upper)
        slopes._data[neg] = draws._data.astype(slopes._data.dtype)
    return input * slopes


def gumbel_softmax(logits: Tensor, tau: float = 1, hard: bool = False, eps: float = 1e-10,
                   dim: int = -1) -> Tensor:
    """softmax((logits + g) / τ) with g ~ Gumbel(0, 1); ``hard`` gives one-hot samples whose
    gradient is the soft one's (straight-through)."""
    _check(logits, "gumbel_softmax")
    if eps != 1e-10:
        warnings.warn("`eps` parameter is deprecated and has no effect.", stacklevel=2)
    from chainrule.creation import empty_like, zeros_like
    from chainrule.autograd.grad_mode import no_grad

    with no_grad():  # g = -log(E), E ~ Exp(1) = -log(1 - U)
        u = empty_like(logits).uniform_()
        gumbels = -(-(1.0 - u).log()).log()
    y_soft = softmax((logits + gumbels) / tau, dim)
    if not hard:
        return y_soft
    index = y_soft.argmax(dim, keepdim=True)
    y_hard = zeros_like(logits).scatter(dim, index, value=1.0)
    return y_hard - y_soft.detach() + y_soft

