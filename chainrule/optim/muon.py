"""Muon: momentum, then Newton–Schulz orthogonalization of the update (PyTorch's, in bfloat16).

The orthogonalization runs, as PyTorch's does, on bfloat16 values: each intermediate matrix is
computed in float32 and rounded to bfloat16 (round to nearest even) where PyTorch stores a
bfloat16 tensor. The rounding is done on float32 bit patterns here, so Muon needs no bfloat16
array type (no ml_dtypes); matrix products accumulate in float32 as PyTorch's CPU bfloat16
products do (for large matrices their summation order may differ in the last float32 bit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from chainrule import devices
from chainrule.optim.adam import lerp_
from chainrule.optim.optimizer import Optimizer, ParamsT, check_scalar_tensor, to_scalar

__all__ = ["Muon"]

# the defaults of PyTorch's Muon (Keller Jordan's quintic Newton–Schulz coefficients)
EPS = 1e-7
DEFAULT_A = 3.4445
DEFAULT_B = -4.7750
DEFAULT_C = 2.0315
DEFAULT_NS_STEPS = 5
_ADJUST_LR_FNS = ("original", "match_rms_adamw")


def round_to_bfloat16(x):
    """float32 values rounded to the nearest bfloat16 (ties to even), kept as float32; NaN
    stays NaN, values beyond bfloat16's range become ±inf (as a cast to bfloat16 does)."""
    xp = devices.xp_of(x)
    x = xp.ascontiguousarray(x, dtype=xp.float32)
    bits = x.view(xp.uint32)
    lsb = (bits >> xp.uint32(16)) & xp.uint32(1)
    rounded = (bits + xp.uint32(0x7FFF) + lsb) & xp.uint32(0xFFFF0000)
    out = rounded.view(xp.float32)
    nan = xp.isnan(x)
    if nan.any():
        out = xp.where(nan, x, out)
    return out


def zeropower_via_newtonschulz(g, ns_coefficients: tuple, ns_steps: int, eps: float):
    """``ns_steps`` quintic Newton–Schulz iterations ``X ← aX + (bXXᵀ + c(XXᵀ)²)X`` from
    ``X = G/‖G‖_F`` (in bfloat16): an approximate orthogonalization ``≈ UVᵀ`` of ``G = USVᵀ``.
    Returns float32 values that are bfloat16 numbers."""
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if g.ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    xp = devices.xp_of(g)
    f32 = xp.float32
    a, b, c = (f32(v) for v in ns_coefficients)
    bf = round_to_bfloat16
    x = bf(g.astype(f32, copy=False))
    tall = g.shape[0] > g.shape[1]
    if tall:
        x = x.T
    norm = bf(xp.sqrt(xp.sum(x * x, dtype=f32)))
    x = bf(x / bf(xp.maximum(norm, f32(eps))))
    for _ in range(ns_steps):
        gram = bf(x @ x.T)
        poly = bf(_addmm_f32(gram, b, c * (gram @ gram)))
        x = bf(_addmm_f32(x, a, poly @ x))
    return x.T if tall else x


def _addmm_f32(m, beta, product):
    """``β·M + P`` in float32 with one rounding (a fused multiply-add, as PyTorch's bfloat16
    ``addmm`` finishes its float32 sums): exact in float64 since ``M`` holds bfloat16 values."""
    xp = devices.xp_of(m)
    exact = xp.multiply(m, beta, dtype=xp.float64)
    exact += product
    return exact.astype(xp.float32)


def adjust_lr(lr: Any, adjust_lr_fn: str | None, shape: tuple) -> Any:
    """The learning rate of an ``A×B`` parameter: ``lr·√max(1, A/B)`` ("original", the default)
    or ``0.2·lr·√max(A, B)`` ("match_rms_adamw")."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, rows / cols))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
    else:
        ratio = 1.0
    return lr * ratio


class Muon(Optimizer):
    """Muon: ``B ← μB + g;  O = NS(g + μB if nesterov else B);  θ ← θ(1 - lr·λ) - lr'·O``
    with ``lr'`` the shape-adjusted learning rate; for 2-D parameters only."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
        eps: float = EPS,
        ns_steps: int = DEFAULT_NS_STEPS,
        adjust_lr_fn: str | None = None,
    ) -> None:
        check_scalar_tensor("lr", lr)
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in _ADJUST_LR_FNS:
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        "Muon only supports 2D parameters whereas we found a parameter with "
                        f"size: {p.size()}")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Muon step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            weight_decay = group["weight_decay"]
            momentum = group["momentum"]
            for p, d, grad in self._with_grads(group):
                if p.is_complex():
                    raise RuntimeError("Muon does not support complex parameters")
                if getattr(p._grad, "is_sparse", False):
                    raise RuntimeError("Muon does not support sparse gradients")
                if grad.ndim != 2:
                    raise ValueError("Param gradient must be a 2D matrix")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = self._zeros_like(grad)
                buf = state["momentum_buffer"]._data
                xp = devices.xp_of(d)
                lerp_(buf, grad, 1 - momentum, xp.empty_like(buf))  # B ← μB + (1-μ)g
                if group["nesterov"]:
                    update = grad.copy()
                    lerp_(update, buf, momentum, xp.empty_like(buf))
                else:
                    update = buf
                ortho = zeropower_via_newtonschulz(
                    update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                scaled_lr = adjust_lr(lr, group["adjust_lr_fn"], d.shape)
                d *= 1 - lr * weight_decay
                step = xp.multiply(ortho, -scaled_lr, dtype=d.dtype)
                d += step
        return loss
