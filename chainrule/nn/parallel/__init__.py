"""``chainrule.nn.parallel``: ``DistributedDataParallel`` (also ``DDP``), as torch's."""

from __future__ import annotations

from chainrule.nn.parallel.distributed import DDP, DistributedDataParallel

__all__ = ["DistributedDataParallel", "DDP"]
