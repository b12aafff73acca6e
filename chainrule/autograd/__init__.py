"""Reverse-mode automatic differentiation: backward, grad, custom Functions, gradient checks."""

from __future__ import annotations

from chainrule.autograd import functional  # noqa: F401
from chainrule.autograd import profiler  # noqa: F401  (stdlib only until a profile starts)
from chainrule.autograd.anomaly import detect_anomaly, set_detect_anomaly
from chainrule.autograd.entry import backward, grad
from chainrule.autograd.function import Function, FunctionCtx, Op, once_differentiable
from chainrule.autograd.gatecheck import check_gates
from chainrule.autograd.grad_mode import (
    enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled, no_grad,
    set_grad_enabled,
)
from chainrule.autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck

__all__ = [
    "Function", "FunctionCtx", "Op", "once_differentiable", "backward", "grad", "gradcheck",
    "gradgradcheck", "GradcheckError", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "inference_mode", "is_inference_mode_enabled",
    "check_gates", "detect_anomaly", "set_detect_anomaly", "functional", "profiler",
]


# ---- legacy and switch names of torch.autograd --------------------------------------------------
class _VariableMeta(type):
    def __instancecheck__(cls, obj) -> bool:
        from chainrule.tensor import Tensor

        return isinstance(obj, Tensor)


class Variable(metaclass=_VariableMeta):
    """Legacy: ``Variable(t, requires_grad=True)`` is ``t`` itself with requires_grad set, and
    every tensor is an instance (Variables and Tensors merged in PyTorch 0.4)."""

    def __new__(cls, data=None, requires_grad: bool = False, volatile: bool = False):
        from chainrule.tensor import Tensor

        t = data if isinstance(data, Tensor) else Tensor(data)
        return t.requires_grad_(True) if requires_grad else t


def variable(*args, **kwargs):
    """Legacy alias of :class:`Variable`."""
    return Variable(*args, **kwargs)


class NestedIOFunction(Function):
    """Legacy form of :class:`Function` (kept by torch for backward compatibility):
    subclasses define ``forward_extended`` and ``backward_extended``."""

    @staticmethod
    def forward(ctx, *args):
        return ctx.forward_extended(*args)

    @staticmethod
    def backward(ctx, *grads):
        return ctx.backward_extended(*grads)


_switches = {"multithreading": True, "view_replay": False, "grad_layout": False}


def is_multithreading_enabled() -> bool:
    """Whether backward may use several threads (chainrule's engine runs on one)."""
    return _switches["multithreading"]


class set_multithreading_enabled:
    """Context manager (and immediate switch) recording the multithreaded-backward flag."""

    def __init__(self, mode: bool) -> None:
        self.prev = _switches["multithreading"]
        _switches["multithreading"] = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        _switches["multithreading"] = self.prev


def is_view_replay_enabled() -> bool:
    """Views of tensors changed in place are always replayed from their base in chainrule
    (autograd/inplace.py); torch's switch for it is off by default."""
    return _switches["view_replay"]


class enforce_grad_layout_policy:
    """Context manager for torch's gradient-layout contract: chainrule's accumulated gradients
    are always contiguous arrays of the parameter's shape, so there is nothing to enforce."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def __enter__(self):
        self.prev = _switches["grad_layout"]
        _switches["grad_layout"] = self.enabled
        return self

    def __exit__(self, *exc) -> None:
        _switches["grad_layout"] = self.prev


__all__ += ["Variable", "variable", "NestedIOFunction", "is_multithreading_enabled",
            "set_multithreading_enabled", "is_view_replay_enabled",
            "enforce_grad_layout_policy"]
