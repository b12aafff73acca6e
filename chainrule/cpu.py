"""``cr.cpu``: the CPU device module, as ``torch.cpu`` (``cr.cpu.amp`` holds the deprecated
``autocast``/``GradScaler`` spellings)."""

from __future__ import annotations

from chainrule.amp.deprecated import namespace as _amp_namespace

__all__ = ["is_available", "device_count", "current_device", "synchronize", "amp"]

amp = _amp_namespace("cpu")


def is_available() -> bool:
    return True


def device_count() -> int:
    return 1


def current_device() -> str:
    return "cpu"


def synchronize(device=None) -> None:
    """Nothing to wait for on the CPU."""
