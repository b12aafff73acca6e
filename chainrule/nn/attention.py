"""Scaled dot-product attention: softmax(Q Kᵀ · scale + mask) V (PyTorch's semantics).

Written with ordinary differentiable ops (matmul, masked_fill, softmax), so gradients of any
order come from the engine.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.ops.reduce import softmax
from chainrule.tensor import Tensor, wrap

__all__ = ["scaled_dot_product_attention"]


def _check(t, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"scaled_dot_product_attention(): argument '{name}' must be Tensor, not "
                        f"{type(t).__name__}")
    if t.ndim < 2:
        raise RuntimeError(f"scaled_dot_product_attention: expected {name} to have at least 2 "
                           f"dimensions (..., L, E), but got {name} of size {list(t.shape)}")
    if t._data.dtype.kind != "f":
        raise RuntimeError(f"scaled_dot_product_attention: expected {name} to be a floating "
                           f"point tensor, but got {t.dtype}")


def _repeat_heads(t: Tensor, groups: int) -> Tensor:
    """(..., Hk, S, E) -> (..., Hk·groups, S, E), each head repeated ``groups`` times."""
    shape = tuple(t.shape)
    t = t.unsqueeze(-3).expand(*shape[:-2], groups, *shape[-2:])
    return t.reshape(*shape[:-3], shape[-3] * groups, *shape[-2:])


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(Q Kᵀ · scale + mask) V; a bool mask marks the positions that may be attended."""
    _check(query, "query")
    _check(key, "key")
    _check(value, "value")
    q_shape, k_shape, v_shape = list(query.shape), list(key.shape), list(value.shape)
    if q_shape[-1] != k_shape[-1] or k_shape[-2] != v_shape[-2]:
        raise RuntimeError(
            f"scaled_dot_product_attention: expected query[..., L, E], key[..., S, E] and "
            f"value[..., S, Ev], but got query {q_shape}, key {k_shape} and value {v_shape}"
        )
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        hq, hk, hv = query.shape[-3], key.shape[-3], value.shape[-3]
        if hq % hk or hq % hv:
            raise RuntimeError(
                f"scaled_dot_product_attention: number of heads in key and value must divide "
                f"the number of heads in query (query {q_shape}, key {k_shape}, value {v_shape})"
            )
        key, value = _repeat_heads(key, hq // hk), _repeat_heads(value, hq // hv)
    if is_causal and attn_mask is not None:
        raise RuntimeError(
            "scaled_dot_product_attention: Explicit attn_mask should not be set when "
            "is_causal=True"
        )
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1], got "
                         f"{dropout_p}")
    L, S = q_shape[-2], k_shape[-2]
    if scale is None:
        scale = 1.0 / math.sqrt(q_shape[-1])
    scores = (query @ key.transpose(-2, -1)) * float(scale)
    if is_causal:
        allowed = np.tril(np.ones((L, S), dtype=bool))
        scores = scores.masked_fill(wrap(~allowed), -math.inf)
    elif attn_mask is not None:
        mask = attn_mask if isinstance(attn_mask, Tensor) else wrap(np.asarray(attn_mask))
        try:
            if mask._data.dtype == np.bool_:
                scores = scores.masked_fill(~mask, -math.inf)
            else:
                scores = scores + mask
        except RuntimeError as err:
            raise RuntimeError(
                f"scaled_dot_product_attention: attn_mask of size {list(mask.shape)} does not "
                f"broadcast to the attention scores of size {list(scores.shape)}"
            ) from err
    # Rows that may attend nowhere get all-zero weights (PyTorch's "safe softmax"), not NaN.
    dead = np.all(np.isneginf(scores._data), axis=-1, keepdims=True)
    if dead.any():
        dead_t = wrap(dead)
        weights = softmax(scores.masked_fill(dead_t, 0.0), -1).masked_fill(dead_t, 0.0)
    else:
        weights = softmax(scores, -1)
    if dropout_p > 0.0:
        from chainrule.nn.functional import dropout

        weights = dropout(weights, dropout_p, True)
    return weights @ value
