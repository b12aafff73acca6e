"""``chainrule.nn``: layers, losses and the Module machinery (PyTorch's ``torch.nn``)."""

from __future__ import annotations

from chainrule.nn.module import Module
from chainrule.nn.parameter import Buffer, Parameter
from chainrule.nn import functional, init, parallel, utils  # noqa: F401
from chainrule.nn.modules import *  # noqa: F403
from chainrule.nn.modules import __all__ as _modules_all

__all__ = (["Module", "Parameter", "Buffer", "functional", "init", "parallel", "utils"]
           + list(_modules_all))
