"""SGD with momentum, dampening, Nesterov momentum, weight decay and maximize (PyTorch's update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from chainrule.optim.optimizer import Optimizer, ParamsT, check_scalar_tensor, to_scalar

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD: ``b ← μ·b + (1-τ)·g;  θ ← θ - lr·(g + μ·b if nesterov else b)``."""

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
        if differentiable:
            raise NotImplementedError("SGD: differentiable=True is not supported by chainrule")
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
            for p in group["params"]:
                grad = p._grad
                if grad is None:
                    continue
                d = self._param_array(p)
                g = grad._data
                tmp = None
                if weight_decay != 0 or maximize:
                    tmp = self._scratch(p, d, 2)
                    t = tmp[0]
                    if weight_decay != 0:  # g ← ±g + wd·θ
                        np.multiply(d, weight_decay, out=t)
                        (np.subtract if maximize else np.add)(t, g, out=t)
                    else:
                        np.negative(g, out=t)
                    g = t
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        state["momentum_buffer"] = buf = self._copy(g)
                        b = buf._data
                    else:
                        b = buf._data
                        np.multiply(b, momentum, out=b)
                        if dampening == 0:
                            np.add(b, g, out=b)
                        else:
                            tmp = tmp or self._scratch(p, d, 2)
                            np.multiply(g, 1 - dampening, out=tmp[1])
                            np.add(b, tmp[1], out=b)
                    if nesterov:
                        tmp = tmp or self._scratch(p, d, 2)
                        t = tmp[1]
                        np.multiply(b, momentum, out=t)
                        np.add(g, t, out=t)
                        g = t
                    else:
                        g = b
                if tmp is not None and (g is tmp[0] or g is tmp[1]):
                    t = g
                else:
                    t = self._scratch(p, d)[0]
                np.multiply(g, lr, out=t)
                np.subtract(d, t, out=d)
        return loss
