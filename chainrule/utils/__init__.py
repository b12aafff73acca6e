"""``cr.utils``: PyTorch's ``torch.utils`` (``cr.utils.data`` is ``cr.data``;
``cr.utils.tensorboard.SummaryWriter`` writes TensorBoard event files)."""

from __future__ import annotations


def __getattr__(name: str):
    import importlib

    if name == "data":  # torch.utils.data, loaded on first use as `import torch` makes it usable
        return importlib.import_module("chainrule.data")
    raise AttributeError(f"module 'chainrule.utils' has no attribute {name!r}")
