"""``chainrule.nn``: layers, losses and the Module machinery (PyTorch's ``torch.nn``)."""

from __future__ import annotations

from chainrule.nn.module import Module
from chainrule.nn.parameter import Buffer, Parameter

__all__ = ["Module", "Parameter", "Buffer"]
