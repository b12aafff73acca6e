"""SparseAdam on dense gradients: Adam that updates only the rows a gradient touches.

PyTorch's SparseAdam needs sparse-layout gradients (``nn.Embedding(sparse=True)``) and updates
the moments and parameters only at the rows those gradients store. chainrule has no sparse
layouts, so the rows (entries of the first dimension) whose dense gradient is not all zero stand
for the stored rows: the same numbers as PyTorch's whenever every stored row has a nonzero entry,
which is what an embedding's gradient holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chainrule.devices import np
from chainrule import devices
from chainrule.optim.optimizer import (
    Optimizer, ParamsT, check_betas, check_scalar_tensor, to_scalar,
)

__all__ = ["SparseAdam"]


class SparseAdam(Optimizer):
    """SparseAdam: Adam's moments and update applied only at the rows the gradient touches."""

    _state_in_place = True  # its step updates the state tensors' memory

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
    ) -> None:
        check_scalar_tensor("lr", lr)
        if not 0.0 < lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        check_betas(betas)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "maximize": maximize}
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One SparseAdam step over every parameter that has a gradient."""
        loss = self._closure(closure)
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = (to_scalar(b) for b in group["betas"])
            eps, maximize = group["eps"], group["maximize"]
            for p, d, grad in self._with_grads(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0  # an int, as in torch's SparseAdam
                    state["exp_avg"] = self._zeros_like(d)
                    state["exp_avg_sq"] = self._zeros_like(d)
                state["step"] += 1
                step = state["step"]
                xp = devices.xp_of(d)
                g = -grad if maximize else grad
                rows = xp.nonzero(g.reshape(g.shape[0], -1).any(axis=1))[0] if g.ndim else ()
                if g.ndim and rows.size == 0:
                    continue
                m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                g_rows, old_m, old_v = g[rows], m[rows], v[rows]
                m_update = (g_rows - old_m) * (1 - beta1)
                v_update = (g_rows**2 - old_v) * (1 - beta2)
                m[rows] = old_m + m_update
                v[rows] = old_v + v_update
                numer = m_update + old_m
                denom = np.sqrt(v_update + old_v) + eps
                step_size = lr * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
                d[rows] = d[rows] + -step_size * (numer / denom)
        return loss
