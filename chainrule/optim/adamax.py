"""Adamax, Adam's infinity-norm variant (PyTorch's update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule.optim.adam import lerp_
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_betas, check_nonnegative, check_not_differentiable,
    check_scalar_tensor, decayed_grad, next_step, scalar_state, to_scalar,
)

__all__ = ["Adamax"]


class Adamax(Optimizer):
    """Adamax: ``m ← β₁m + (1-β₁)g;  u ← max(β₂u, |g| + ε);  θ ← θ - lr/(1-β₁ᵗ)·m/u``."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_scalar_tensor("lr", lr)
        check_nonnegative(lr=lr, eps=eps)
        check_betas(betas)
        check_nonnegative(weight_decay=weight_decay)
        check_not_differentiable(self, differentiable)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adamax step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = (to_scalar(b) for b in group["betas"])
            eps, weight_decay, maximize = group["eps"], group["weight_decay"], group["maximize"]
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = scalar_state(0.0)
                    state["exp_avg"] = self._zeros_like(d)
                    state["exp_inf"] = self._zeros_like(d)
                clr = lr / (1 - beta1 ** next_step(state))
                arrays = (d, grad, state["exp_avg"]._data, state["exp_inf"]._data)
                for (d_, g_, m_, u_), (t0, t1) in self._pieces(p, arrays):
                    g_ = decayed_grad(d_, g_, t1, weight_decay, maximize)
                    lerp_(m_, g_, 1 - beta1, t0)
                    np.multiply(u_, beta2, out=u_)
                    np.abs(g_, out=t0)
                    np.add(t0, eps, out=t0)
                    np.maximum(u_, t0, out=u_)
                    np.divide(m_, u_, out=t0)
                    np.multiply(t0, -clr, out=t0)
                    np.add(d_, t0, out=d_)
        return loss
