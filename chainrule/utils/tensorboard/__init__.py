"""``cr.utils.tensorboard``: PyTorch's ``torch.utils.tensorboard`` (``SummaryWriter``), writing
real TensorBoard event files through the ``tensorboard`` package (an optional extra)."""

from __future__ import annotations

try:
    import tensorboard  # noqa: F401
except ImportError:
    raise ImportError("chainrule.utils.tensorboard needs the tensorboard package "
                      "(pip install tensorboard, or chainrule[tensorboard])") from None

from chainrule.utils.tensorboard.writer import SummaryWriter

__all__ = ["SummaryWriter"]
