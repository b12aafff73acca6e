"""Adafactor: factored second moments, relative step sizes and update clipping (PyTorch's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule import devices
from chainrule.optim.adam import lerp_
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_scalar_tensor, next_step, scalar_state, to_scalar,
)
from chainrule.tensor import wrap

__all__ = ["Adafactor"]


class Adafactor(Optimizer):
    """Adafactor: ``V̂ = R·C / mean(R)`` (matrices) or ``V̂ ← lerp(V̂, g², t^τ)`` (vectors);
    ``U = g/√max(V̂, ε₁²)``, clipped to RMS ``d``; ``θ ← θ(1 - lr·λ) - max(ε₂, RMS θ)·
    min(lr, 1/√t)·U``."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
    ) -> None:
        check_scalar_tensor("lr", lr)
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adafactor step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            eps1, eps2 = group["eps"]
            clip, weight_decay = group["d"], group["weight_decay"]
            for p, d, grad in self._with_grads(group):
                xp = devices.xp_of(d)
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = scalar_state(0.0)
                    if grad.ndim > 1:
                        state["row_var"] = wrap(xp.zeros(grad.shape[:-1] + (1,), grad.dtype))
                        state["col_var"] = wrap(
                            xp.zeros(grad.shape[:-2] + (1,) + grad.shape[-1:], grad.dtype))
                    else:
                        state["variance"] = self._zeros_like(grad)
                e1 = np.finfo(d.dtype).eps if eps1 is None else eps1
                g = -grad if group["maximize"] else grad
                step = next_step(state)
                one_minus_beta2_t = step ** group["beta2_decay"]
                rho_t = min(lr, 1 / (step**0.5))
                alpha = max(eps2, float(_norm(d)) / (d.size**0.5)) * rho_t
                if weight_decay != 0:
                    np.multiply(d, 1 - lr * weight_decay, out=d)
                if g.ndim > 1:
                    row_var, col_var = state["row_var"]._data, state["col_var"]._data
                    row_mean = _norm(g, -1) ** 2 / g.shape[-1]
                    lerp_(row_var, row_mean, one_minus_beta2_t, xp.empty_like(row_var))
                    col_mean = _norm(g, -2) ** 2 / g.shape[-2]
                    lerp_(col_var, col_mean, one_minus_beta2_t, xp.empty_like(col_var))
                    var_estimate = row_var @ col_var
                    var_estimate /= xp.maximum(row_var.mean(axis=-2, keepdims=True), e1)
                else:
                    variance = state["variance"]._data
                    lerp_(variance, g * g, one_minus_beta2_t, xp.empty_like(variance))
                    var_estimate = variance.copy()
                update = 1 / xp.sqrt(xp.maximum(var_estimate, e1 * e1))
                update *= g
                denom = max(1.0, float(_norm(update)) / ((update.size**0.5) * clip))
                d += update * (-alpha / denom)
        return loss


def _norm(a, axis=None):
    """The 2-norm of ``a`` (over ``axis``, kept as a size-1 dim), as ``torch.norm``."""
    if axis is None:
        return np.sqrt(np.sum(a * a))
    return np.sqrt(np.sum(a * a, axis=axis, keepdims=True))
