"""RMSprop, optionally centered and with momentum (PyTorch's update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule.optim.adam import lerp_
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_nonnegative, check_not_differentiable, check_scalar_tensor,
    decayed_grad, next_step, scalar_state, to_scalar,
)

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop: ``v ← αv + (1-α)g²;  θ ← θ - lr·g / (√(v - ḡ² if centered else v) + ε)``."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_scalar_tensor("lr", lr)
        check_nonnegative(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay,
                          alpha=alpha)
        check_not_differentiable(self, differentiable)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One RMSprop step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            alpha = group["alpha"]
            eps = group["eps"]
            weight_decay = group["weight_decay"]
            momentum = group["momentum"]
            centered = group["centered"]
            maximize = group["maximize"]
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = scalar_state(0.0)
                    state["square_avg"] = self._zeros_like(d)
                    if momentum > 0:
                        state["momentum_buffer"] = self._zeros_like(d)
                    if centered:
                        state["grad_avg"] = self._zeros_like(d)
                next_step(state)
                buf = ga = None
                if momentum > 0:
                    if "momentum_buffer" not in state:  # momentum switched on later
                        state["momentum_buffer"] = self._zeros_like(d)
                    buf = state["momentum_buffer"]._data
                if centered:
                    if "grad_avg" not in state:
                        state["grad_avg"] = self._zeros_like(d)
                    ga = state["grad_avg"]._data
                arrays = (d, grad, state["square_avg"]._data, ga, buf)
                for (d_, g_, v_, ga_, b_), (t0, t1) in self._pieces(p, arrays):
                    _update(d_, g_, v_, ga_, b_, t0, t1, lr, alpha, eps, weight_decay, momentum,
                            maximize)
        return loss


def _update(d, g, v, ga, b, t0, t1, lr, alpha, eps, weight_decay, momentum, maximize):
    """One RMSprop update on (blocks of) raw arrays, in PyTorch's order of operations."""
    g = decayed_grad(d, g, t1, weight_decay, maximize)
    np.multiply(v, alpha, out=v)
    np.multiply(g, 1 - alpha, out=t0)
    np.multiply(t0, g, out=t0)
    np.add(v, t0, out=v)
    if ga is not None:  # centered: avg = √(v - ḡ²)
        lerp_(ga, g, 1 - alpha, t0)
        np.multiply(ga, ga, out=t0)
        np.subtract(v, t0, out=t0)
        np.sqrt(t0, out=t0)
    else:
        np.sqrt(v, out=t0)
    np.add(t0, eps, out=t0)
    if b is not None:  # b ← μb + g/avg;  θ ← θ - lr·b
        np.multiply(b, momentum, out=b)
        np.divide(g, t0, out=t0)
        np.add(b, t0, out=b)
        np.multiply(b, lr, out=t0)
        np.subtract(d, t0, out=d)
    else:
        np.multiply(g, lr, out=t1)
        np.divide(t1, t0, out=t1)
        np.subtract(d, t1, out=d)
