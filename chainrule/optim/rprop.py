"""Rprop, resilient backpropagation (PyTorch's update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule import devices
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_nonnegative, check_not_differentiable, check_scalar_tensor,
    next_step, scalar_state, to_scalar,
)
from chainrule.tensor import wrap

__all__ = ["Rprop"]


class Rprop(Optimizer):
    """Rprop: per-element step sizes ``s ← clamp(s·η±, s_min, s_max)`` (η₊ when ``g`` kept its
    sign, η₋ when it flipped, then that gradient counts as 0); ``θ ← θ - sign(g)·s``."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_scalar_tensor("lr", lr)
        check_nonnegative(lr=lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        check_not_differentiable(self, differentiable)
        defaults = {
            "lr": lr,
            "etas": etas,
            "step_sizes": step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Rprop step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            etaminus, etaplus = group["etas"]
            step_size_min, step_size_max = group["step_sizes"]
            maximize = group["maximize"]
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = scalar_state(0.0)
                    state["prev"] = self._zeros_like(d)
                    xp = devices.xp_of(grad)
                    state["step_size"] = wrap(xp.full_like(grad, to_scalar(group["lr"])))
                next_step(state)
                arrays = (d, grad, state["prev"]._data, state["step_size"]._data)
                for (d_, g_, prev_, s_), (t0, t1) in self._pieces(p, arrays):
                    if maximize:
                        np.negative(g_, out=t1)
                    else:
                        np.copyto(t1, g_)
                    np.multiply(t1, prev_, out=t0)  # the factor: η₊, η₋ or 1 by sign(g·prev)
                    np.sign(t0, out=t0)
                    flipped = t0 < 0
                    np.copyto(t0, etaplus, where=t0 > 0)
                    np.copyto(t0, etaminus, where=flipped)
                    np.copyto(t0, 1.0, where=t0 == 0)
                    np.multiply(s_, t0, out=s_)
                    np.maximum(s_, step_size_min, out=s_)  # clamp (ufuncs: CuPy arrays too)
                    np.minimum(s_, step_size_max, out=s_)
                    np.copyto(t1, 0.0, where=t0 == etaminus)  # a flipped gradient counts as 0
                    np.sign(t1, out=t0)
                    np.multiply(t0, s_, out=t0)
                    np.subtract(d_, t0, out=d_)
                    np.copyto(prev_, t1)
        return loss
