"""``cr.utils``: PyTorch's ``torch.utils`` paths (``cr.utils.data`` is :mod:`chainrule.data`)."""

from __future__ import annotations

from chainrule.utils import data

__all__ = ["data"]
