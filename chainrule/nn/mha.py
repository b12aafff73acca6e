"""Multi-head attention with explicit weights: ``multihead_attention`` is the computation
``nn.MultiheadAttention.forward`` runs on its own parameters, and ``multi_head_attention_forward``
PyTorch's functional form (sequence-first layout) over the same function, so the two cannot drift
apart."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from chainrule.creation import zeros
from chainrule.devices import np
from chainrule.dtypes import FLOAT_KINDS
from chainrule.nn.attention import scaled_dot_product_attention
from chainrule.nn.dropout import dropout
from chainrule.nn.linear import linear
from chainrule.ops.reduce import softmax
from chainrule.ops.shape import cat, pad
from chainrule.tensor import Tensor, wrap

__all__ = ["multi_head_attention_forward"]


def _as_float_mask(mask: Any, np_dtype, name: str) -> Tensor | None:
    """A bool mask (True = masked out) becomes 0 / -inf; a float mask is used as is."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(mask).__name__}")
    data = mask._data
    if data.dtype == np.bool_:
        return wrap(np.where(data, -np.inf, 0.0).astype(np_dtype))
    if data.dtype.kind not in FLOAT_KINDS:
        raise AssertionError(f"only bool and floating types of {name} are supported")
    return mask


def multihead_attention(
        query: Tensor, key: Tensor, value: Tensor, *, embed_dim: int, num_heads: int, kdim: int,
        vdim: int, same_embed_dim: bool, in_proj_weight: Tensor | None,
        in_proj_bias: Tensor | None, q_proj_weight: Tensor | None, k_proj_weight: Tensor | None,
        v_proj_weight: Tensor | None, bias_k: Tensor | None, bias_v: Tensor | None,
        add_zero_attn: bool, dropout_p: float, out_proj: Callable, batch_first: bool,
        key_padding_mask: Tensor | None, need_weights: bool, attn_mask: Tensor | None,
        average_attn_weights: bool, is_causal: bool) -> tuple:
    """(attn_output, attn_weights): concat(head₁..head_h) through ``out_proj``, where
    head_i = softmax(Q_i K_iᵀ / √d + mask) V_i and Q, K, V are the inputs' projections (one
    packed projection when ``same_embed_dim``); weights are None unless ``need_weights``."""
    head_dim = embed_dim // num_heads
    batched = query.ndim == 3
    packed = same_embed_dim and query is key and key is value  # self-attention
    if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
        raise AssertionError(
            f"MultiheadAttention: query, key and value must all be 2-D (unbatched) or 3-D "
            f"(batched), but got query {list(query.shape)}, key {list(key.shape)} and value "
            f"{list(value.shape)}"
        )
    # Work in the caller's layout (no transposed copies): b is the batch axis, 1 - b the
    # sequence axis; an unbatched input gets a batch axis in front.
    b = 0 if batch_first or not batched else 1
    if not batched:
        query, key, value = (t.unsqueeze(0) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    N, L, E = query.shape[b], query.shape[1 - b], query.shape[2]
    S = key.shape[1 - b]
    H, hd = num_heads, head_dim
    if E != embed_dim:
        raise AssertionError(f"MultiheadAttention: was expecting embedding dimension of "
                             f"{embed_dim}, but got {E} (query {list(query.shape)})")
    if key.shape[:2] != value.shape[:2] or key.shape[b] != N:
        raise AssertionError(
            f"MultiheadAttention: key and value must have the same sequence length and batch "
            f"size as each other and the query's batch size, but got query "
            f"{list(query.shape)}, key {list(key.shape)} and value {list(value.shape)}"
        )
    if key.shape[-1] != kdim or value.shape[-1] != vdim:
        raise AssertionError(
            f"MultiheadAttention: expected key[..., {kdim}] and value[..., {vdim}], "
            f"but got key {list(key.shape)} and value {list(value.shape)}"
        )
    if is_causal and attn_mask is None:
        raise RuntimeError(
            "Need attn_mask if specifying the is_causal hint. You may use the Transformer "
            "module method `generate_square_subsequent_mask` to create this mask."
        )
    dtype = query.dtype
    if key_padding_mask is not None and attn_mask is not None and \
            key_padding_mask.dtype != attn_mask.dtype:
        warnings.warn("Support for mismatched key_padding_mask and attn_mask is deprecated. Use "
                      "same type for both instead.", stacklevel=3)
    attn_mask = _as_float_mask(attn_mask, query._data.dtype, "attn_mask")
    key_padding_mask = _as_float_mask(key_padding_mask, query._data.dtype, "key_padding_mask")
    if attn_mask is not None:
        if attn_mask.ndim == 2:
            if tuple(attn_mask.shape) != (L, S):
                raise RuntimeError(f"The shape of the 2D attn_mask is {list(attn_mask.shape)}"
                                   f", but should be {(L, S)}.")
            attn_mask = attn_mask.reshape(1, 1, L, S)
        elif attn_mask.ndim == 3:
            if tuple(attn_mask.shape) != (N * H, L, S):
                raise RuntimeError(f"The shape of the 3D attn_mask is {list(attn_mask.shape)}"
                                   f", but should be {(N * H, L, S)}.")
            attn_mask = attn_mask.reshape(N, H, L, S)
        else:
            raise RuntimeError(f"attn_mask's dimension {attn_mask.ndim} is not supported")
    if key_padding_mask is not None and tuple(key_padding_mask.shape) != (N, S):
        raise AssertionError(f"expecting key_padding_mask shape of {(N, S)}, but got "
                             f"{list(key_padding_mask.shape)}")

    if packed:  # one GEMM for q, k and v
        q, k, v = linear(query, in_proj_weight, in_proj_bias).split(E, -1)
    else:
        if same_embed_dim:
            wq, wk, wv = in_proj_weight[:E], in_proj_weight[E:2 * E], in_proj_weight[2 * E:]
        else:
            wq, wk, wv = q_proj_weight, k_proj_weight, v_proj_weight
        ib = in_proj_bias
        bq, bk, bv = (None, None, None) if ib is None else (ib[:E], ib[E:2 * E], ib[2 * E:])
        q = linear(query, wq, bq)
        k = linear(key, wk, bk)
        v = linear(value, wv, bv)
    extra_cols = 0
    if bias_k is not None and bias_v is not None:
        one = (N, 1, E) if b == 0 else (1, N, E)
        k = cat([k, bias_k.expand(*one)], 1 - b)
        v = cat([v, bias_v.expand(*one)], 1 - b)
        extra_cols += 1

    def heads(t: Tensor) -> Tensor:  # (N, S, E) or (S, N, E) -> (N, H, S, hd)
        t = t.reshape(*t.shape[:2], H, hd)
        return t.permute(0, 2, 1, 3) if b == 0 else t.permute(1, 2, 0, 3)

    q, k, v = heads(q), heads(k), heads(v)
    if add_zero_attn:
        z = zeros(N, H, 1, hd, dtype=dtype, device=q.device)
        k = cat([k, z], 2)
        v = cat([v, z], 2)
        extra_cols += 1
    mask = attn_mask
    if key_padding_mask is not None:
        kpm = key_padding_mask.reshape(N, 1, 1, S)
        mask = kpm if mask is None else mask + kpm
    if mask is not None and extra_cols:
        mask = pad(mask, (0, extra_cols))
    if need_weights:
        scores = (q * (1.0 / math.sqrt(hd))) @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores + mask
        weights = softmax(scores, -1)
        if dropout_p > 0.0:
            weights = dropout(weights, dropout_p, True)
        out = weights @ v
    else:
        weights = None
        out = scaled_dot_product_attention(q, k, v, mask, dropout_p)
    # torch projects the output in (L, N, E) order and returns a batch_first result as its
    # transposed view (strides (E, N*E, 1)): a later dropout's noise follows that layout
    out = out_proj(out.permute(2, 0, 1, 3).reshape(L, N, E))
    if b == 0:
        out = out.transpose(0, 1)
    if weights is not None and average_attn_weights:
        weights = weights.mean(1)
    if not batched:
        out = out.squeeze(0)
        if weights is not None:
            weights = weights.squeeze(0)
    return out, weights


def multi_head_attention_forward(
        query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
        in_proj_weight: Tensor | None, in_proj_bias: Tensor | None, bias_k: Tensor | None,
        bias_v: Tensor | None, add_zero_attn: bool, dropout_p: float, out_proj_weight: Tensor,
        out_proj_bias: Tensor | None, training: bool = True,
        key_padding_mask: Tensor | None = None, need_weights: bool = True,
        attn_mask: Tensor | None = None, use_separate_proj_weight: bool = False,
        q_proj_weight: Tensor | None = None, k_proj_weight: Tensor | None = None,
        v_proj_weight: Tensor | None = None, static_k: Tensor | None = None,
        static_v: Tensor | None = None, average_attn_weights: bool = True,
        is_causal: bool = False) -> tuple:
    """(attn_output, attn_weights) of multi-head attention over (L, N, E) query and (S, N, E)
    key/value (unbatched: no N), as ``nn.MultiheadAttention`` computes them."""
    if static_k is not None or static_v is not None:
        raise NotImplementedError("multi_head_attention_forward: static_k/static_v are not "
                                  "supported by chainrule")
    embed_dim = query.shape[-1]
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but "
                             f"got {embed_dim}")
    if embed_dim % num_heads:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if q_proj_weight is None or k_proj_weight is None or v_proj_weight is None:
            raise AssertionError("use_separate_proj_weight is True but q_proj_weight, "
                                 "k_proj_weight or v_proj_weight is None")
        if tuple(key.shape[:-1]) != tuple(value.shape[:-1]):
            raise AssertionError(f"key's sequence and batch dims {tuple(key.shape[:-1])} do not "
                                 f"match value's {tuple(value.shape[:-1])}")
    else:
        if in_proj_weight is None:
            raise AssertionError("use_separate_proj_weight is False but in_proj_weight is None")
        if tuple(key.shape) != tuple(value.shape):
            raise AssertionError(f"key shape {tuple(key.shape)} does not match value shape "
                                 f"{tuple(value.shape)}")
    if (bias_k is None) != (bias_v is None):
        raise AssertionError("bias_k is set but bias_v is None" if bias_v is None
                             else "bias_v is set but bias_k is None")
    return multihead_attention(
        query, key, value, embed_dim=embed_dim, num_heads=num_heads, kdim=key.shape[-1],
        vdim=value.shape[-1], same_embed_dim=not use_separate_proj_weight,
        in_proj_weight=in_proj_weight, in_proj_bias=in_proj_bias, q_proj_weight=q_proj_weight,
        k_proj_weight=k_proj_weight, v_proj_weight=v_proj_weight, bias_k=bias_k, bias_v=bias_v,
        add_zero_attn=add_zero_attn, dropout_p=dropout_p if training else 0.0,
        out_proj=lambda x: linear(x, out_proj_weight, out_proj_bias), batch_first=False,
        key_padding_mask=key_padding_mask, need_weights=need_weights, attn_mask=attn_mask,
        average_attn_weights=average_attn_weights, is_causal=is_causal)
