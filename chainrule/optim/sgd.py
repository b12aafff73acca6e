"""SGD with momentum, dampening, Nesterov momentum, weight decay and maximize (PyTorch's update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule.kernels import kernels_for
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_not_differentiable, check_scalar_tensor, decayed_grad, to_scalar,
)

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD: ``b ← μ·b + (1-τ)·g;  θ ← θ - lr·(g + μ·b if nesterov else b)``."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_scalar_tensor("lr", lr)
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        check_not_differentiable(self, differentiable)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One SGD step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            momentum = group["momentum"]
            dampening = group["dampening"]
            weight_decay = group["weight_decay"]
            nesterov = group["nesterov"]
            maximize = group["maximize"]
            plain = momentum == 0 and weight_decay == 0 and not maximize
            for p, d, grad in self._with_grads(group):
                if plain and kernels_for(d).axpy(-lr, grad, d):  # θ ← θ - lr·g in one pass (MKL)
                    continue
                b, first = None, False
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:  # the first step copies the gradient into the buffer
                        buf = state["momentum_buffer"] = self._zeros_like(d)
                        first = True
                    b = buf._data
                if kernels_for(d).sgd_step(
                        d, grad, b, first, lr, momentum, dampening, weight_decay, nesterov,
                        maximize):
                    continue
                for (d_, g_, b_), (t0, t1) in self._pieces(p, (d, grad, b)):
                    _update(d_, g_, b_, t0, t1, lr, momentum, dampening, weight_decay, nesterov,
                            maximize, first)
        return loss


def _update(d, g, b, t0, t1, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """θ ← θ - lr·step on (blocks of) raw arrays, in PyTorch's order of operations."""
    g = decayed_grad(d, g, t0, weight_decay, maximize)
    if b is not None:
        if first:
            np.copyto(b, g)
        else:
            np.multiply(b, momentum, out=b)
            if dampening == 0:
                np.add(b, g, out=b)
            else:
                np.multiply(g, 1 - dampening, out=t1)
                np.add(b, t1, out=b)
        if nesterov:
            np.multiply(b, momentum, out=t1)
            np.add(g, t1, out=t1)
            g = t1
        else:
            g = b
    t = g if (g is t0 or g is t1) else t0
    np.multiply(g, lr, out=t)
    np.subtract(d, t, out=d)
