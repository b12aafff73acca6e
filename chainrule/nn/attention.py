"""Scaled dot-product attention: softmax(Q Kᵀ · scale + mask) V (PyTorch's semantics).

One fused gate (``Attention``) without dropout; with dropout, ordinary differentiable ops
(matmul, softmax, dropout). Under ``create_graph`` the gate's backward recomputes the weights
with those ops, so gradients of any order come from the engine.
"""

from __future__ import annotations

import math

import contextlib
import enum

from chainrule import backends as _backends
from chainrule.dtypes import FLOAT_KINDS
from chainrule.devices import np, xp_of
from chainrule.amp import autocast_mode as _amp
from chainrule.autograd.function import Op
from chainrule.kernels import kernels_for
from chainrule.kernels.matmul import matmul as _mm
from chainrule.nn.dropout import dropout
from chainrule.ops import either
from chainrule.ops.reduce import softmax
from chainrule.tensor import Tensor, wrap

__all__ = ["scaled_dot_product_attention", "sdpa_kernel", "SDPBackend"]


def _check(t, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"scaled_dot_product_attention(): argument '{name}' must be Tensor, not "
                        f"{type(t).__name__}")
    if t.ndim < 2:
        raise RuntimeError(f"scaled_dot_product_attention: expected {name} to have at least 2 "
                           f"dimensions (..., L, E), but got {name} of size {list(t.shape)}")
    if t._data.dtype.kind not in FLOAT_KINDS:
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
    if _amp.active and (out := _amp.run(
            "scaled_dot_product_attention", scaled_dot_product_attention, query, key, value,
            attn_mask, dropout_p, is_causal, scale, enable_gqa)) is not None:
        return out
    if not (_SDP["math"] or _SDP["flash"]):
        raise RuntimeError(
            "No viable backend for scaled_dot_product_attention was found: chainrule's "
            "implementation runs as the MATH or FLASH_ATTENTION backend, and sdpa_kernel (or "
            "torch.backends.cuda.enable_*_sdp) has turned both off")
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
    mask = None  # additive: 0 where a query may attend, -inf where not
    if is_causal:
        xp = xp_of(query._data)  # on the query's device
        mask = wrap(xp.where(xp.tril(xp.ones((L, S), dtype=bool)), 0.0, -np.inf)
                    .astype(query._data.dtype))
    elif attn_mask is not None:
        mask = attn_mask if isinstance(attn_mask, Tensor) else wrap(np.asarray(attn_mask))
        if mask._data.dtype == np.bool_:
            mask = wrap(np.where(mask._data, 0.0, -np.inf).astype(query._data.dtype))
        try:
            scores_shape = np.broadcast_shapes(q_shape[:-2], k_shape[:-2]) + (L, S)
            np.broadcast_shapes(tuple(mask.shape), scores_shape)
        except ValueError:
            raise RuntimeError(
                f"scaled_dot_product_attention: attn_mask of size {list(mask.shape)} does not "
                f"broadcast to the attention scores of size {list(scores_shape)}"
            ) from None
    if dropout_p == 0.0 and _fusable(query, key, value, mask):
        return Attention.apply(query, key, value, mask, float(scale))
    weights = _weights(query, key, mask, float(scale))
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, True)
    return weights @ value


def _weights(query: Tensor, key: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """softmax(Q Kᵀ · scale + mask) over the keys, from differentiable ops."""
    scores = (query @ key.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask
    # Rows that may attend nowhere get all-zero weights (PyTorch's "safe softmax"), not NaN.
    dead = np.all(np.isneginf(scores._data), axis=-1, keepdims=True)
    if dead.any():
        dead_t = wrap(dead)
        return softmax(scores.masked_fill(dead_t, 0.0), -1).masked_fill(dead_t, 0.0)
    return softmax(scores, -1)


def _fusable(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None) -> bool:
    dtype = query._data.dtype
    if key._data.dtype != dtype or value._data.dtype != dtype or 0 in query.shape[-2:]:
        return False
    if key.shape[-2] == 0 or (mask is not None and (mask._data.dtype != dtype or mask.ndim < 2)):
        return False
    try:
        np.broadcast_shapes(tuple(query.shape[:-2]), tuple(key.shape[:-2]),
                            tuple(value.shape[:-2]))
    except ValueError:
        return False  # the composition raises matmul's error
    return True


class Attention(Op):
    """y = W V with W = softmax(scale·Q Kᵀ + M) over the keys;  dV = Wᵀ g,
    dM = W ⊙ (g Vᵀ - Σ_keys W ⊙ g Vᵀ),  dQ = scale·dM K,  dK = scale·dMᵀ Q"""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale):
        # W is kept key-major, as Wᵀ (..., S, L): NumPy reduces over axis -2 with vector ops but
        # over a short last axis one row at a time (4× slower).
        wt = _mm(k, np.swapaxes(q, -1, -2))
        wt *= scale
        if mask is not None:
            wt = wt + np.swapaxes(mask, -1, -2)
        top = wt.max(-2, keepdims=True)
        if mask is not None:  # queries that may attend nowhere get zero weights, not NaN
            dead = np.isneginf(top)
            top[dead] = 0.0
        wt -= top
        np.exp(wt, out=wt)
        total = wt.sum(-2, keepdims=True)
        if mask is not None:
            total[dead] = 1.0
        wt /= total
        ctx.save_for_backward(q, k, v, mask, wt)  # wt: a constant, recomputed under create_graph
        ctx.scale = scale
        return _mm(np.swapaxes(wt, -1, -2), v)

    @staticmethod
    def backward(ctx, g):
        q, k, v, mask, wt = ctx.saved_tensors
        scale = ctx.scale
        need_q, need_k, need_v, need_mask = ctx.needs_input_grad[:4]
        K = kernels_for(g)
        wt = K.attention_weights_t(q, k, mask, scale, wt)
        gv = either.matmul(wt, g) if need_v else None
        dm = either.matmul(v, either.swapaxes(g, -1, -2))  # (g Vᵀ)ᵀ
        dm = K.softmax_backward(dm, wt, -2)
        gmask = either.swapaxes(dm, -1, -2) if need_mask else None
        dm = dm * scale
        gq = either.matmul(either.swapaxes(dm, -1, -2), k) if need_q else None
        gk = either.matmul(dm, q) if need_k else None
        return gq, gk, gv, gmask, None


# ---- torch.nn.attention: choosing the SDPA backend ------------------------------------------
_SDP = _backends.SDP


class SDPBackend(enum.IntEnum):
    """torch's names for the attention implementations (``sdpa_kernel`` picks among them)."""

    ERROR = -1
    MATH = 0
    FLASH_ATTENTION = 1
    EFFICIENT_ATTENTION = 2
    CUDNN_ATTENTION = 3
    OVERRIDEABLE = 4

    def __repr__(self) -> str:
        return f"<SDPBackend.{self.name}: {self.value}>"

    __str__ = enum.Enum.__str__


_SWITCH = {SDPBackend.MATH: "math", SDPBackend.FLASH_ATTENTION: "flash",
           SDPBackend.EFFICIENT_ATTENTION: "mem_efficient", SDPBackend.CUDNN_ATTENTION: "cudnn"}


@contextlib.contextmanager
def sdpa_kernel(backends, set_priority: bool = False):
    """Only the listed backends are enabled inside the block (torch's switches in
    ``torch.backends.cuda`` are set and restored). chainrule has one exact implementation,
    which runs while MATH or FLASH_ATTENTION is enabled; otherwise attention raises, as torch's
    CPU kernels do. ``set_priority`` orders torch's choice among several: nothing to order."""
    if not isinstance(backends, (list, SDPBackend)):
        raise AssertionError("Backend must be an instance of SDPBackend or a list of SDPBackend "
                             f"instances, got {type(backends).__name__}")
    chosen = [backends] if isinstance(backends, SDPBackend) else list(backends)
    for b in chosen:
        if not isinstance(b, SDPBackend) and b not in set(SDPBackend):
            raise AssertionError("Backend must be an instance of SDPBackend or a list of "
                                 f"SDPBackend instances, got a list holding {b!r}")
    chosen = {SDPBackend(b) for b in chosen}
    prev = dict(_SDP)
    for backend, switch in _SWITCH.items():
        _SDP[switch] = backend in chosen
    try:
        yield {}
    finally:
        _SDP.update(prev)
