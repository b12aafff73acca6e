"""``torch.nn.modules.module``'s path: :class:`Module` (defined in :mod:`chainrule.nn.module`)."""

from __future__ import annotations

from chainrule.nn.module import Module

__all__ = ["Module"]
