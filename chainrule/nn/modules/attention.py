"""MultiheadAttention with PyTorch's parameters (in_proj_weight, in_proj_bias, out_proj) and
semantics (masks, batch_first, averaged attention weights)."""

from __future__ import annotations

import math
from typing import Any

from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np
from chainrule.creation import empty, zeros
from chainrule.nn import functional as F
from chainrule.nn import init
from chainrule.nn.attention import scaled_dot_product_attention
from chainrule.nn.module import Module
from chainrule.nn.modules.linear import NonDynamicallyQuantizableLinear
from chainrule.nn.parameter import Parameter
from chainrule.ops.reduce import softmax
from chainrule.ops.shape import cat
from chainrule.tensor import Tensor, wrap

__all__ = ["MultiheadAttention"]


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


class MultiheadAttention(Module):
    """Attention over ``num_heads`` subspaces: concat(head₁..head_h) W_oᵀ + b_o, where
    head_i = softmax(Q_i K_iᵀ / √d) V_i and Q, K, V are linear projections of the inputs."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False,
                 kdim: int | None = None, vdim: int | None = None, batch_first: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got embed_dim="
                             f"{embed_dim} and num_heads={num_heads} instead")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise AssertionError("embed_dim must be divisible by num_heads")
        kw = {"dtype": dtype, "device": device}
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, **kw))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(empty(embed_dim, embed_dim, **kw))
            self.k_proj_weight = Parameter(empty(embed_dim, self.kdim, **kw))
            self.v_proj_weight = Parameter(empty(embed_dim, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = Parameter(empty(1, 1, embed_dim, **kw))
            self.bias_v = Parameter(empty(1, 1, embed_dim, **kw))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """PyTorch's init: xavier_uniform projections, zero biases, xavier_normal bias_k/v."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def _projections(self) -> tuple:
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            ws = (w[:e], w[e:2 * e], w[2 * e:])
        else:
            ws = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        b = self.in_proj_bias
        bs = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        return ws, bs

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Tensor | None = None, need_weights: bool = True,
                attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple:
        """Return (attn_output, attn_weights); weights are None unless ``need_weights``."""
        for t, name in ((query, "query"), (key, "key"), (value, "value")):
            if not isinstance(t, Tensor):
                raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got "
                                f"{type(t).__name__}")
        batched = query.ndim == 3
        packed = self._qkv_same_embed_dim and query is key and key is value  # self-attention
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise AssertionError(
                f"MultiheadAttention: query, key and value must all be 2-D (unbatched) or 3-D "
                f"(batched), but got query {list(query.shape)}, key {list(key.shape)} and value "
                f"{list(value.shape)}"
            )
        # Work in the caller's layout (no transposed copies): b is the batch axis, 1 - b the
        # sequence axis; an unbatched input gets a batch axis in front.
        b = 0 if self.batch_first or not batched else 1
        if not batched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        N, L, E = query.shape[b], query.shape[1 - b], query.shape[2]
        S = key.shape[1 - b]
        H, hd = self.num_heads, self.head_dim
        if E != self.embed_dim:
            raise AssertionError(f"MultiheadAttention: was expecting embedding dimension of "
                                 f"{self.embed_dim}, but got {E} (query {list(query.shape)})")
        if key.shape[:2] != value.shape[:2] or key.shape[b] != N:
            raise AssertionError(
                f"MultiheadAttention: key and value must have the same sequence length and batch "
                f"size as each other and the query's batch size, but got query "
                f"{list(query.shape)}, key {list(key.shape)} and value {list(value.shape)}"
            )
        if key.shape[-1] != self.kdim or value.shape[-1] != self.vdim:
            raise AssertionError(
                f"MultiheadAttention: expected key[..., {self.kdim}] and value[..., {self.vdim}], "
                f"but got key {list(key.shape)} and value {list(value.shape)}"
            )
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "Need attn_mask if specifying the is_causal hint. You may use the Transformer "
                "module method `generate_square_subsequent_mask` to create this mask."
            )
        dtype = query.dtype
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
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).split(E, -1)
        else:
            (wq, wk, wv), (bq, bk, bv) = self._projections()
            q = F.linear(query, wq, bq)
            k = F.linear(key, wk, bk)
            v = F.linear(value, wv, bv)
        extra_cols = 0
        if self.bias_k is not None and self.bias_v is not None:
            one = (N, 1, E) if b == 0 else (1, N, E)
            k = cat([k, self.bias_k.expand(*one)], 1 - b)
            v = cat([v, self.bias_v.expand(*one)], 1 - b)
            extra_cols += 1

        def heads(t: Tensor) -> Tensor:  # (N, S, E) or (S, N, E) -> (N, H, S, hd)
            t = t.reshape(*t.shape[:2], H, hd)
            return t.permute(0, 2, 1, 3) if b == 0 else t.permute(1, 2, 0, 3)

        q, k, v = heads(q), heads(k), heads(v)
        if self.add_zero_attn:
            z = zeros(N, H, 1, hd, dtype=dtype, device=q.device)
            k = cat([k, z], 2)
            v = cat([v, z], 2)
            extra_cols += 1
        mask = attn_mask
        if key_padding_mask is not None:
            kpm = key_padding_mask.reshape(N, 1, 1, S)
            mask = kpm if mask is None else mask + kpm
        if mask is not None and extra_cols:
            mask = F.pad(mask, (0, extra_cols))
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q * (1.0 / math.sqrt(hd))) @ k.transpose(-2, -1)
            if mask is not None:
                scores = scores + mask
            weights = softmax(scores, -1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, dropout_p, True)
            out = weights @ v
        else:
            weights = None
            out = scaled_dot_product_attention(q, k, v, mask, dropout_p)
        if b == 0:
            out = out.permute(0, 2, 1, 3).reshape(N, L, E)
        else:
            out = out.permute(2, 0, 1, 3).reshape(L, N, E)
        out = self.out_proj(out)
        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        if not batched:
            out = out.squeeze(0)
            if weights is not None:
                weights = weights.squeeze(0)
        return out, weights
