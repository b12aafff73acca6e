"""``multi_head_attention_forward``: MultiheadAttention's computation with explicit weights
(PyTorch's functional form, sequence-first layout). It runs the module's own forward on a
holder of the given tensors, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from chainrule.tensor import Tensor

__all__ = ["multi_head_attention_forward"]


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
    from chainrule.nn.functional import linear
    from chainrule.nn.module import Module
    from chainrule.nn.modules.attention import MultiheadAttention

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
    holder = object.__new__(MultiheadAttention)
    Module.__init__(holder)
    holder.training = training
    holder.embed_dim, holder.num_heads = embed_dim, num_heads
    holder.head_dim = embed_dim // num_heads
    holder.kdim = key.shape[-1]
    holder.vdim = value.shape[-1]
    holder._qkv_same_embed_dim = not use_separate_proj_weight
    holder.batch_first = False
    holder.dropout = dropout_p
    holder.in_proj_weight, holder.in_proj_bias = in_proj_weight, in_proj_bias
    holder.q_proj_weight, holder.k_proj_weight = q_proj_weight, k_proj_weight
    holder.v_proj_weight = v_proj_weight
    holder.bias_k, holder.bias_v = bias_k, bias_v
    holder.add_zero_attn = add_zero_attn

    def out_proj(x: Any) -> Any:
        return linear(x, out_proj_weight, out_proj_bias)

    holder.out_proj = out_proj
    return MultiheadAttention.forward(holder, query, key, value,
                                      key_padding_mask=key_padding_mask,
                                      need_weights=need_weights, attn_mask=attn_mask,
                                      average_attn_weights=average_attn_weights,
                                      is_causal=is_causal)
