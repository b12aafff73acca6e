"""``cr.utils``: PyTorch's ``torch.utils`` paths (``cr.utils.data`` is :mod:`chainrule.data`;
``cr.utils.tensorboard.SummaryWriter`` writes TensorBoard event files;
``cr.utils.checkpoint``: activation checkpointing's API)."""

from __future__ import annotations

from chainrule.utils import checkpoint, data

__all__ = ["checkpoint", "data"]
