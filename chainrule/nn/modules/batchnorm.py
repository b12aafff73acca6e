"""``torch.nn.modules.batchnorm``'s path: the batch-norm layers (defined in normalization.py)."""

from __future__ import annotations

from chainrule.nn.modules.normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d, _BatchNorm
from chainrule.nn.modules.sync_batchnorm import SyncBatchNorm

_NormBase = _BatchNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"]
