"""``cr.accelerator``: the current accelerator, as ``torch.accelerator`` (CUDA through CuPy,
the only one chainrule knows; None where there is none)."""

from __future__ import annotations

from chainrule import cuda as _cuda
from chainrule import devices

__all__ = ["is_available", "current_accelerator", "device_count", "current_device_index",
           "current_device_idx", "set_device_index", "set_device_idx", "synchronize",
           "device_index"]


def is_available() -> bool:
    """True when a GPU is there (CuPy installed and a device seen)."""
    return _cuda.is_available()


def current_accelerator(check_available: bool = False):
    """``device("cuda")`` when chainrule can use a GPU, else None."""
    return devices.device("cuda") if _cuda.is_available() else None


def device_count() -> int:
    return _cuda.device_count()


def current_device_index() -> int:
    return _cuda.current_device() if _cuda.is_available() else -1


current_device_idx = current_device_index


def set_device_index(device) -> None:
    """Make ``device`` the current GPU."""
    if not _cuda.is_available():
        raise RuntimeError("set_device_index: no accelerator is available")
    idx = device if isinstance(device, int) else devices.as_device(device).index or 0
    devices.xp("cuda").cuda.Device(idx).use()


set_device_idx = set_device_index


def synchronize(device=None) -> None:
    """Wait for the queued work of the accelerator (nothing without one)."""
    if _cuda.is_available():
        _cuda.synchronize(device)


class device_index:
    """``with cr.accelerator.device_index(1):`` runs the block with GPU 1 current."""

    def __init__(self, device) -> None:
        self.idx = device

    def __enter__(self):
        self.prev = current_device_index()
        if self.idx is not None and _cuda.is_available():
            set_device_index(self.idx)
        return self

    def __exit__(self, *exc) -> None:
        if self.idx is not None and _cuda.is_available() and self.prev >= 0:
            set_device_index(self.prev)
