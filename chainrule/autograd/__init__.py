"""Reverse-mode automatic differentiation: backward, grad, custom Functions, gradient checks."""

from __future__ import annotations

from chainrule.autograd import functional  # noqa: F401
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
    "check_gates", "detect_anomaly", "set_detect_anomaly", "functional",
]
