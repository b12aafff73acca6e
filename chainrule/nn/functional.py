"""``chainrule.nn.functional``: the stateless forms of the layers and losses (PyTorch's
``torch.nn.functional``). Hot paths (``linear``, ``cross_entropy``) are single fused gates;
the rest compose differentiable ops, so gradients of any order come for free.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np
from chainrule import devices
from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import Op
from chainrule._state import state
from chainrule.autograd.grad_mode import no_grad
from chainrule.kernels import kernels_for
from chainrule.kernels.matmul import matmul as _mm
from chainrule.nn.dropout import dropout, dropout1d, dropout2d, dropout3d  # noqa: F401  (F)
from chainrule.ops import either
from chainrule.ops.elementwise import relu as _relu
from chainrule.ops.elementwise import sigmoid as _sigmoid
from chainrule.ops.elementwise import softplus as _softplus
from chainrule.ops.elementwise import tanh as _tanh
from chainrule.ops.reduce import log_softmax as _log_softmax
from chainrule.ops.reduce import softmax as _softmax
from chainrule.ops.shape import pad as _pad
from chainrule.tensor import Tensor, wrap

__all__ = [
    "relu", "relu_", "relu6", "leaky_relu", "gelu", "silu", "elu", "selu", "celu", "mish",
    "tanh", "sigmoid", "softplus", "softsign", "logsigmoid", "hardtanh", "hardsigmoid",
    "hardswish", "tanhshrink", "softmax", "log_softmax", "softmin", "linear", "bilinear",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "batch_norm", "layer_norm", "group_norm",
    "embedding",
    "pad", "one_hot", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss",
    "huber_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div",
    "normalize", "cosine_similarity",
]

pad = _pad


def _check_tensor(x: Any, fn: str, arg: str = "input") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}(): argument '{arg}' must be Tensor, not {type(x).__name__}")


def _shape(x: Any) -> tuple:
    return tuple(x.shape)


# ---- activations -------------------------------------------------------------------------------


class LeakyRelu(Op):
    """y = x if x > 0 else a·x;  dy/dx = 1 or a"""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return np.where(x > 0, x, x * slope)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return either.where(x > 0, g, g * ctx.slope), None


class Hardtanh(Op):
    """y = clamp(x, lo, hi);  dy/dx = 1 strictly inside (lo, hi), 0 at and beyond the bounds
    (torch's convention, where clamp's gradient is 1 at the bounds)"""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return np.clip(x, lo, hi)

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
    return _relu(input)


def relu_(input: Tensor) -> Tensor:
    """max(0, x) (returns a new tensor; chainrule has no in-place graph ops)."""
    return _relu(input)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(0, x), 6)."""
    return hardtanh(input, 0.0, 6.0)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """clamp(x, min_val, max_val); the gradient is 0 at the bounds, as torch's."""
    _check_tensor(input, "hardtanh")
    if input._data.dtype.kind not in FLOAT_KINDS:
        return input.clamp(min_val, max_val)
    return Hardtanh.apply(input, float(min_val), float(max_val))


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x if x > 0 else negative_slope·x."""
    _check_tensor(input, "leaky_relu")
    return LeakyRelu.apply(input, float(negative_slope))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x·Φ(x) (exact), or the tanh approximation with ``approximate='tanh'``."""
    _check_tensor(input, "gelu")
    if approximate == "none":
        return Gelu.apply(input)
    if approximate == "tanh":
        inner = (input + input * input * input * 0.044715) * math.sqrt(2 / math.pi)
        return input * 0.5 * (_tanh(inner) + 1)
    raise RuntimeError(f"gelu(): approximate argument must be either none or tanh, got "
                       f"{approximate!r}")


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x·σ(x) (swish)."""
    _check_tensor(input, "silu")
    return Silu.apply(input)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x if x > 0 else α(eˣ - 1)."""
    _check_tensor(input, "elu")
    return Elu.apply(input, float(alpha))


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale·elu(x, α) with the self-normalising constants."""
    return elu(input, 1.6732632423543772848170429916717) * 1.0507009873554804934193349852946


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, α(e^(x/α) - 1))."""
    return elu(input / alpha, 1.0) * alpha


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x·tanh(softplus(x))."""
    return input * _tanh(_softplus(input))


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
    return hardtanh(input / 6.0 + 0.5, 0.0, 1.0)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x·hardsigmoid(x)."""
    return input * hardsigmoid(input)


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


# ---- linear layers ------------------------------------------------------------------------------
class Linear(Op):
    """y = x Wᵀ + b;  dx = g W,  dW = gᵀ x (summed over batch dims),  db = Σ g"""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        if x.ndim > 2:  # one 2-D GEMM beats NumPy's loop of per-batch GEMMs
            y = _mm(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
        else:
            y = _mm(x, w.T)
        if b is not None:
            y = kernels_for(y).add_bias(y, b)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        xshape = tuple(x.shape)
        if len(xshape) > 2:
            g = either.reshape(g, (-1, g.shape[-1]))
        gx = either.matmul(g, w) if need_x else None
        if gx is not None and len(xshape) > 2:
            gx = either.reshape(gx, xshape)
        gw = gb = None
        if need_w or need_b:
            if len(xshape) != 2:
                g = either.reshape(g, (-1, g.shape[-1]))
                x = either.reshape(x, (-1, xshape[-1]))
            if need_w:
                gw = either.matmul(either.swapaxes(g, 0, 1), x)
            if need_b:
                gb = kernels_for(g).sum_rows(g)
        return gx, gw, gb


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x Wᵀ + b (one fused gate)."""
    if _amp.active and (out := _amp.run("linear", linear, input, weight, bias)) is not None:
        return out
    _check_tensor(input, "linear")
    _check_tensor(weight, "linear", "weight")
    x, w = input._data, weight._data
    if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[-1]:
        rows = int(np.prod(x.shape[:-1])) if x.ndim else 1
        raise RuntimeError(
            f"linear(): input of shape {_shape(x)} and weight of shape {_shape(w)} cannot be "
            f"multiplied (mat1 and mat2 shapes cannot be multiplied "
            f"({rows}x{x.shape[-1] if x.ndim else 1} and "
            f"{'x'.join(str(s) for s in w.shape[::-1])}))"
        )
    if x.dtype != w.dtype:
        raise RuntimeError(
            f"linear(): input and weight must have the same dtype, but got input "
            f"{input.dtype} and weight {weight.dtype} (mat1 and mat2 must have the same dtype)"
        )
    if bias is not None:
        _check_tensor(bias, "linear", "bias")
        if bias._data.dtype != x.dtype or bias._data.shape not in ((w.shape[0],), (), (1,)):
            raise RuntimeError(
                f"linear(): bias of shape {_shape(bias)} and dtype {bias.dtype} does not match "
                f"weight of shape {_shape(w)} and input dtype {input.dtype}"
            )
    return Linear.apply(input, weight, bias)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y_k = x1ᵀ W_k x2 + b_k."""
    if _amp.active and (out := _amp.run(
            "bilinear", bilinear, input1, input2, weight, bias)) is not None:
        return out
    from chainrule.ops.linalg import einsum

    if (weight.ndim != 3 or input1.shape[-1] != weight.shape[1]
            or input2.shape[-1] != weight.shape[2] or input1.shape[:-1] != input2.shape[:-1]):
        raise RuntimeError(
            f"bilinear(): shapes do not match: input1 {_shape(input1)}, input2 "
            f"{_shape(input2)}, weight {_shape(weight)} (expected weight (out, in1, in2) and "
            f"inputs (..., in1), (..., in2))"
        )
    lead = tuple(input1.shape[:-1])
    y = einsum("bi,kij,bj->bk", input1.reshape(-1, weight.shape[1]), weight,
               input2.reshape(-1, weight.shape[2]))
    y = y.reshape(*lead, weight.shape[0])
    return y if bias is None else y + bias


# ---- normalization -----------------------------------------------------------------------------
def _channel_shape(input: Tensor) -> tuple:
    return (1, input.shape[1]) + (1,) * (input.ndim - 2)


class BatchNorm(Op):
    """y = x̂·w + b with x̂ = (x - mean)/√(var + eps) per channel over the batch (and spatial)
    dims; dx = (ĝ - mean ĝ - x̂·mean(ĝ·x̂))/σ with ĝ = g·w;  dw = Σ g·x̂;  db = Σ g"""

    @staticmethod
    def forward(ctx, x, w, b, xhat, rstd, axes, eps):
        # x̂ and 1/σ come from batch_norm (which also needs the batch statistics); they are
        # constants here and are recomputed from x under create_graph.
        ctx.save_for_backward(x, w, xhat, rstd)
        ctx.axes, ctx.eps = axes, eps
        cshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        y = xhat * w.reshape(cshape) if w is not None else xhat.copy()
        if b is not None:
            y += b.reshape(cshape)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, xhat, rstd = ctx.saved_tensors
        axes = ctx.axes
        xhat, rstd = kernels_for(g).norm_stats(x, xhat, rstd, axes, ctx.eps)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if need_w:
            gw = either.sum(g * xhat, axes)
        if need_b:
            gb = either.sum(g, axes)
        if need_x:
            n = 1
            for a in axes:
                n *= x.shape[a]
            cshape = (1, x.shape[1]) + (1,) * (len(x.shape) - 2)
            gh = g * either.reshape(w, cshape) if w is not None else g
            m1 = either.sum(gh, axes, True) * (1.0 / n)
            m2 = either.sum(gh * xhat, axes, True) * (1.0 / n)
            gx = (gh - m1 - xhat * m2) * rstd
        return gx, gw, gb, None, None, None, None


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dim 1) by batch statistics (training) or running ones (eval);
    in training, update the running stats in place (running_var with the unbiased variance)."""
    if _amp.active and (out := _amp.run("batch_norm", batch_norm, input, running_mean,
                                        running_var, weight, bias, training, momentum,
                                        eps)) is not None:
        return out
    _check_tensor(input, "batch_norm")
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected 2D or more input, got shape {_shape(input)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and _shape(t) != (c,):
            raise RuntimeError(
                f"batch_norm: {name} should contain {c} elements (input shape {_shape(input)}), "
                f"got shape {_shape(t)}"
            )
    cshape = _channel_shape(input)
    if training:
        axes = (0,) + tuple(range(2, input.ndim))
        n = input.numel() // c
        if n <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size "
                f"{input.shape}"
            )
        x = input._data
        mean = x.mean(axis=axes, keepdims=True)
        xc = x - mean
        var = (xc * xc).mean(axis=axes, keepdims=True)
        if running_mean is not None or running_var is not None:
            with no_grad():
                m = momentum
                if running_mean is not None:
                    bm = mean.reshape(c).astype(running_mean._data.dtype)
                    running_mean._data = running_mean._data * (1 - m) + bm * m
                if running_var is not None:
                    bv = var.reshape(c).astype(running_var._data.dtype) * (n / (n - 1))
                    running_var._data = running_var._data * (1 - m) + bv * m
        rstd = 1 / np.sqrt(var + x.dtype.type(eps))
        return BatchNorm.apply(input, weight, bias, xc * rstd, rstd, axes, float(eps))
    if running_mean is None or running_var is None:
        raise RuntimeError("batch_norm: running_mean and running_var must be defined in "
                           "evaluation mode")
    # eval: y = x·scale + shift with per-channel scale = w/σ and shift = b - mean·scale
    rv = running_var._data.reshape(cshape)
    rstd = wrap((1 / np.sqrt(rv + rv.dtype.type(eps))).astype(input._data.dtype, copy=False))
    rm = wrap(running_mean._data.reshape(cshape).astype(input._data.dtype, copy=False))
    scale = rstd if weight is None else weight.reshape(cshape) * rstd
    shift = -(rm * scale) if bias is None else bias.reshape(cshape) - rm * scale
    return input * scale + shift


class LayerNorm(Op):
    """y = x̂·w + b with x̂ = (x - mean)/√(var + eps) over the last k dims;
    dx = (ĝ - mean ĝ - x̂·mean(ĝ·x̂))/σ with ĝ = g·w;  dw = Σ g·x̂;  db = Σ g"""

    @staticmethod
    def forward(ctx, x, w, b, k, eps):
        ctx.axes, ctx.eps = tuple(range(x.ndim - k, x.ndim)), eps
        y, xhat, rstd = kernels_for(x).layer_norm(x, w, b, k, eps)
        ctx.save_for_backward(x, w, xhat, rstd)  # x̂, 1/σ: constants, recomputed under create_graph
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, xhat, rstd = ctx.saved_tensors
        gx, gw, gb = kernels_for(g).layer_norm_backward(g, x, w, xhat, rstd, ctx.axes, ctx.eps,
                                                        ctx.needs_input_grad)
        return gx, gw, gb, None, None


def layer_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dims, then scale and shift."""
    if _amp.active and (out := _amp.run(
            "layer_norm", layer_norm, input, normalized_shape, weight, bias, eps)) is not None:
        return out
    _check_tensor(input, "layer_norm")
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or input.ndim < k or _shape(input)[-k:] != ns:
        raise RuntimeError(
            f"layer_norm: Given normalized_shape={list(ns)}, expected input with shape "
            f"[*, {', '.join(map(str, ns))}], but got input of size{list(input.shape)}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and _shape(t) != ns:
            raise RuntimeError(f"layer_norm: {name} of shape {_shape(t)} does not match "
                               f"normalized_shape {list(ns)}")
    if weight is not None and bias is not None and weight._data.dtype != bias._data.dtype:
        raise RuntimeError(f"layer_norm: weight ({weight.dtype}) and bias ({bias.dtype}) must "
                           f"have the same dtype")
    if math.prod(ns) == 0:  # nothing to normalize: an empty result, still connected to w, b
        out = input * 1.0
        out = out * weight if weight is not None else out
        return out + bias if bias is not None else out
    return LayerNorm.apply(input, weight, bias, k, float(eps))


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over groups of channels (and all spatial positions) per sample."""
    if _amp.active and (out := _amp.run(
            "group_norm", group_norm, input, num_groups, weight, bias, eps)) is not None:
        return out
    _check_tensor(input, "group_norm")
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise RuntimeError(
            f"group_norm: Expected number of channels in input to be divisible by num_groups, "
            f"but got input of shape {list(input.shape)} and num_groups={num_groups}"
        )
    x = input.reshape(input.shape[0], num_groups, -1)
    mean = x.mean(2, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(2, keepdim=True)
    out = (centered * (var + eps).rsqrt()).reshape(*input.shape)
    cshape = _channel_shape(input)
    if weight is not None:
        out = out * weight.reshape(cshape)
    if bias is not None:
        out = out + bias.reshape(cshape)
    return out


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: Any = None) -> Tensor:
    """x / max(‖x‖_p, eps) along ``dim``."""
    from chainrule.ops.reduce import norm

    return input / norm(input, p, dim, keepdim=True).clamp(min=eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Σ x1·x2 / max(‖x1‖·‖x2‖, eps) along ``dim``."""
    from chainrule.ops.reduce import norm

    num = (x1 * x2).sum(dim)
    den = (norm(x1, 2, dim) * norm(x2, 2, dim)).clamp(min=eps)
    return num / den


# ---- embedding ---------------------------------------------------------------------------------
class Embedding(Op):
    """y = W[idx];  dW = the rows of g added at idx (the padding row gets none)"""

    @staticmethod
    def forward(ctx, w, idx, padding_idx):
        ctx.wshape, ctx.idx, ctx.padding_idx = w.shape, idx, padding_idx
        return w[idx]

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
        raise RuntimeError(f"embedding(): 'weight' must be 2-D, got shape {_shape(weight)}")
    num = weight.shape[0]
    if idx.size and not _gpu_unchecked(idx) and (idx.min() < 0 or idx.max() >= num):
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


# ---- losses ------------------------------------------------------------------------------------
def _legacy_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: {reduction} is not a valid value for reduction")


def _check_reduction(reduction: str, name: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: {reduction} is not a valid value for reduction")


def _warn_size(input: Tensor, target: Tensor, name: str) -> None:
    if _shape(input) != _shape(target):
        warnings.warn(
            f"{name}: Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to broadcasting. "
            f"Please ensure they have the same size.",
            UserWarning, stacklevel=3,
        )


def _as_target(target: Any, like: Tensor) -> Tensor:
    if isinstance(target, Tensor):
        return target
    return wrap(np.asarray(target, dtype=like._data.dtype))


def mse_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """(x - y)², reduced."""
    if _amp.active and (out := _amp.run(
            "mse_loss", mse_loss, input, target, size_average,
            reduce, reduction, weight)) is not None:
        return out
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "mse_loss")
    target = _as_target(target, input)
    _warn_size(input, target, "mse_loss")
    d = input - target
    loss = d * d
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "mse_loss")


def l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """|x - y|, reduced."""
    if _amp.active and (out := _amp.run(
            "l1_loss", l1_loss, input, target, size_average,
            reduce, reduction, weight)) is not None:
        return out
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "l1_loss")
    target = _as_target(target, input)
    _warn_size(input, target, "l1_loss")
    loss = (input - target).abs()
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "l1_loss")


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5·d²/β where |d| < β, else |d| - β/2 (d = x - y), reduced."""
    if _amp.active and (out := _amp.run(
            "smooth_l1_loss", smooth_l1_loss, input, target, size_average,
            reduce, reduction, beta)) is not None:
        return out
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "smooth_l1_loss")
    if beta < 0:
        raise RuntimeError(f"smooth_l1_loss does not support negative values for beta (got "
                           f"{beta}).")
    target = _as_target(target, input)
    _warn_size(input, target, "smooth_l1_loss")
    d = (input - target).abs()
    if beta == 0.0:
        return _reduce(d, reduction, "smooth_l1_loss")
    from chainrule.ops.binary import where

    loss = where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta)
    return _reduce(loss, reduction, "smooth_l1_loss")


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """0.5·d² where |d| < δ, else δ(|d| - δ/2), reduced."""
    if _amp.active and (out := _amp.run(
            "huber_loss", huber_loss, input, target, reduction, delta, weight)) is not None:
        return out
    from chainrule.ops.binary import where

    _check_reduction(reduction, "huber_loss")
    target = _as_target(target, input)
    _warn_size(input, target, "huber_loss")
    d = (input - target).abs()
    loss = where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "huber_loss")


def _check_same_size(input: Tensor, target: Tensor, name: str) -> None:
    if _shape(input) != _shape(target):
        raise ValueError(
            f"{name}: Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}) is deprecated. Please ensure they have the same size."
        )


def _clamped_logs(x):
    """(max(ln x, -100), max(ln(1 - x), -100)) of an array."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(x), -100.0), np.maximum(np.log(1 - x), -100.0)


class BinaryCrossEntropy(Op):
    """l = -(y·ln x + (1-y)·ln(1-x)), logs clamped at -100;
    dl/dx = (x - y) / max(x(1-x), 1e-12),  dl/dy = ln(1-x) - ln x (unclamped)"""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        log_x, log_1mx = _clamped_logs(x)
        return -(y * log_x + (1 - y) * log_1mx)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad
        gx = g * (x - y) / either.maximum(x * (1 - x), 1e-12) if need_x else None
        # unclamped, as PyTorch (infinite at x = 0 or 1)
        gy = g * (either.log1p(-x) - either.log(x)) if need_y else None
        return gx, gy


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: Any = None, reduce: Any = None,
                         reduction: str = "mean") -> Tensor:
    """-(y·ln x + (1-y)·ln(1-x)), each log clamped at -100 like PyTorch, reduced."""
    if _amp.active and (out := _amp.run(
            "binary_cross_entropy", binary_cross_entropy, input, target, weight,
            size_average, reduce, reduction)) is not None:
        return out
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "binary_cross_entropy")
    target = _as_target(target, input)
    _check_same_size(input, target, "binary_cross_entropy")
    x = input._data
    if x.size and (x.min() < 0 or x.max() > 1):
        raise RuntimeError("binary_cross_entropy: all elements of input should be between 0 "
                           "and 1")
    y = target._data
    if y.size and (y.min() < 0 or y.max() > 1):
        raise RuntimeError("binary_cross_entropy: all elements of target should be between 0 "
                           "and 1")
    if target._data.dtype != x.dtype:
        target = target.to(input.dtype)
    loss = BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None, size_average: Any = None,
                                     reduce: Any = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """-(p·y·ln σ(x) + (1-y)·ln(1-σ(x))) in the stable form (1-y)·x + (1+(p-1)y)·softplus(-x)."""
    if _amp.active and (out := _amp.run(
            "binary_cross_entropy_with_logits", binary_cross_entropy_with_logits, input, target,
            weight, size_average, reduce, reduction, pos_weight)) is not None:
        return out
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    target = _as_target(target, input)
    if _shape(input) != _shape(target):
        raise ValueError(f"binary_cross_entropy_with_logits: Target size ({target.shape}) must "
                         f"be the same as input size ({input.shape})")
    sp = _softplus(-input)
    if pos_weight is not None:
        loss = (1 - target) * input + (target * (pos_weight - 1) + 1) * sp
    else:
        loss = (1 - target) * input + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def kl_div(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """target·(ln target - input) (input holds log-probabilities), reduced."""
    if _amp.active and (out := _amp.run(
            "kl_div", kl_div, input, target, size_average,
            reduce, reduction, log_target)) is not None:
        return out
    from chainrule.ops.binary import xlogy

    reduction = _legacy_reduction(size_average, reduce, reduction)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        loss = xlogy(target, target) - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    return _reduce(loss, reduction, "kl_div")


def _flatten_classes(input: Tensor, target: Any, name: str, prob_target: bool = False):
    """(N, C, d1, ...) input → (N·d1·..., C) rows; targets flattened to match."""
    _check_tensor(input, name)
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have at least 1 dimension (got a scalar)")
    if input.ndim == 1:  # (C,) with a 0-d target
        x2 = input.reshape(1, -1)
        t = target.reshape(1, -1) if prob_target else target.reshape(1)
        return x2, t, ()
    c = input.shape[1]
    if input.ndim == 2:
        return input, target, (input.shape[0],)
    out_shape = (input.shape[0],) + tuple(input.shape[2:])
    x2 = input.movedim(1, -1).reshape(-1, c)
    t = target.movedim(1, -1).reshape(-1, c) if prob_target else target.reshape(-1)
    return x2, t, out_shape


def _index_target(input: Tensor, target: Any, name: str) -> np.ndarray:
    """Validate class-index targets against (N, C, d...) input; the raw int array."""
    t = target._data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise RuntimeError(
            f"{name}: expected target of class indices with an integer dtype (int64), got "
            f"{t.dtype} (or class probabilities of the input's shape {_shape(input)})"
        )
    want = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
    if tuple(t.shape) != want:
        raise ValueError(
            f"{name}: Expected target of shape {want} for input of shape {_shape(input)}, got "
            f"target of shape {tuple(t.shape)}"
        )
    return t


def _gpu_unchecked(a) -> bool:
    """Range checks of GPU indices read the GPU back (a sync every step), so they run only
    under ``detect_anomaly``; elsewhere an out-of-range index reads a wrapped-around row."""
    return devices.is_gpu_array(a) and not state.anomaly


def _check_bounds(t: np.ndarray, valid, c: int) -> None:
    if _gpu_unchecked(t):
        return
    tv = t if valid is None else t[valid]
    if tv.size and (tv.min() < 0 or tv.max() >= c):
        bad = tv.max() if tv.max() >= c else tv.min()
        raise IndexError(f"Target {int(bad)} is out of bounds (number of classes is {c}).")


class CrossEntropy(Op):
    """loss = -ln softmax(x)[t] (mean/sum/none over rows);  dx = (softmax(x) - onehot(t))·g/n"""

    @staticmethod
    def forward(ctx, x, t, valid, reduction):
        nll, p = kernels_for(x).cross_entropy(x, t, valid)
        count = valid.sum() if valid is not None else x.shape[0]
        ctx.save_for_backward(x, p)
        ctx.t, ctx.valid, ctx.count, ctx.reduction = t, valid, count, reduction
        if reduction == "none":
            return nll.astype(x.dtype, copy=False)
        xp = devices.xp_of(x)
        total = nll.sum()
        if reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):  # no rows: 0/0 is NaN, as torch
                total = total / xp.asarray(count, dtype=x.dtype)
        return xp.asarray(total, dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, p = ctx.saved_tensors
        scale = g / ctx.count if ctx.reduction == "mean" else g
        if ctx.valid is not None:
            scale = scale * ctx.valid  # per row
        return kernels_for(g).cross_entropy_backward(g, x, p, ctx.t, scale), None, None, None


class CrossEntropyRows(Op):
    """Cross-entropy from one kernel where a table has one (the GPU's): the rows' log-sum-exp l
    and losses l - x[t] (``stats``), and dx = (softmax(x) - onehot(t))·g/n
    = (e^(x-l) - onehot(t))·g/n; ignored rows give 0."""

    @staticmethod
    def forward(ctx, x, t, stats, ignore_index, reduction):
        lse, nll, out = stats  # out = [loss, count of rows not ignored]
        ctx.save_for_backward(x)
        ctx.t, ctx.lse, ctx.count = t, lse, out[1:]
        ctx.ignore, ctx.reduction = ignore_index, reduction
        return nll if reduction == "none" else out[0]

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        gx = kernels_for(g).cross_entropy_rows_backward(g, x, ctx.lse, ctx.t, ctx.count,
                                                        ctx.ignore, ctx.reduction)
        return gx, None, None, None, None


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
             reduction: str = "mean") -> Tensor:
    """-w[t]·x[t] per row (x holds log-probabilities); 'mean' divides by Σ w[t]."""
    if _amp.active and (out := _amp.run(
            "nll_loss", nll_loss, input, target, weight,
            size_average, ignore_index, reduce, reduction)) is not None:
        return out
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "nll_loss")
    t = _index_target(input, target, "nll_loss")
    x2, t1, out_shape = _flatten_classes(input, wrap(t), "nll_loss")
    t1 = t1._data
    c = x2.shape[1]
    valid = t1 != ignore_index
    _check_bounds(t1, valid, c)
    t_safe = np.where(valid, t1, 0)
    xp = devices.xp_of(t1)
    picked = x2[xp.arange(x2.shape[0]), t_safe]
    dt = x2._data.dtype
    if weight is not None:
        if _shape(weight) != (c,):
            raise RuntimeError(f"nll_loss: weight tensor should be defined either for all {c} "
                               f"classes or no classes but got weight tensor of shape: "
                               f"{_shape(weight)}")
        w = (weight._data[t_safe] * valid).astype(dt)
    else:
        w = valid.astype(dt)
    loss = -(picked * wrap(w))
    if reduction == "none":
        return loss.reshape(*out_shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / wrap(xp.asarray(w.sum(), dtype=dt))


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over dim 1, then the negative log-likelihood of class-index targets, or
    -Σ p·log_softmax for class-probability targets; optional weights and label smoothing."""
    if _amp.active and (out := _amp.run(
            "cross_entropy", cross_entropy, input, target, weight, size_average,
            ignore_index, reduce, reduction, label_smoothing)) is not None:
        return out
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "cross_entropy")
    _check_tensor(input, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0. Got: "
                           f"{label_smoothing}")
    if input._data.dtype.kind not in FLOAT_KINDS:
        raise RuntimeError(f"cross_entropy: expected a floating point input, got {input.dtype}")
    prob = isinstance(target, Tensor) and target._data.dtype.kind in FLOAT_KINDS
    if prob:
        return _cross_entropy_probs(input, target, weight, reduction, label_smoothing)
    t = _index_target(input, target, "cross_entropy")
    if weight is None and label_smoothing == 0.0:  # the common case: one fused gate
        x2, t1, out_shape = _flatten_classes(input, wrap(t), "cross_entropy")
        t1 = t1._data
        stats = (kernels_for(x2._data).cross_entropy_rows(x2._data, t1, ignore_index, reduction)
                 if x2._data.ndim == 2 else None)
        if stats is not None:
            _check_bounds(t1, t1 != ignore_index, x2.shape[1])  # (GPU: under detect_anomaly)
            loss = CrossEntropyRows.apply(x2, t1, stats, ignore_index, reduction)
            return loss.reshape(*out_shape) if reduction == "none" else loss
        valid = t1 != ignore_index
        if not devices.is_gpu_array(t1) and valid.all():  # on the GPU: no read-back, keep the mask
            valid = None
            _check_bounds(t1, None, x2.shape[1])
        else:
            _check_bounds(t1, valid, x2.shape[1])
            t1 = np.where(valid, t1, 0)
            valid = valid.astype(x2._data.dtype)
        loss = CrossEntropy.apply(x2, t1, valid, reduction)
        if reduction == "none" and tuple(loss.shape) != out_shape:
            return loss.reshape(*out_shape)
        return loss
    logp = _log_softmax(input, 1 if input.ndim > 1 else 0)
    nll = nll_loss(logp, wrap(t), weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0.0:
        return nll
    c = input.shape[1] if input.ndim > 1 else input.shape[0]
    cdim = 1 if input.ndim > 1 else 0
    wl = logp if weight is None else logp * weight.reshape(
        *((c,) + (1,) * (input.ndim - 2) if input.ndim > 1 else (c,)))
    valid = t != ignore_index
    smooth = -(wl.sum(cdim)) * wrap(valid.astype(logp._data.dtype))
    if reduction == "mean":
        if weight is not None:
            denom = weight._data[np.where(valid, t, 0)][valid].sum()
        else:
            denom = valid.sum()
        smooth = smooth.sum() / float(denom)
    elif reduction == "sum":
        smooth = smooth.sum()
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / c)


def _cross_entropy_probs(input: Tensor, target: Tensor, weight: Tensor | None, reduction: str,
                         label_smoothing: float) -> Tensor:
    if _shape(target) != _shape(input):
        raise RuntimeError(
            f"cross_entropy: class-probability target of shape {_shape(target)} must match the "
            f"input shape {_shape(input)}"
        )
    cdim = 1 if input.ndim > 1 else 0
    c = input.shape[cdim]
    logp = _log_softmax(input, cdim)
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / c
    prod = logp * target
    if weight is not None:
        prod = prod * weight.reshape(*((c,) + (1,) * (input.ndim - 2) if cdim else (c,)))
    loss = -prod.sum(cdim)
    if reduction == "mean":
        return loss.sum() / max(loss.numel(), 1) if input.ndim > 1 else loss
    return _reduce(loss, reduction, "cross_entropy")



# ---- re-exports: gates that live with their op family -------------------------------------------
from chainrule.ops.conv import (  # noqa: E402
    adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d, conv1d, conv2d,
    conv_transpose1d, conv_transpose2d, fold, max_pool1d, max_pool2d, unfold,
)

from chainrule.nn.attention import scaled_dot_product_attention  # noqa: E402

__all__ += ["scaled_dot_product_attention", "conv1d", "conv2d", "conv_transpose1d",
            "conv_transpose2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
            "adaptive_avg_pool1d", "adaptive_avg_pool2d", "unfold", "fold"]

# ---- re-exports: the functional forms that live in their own files ------------------------------
from chainrule.nn.activations import (  # noqa: E402
    glu, gumbel_softmax, hardshrink, prelu, rrelu, softshrink, threshold,
)
from chainrule.nn.distance import pairwise_distance, pdist  # noqa: E402
from chainrule.nn.losses import (  # noqa: E402
    cosine_embedding_loss, ctc_loss, gaussian_nll_loss, hinge_embedding_loss, margin_ranking_loss,
    multi_margin_loss, multilabel_margin_loss, multilabel_soft_margin_loss, poisson_nll_loss,
    soft_margin_loss, triplet_margin_loss, triplet_margin_with_distance_loss,
)

__all__ += ["glu", "gumbel_softmax", "hardshrink", "prelu", "rrelu", "softshrink", "threshold",
            "pairwise_distance", "pdist", "cosine_embedding_loss", "ctc_loss",
            "gaussian_nll_loss", "hinge_embedding_loss", "margin_ranking_loss",
            "multi_margin_loss", "multilabel_margin_loss", "multilabel_soft_margin_loss",
            "poisson_nll_loss", "soft_margin_loss", "triplet_margin_loss",
            "triplet_margin_with_distance_loss"]
from chainrule.nn.convolution3d import conv3d, conv_tbc, conv_transpose3d  # noqa: E402
from chainrule.nn.dropout import alpha_dropout, feature_alpha_dropout  # noqa: E402
from chainrule.nn.embedding_bag import embedding_bag  # noqa: E402
from chainrule.nn.normalization import (  # noqa: E402
    instance_norm, local_response_norm, rms_norm,
)
from chainrule.nn.pooling import (  # noqa: E402
    adaptive_avg_pool3d, adaptive_max_pool1d, adaptive_max_pool1d_with_indices,
    adaptive_max_pool2d, adaptive_max_pool2d_with_indices, adaptive_max_pool3d,
    adaptive_max_pool3d_with_indices, avg_pool3d, fractional_max_pool2d,
    fractional_max_pool2d_with_indices, fractional_max_pool3d, fractional_max_pool3d_with_indices,
    lp_pool1d, lp_pool2d, lp_pool3d, max_pool1d_with_indices, max_pool2d_with_indices, max_pool3d,
    max_pool3d_with_indices, max_unpool1d, max_unpool2d, max_unpool3d,
)
from chainrule.nn.sampling import (  # noqa: E402
    channel_shuffle, interpolate, native_channel_shuffle, pixel_shuffle, pixel_unshuffle, upsample,
    upsample_bilinear, upsample_nearest,
)

__all__ += ["conv3d", "conv_tbc", "conv_transpose3d", "alpha_dropout", "dropout3d",
            "feature_alpha_dropout", "embedding_bag", "instance_norm", "local_response_norm",
            "rms_norm", "adaptive_avg_pool3d", "adaptive_max_pool1d",
            "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d",
            "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d",
            "adaptive_max_pool3d_with_indices", "avg_pool3d", "fractional_max_pool2d",
            "fractional_max_pool2d_with_indices", "fractional_max_pool3d",
            "fractional_max_pool3d_with_indices", "lp_pool1d", "lp_pool2d", "lp_pool3d",
            "max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d",
            "max_pool3d_with_indices", "max_unpool1d", "max_unpool2d", "max_unpool3d",
            "channel_shuffle", "interpolate", "native_channel_shuffle", "pixel_shuffle",
            "pixel_unshuffle", "upsample", "upsample_bilinear", "upsample_nearest"]
from chainrule.nn.mha import multi_head_attention_forward  # noqa: E402

__all__ += ["multi_head_attention_forward"]
from chainrule.nn.grid_sampling import affine_grid, grid_sample  # noqa: E402

__all__ += ["affine_grid", "grid_sample"]
from chainrule.nn.linear_cross_entropy import linear_cross_entropy  # noqa: E402

__all__ += ["linear_cross_entropy", "assert_int_or_pair"]


def assert_int_or_pair(arg: Any, arg_name: str, message: str) -> None:
    """Raise AssertionError(message.format(arg_name)) unless ``arg`` is an int or a pair."""
    if not (isinstance(arg, int) or len(arg) == 2):
        raise AssertionError(message.format(arg_name))
