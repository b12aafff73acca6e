"""Losses (PyTorch's ``torch.nn.functional`` names, arguments, reductions and errors):
regression (MSE, L1, smooth L1, Huber), probabilities (binary cross-entropy, KL divergence),
classes (NLL and cross-entropy, fused gates), then margin, embedding, count and CTC losses.

Cross-entropy is one gate over the rows (log-softmax and the picked entries in one pass). Margin,
embedding and count losses compose differentiable ops, so their gradients of any order come for
free; hinges use ``clamp(min=0)`` where PyTorch's kernel does (the gradient passes at exactly 0)
and ``relu`` where PyTorch's kernel tests ``z > 0``. CTC is one gate: the forward-backward (α/β)
recursions over time, vectorized over the batch and the label positions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from chainrule.batching import every_value
from chainrule.devices import np
from chainrule import devices
from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import DelayedError, Op
from chainrule.autograd.grad_mode import no_grad
from chainrule.dtypes import FLOAT_KINDS
from chainrule.kernels import kernels_for
from chainrule.nn.activations import logsigmoid
from chainrule.nn.checks import check_tensor, gpu_unchecked, shape_of
from chainrule.nn.distance import pairwise_distance
from chainrule.ops import either
from chainrule.ops.binary import minimum, where, xlogy
from chainrule.ops.elementwise import relu
from chainrule.ops.elementwise import softplus as _softplus
from chainrule.ops.reduce import log_softmax as _log_softmax
from chainrule.tensor import Tensor, wrap

__all__ = [
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "kl_div", "nll_loss", "cross_entropy",
    "margin_ranking_loss", "hinge_embedding_loss", "soft_margin_loss",
    "multilabel_soft_margin_loss", "multilabel_margin_loss", "multi_margin_loss",
    "cosine_embedding_loss", "triplet_margin_loss", "triplet_margin_with_distance_loss",
    "poisson_nll_loss", "gaussian_nll_loss", "ctc_loss",
]


# ---- reductions and the common losses ------------------------------------------------------------
def legacy_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    """The reduction the deprecated ``size_average``/``reduce`` arguments ask for (with
    torch's warning), or ``reduction`` when neither is given."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    out = "none" if not reduce else "mean" if size_average else "sum"
    warnings.warn(f"size_average and reduce args will be deprecated, please use "
                  f"reduction='{out}' instead.", UserWarning, stacklevel=2)
    return out


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


def _warn_size(input: Tensor, target: Tensor, name: str, stacklevel: int = 3) -> None:
    if shape_of(input) != shape_of(target):
        warnings.warn(
            f"{name}: Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to broadcasting. "
            f"Please ensure they have the same size.",
            UserWarning, stacklevel=stacklevel,
        )


def _as_target(target: Any, like: Tensor) -> Tensor:
    if isinstance(target, Tensor):
        return target
    return wrap(np.asarray(target, dtype=like._data.dtype))


def _pointwise_loss(name: str, public: Callable, args: tuple, reduction: str,
                    elementwise: Callable[[Tensor], Tensor], weight: Tensor | None = None,
                    check: Callable[[], None] | None = None, weighted_mean: bool = True,
                    legacy: tuple = (None, None)) -> Tensor:
    """The regression losses' one prologue and epilogue: autocast's dispatch (``public`` called
    again with its own ``args``, input and target first), the reduction's check, then ``check``,
    the target as a tensor, torch's size warning; the loss is ``elementwise(input - target)``,
    times ``weight``, reduced ('mean' with a weight is Σ w·l / Σ w, or the plain mean where
    torch takes it: huber). ``legacy``: the deprecated (size_average, reduce)."""
    if _amp.active and (out := _amp.run(name, public, *args)) is not None:
        return out
    input, target = args[0], args[1]
    reduction = legacy_reduction(*legacy, reduction)
    _check_reduction(reduction, name)
    if check is not None:
        check()
    target = _as_target(target, input)
    _warn_size(input, target, name, stacklevel=4)
    loss = elementwise(input - target)
    if weight is not None:
        if shape_of(weight) != shape_of(input):
            raise ValueError("Weights and input must have the same size.")
        loss = loss * weight
        if reduction == "mean" and weighted_mean:
            return loss.sum() / weight.sum()
    return _reduce(loss, reduction, name)


class MSELoss(Op):
    """l = (x - y)² (summed or averaged);  dx = 2(x - y)·g (/n for the mean), dy = -dx"""

    @staticmethod
    def forward(ctx, x, y, reduction):
        ctx.save_for_backward(x, y)
        ctx.reduction, ctx.n = reduction, math.prod(x.shape)
        sq = x - y
        sq *= sq
        if reduction == "none":
            return sq
        k = kernels_for(sq)
        return k.mean(sq, None, False) if reduction == "mean" else k.sum(sq, None, False)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        s = g * (2.0 / ctx.n) if ctx.reduction == "mean" else g * 2.0
        gx = (x - y) * s
        return gx, (-gx if ctx.needs_input_grad[1] else None), None


def mse_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """(x - y)², reduced."""
    if (weight is None and size_average is None and reduce is None and not _amp.active
            and reduction in ("mean", "sum", "none") and isinstance(input, Tensor)
            and isinstance(target, Tensor) and input._data.shape == target._data.shape
            and input._data.dtype == target._data.dtype
            and input._data.dtype.kind in FLOAT_KINDS):  # one gate, no temporaries kept
        return MSELoss.apply(input, target, reduction)
    return _pointwise_loss("mse_loss", mse_loss,
                           (input, target, size_average, reduce, reduction, weight), reduction,
                           lambda d: d * d, weight, legacy=(size_average, reduce))


def l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """|x - y|, reduced."""
    return _pointwise_loss("l1_loss", l1_loss,
                           (input, target, size_average, reduce, reduction, weight), reduction,
                           lambda d: d.abs(), weight, legacy=(size_average, reduce))


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5·d²/β where |d| < β, else |d| - β/2 (d = x - y), reduced."""
    def check() -> None:
        if beta < 0:
            raise RuntimeError(f"smooth_l1_loss does not support negative values for beta (got "
                               f"{beta}).")

    def elementwise(d: Tensor) -> Tensor:
        d = d.abs()
        return d if beta == 0.0 else where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta)

    return _pointwise_loss("smooth_l1_loss", smooth_l1_loss,
                           (input, target, size_average, reduce, reduction, beta), reduction,
                           elementwise, check=check, legacy=(size_average, reduce))


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """0.5·d² where |d| < δ, else δ(|d| - δ/2), reduced."""
    def elementwise(d: Tensor) -> Tensor:
        d = d.abs()
        return where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta)

    return _pointwise_loss("huber_loss", huber_loss, (input, target, reduction, delta, weight),
                           reduction, elementwise, weight, weighted_mean=False)


def _check_same_size(input: Tensor, target: Tensor, name: str) -> None:
    if shape_of(input) != shape_of(target):
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
    reduction = legacy_reduction(size_average, reduce, reduction)
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
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    target = _as_target(target, input)
    if shape_of(input) != shape_of(target):
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
    reduction = legacy_reduction(size_average, reduce, reduction)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        loss = xlogy(target, target) - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    return _reduce(loss, reduction, "kl_div")


def _flatten_classes(input: Tensor, target: Any, name: str, prob_target: bool = False):
    """(N, C, d1, ...) input → (N·d1·..., C) rows; targets flattened to match."""
    check_tensor(input, name)
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
            f"{t.dtype} (or class probabilities of the input's shape {shape_of(input)})"
        )
    want = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
    if tuple(t.shape) != want:
        raise ValueError(
            f"{name}: Expected target of shape {want} for input of shape {shape_of(input)}, got "
            f"target of shape {tuple(t.shape)}"
        )
    return t


def _check_bounds(t: np.ndarray, valid, c: int) -> None:
    if gpu_unchecked(t):
        return
    outside = (t < 0) | (t >= c)  # no mask selection: vmap's batched targets pass too
    if valid is not None:
        outside = outside & valid
    if outside.any():
        tv = every_value(t)[every_value(outside)]
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
        return nll if reduction == "none" else out[0, ...]

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
    reduction = legacy_reduction(size_average, reduce, reduction)
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
        if shape_of(weight) != (c,):
            raise RuntimeError(f"nll_loss: weight tensor should be defined either for all {c} "
                               f"classes or no classes but got weight tensor of shape: "
                               f"{shape_of(weight)}")
        w = weight._data[t_safe].astype(dt)
        picked = picked * wrap(w)
        total = (w * valid).sum()
    else:
        total = valid.sum()
    # ignored rows are selected out, not multiplied by 0: no NaN of theirs flows either way
    loss = -where(wrap(valid), picked, 0.0)
    if reduction == "none":
        return loss.reshape(*out_shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / wrap(xp.asarray(total, dtype=dt))


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average: Any = None, ignore_index: int = -100, reduce: Any = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over dim 1, then the negative log-likelihood of class-index targets, or
    -Σ p·log_softmax for class-probability targets; optional weights and label smoothing."""
    if _amp.active and (out := _amp.run(
            "cross_entropy", cross_entropy, input, target, weight, size_average,
            ignore_index, reduce, reduction, label_smoothing)) is not None:
        return out
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction, "cross_entropy")
    check_tensor(input, "cross_entropy")
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
            if reduction == "none" and tuple(loss.shape) != out_shape:
                return loss.reshape(*out_shape)
            return loss
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
    # ignored rows: 0, selected (a -inf logit there would make 0·inf a NaN), as torch's
    smooth = where(wrap(valid), -(wl.sum(cdim)), 0.0)
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
    if shape_of(target) != shape_of(input):
        raise RuntimeError(
            f"cross_entropy: class-probability target of shape {shape_of(target)} must match the "
            f"input shape {shape_of(input)}"
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


def _reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    reduction = legacy_reduction(size_average, reduce, reduction)
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


# ---- margins ------------------------------------------------------------------------------------
def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                        size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Tensor:
    """max(0, -y·(x1 - x2) + margin), reduced (y = ±1 says which input should rank higher)."""
    reduction = _reduction(size_average, reduce, reduction)
    if input1.ndim != input2.ndim or input1.ndim != target.ndim:
        raise RuntimeError(
            f"margin_ranking_loss : All input tensors should have same dimension but got sizes: "
            f"input1: {input1.shape}, input2: {input2.shape}, target: {target.shape} "
        )
    loss = (-target * (input1 - input2) + margin).clamp(min=0)
    return _reduce(loss, reduction, "margin_ranking_loss")


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0,
                         size_average: Any = None, reduce: Any = None,
                         reduction: str = "mean") -> Tensor:
    """x where y = 1, max(0, margin - x) where y = -1, reduced."""
    reduction = _reduction(size_average, reduce, reduction)
    margin_part = where(target != 1, (margin - input).clamp(min=0), 0.0)
    self_part = where(target != -1, input, 0.0)
    return _reduce(margin_part + self_part, reduction, "hinge_embedding_loss")


def soft_margin_loss(input: Tensor, target: Tensor, size_average: Any = None,
                     reduce: Any = None, reduction: str = "mean") -> Tensor:
    """ln(1 + e^(-y·x)), reduced (two-class logistic loss, y = ±1)."""
    reduction = _reduction(size_average, reduce, reduction)
    loss = (-input * target).exp().log1p()
    return _reduce(loss, reduction, "soft_margin_loss")


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                size_average: Any = None, reduce: Any = None,
                                reduction: str = "mean") -> Tensor:
    """-mean over classes of y·ln σ(x) + (1 - y)·ln σ(-x), one value per sample, reduced."""
    reduction = _reduction(size_average, reduce, reduction)
    loss = -(target * logsigmoid(input) + (1 - target) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    class_dim = input.ndim - 1
    loss = loss.sum(class_dim) / input.shape[class_dim]
    return _reduce(loss, reduction, "multilabel_soft_margin_loss")


def _class_rows(input: Tensor, target: Tensor, fn: str) -> tuple:
    """(input as (N, C), target as (N, ...), was it unbatched) for the multi-class margins."""
    check_tensor(input, fn, "input")
    check_tensor(target, fn, "target")
    if input.ndim > 2:
        raise RuntimeError(f"{fn}: Expected non-empty vector or matrix with optional 0-dim "
                           f"batch size, but got: {list(input.shape)}")
    if target._data.dtype.kind not in "iu":
        raise RuntimeError(f"{fn}: expected target of dtype Long, but got {target.dtype}")
    unbatched = input.ndim <= 1
    x = input.reshape(1, -1) if unbatched else input
    return x, target, unbatched


def multilabel_margin_loss(input: Tensor, target: Tensor, size_average: Any = None,
                           reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Σ over target classes j and non-target classes i of max(0, 1 - (x[j] - x[i])) / C per
    sample; ``target`` lists class indices, ended by the first -1."""
    reduction = _reduction(size_average, reduce, reduction)
    x, target, unbatched = _class_rows(input, target, "multilabel_margin_loss")
    n, c = x.shape
    t = target._data.reshape(n, -1) if target.ndim else target._data.reshape(1, 1)
    if t.shape != (n, c):
        raise RuntimeError(f"multilabel_margin_loss: inconsistent target size: "
                           f"{list(target.shape)} for input of size: {list(input.shape)}")
    if t.size and (t.min() < -1 or t.max() >= c):
        raise RuntimeError("multilabel_margin_loss: target out of range")
    xp = devices.xp_of(t)
    valid = xp.cumprod(t >= 0, axis=1).astype(bool)  # labels before the first -1
    labels = xp.where(valid, t, 0)
    is_target = xp.zeros((n, c), bool)
    rows = xp.broadcast_to(xp.arange(n)[:, None], (n, c))
    is_target[rows[valid], labels[valid]] = True
    pick = (valid[:, :, None] & ~is_target[:, None, :]).astype(x._data.dtype)
    xj = x.gather(1, wrap(labels))  # (N, C): the score of each listed label
    hinge = relu(1.0 - xj.unsqueeze(2) + x.unsqueeze(1)) * wrap(pick)
    loss = hinge.sum((1, 2)) / c
    if unbatched:
        loss = loss.reshape(())
    return _reduce(loss, reduction, "multilabel_margin_loss")


def multi_margin_loss(input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0,
                      weight: Tensor | None = None, size_average: Any = None,
                      reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Σ_{i ≠ y} w_y · max(0, margin - x[y] + x[i])^p / C per sample (p = 1 or 2), reduced."""
    reduction = _reduction(size_average, reduce, reduction)
    if p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")
    if weight is not None and weight.ndim != 1:
        raise ValueError("weight must be one-dimensional")
    x, target, unbatched = _class_rows(input, target, "multi_margin_loss")
    n, c = x.shape
    t = target._data.reshape(-1)
    if t.shape[0] != n:
        raise RuntimeError(f"multi_margin_loss: inconsistent target size, expected {n} but got "
                           f"{list(target.shape)}")
    if t.size and (t.min() < 0 or t.max() >= c):
        raise IndexError("multi_margin_loss: target out of range")
    xp = devices.xp_of(t)
    xy = x.gather(1, wrap(t[:, None]))
    z = relu(margin - xy + x)
    if p == 2:
        z = z * z
    others = (xp.arange(c)[None, :] != t[:, None]).astype(x._data.dtype)
    if weight is not None:
        z = z * weight.index_select(0, wrap(t)).unsqueeze(1)
    loss = (z * wrap(others)).sum(1) / c
    if unbatched:
        loss = loss.reshape(())
    return _reduce(loss, reduction, "multi_margin_loss")


_EPSILON = 1e-12


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                          size_average: Any = None, reduce: Any = None,
                          reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1, reduced."""
    reduction = _reduction(size_average, reduce, reduction)
    d = target.ndim
    if d not in (0, 1):
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if d == 1 and not (input1.ndim == 2 and input2.ndim == 2):
        raise RuntimeError(f"1D target tensor expects 2D input tensors, but found inputs with "
                           f"sizes {list(input1.shape)} and {list(input2.shape)}.")
    if d == 0 and not (input1.ndim == 1 and input2.ndim == 1):
        raise RuntimeError(f"0D target tensor expects 1D input tensors, but found inputs with "
                           f"sizes {list(input1.shape)} and {list(input2.shape)}.")
    prod = (input1 * input2).sum(d)
    mag1 = (input1 * input1).sum(d) + _EPSILON
    mag2 = (input2 * input2).sum(d) + _EPSILON
    cos = prod / (mag1 * mag2).sqrt()
    loss = where(target == 1, 1 - cos, 0.0) + where(target == -1, (cos - margin).clamp(min=0),
                                                     0.0)
    return _reduce(loss, reduction, "cosine_embedding_loss")


# ---- triplets -----------------------------------------------------------------------------------
def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0,
                        p: float = 2, eps: float = 1e-6, swap: bool = False,
                        size_average: Any = None, reduce: Any = None,
                        reduction: str = "mean") -> Tensor:
    """max(0, margin + d(a, p) - d(a, n)) with the p-norm distance, reduced."""
    reduction = _reduction(size_average, reduce, reduction)
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    dims = (anchor.ndim, positive.ndim, negative.ndim)
    if len(set(dims)) != 1:
        raise RuntimeError(
            f"The anchor, positive, and negative tensors are expected to have the same number "
            f"of dimensions, but got: anchor {dims[0]}D, positive {dims[1]}D, and negative "
            f"{dims[2]}D inputs"
        )
    return _triplet(anchor, positive, negative,
                    lambda a, b: pairwise_distance(a, b, p, eps), margin, swap, reduction)


def triplet_margin_with_distance_loss(anchor: Tensor, positive: Tensor, negative: Tensor, *,
                                      distance_function: Callable | None = None,
                                      margin: float = 1.0, swap: bool = False,
                                      reduction: str = "mean") -> Tensor:
    """max(0, margin + d(a, p) - d(a, n)) with any distance function, reduced."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    dims = (anchor.ndim, positive.ndim, negative.ndim)
    if len(set(dims)) != 1:
        raise RuntimeError(
            f"The anchor, positive, and negative tensors are expected to have the same number "
            f"of dimensions, but got: anchor {dims[0]}D, positive {dims[1]}D, and negative "
            f"{dims[2]}D inputs"
        )
    dist = distance_function if distance_function is not None else pairwise_distance
    return _triplet(anchor, positive, negative, dist, margin, swap, reduction)


def _triplet(anchor, positive, negative, dist, margin, swap, reduction) -> Tensor:
    d_pos = dist(anchor, positive)
    d_neg = dist(anchor, negative)
    if swap:
        d_neg = minimum(d_neg, dist(positive, negative))
    loss = (margin + d_pos - d_neg).clamp(min=0)
    return _reduce(loss, reduction, "triplet_margin_loss")


# ---- likelihoods --------------------------------------------------------------------------------
def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,
                     size_average: Any = None, eps: float = 1e-8, reduce: Any = None,
                     reduction: str = "mean") -> Tensor:
    """e^x - y·x (``log_input``) or x - y·ln(x + eps), plus Stirling's term of ln y! when
    ``full`` (for y > 1), reduced."""
    reduction = _reduction(size_average, reduce, reduction)
    if log_input:
        loss = input.exp() - target * input
    else:
        loss = input - target * (input + eps).log()
    if full:
        with np.errstate(divide="ignore", invalid="ignore"):
            stirling = target * target.log() - target + 0.5 * (target * (2 * math.pi)).log()
        loss = loss + stirling.masked_fill(target <= 1, 0.0)
    return _reduce(loss, reduction, "poisson_nll_loss")


def gaussian_nll_loss(input: Tensor, target: Tensor, var: Tensor | float, full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    """½(ln max(var, eps) + (x - y)² / max(var, eps)) (+ ½ ln 2π when ``full``), reduced."""
    if isinstance(var, (int, float)):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        var = input.new_full(tuple(input.shape), float(var))
    elif bool((var._data < 0).any()):
        raise ValueError("var has negative entry/entries")
    if tuple(var.shape) != tuple(input.shape):
        if tuple(input.shape[:-1]) == tuple(var.shape):
            var = var.unsqueeze(-1)
        elif input.ndim == var.ndim and sum(
                v for i, v in zip(input.shape, var.shape) if i != v) == 1:
            pass
        else:
            raise ValueError("var is of incorrect size")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(reduction + " is not valid")
    with no_grad():  # PyTorch clamps in place under no_grad: the gradient passes unchanged
        lift = var.clamp(min=eps) - var
    var = var + lift
    loss = 0.5 * (var.log() + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction, "gaussian_nll_loss")


# ---- connectionist temporal classification ------------------------------------------------------
def _logaddexp(*terms):
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def _ctc_tables(lp, labels, label_len, in_len, blank):
    """α/β recursions in log space over the extended labels (blank, l₁, blank, l₂, ..., blank).

    lp: (T, N, C) log-probabilities as float64; labels: (N, Lmax) padded targets. Returns the
    negative log-likelihood per sample and log Σ_{s: l'_s = c} α_t(s)β_t(s) as (T, N, C).
    """
    t_max, n, c = lp.shape
    s_max = 2 * labels.shape[1] + 1
    ext = np.full((n, s_max), blank, np.int64)
    ext[:, 1::2] = labels
    s_len = 2 * label_len + 1
    pos = np.arange(s_max)
    inside = pos[None, :] < s_len[:, None]
    # the skip s-2 -> s is allowed onto a label that differs from the label two back
    skip = np.zeros((n, s_max), bool)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    emit = np.take_along_axis(lp, np.broadcast_to(ext[None], (t_max, n, s_max)), axis=2)
    emit = np.where(inside[None], emit, -np.inf)  # (T, N, S)
    neg = np.full((n, 2), -np.inf)

    alpha = np.full((t_max, n, s_max), -np.inf)
    alpha[0, :, 0] = emit[0, :, 0]
    alpha[0, :, 1] = np.where(s_len > 1, emit[0, :, 1], -np.inf)
    for t in range(1, t_max):
        prev = alpha[t - 1]
        one = np.concatenate([neg[:, :1], prev[:, :-1]], 1)
        two = np.where(skip, np.concatenate([neg, prev[:, :-2]], 1), -np.inf)
        alpha[t] = _logaddexp(prev, one, two) + emit[t]

    last = in_len - 1
    rows = np.arange(n)
    end = alpha[last, rows]  # (N, S) at each sample's last frame
    final = np.logaddexp(end[rows, s_len - 1],
                         np.where(s_len > 1, end[rows, np.maximum(s_len - 2, 0)], -np.inf))
    nll = -final

    beta = np.full((t_max, n, s_max), -np.inf)
    for t in range(t_max - 1, -1, -1):
        start = last == t
        if t + 1 < t_max:
            nxt = beta[t + 1]
            one = np.concatenate([nxt[:, 1:], neg[:, :1]], 1)
            skip_next = np.concatenate([skip[:, 2:], np.zeros((n, 2), bool)], 1)
            two = np.where(skip_next, np.concatenate([nxt[:, 2:], neg], 1), -np.inf)
            beta[t] = np.where((t < last)[:, None], _logaddexp(nxt, one, two) + emit[t], -np.inf)
        if start.any():
            init = np.full((n, s_max), -np.inf)
            init[rows, s_len - 1] = emit[t, rows, s_len - 1]
            two_back = np.maximum(s_len - 2, 0)
            init[rows, two_back] = np.where(s_len > 1, emit[t, rows, two_back],
                                            init[rows, two_back])
            beta[t] = np.where(start[:, None], init, beta[t])

    ab = alpha + beta  # (T, N, S)
    lcab = np.full((t_max, n, c), -np.inf)
    for s in range(s_max):  # log-sum-exp of α·β into each position's label
        idx = ext[:, s]
        cur = lcab[:, rows, idx]
        lcab[:, rows, idx] = np.logaddexp(cur, ab[:, :, s])
    return nll, lcab


class CTCLoss(Op):
    """l = -ln Σ over alignments of Π_t p_t(aligned label);
    dl/d lp_t(c) = e^{lp_t(c)} - e^{ln Σ_{s: l'_s = c} α_t(s) β_t(s) + l - lp_t(c)}"""

    @staticmethod
    def forward(ctx, lp, labels, label_len, in_len, blank, zero_infinity):
        xp = devices.xp_of(lp)
        lp64 = devices.to_device(lp, "cpu").astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            nll, lcab = _ctc_tables(lp64, labels, label_len, in_len, blank)
        infinite = np.isinf(nll)
        if zero_infinity:
            nll = np.where(infinite, 0.0, nll)
        frames = np.arange(lp.shape[0])[:, None] < in_len[None, :]
        ctx.save_for_backward(lp)
        ctx.lcab = devices.asarray_on(lcab, lp, lp.dtype)
        ctx.nll = devices.asarray_on(nll, lp, lp.dtype)
        dropped = zero_infinity & infinite
        ctx.keep = devices.asarray_on(frames[:, :, None] & ~dropped[None, :, None], lp)
        return xp.asarray(nll, dtype=lp.dtype)

    @staticmethod
    def backward(ctx, g):
        (lp,) = ctx.saved_tensors
        return CTCLoss._grad(lp, g, ctx), None, None, None, None, None

    @staticmethod
    def differentiable_backward(ctx, g):  # PyTorch has no second derivative of CTC either
        (lp,) = ctx.saved_tensors
        grad = CTCLoss._grad(either.data(lp), either.data(g), ctx)
        return _not_twice(grad), None, None, None, None, None

    @staticmethod
    def _grad(lp, g, ctx):
        with np.errstate(invalid="ignore", over="ignore"):
            grad = np.exp(lp) - np.exp(ctx.lcab + ctx.nll[None, :, None] - lp)
        return np.where(ctx.keep, grad, 0.0).astype(lp.dtype) * g[None, :, None]


def _not_twice(grad) -> Tensor:
    """A gradient that is part of the graph but whose own derivative raises."""
    return DelayedError.apply(wrap(grad).requires_grad_())


def _lengths(value: Any, n: int, name: str) -> np.ndarray:
    if isinstance(value, Tensor):
        arr = devices.to_device(value._data, "cpu")
    else:
        arr = np.asarray(value)
    arr = np.asarray(arr).reshape(-1).astype(np.int64)
    if arr.shape[0] != n:
        raise RuntimeError(f"ctc_loss: Expected tensor to have size at least {n} at dimension "
                           f"1, but got size {arr.shape[0]} for argument #{name}")
    return arr


def ctc_loss(log_probs: Tensor, targets: Tensor, input_lengths: Any, target_lengths: Any,
             blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> Tensor:
    """Connectionist temporal classification loss of (T, N, C) log-probabilities against
    padded (N, S) or concatenated 1-D targets; ``mean`` divides each loss by its target
    length, then averages over the batch."""
    check_tensor(log_probs, "ctc_loss", "log_probs")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if log_probs.ndim not in (2, 3):
        raise RuntimeError(f"ctc_loss: log_probs must be 2-D (T, C) or 3-D (T, N, C), got "
                           f"{list(log_probs.shape)}")
    unbatched = log_probs.ndim == 2
    lp = log_probs.unsqueeze(1) if unbatched else log_probs
    t_max, n, c = lp.shape
    if not 0 <= blank < c:
        raise RuntimeError("ctc_loss: blank must be in label range")
    tgt = devices.to_device(targets._data if isinstance(targets, Tensor) else np.asarray(targets),
                            "cpu").astype(np.int64)
    if unbatched:
        tgt = tgt.reshape(1, -1)
    in_len = _lengths(input_lengths, n, "input_lengths")
    label_len = _lengths(target_lengths, n, "target_lengths")
    if (in_len > t_max).any():
        b = int(np.argmax(in_len > t_max))
        raise RuntimeError(f"ctc_loss: Expected input_lengths to have value at most {t_max}, "
                           f"but got value {in_len[b]} (while checking arguments for ctc_loss_cpu)")
    if (in_len < 1).any():
        raise RuntimeError("ctc_loss: input_lengths must be positive")
    l_max = int(label_len.max()) if n else 0
    labels = np.full((n, max(l_max, 1)), blank, np.int64)
    if tgt.ndim == 1:  # concatenated targets
        if tgt.shape[0] < int(label_len.sum()):
            raise RuntimeError("ctc_loss: targets is shorter than the sum of target_lengths")
        offsets = np.concatenate([[0], np.cumsum(label_len)[:-1]])
        for b in range(n):
            labels[b, :label_len[b]] = tgt[offsets[b]:offsets[b] + label_len[b]]
    else:
        if tgt.shape[1] < l_max:
            raise RuntimeError(f"ctc_loss: Expected tensor to have size at least {l_max} at "
                               f"dimension 1, but got size {tgt.shape[1]} for argument #2 "
                               "'targets' (while checking arguments for ctc_loss_cpu)")
        for b in range(n):
            labels[b, :label_len[b]] = tgt[b, :label_len[b]]
    nll = CTCLoss.apply(lp, labels, label_len, in_len, int(blank), bool(zero_infinity))
    if reduction == "none":
        return nll.reshape(()) if unbatched else nll
    if reduction == "sum":
        return nll.sum()
    div = devices.asarray_on(np.maximum(label_len, 1), lp._data, lp._data.dtype)
    return (nll / wrap(div)).mean()
