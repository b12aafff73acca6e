"""Stochastic weight averaging and EMA of a model's weights (PyTorch's ``torch.optim.swa_utils``).

``AveragedModel`` keeps a copy of a model whose parameters (and optionally buffers) are running
averages of the model's; ``SWALR`` anneals each group's lr to a constant ``swa_lr``; ``update_bn``
recomputes BatchNorm statistics with one pass over the data.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any

from chainrule import devices
from chainrule.devices import np
from chainrule.autograd.grad_mode import no_grad
from chainrule.creation import tensor
from chainrule.dtypes import int64
from chainrule.nn.module import Module
from chainrule.nn.modules.normalization import _BatchNorm
from chainrule.optim.adam import lerp_
from chainrule.optim.lr_scheduler import LRScheduler, _format_param
from chainrule.optim.optimizer import Optimizer, scalar_dtype
from chainrule.tensor import Tensor

__all__ = ["AveragedModel", "update_bn", "SWALR", "get_ema_multi_avg_fn",
           "get_swa_multi_avg_fn", "get_ema_avg_fn", "get_swa_avg_fn"]

PARAM_LIST = tuple[Tensor, ...] | list[Tensor]  # the parameter lists a multi_avg_fn receives


def _check_decay(decay: float) -> None:
    if decay < 0.0 or decay > 1.0:
        raise ValueError(
            f"Invalid decay value {decay} provided. Please provide a value in [0,1] range.")


def _copy_into(dst: Tensor, src: Tensor) -> None:
    """``dst``'s values ← ``src``'s, in ``dst``'s array (parameters and buffers keep identity)."""
    data = devices.to_device(src._data, dst.device).astype(dst._data.dtype)
    if dst._data.shape == ():
        dst._data = devices.xp_of(data).array(data)
    else:
        dst._data[...] = data
    dst._bump_version()  # torch's copy_: a graph that saved dst refuses to backpropagate


def _is_float(t: Tensor) -> bool:
    return t._data.dtype.kind in "fc"


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable:
    """In-place EMA of lists of Tensors: ``a ← decay·a + (1 - decay)·p``."""
    _check_decay(decay)

    def ema_update(ema_param_list: list, current_param_list: list, _: Any) -> None:
        for a, p in zip(ema_param_list, current_param_list):
            if _is_float(a):
                lerp_(a._data, p._data, 1 - decay, devices.xp_of(a._data).empty_like(a._data))
                a._bump_version()
            else:
                _copy_into(a, a * decay + p * (1 - decay))

    return ema_update


def get_swa_multi_avg_fn() -> Callable:
    """In-place equal-weight running mean of lists of Tensors: ``a ← a + (p - a)/(n + 1)``."""

    def swa_update(averaged_param_list: list, current_param_list: list, num_averaged) -> None:
        if isinstance(num_averaged, Tensor):  # 1/(n+1) of an integer Tensor: default dtype
            n = int(num_averaged.item())
            weight = float(np.array(1 / (n + 1), dtype=scalar_dtype()))
        else:
            n = num_averaged
            weight = 1.0 / (n + 1)
        for a, p in zip(averaged_param_list, current_param_list):
            if _is_float(a):
                lerp_(a._data, p._data, weight, devices.xp_of(a._data).empty_like(a._data))
                a._bump_version()
            else:
                _copy_into(a, a + (p - a) / (n + 1))

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable:
    """EMA of one Tensor: returns ``decay·a + (1 - decay)·p``."""
    _check_decay(decay)

    def ema_update(ema_param: Tensor, current_param: Tensor, num_averaged) -> Tensor:
        with no_grad():
            return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn() -> Callable:
    """Equal-weight running mean of one Tensor: returns ``a + (p - a)/(n + 1)``."""

    def swa_update(averaged_param: Tensor, current_param: Tensor, num_averaged) -> Tensor:
        with no_grad():
            return averaged_param + (current_param - averaged_param) / (num_averaged + 1)

    return swa_update


class AveragedModel(Module):
    """A copy of ``model`` whose weights are the running average (SWA, or ``avg_fn``/
    ``multi_avg_fn`` such as an EMA) of the weights passed to :meth:`update_parameters`."""

    def __init__(self, model: Module, device: Any = None, avg_fn: Callable | None = None,
                 multi_avg_fn: Callable | None = None, use_buffers: bool = False) -> None:
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        self.module = deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", tensor(0, dtype=int64, device=device))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args, **kwargs):
        """Run the averaged copy of the model."""
        return self.module(*args, **kwargs)

    def update_parameters(self, model: Module) -> None:
        """Average ``model``'s current weights in (the first call copies them)."""
        if self.use_buffers:
            mine = list(itertools.chain(self.module.parameters(), self.module.buffers()))
            theirs = list(itertools.chain(model.parameters(), model.buffers()))
        else:
            mine, theirs = list(self.parameters()), list(model.parameters())
        theirs = [p.detach().to(a.device) for a, p in zip(mine, theirs)]
        n = int(self.n_averaged.item())
        if n == 0:
            for a, p in zip(mine, theirs):
                _copy_into(a, p)
        elif self.multi_avg_fn is not None:
            self.multi_avg_fn(mine, theirs, self.n_averaged)
        else:  # torch's CPU path: the one-Tensor function, SWA unless avg_fn is given
            avg_fn = self.avg_fn or get_swa_avg_fn()
            for a, p in zip(mine, theirs):
                _copy_into(a, avg_fn(a.detach(), p, self.n_averaged))
        if not self.use_buffers:  # buffers (BatchNorm statistics) follow the model's
            for b_swa, b_model in zip(self.module.buffers(), model.buffers()):
                _copy_into(b_swa, b_model)
        _copy_into(self.n_averaged, self.n_averaged + 1)


def update_bn(loader: Iterable[Any], model: Module, device: Any = None) -> None:
    """Recompute every BatchNorm's running statistics with one pass of ``loader`` through
    ``model`` (cumulative averages over the batches; the first item of tuple batches)."""
    momenta = {}
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None
    with no_grad():
        for input in loader:
            if isinstance(input, (list, tuple)):
                input = input[0]
            if device is not None:
                input = input.to(device)
            model(input)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)


class SWALR(LRScheduler):
    """Anneals each group's lr from its value to ``swa_lr`` over ``anneal_epochs`` ("cos" or
    "linear"), then holds it there."""

    def __init__(self, optimizer: Optimizer, swa_lr: float, anneal_epochs: int = 10,
                 anneal_strategy: str = "cos", last_epoch: int = -1) -> None:
        swa_lrs = _format_param("swa_lr", optimizer, swa_lr)
        for lr, group in zip(swa_lrs, optimizer.param_groups):
            group["swa_lr"] = lr
        if anneal_strategy not in ["cos", "linear"]:
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self._set_anneal_func(anneal_strategy)
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(
                f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _linear_anneal(t: float) -> float:
        return t

    @staticmethod
    def _cosine_anneal(t: float) -> float:
        return (1 - math.cos(math.pi * t)) / 2

    @staticmethod
    def _get_initial_lr(lr: float, swa_lr: float, alpha: float) -> float:
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self) -> list[float]:
        """The lrs one annealing step further towards each group's ``swa_lr``."""
        if not self._get_lr_called_within_step:
            warnings.warn("To get the last learning rate computed by the scheduler, please use "
                          "`get_last_lr()`.", UserWarning, stacklevel=2)
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_t = max(0, min(1, (step - 1) / max(1, self.anneal_epochs)))
        prev_alpha = self.anneal_func(prev_t)
        groups = self.optimizer.param_groups
        prev_lrs = [self._get_initial_lr(g["lr"], g["swa_lr"], prev_alpha) for g in groups]
        t = max(0, min(1, step / max(1, self.anneal_epochs)))
        alpha = self.anneal_func(t)
        return [g["swa_lr"] * alpha + lr * (1 - alpha) for g, lr in zip(groups, prev_lrs)]

    def _set_anneal_func(self, anneal_strategy: str) -> None:
        self._anneal_strategy = anneal_strategy
        self.anneal_func = (self._cosine_anneal if anneal_strategy == "cos"
                            else self._linear_anneal)

    def state_dict(self) -> dict[str, Any]:
        """Every attribute except the optimizer and the annealing function."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "anneal_func")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes saved by :meth:`state_dict`."""
        self.__dict__.update(state_dict)
        self._set_anneal_func(self._anneal_strategy)
