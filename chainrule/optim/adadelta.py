"""Adadelta (PyTorch's update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule.kernels import kernels_for
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_nonnegative, check_not_differentiable, check_scalar_tensor,
    decayed_grad, next_step, scalar_state, to_scalar,
)

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    """Adadelta: ``v ← ρv + (1-ρ)g²;  δ = √(u+ε)/√(v+ε)·g;  u ← ρu + (1-ρ)δ²;  θ ← θ - lr·δ``."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_scalar_tensor("lr", lr)
        check_nonnegative(lr=lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        check_nonnegative(eps=eps, weight_decay=weight_decay)
        check_not_differentiable(self, differentiable)
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adadelta step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            rho, eps = group["rho"], group["eps"]
            weight_decay, maximize = group["weight_decay"], group["maximize"]
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = scalar_state(0.0)
                    state["square_avg"] = self._zeros_like(d)
                    state["acc_delta"] = self._zeros_like(d)
                next_step(state)
                arrays = (d, grad, state["square_avg"]._data, state["acc_delta"]._data)
                if (not weight_decay and not maximize
                        and kernels_for(d).adadelta_step(grad, d, *arrays[2:], lr, rho, eps)):
                    continue  # one pass (the C loops, on the pool's threads)
                for (d_, g_, v_, u_), work in self._pieces(p, arrays, 3):
                    _update(d_, g_, v_, u_, *work, lr, rho, eps, weight_decay, maximize)
        return loss


def _update(d, g, v, u, t0, t1, t2, lr, rho, eps, weight_decay, maximize):
    """One Adadelta update on (blocks of) raw arrays, in PyTorch's order of operations."""
    g = decayed_grad(d, g, t2, weight_decay, maximize)
    np.multiply(v, rho, out=v)  # v ← ρv + (1-ρ)·g·g
    np.multiply(g, 1 - rho, out=t0)
    np.multiply(t0, g, out=t0)
    np.add(v, t0, out=v)
    np.add(v, eps, out=t0)  # std = √(v + ε)
    np.sqrt(t0, out=t0)
    np.add(u, eps, out=t1)  # δ = √(u + ε) / std · g
    np.sqrt(t1, out=t1)
    np.divide(t1, t0, out=t1)
    np.multiply(t1, g, out=t1)
    np.multiply(u, rho, out=u)  # u ← ρu + (1-ρ)·δ·δ
    np.multiply(t1, 1 - rho, out=t0)
    np.multiply(t0, t1, out=t0)
    np.add(u, t0, out=u)
    np.multiply(t1, -lr, out=t1)  # θ ← θ - lr·δ
    np.add(d, t1, out=d)
