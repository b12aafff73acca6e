"""``embedding_bag``: sums, means or maxima of bags of embedding rows, without materializing
the per-bag (B, L, D) tensor (PyTorch's ``F.embedding_bag``).

The looked-up rows (L, D) are ``index_select`` of the weight; ``sum``/``mean`` add them into
their bags with ``scatter_add``; ``max`` picks each bag's winning row per feature on the raw
arrays (first maximum, NaN wins, as PyTorch) and ``gather``s it, so the gradient reaches the
weight exactly where PyTorch's does.
"""

from __future__ import annotations

from typing import Any

from chainrule.devices import np
from chainrule import devices
from chainrule.autograd.grad_mode import no_grad
from chainrule.tensor import Tensor, wrap
from chainrule.creation import zeros
from chainrule.ops.binary import where

__all__ = ["embedding_bag"]


def _bags(input: Tensor, offsets: Any, include_last_offset: bool) -> tuple:
    """(flat indices (L,), bag of each index (L,), number of bags B)."""
    idx = input._data
    if idx.dtype.kind not in "iu":
        raise RuntimeError(f"embedding_bag: Expected tensor for argument 'indices' to have one of "
                           f"the following scalar types: Long, Int; but got {input.dtype} instead")
    if idx.ndim == 2:
        if offsets is not None:
            raise ValueError(f"if input is 2D, then offsets has to be None, as input is treated "
                             f"is a mini-batch of fixed length sequences. However, found offsets "
                             f"of type {type(offsets).__name__}")
        b, n = idx.shape
        return devices.to_device(idx, "cpu").reshape(-1), np.repeat(np.arange(b), n), b
    if idx.ndim != 1:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension "
                         f"{idx.ndim}")
    if offsets is None:
        raise ValueError("offsets has to be a 1D Tensor but got None")
    off = devices.to_device(offsets._data if isinstance(offsets, Tensor)
                            else np.asarray(offsets), "cpu").astype(np.int64)
    if off.ndim != 1:
        raise ValueError("offsets has to be a 1D Tensor")
    length = idx.shape[0]
    if include_last_offset:
        if off.shape[0] < 1:
            raise RuntimeError("embedding_bag: include_last_offset: number of offsets should be "
                               "at least 1")
        starts, b = off[:-1], off.shape[0] - 1
    else:
        starts, b = off, off.shape[0]
    if b and starts[0] != 0:
        raise RuntimeError(f"embedding_bag: offsets[0] has to be 0, i.e., the first sequence in "
                           f"the mini-batch has to start from position 0. However, got "
                           f"{int(starts[0])}")
    if b and (starts[-1] > length or np.any(np.diff(starts) < 0)):
        raise RuntimeError(f"embedding_bag: offsets[-1] can not be greater than input's length "
                           f"({length}), but got offsets[-1] of {int(starts[-1])}")
    bag = np.searchsorted(starts, np.arange(length), side="right") - 1
    if include_last_offset:  # indices past the last offset belong to no bag
        bag = np.where(np.arange(length) < off[-1], bag, -1)
    return devices.to_device(idx, "cpu"), bag, b


def _renorm(weight: Tensor, rows: np.ndarray, max_norm: float, norm_type: float) -> None:
    """Rescale the looked-up rows whose norm exceeds ``max_norm`` in place (no gradient)."""
    with no_grad():
        w = weight._data
        rows = devices.asarray_on(np.unique(rows), w)
        norms = devices.xp_of(w).linalg.norm(w[rows], ord=norm_type, axis=1, keepdims=True)
        scale = devices.xp_of(w).where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        w[rows] = w[rows] * scale.astype(w.dtype)


def embedding_bag(input: Tensor, weight: Tensor, offsets: Any = None, max_norm: float | None = None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Tensor | None = None,
                  include_last_offset: bool = False, padding_idx: int | None = None) -> Tensor:
    """(B, D) reductions of bags of rows of ``weight``: fixed-size bags from a 2-D ``input``, or
    a 1-D ``input`` split at ``offsets``; ``padding_idx`` rows are left out (and not counted)."""
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError("embedding_bag(): input and weight must be Tensors")
    if weight.ndim != 2:
        raise ValueError(f"weight has to be a 2D Tensor, but got Tensor of dimension "
                         f"{weight.ndim}")
    if per_sample_weights is not None and tuple(per_sample_weights.shape) != tuple(input.shape):
        raise ValueError(f"embedding_bag: If per_sample_weights ({per_sample_weights.shape}) is "
                         f"not None, then it must have the same shape as the input "
                         f"({input.shape})")
    if mode not in ("sum", "mean", "max"):
        raise ValueError("mode has to be one of sum, mean or max")
    if mode == "max" and scale_grad_by_freq:
        raise ValueError("max mode does not support scaling the gradient by the frequency")
    if mode == "max" and sparse:
        raise ValueError("max mode does not support sparse weights")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(
            f"embedding_bag: per_sample_weights was not None. per_sample_weights is only "
            f"supported for mode='sum' (got mode='{mode}'). Please open a feature request on "
            "GitHub.")
    if per_sample_weights is not None and per_sample_weights.dtype != weight.dtype:
        raise RuntimeError(
            f"Expected tensor for argument #1 'weight' to have the same type as tensor for "
            f"argument #1 'per_sample_weights'; but type {weight.type()} does not equal "
            f"{per_sample_weights.type()} (while checking arguments for embedding_bag)")
    num, dim = weight.shape
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise AssertionError("padding_idx must be within the number of embeddings")
        padding_idx %= num
    idx, bag, b = _bags(input, offsets, include_last_offset)
    if idx.size and (idx.min() < 0 or idx.max() >= num):
        bad = int(idx.max() if idx.max() >= num else idx.min())
        raise IndexError(f"embedding_bag: index {bad} out of range for weight with {num} rows "
                         "(index out of range in self)")
    if max_norm is not None:  # (torch's embedding_renorm_ counts a version even with no rows)
        if idx.size:
            _renorm(weight, idx, max_norm, norm_type)
        weight._bump_version()
    keep = bag >= 0
    if padding_idx is not None:
        keep &= idx != padding_idx
    like = weight._data
    sel = np.flatnonzero(keep)
    used, used_bag = idx[sel], bag[sel]
    rows = weight.index_select(0, wrap(devices.asarray_on(used, like, np.int64)))  # (L', D)
    if scale_grad_by_freq and used.size:  # the gradient of each row is divided by its count
        counts = np.bincount(used, minlength=num)[used]
        inv = wrap(devices.asarray_on((1.0 / counts)[:, None], like, like.dtype))
        rows = rows.detach() + (rows - rows.detach()) * inv
    if per_sample_weights is not None:
        psw = per_sample_weights.reshape(-1).index_select(
            0, wrap(devices.asarray_on(sel, like, np.int64)))
        rows = rows * psw.unsqueeze(1)

    if mode == "max":
        return _bag_max(rows, used_bag, b, dim, like)
    target = wrap(devices.asarray_on(np.broadcast_to(used_bag[:, None], (used.size, dim)), like,
                                     np.int64))
    out = zeros(b, dim, dtype=weight.dtype, device=weight.device).scatter_add(0, target, rows)
    if mode == "mean":
        count = np.maximum(np.bincount(used_bag, minlength=b)[:b], 1)
        out = out / wrap(devices.asarray_on(count[:, None], like, like.dtype))
    return out


def _bag_max(rows: Tensor, bag: np.ndarray, b: int, dim: int, like) -> Tensor:
    """Each bag's maximum per feature (empty bags give 0)."""
    if rows.shape[0] == 0:
        return zeros(b, dim, dtype=rows.dtype, device=rows.device)
    r = devices.to_device(rows._data, "cpu")
    nonempty = np.bincount(bag, minlength=b)[:b] > 0
    starts = np.searchsorted(bag, np.flatnonzero(nonempty), side="left")  # increasing, < L
    nan = np.isnan(r)
    best = np.maximum.reduceat(np.where(nan, -np.inf, r), starts, axis=0)
    pos = np.arange(r.shape[0])[:, None]
    # the first maximum per bag and feature; a NaN wins (the first one, as PyTorch's scan)
    where_bag = np.cumsum(nonempty) - 1  # bag -> its row among the nonempty bags
    first = np.minimum.reduceat(np.where(r == best[where_bag[bag]], pos, r.shape[0]), starts,
                                axis=0)
    first_nan = np.minimum.reduceat(np.where(nan, pos, r.shape[0]), starts, axis=0)
    winner = devices.xp_of(first).zeros((b, dim), np.int64)  # batched like first in vmap
    winner[nonempty] = np.where(first_nan < r.shape[0], first_nan, first)
    y = rows.gather(0, wrap(devices.asarray_on(winner, like, np.int64)))
    # empty bags give 0 and pass no gradient (selected, not multiplied by 0: a NaN or inf
    # gradient of an empty bag must not reach the weight's row 0)
    return where(wrap(devices.asarray_on(nonempty[:, None], like, bool)), y, 0.0)
