"""``cr.utils``: PyTorch's ``torch.utils`` paths (``cr.utils.data`` is :mod:`chainrule.data`;
``cr.utils.tensorboard.SummaryWriter`` writes TensorBoard event files)."""

from __future__ import annotations

from chainrule.utils import data

__all__ = ["data"]
