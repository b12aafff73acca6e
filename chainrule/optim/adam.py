"""Adam and AdamW (decoupled weight decay), with amsgrad and maximize (PyTorch's update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule.kernels import kernels_for
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_betas, check_nonnegative, check_not_differentiable,
    check_scalar_tensor, decayed_grad, next_step, scalar_state, to_scalar,
)
from chainrule.tensor import Tensor

__all__ = ["Adam", "AdamW"]


def lerp_(a: Any, b: Any, weight: float, tmp: Any) -> None:
    """``a ← a + w·(b - a)`` in place, rounded the way PyTorch's CPU ``lerp_`` rounds it."""
    np.subtract(b, a, out=tmp)
    if abs(weight) < 0.5:
        np.multiply(tmp, weight, out=tmp)
        np.add(a, tmp, out=a)
    else:
        np.multiply(tmp, 1 - weight, out=tmp)
        np.subtract(b, tmp, out=a)


class Adam(Optimizer):
    """Adam: ``m ← β₁m + (1-β₁)g;  v ← β₂v + (1-β₂)g²;  θ ← θ - lr·m̂ / (√v̂ + ε)``."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        check_scalar_tensor("lr", lr)
        check_nonnegative(lr=lr, eps=eps)
        check_betas(betas)
        check_nonnegative(weight_decay=weight_decay)
        if not (
            (isinstance(betas[0], float) and isinstance(betas[1], float))
            or (isinstance(betas[0], Tensor) and isinstance(betas[1], Tensor))
        ):
            raise ValueError("betas must be either both floats or both Tensors")
        for i in (0, 1):
            check_scalar_tensor(f"betas[{i}]", betas[i])
        check_not_differentiable(self, differentiable)
        defaults = {
            "lr": lr,
            "betas": (to_scalar(betas[0]), to_scalar(betas[1])),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = (to_scalar(b) for b in group["betas"])
            eps = group["eps"]
            weight_decay = group["weight_decay"]
            amsgrad = group["amsgrad"]
            maximize = group["maximize"]
            decoupled = group.get("decoupled_weight_decay", False)
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = scalar_state(0.0)
                    state["exp_avg"] = self._zeros_like(d)
                    state["exp_avg_sq"] = self._zeros_like(d)
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = self._zeros_like(d)
                step = next_step(state)
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                step_size = lr / bias_correction1
                bias_correction2_sqrt = bias_correction2**0.5
                vmax = state["max_exp_avg_sq"]._data if amsgrad else None
                arrays = (d, grad, state["exp_avg"]._data, state["exp_avg_sq"]._data, vmax)
                if kernels_for(d).adam_step(
                        *arrays, lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
                        step_size, bias_correction2_sqrt):
                    continue
                for (d_, g_, m_, v_, vmax_), (t0, t1) in self._pieces(p, arrays):
                    _update(d_, g_, m_, v_, vmax_, t0, t1, lr, beta1, beta2, eps, weight_decay,
                            maximize, decoupled, step_size, bias_correction2_sqrt)
        return loss


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay ``θ ← θ·(1 - lr·λ)`` before the Adam update."""

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
            capturable=capturable, differentiable=differentiable, fused=fused,
            decoupled_weight_decay=True,
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict; AdamW always keeps ``decoupled_weight_decay=True``."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


def _update(d, g, m, v, vmax, t0, t1, lr, beta1, beta2, eps, weight_decay, maximize, decoupled,
            step_size, bias_correction2_sqrt):
    """One Adam update on (blocks of) raw arrays, in PyTorch's order of operations."""
    if weight_decay != 0 and decoupled:  # AdamW shrinks θ itself
        np.multiply(d, 1 - lr * weight_decay, out=d)
    g = decayed_grad(d, g, t1, 0 if decoupled else weight_decay, maximize)
    lerp_(m, g, 1 - beta1, t0)
    np.multiply(v, beta2, out=v)
    np.multiply(g, 1 - beta2, out=t0)
    np.multiply(t0, g, out=t0)
    np.add(v, t0, out=v)
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    np.sqrt(v, out=t0)  # denom = √v / √(1-β₂ᵗ) + ε
    np.divide(t0, bias_correction2_sqrt, out=t0)
    np.add(t0, eps, out=t0)
    np.multiply(m, step_size, out=t1)  # θ ← θ - (lr / (1-β₁ᵗ))·m / denom
    np.divide(t1, t0, out=t1)
    np.subtract(d, t1, out=d)
