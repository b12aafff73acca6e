"""``torch.nn.modules.batchnorm``'s path: the batch-norm layers (defined in
:mod:`chainrule.nn.modules.normalization` and :mod:`chainrule.nn.modules.sync_batchnorm`)."""

from __future__ import annotations

from chainrule.nn.modules.normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d
from chainrule.nn.modules.sync_batchnorm import SyncBatchNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"]
