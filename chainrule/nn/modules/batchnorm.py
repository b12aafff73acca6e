"""``torch.nn.modules.batchnorm``'s path: the batch-norm layers (defined in normalization.py)."""

from __future__ import annotations

from chainrule.nn.modules.normalization import (  # noqa: F401  (torch's private bases, re-exported)
    BatchNorm1d, BatchNorm2d, BatchNorm3d, _BatchNorm, _NormBase)
from chainrule.nn.modules.sync_batchnorm import SyncBatchNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"]
