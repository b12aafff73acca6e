"""NAdam (Adam with Nesterov momentum) and RAdam (rectified Adam), PyTorch's updates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule.optim.adam import lerp_
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_betas, check_nonnegative, check_not_differentiable,
    check_scalar_tensor, decayed_grad, next_step, scalar_state, to_scalar, write_scalar,
)

__all__ = ["NAdam", "RAdam"]


class _AdamFamily(Optimizer):
    """Shared constructor checks, state and moment updates of NAdam and RAdam."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(self, params: ParamsT, lr, betas, eps, weight_decay, differentiable,
                 defaults: dict[str, Any]) -> None:
        check_scalar_tensor("lr", lr)
        check_nonnegative(lr=lr, eps=eps)
        check_betas(betas)
        check_nonnegative(weight_decay=weight_decay)
        check_not_differentiable(self, differentiable)
        super().__init__(params, defaults)

    def _new_state(self, state: dict[str, Any], d) -> None:
        state["step"] = scalar_state(0.0)
        state["exp_avg"] = self._zeros_like(d)
        state["exp_avg_sq"] = self._zeros_like(d)

    @staticmethod
    def _moments(d, g, m, v, t0, t1, lr, beta1, beta2, weight_decay, decoupled, maximize):
        """Weight decay (coupled or not), then ``m ← lerp(m, g, 1-β₁)``, ``v ← β₂v + (1-β₂)g²``;
        returns the gradient used (``g`` or ``t1``)."""
        if weight_decay != 0 and decoupled:
            np.multiply(d, 1 - lr * weight_decay, out=d)
        g = decayed_grad(d, g, t1, 0 if decoupled else weight_decay, maximize)
        lerp_(m, g, 1 - beta1, t0)
        np.multiply(v, beta2, out=v)
        np.multiply(g, 1 - beta2, out=t0)
        np.multiply(t0, g, out=t0)
        np.add(v, t0, out=v)
        return g


class NAdam(_AdamFamily):
    """NAdam: Adam whose step mixes ``g`` and ``m`` with the momentum schedule
    ``μₜ = β₁(1 - ½·0.96^(t·ψ))``: ``θ ← θ - lr(1-μₜ)/(1-Πμ)·g/d - lr·μₜ₊₁/(1-Πμ·μₜ₊₁)·m/d``
    with ``d = √(v/(1-β₂ᵗ)) + ε``."""

    def __init__(
        self,
        params: ParamsT,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
        }
        super().__init__(params, lr, betas, eps, weight_decay, differentiable, defaults)

    def _new_state(self, state: dict[str, Any], d) -> None:
        super()._new_state(state, d)
        state["mu_product"] = scalar_state(1.0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One NAdam step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = (to_scalar(b) for b in group["betas"])
            eps, weight_decay, maximize = group["eps"], group["weight_decay"], group["maximize"]
            psi, decoupled = group["momentum_decay"], group["decoupled_weight_decay"]
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if len(state) == 0:
                    self._new_state(state, d)
                step = next_step(state)
                bias_correction2 = 1 - beta2**step
                mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * psi)))
                mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * psi)))
                mp = state["mu_product"]  # a 0-d Tensor: the product rounds to its dtype
                write_scalar(mp, mp._data * mu)
                mu_product = float(mp._data)
                c_grad = -lr * (1.0 - mu) / (1.0 - mu_product)
                c_avg = (-lr * mu_next) / (1.0 - mu_product * mu_next)
                arrays = (d, grad, state["exp_avg"]._data, state["exp_avg_sq"]._data)
                for (d_, g_, m_, v_), (t0, t1, t2) in self._pieces(p, arrays, 3):
                    g_ = self._moments(d_, g_, m_, v_, t0, t1, lr, beta1, beta2, weight_decay,
                                       decoupled, maximize)
                    np.divide(v_, bias_correction2, out=t0)  # denom = √(v/(1-β₂ᵗ)) + ε
                    np.sqrt(t0, out=t0)
                    np.add(t0, eps, out=t0)
                    np.divide(g_, t0, out=t2)
                    np.multiply(t2, c_grad, out=t2)
                    np.add(d_, t2, out=d_)
                    np.divide(m_, t0, out=t2)
                    np.multiply(t2, c_avg, out=t2)
                    np.add(d_, t2, out=d_)
        return loss


class RAdam(_AdamFamily):
    """RAdam: Adam whose adaptive step is switched on, rectified by
    ``r = √((ρₜ-4)(ρₜ-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρₜ))``, once ``ρₜ = ρ∞ - 2tβ₂ᵗ/(1-β₂ᵗ) > 5``;
    before that ``θ ← θ - lr·m/(1-β₁ᵗ)`` (SGD with momentum)."""

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
            "differentiable": differentiable,
        }
        super().__init__(params, lr, betas, eps, weight_decay, differentiable, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One RAdam step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = (to_scalar(b) for b in group["betas"])
            eps, weight_decay, maximize = group["eps"], group["weight_decay"], group["maximize"]
            decoupled = group["decoupled_weight_decay"]
            rho_inf = 2 / (1 - beta2) - 1
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if len(state) == 0:
                    self._new_state(state, d)
                step = next_step(state)
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
                rect = None
                if rho_t > 5.0:
                    rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                            / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
                arrays = (d, grad, state["exp_avg"]._data, state["exp_avg_sq"]._data)
                for (d_, g_, m_, v_), (t0, t1) in self._pieces(p, arrays):
                    self._moments(d_, g_, m_, v_, t0, t1, lr, beta1, beta2, weight_decay,
                                  decoupled, maximize)
                    np.divide(m_, bias_correction1, out=t1)  # m̂·lr (·adaptive·r)
                    np.multiply(t1, lr, out=t1)
                    if rect is not None:  # adaptive = √(1-β₂ᵗ) / (√v + ε)
                        np.sqrt(v_, out=t0)
                        np.add(t0, eps, out=t0)
                        np.divide(bias_correction2**0.5, t0, out=t0)
                        np.multiply(t1, t0, out=t1)
                        np.multiply(t1, rect, out=t1)
                    np.subtract(d_, t1, out=d_)
        return loss
