"""``torch.nn.modules.module``'s path: :class:`Module` (defined in chainrule/nn/module.py)."""

from __future__ import annotations

from chainrule.nn.module import Module

__all__ = ["Module"]
