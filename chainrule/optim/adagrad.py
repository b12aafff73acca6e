"""Adagrad with learning-rate decay (PyTorch's update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_nonnegative, check_not_differentiable, check_scalar_tensor,
    decayed_grad, next_step, scalar_state, to_scalar,
)

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad: ``s ← s + g²;  θ ← θ - lr/(1 + (t-1)·lr_decay) · g / (√s + ε)``."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_scalar_tensor("lr", lr)
        check_nonnegative(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                          initial_accumulator_value=initial_accumulator_value, eps=eps)
        check_not_differentiable(self, differentiable)
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, p, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        state["step"] = scalar_state(0.0)
        state["sum"] = self._zeros_like(p._data, group["initial_accumulator_value"])
        return state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adagrad step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            lr_decay = group["lr_decay"]
            eps = group["eps"]
            weight_decay = group["weight_decay"]
            maximize = group["maximize"]
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if "sum" not in state:  # a parameter added by add_param_group
                    state = self._init_state(p, group)
                step = next_step(state)
                clr = lr / (1 + (step - 1) * lr_decay)
                arrays = (d, grad, state["sum"]._data)
                for (d_, g_, s_), (t0, t1) in self._pieces(p, arrays):
                    _update(d_, g_, s_, t0, t1, clr, eps, weight_decay, maximize)
        return loss


def _update(d, g, s, t0, t1, clr, eps, weight_decay, maximize):
    """One Adagrad update on (blocks of) raw arrays, in PyTorch's order of operations."""
    g = decayed_grad(d, g, t1, weight_decay, maximize)
    np.multiply(g, g, out=t0)
    np.add(s, t0, out=s)
    np.sqrt(s, out=t0)
    np.add(t0, eps, out=t0)
    np.multiply(g, clr, out=t1)
    np.divide(t1, t0, out=t1)
    np.subtract(d, t1, out=d)
