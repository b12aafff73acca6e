"""Activation functions (PyTorch's ``torch.nn.functional`` names and arguments): the common ones
(ReLU family, GELU, SiLU, ELU as fused gates; softmax and friends delegating to ``ops``), then
shrinkage, thresholds, gated and parametric units, randomized leaky ReLU and Gumbel-softmax.

Those after the gates compose differentiable ops (``where``, ``sigmoid``, products), so gradients
of any order come for free and route exactly as PyTorch's kernels route them at the kinks.
"""

from __future__ import annotations

import warnings
from typing import Any

from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import Op
from chainrule.autograd.inplace import apply_inplace
from chainrule.autograd.grad_mode import no_grad
from chainrule.creation import empty, empty_like, ones_like, zeros_like
from chainrule.devices import np
from chainrule.dtypes import FLOAT_KINDS, float64, legacy_contiguous_format
from chainrule.kernels import kernels_for
from chainrule.nn.checks import check_tensor
from chainrule.ops import either
from chainrule.ops.binary import where
from chainrule.ops.elementwise import Clamp
from chainrule.ops.elementwise import relu as _relu
from chainrule.ops.elementwise import sigmoid as _sigmoid
from chainrule.ops.elementwise import softplus as _softplus
from chainrule.ops.elementwise import tanh as _tanh
from chainrule.ops.reduce import log_softmax as _log_softmax
from chainrule.ops.reduce import softmax as _softmax
from chainrule.tensor import Tensor

__all__ = [
    "relu", "relu_", "relu6", "leaky_relu", "gelu", "silu", "elu", "selu", "celu", "mish",
    "tanh", "sigmoid", "softplus", "softsign", "logsigmoid", "hardtanh", "hardsigmoid",
    "hardswish", "tanhshrink", "softmax", "log_softmax", "softmin", "hardshrink", "softshrink",
    "threshold", "glu", "prelu", "rrelu", "gumbel_softmax", "leaky_relu_", "hardtanh_", "elu_",
    "selu_", "celu_", "threshold_", "rrelu_",
]


# ---- the common activations ---------------------------------------------------------------------
class LeakyRelu(Op):
    """y = x if x > 0 else a·x;  dy/dx = 1 or a"""

    @staticmethod
    def forward(ctx, x, slope, keep_output=False):
        # keep_output (a ≥ 0; leaky_relu_ only): y may be written over x's memory, which
        # apply_inplace then finds already holding the result (no copy back)
        K = kernels_for(x)
        y = K.leaky_relu_into(x, slope) if keep_output else K.leaky_relu(x, slope)
        ctx.save_for_backward(y if keep_output else x)  # a ≥ 0: y > 0 exactly where x > 0
        ctx.slope = slope
        return y

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return kernels_for(g).leaky_relu_backward(g, x, ctx.slope), None, None


class Hardtanh(Clamp):
    """y = clamp(x, lo, hi);  dy/dx = 1 strictly inside (lo, hi), 0 at and beyond the bounds
    (torch's convention, where clamp's gradient is 1 at the bounds)"""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return either.where((x > ctx.lo) & (x < ctx.hi), g, 0.0), None, None


class Gelu(Op):
    """y = x·Φ(x);  dy/dx = Φ(x) + x·φ(x)  (Φ, φ: the standard normal cdf and pdf)"""

    @staticmethod
    def forward(ctx, x):
        with_grad = ctx.needs_input_grad[0]
        y, dydx = kernels_for(x).gelu(x, with_grad)
        if with_grad:
            ctx.save_for_backward(x, dydx)  # dydx: a constant, recomputed under create_graph
        return y

    @staticmethod
    def backward(ctx, g):
        x, dydx = ctx.saved_tensors
        return kernels_for(g).gelu_backward(g, x, dydx)


class GeluTanh(Op):
    """y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³);
    dy/dx = ½(1 + tanh u) + ½x(1 - tanh² u)·√(2/π)(1 + 3·0.044715x²)"""

    @staticmethod
    def forward(ctx, x):
        with_grad = ctx.needs_input_grad[0]
        y, dydx = kernels_for(x).gelu_tanh(x, with_grad)
        if with_grad:
            ctx.save_for_backward(x, dydx)  # dydx: a constant, recomputed under create_graph
        return y

    @staticmethod
    def backward(ctx, g):
        x, dydx = ctx.saved_tensors
        return kernels_for(g).gelu_tanh_backward(g, x, dydx)


class Silu(Op):
    """y = x·σ(x);  dy/dx = σ(x)·(1 + x·(1 - σ(x)))"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * either.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = either.sigmoid(x)
        return g * s * (1 + x * (1 - s))


class Mish(Op):
    """y = x·tanh(softplus x);  dy/dx = t + x·σ(x)·(1 - t²), t = tanh(softplus x)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * np.tanh(np.logaddexp(0, x)).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        t = either.tanh(either.log1p(either.exp(-either.abs(x))) + either.maximum(x, 0))
        return g * (t + x * either.sigmoid(x) * (1 - t * t))


class Hardswish(Op):
    """y = x·clamp(x/6 + 1/2, 0, 1);  dy/dx = 0 (x ≤ -3), x/3 + 1/2 (-3 < x < 3), 1 (x ≥ 3)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        # selected, not multiplied (an infinite g gives 0 where x ≤ -3, as torch's)
        return either.where(x <= -3, 0.0, either.where(x < 3, g * (x / 3.0 + 0.5), g))


class Elu(Op):
    """y = x if x > 0 else α(eˣ - 1);  dy/dx = 1 or α·eˣ"""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)) * alpha)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        # e^(-|x|) equals e^x where it is used (x ≤ 0) and never overflows elsewhere
        # (x <= 0 selects: at NaN the gradient is g, as torch's)
        return either.where(x <= 0, g * either.exp(-either.abs(x)) * ctx.alpha, g), None


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(0, x) elementwise."""
    return apply_inplace(input, _relu) if inplace else _relu(input)


def relu_(input: Tensor) -> Tensor:
    """max(0, x), in place."""
    return apply_inplace(input, _relu)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(0, x), 6)."""
    return hardtanh(input, 0.0, 6.0, inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """clamp(x, min_val, max_val); the gradient is 0 at the bounds, as torch's."""
    check_tensor(input, "hardtanh")
    if inplace:
        return apply_inplace(input, hardtanh, min_val, max_val)
    if input._data.dtype.kind not in FLOAT_KINDS:
        return input.clamp(min_val, max_val)
    return Hardtanh.apply(input, float(min_val), float(max_val))


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x if x > 0 else negative_slope·x."""
    check_tensor(input, "leaky_relu")
    if inplace:
        return apply_inplace(input, leaky_relu if negative_slope < 0 else _leaky_relu_on_output,
                             negative_slope)
    return LeakyRelu.apply(input, float(negative_slope))


def _leaky_relu_on_output(input: Tensor, negative_slope: float) -> Tensor:
    """leaky_relu whose gate keeps its output, not its input (as torch's leaky_relu_, for a
    slope ≥ 0): in place, nothing then holds the old value, which is overwritten without being
    copied first, and the result is written over the input's own memory (one pass; only
    apply_inplace calls this, with the target's memory or a private copy of it)."""
    return LeakyRelu.apply(input, float(negative_slope), True)


def hardtanh_(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """clamp(x, min_val, max_val), in place."""
    return hardtanh(input, min_val, max_val, True)


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope·x, in place."""
    return leaky_relu(input, negative_slope, True)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x·Φ(x) (exact), or the tanh approximation with ``approximate='tanh'``."""
    if _amp.active and (out := _amp.run("gelu", gelu, input, approximate)) is not None:
        return out  # bfloat16: computed in float32 and rounded once, as torch's kernel
    check_tensor(input, "gelu")
    if approximate == "none":
        return Gelu.apply(input)
    if approximate == "tanh":
        return GeluTanh.apply(input)
    raise RuntimeError(f"gelu(): approximate argument must be either none or tanh, got "
                       f"{approximate!r}")


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x·σ(x) (swish)."""
    check_tensor(input, "silu")
    return apply_inplace(input, silu) if inplace else Silu.apply(input)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x if x > 0 else α(eˣ - 1)."""
    check_tensor(input, "elu")
    if inplace:
        return apply_inplace(input, elu, alpha)
    return Elu.apply(input, float(alpha))


def elu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else α(eˣ - 1), in place."""
    return elu(input, alpha, True)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale·elu(x, α) with the self-normalising constants."""
    if inplace:
        return apply_inplace(input, selu)
    return elu(input, 1.6732632423543772848170429916717) * 1.0507009873554804934193349852946


def selu_(input: Tensor) -> Tensor:
    """selu(x), in place."""
    return selu(input, True)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, α(e^(x/α) - 1))."""
    if inplace:
        return apply_inplace(input, celu, alpha)
    return elu(input / alpha, 1.0) * alpha


def celu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    """celu(x), in place."""
    return celu(input, alpha, True)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x·tanh(softplus(x))."""
    check_tensor(input, "mish")
    return apply_inplace(input, mish) if inplace else Mish.apply(input)


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return _tanh(input)


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + e^-x)."""
    return _sigmoid(input)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """ln(1 + e^(βx))/β, linear above ``threshold``."""
    return _softplus(input, beta, threshold)


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return input / (input.abs() + 1)


def logsigmoid(input: Tensor) -> Tensor:
    """ln σ(x) = -softplus(-x)."""
    return -_softplus(-input)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """clamp(x/6 + 1/2, 0, 1) (gradient 0 at x = ±3, as torch's)."""
    if inplace:
        return apply_inplace(input, hardsigmoid)
    return hardtanh(input / 6.0 + 0.5, 0.0, 1.0)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x·hardsigmoid(x)."""
    check_tensor(input, "hardswish")
    return apply_inplace(input, hardswish) if inplace else Hardswish.apply(input)


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x)."""
    return input - _tanh(input)


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Tensor:
    """e^x / Σ e^x along ``dim``."""
    return _softmax(input, dim, dtype)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Tensor:
    """softmax(-x) along ``dim``."""
    return _softmax(-input, dim, dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype: Any = None) -> Tensor:
    """x - ln Σ e^x along ``dim``."""
    return _log_softmax(input, dim, dtype)


# ---- shrinkage, thresholds, gated and randomized units ------------------------------------------
def _check(input: Any, fn: str) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(input).__name__}")


class Shrink(Op):
    """hardshrink: y = x where |x| > λ, else 0; softshrink: y = x ∓ λ there, else 0 (NaN stays
    NaN);  dy/dx = 1 where |x| > λ, else 0 (0 at NaN, as torch's)"""

    @staticmethod
    def forward(ctx, x, lambd, soft):
        ctx.save_for_backward(x)
        ctx.lambd = lambd
        inside = (x >= -lambd) & (x <= lambd)
        return np.where(inside, 0.0, x - np.sign(x) * lambd if soft else x).astype(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return either.where(either.abs(x) > ctx.lambd, g, 0.0), None, None


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """y = x where |x| > λ, else 0."""
    _check(input, "hardshrink")
    return Shrink.apply(input, lambd, False)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """y = x - λ above λ, x + λ below -λ, 0 in between."""
    _check(input, "softshrink")
    if lambd < 0:
        raise RuntimeError(f"softshrink: lambda must be greater or equal to 0, but found to be "
                           f"{lambd}.")
    return Shrink.apply(input, lambd, True)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """y = x where x > threshold, else ``value``."""
    _check(input, "threshold")
    if inplace:
        return apply_inplace(input, _threshold, threshold, value)
    return _threshold(input, threshold, value)


def _threshold(input: Tensor, threshold: float, value: float) -> Tensor:
    return where(input <= threshold, value, input)  # (NaN stays NaN, as torch's)


def threshold_(input: Tensor, threshold: float, value: float) -> Tensor:
    """threshold(x), in place."""
    _check(input, "threshold_")
    return apply_inplace(input, _threshold, threshold, value)


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
    # (the slope chosen before the product: an infinite or NaN slope of a channel leaves the
    # gradient of its positive inputs alone, as torch's; where(x > 0, x, x·w) made it NaN)
    return input * where(input > 0, 1.0, w)


def rrelu(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
          training: bool = False, inplace: bool = False) -> Tensor:
    """Randomized leaky ReLU: in training each x ≤ 0 is scaled by a slope drawn from
    U(lower, upper) (one draw per such element, in order); in eval the slope is their mean."""
    _check(input, "rrelu")
    if inplace:
        return apply_inplace(input, rrelu, lower, upper, training)
    if not training or upper - lower <= 1e-6:
        slope = (lower + upper) / 2.0
        return where(input > 0, input, input * slope)

    neg = (input <= 0)._data
    slopes = ones_like(input)
    count = int(neg.sum())
    if count:
        draws = empty(count, dtype=float64, device=input.device).uniform_(lower, upper)
        slopes._data[neg] = draws._data.astype(slopes._data.dtype)
    return input * slopes


def rrelu_(input: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
           training: bool = False) -> Tensor:
    """rrelu(x), in place."""
    return rrelu(input, lower, upper, training, True)


def gumbel_softmax(logits: Tensor, tau: float = 1, hard: bool = False, eps: float = 1e-10,
                   dim: int = -1) -> Tensor:
    """softmax((logits + g) / τ) with g ~ Gumbel(0, 1); ``hard`` gives one-hot samples whose
    gradient is the soft one's (straight-through)."""
    _check(logits, "gumbel_softmax")
    if eps != 1e-10:
        warnings.warn("`eps` parameter is deprecated and has no effect.", stacklevel=2)

    with no_grad():  # g = -log(E), E ~ Exp(1) (torch's draw: exponential_, on a C-order tensor)
        gumbels = -empty_like(logits, memory_format=legacy_contiguous_format).exponential_().log()
    y_soft = softmax((logits + gumbels) / tau, dim)
    if not hard:
        return y_soft
    index = y_soft.argmax(dim, keepdim=True)
    y_hard = zeros_like(logits).scatter(dim, index, value=1.0)
    return y_hard - y_soft.detach() + y_soft

