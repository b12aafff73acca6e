"""ASGD, averaged stochastic gradient descent (PyTorch's update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_nonnegative, check_not_differentiable, check_scalar_tensor,
    decayed_grad, next_step, scalar_dtype, scalar_state, to_scalar, write_scalar,
)

__all__ = ["ASGD"]


class ASGD(Optimizer):
    """ASGD: ``θ ← θ(1 - λη) - ηg;  ax ← ax + μ(θ - ax)`` with
    ``η = lr/(1 + λ·lr·t)^α`` and ``μ = 1/max(1, t - t₀)``."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_scalar_tensor("lr", lr)
        check_nonnegative(lr=lr, weight_decay=weight_decay)
        check_not_differentiable(self, differentiable)
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One ASGD step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            lambd, alpha, t0 = group["lambd"], group["alpha"], group["t0"]
            weight_decay, maximize = group["weight_decay"], group["maximize"]
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = scalar_state(0.0)
                    state["eta"] = scalar_state(lr)
                    state["mu"] = scalar_state(1.0)
                    state["ax"] = self._zeros_like(d)
                step = next_step(state)
                eta, mu = float(state["eta"]._data), float(state["mu"]._data)
                for (d_, g_, ax_), (w0, w1) in self._pieces(p, (d, grad, state["ax"]._data)):
                    g_ = decayed_grad(d_, g_, w1, weight_decay, maximize)
                    np.multiply(d_, 1 - lambd * eta, out=d_)
                    np.multiply(g_, -eta, out=w0)
                    np.add(d_, w0, out=d_)
                    if mu != 1:
                        np.subtract(d_, ax_, out=w0)
                        np.multiply(w0, mu, out=w0)
                        np.add(ax_, w0, out=ax_)
                    else:
                        np.copyto(ax_, d_)
                # torch makes the new η and μ 0-d tensors of the default dtype, then copies them
                # into the state (whose dtype a load_state_dict may have changed): two roundings
                _assign(state["eta"], lr / ((1 + lambd * lr * step) ** alpha))
                _assign(state["mu"], 1 / max(1, step - t0))
        return loss


def _assign(t, value: float) -> None:
    write_scalar(t, np.array(np.array(value, dtype=scalar_dtype()), dtype=t._data.dtype))
