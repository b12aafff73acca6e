"""``cr.utils.data``: the same objects as :mod:`chainrule.data`, under PyTorch's path
``torch.utils.data`` (``from chainrule.utils.data import DataLoader``)."""

from __future__ import annotations

from chainrule.data import *  # noqa: F403
from chainrule.data import __all__ as _data_all
from chainrule.data import dataloader, dataset, distributed  # noqa: F401

__all__ = list(_data_all)
