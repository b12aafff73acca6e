"""``cr.accelerator``: the current accelerator, as ``torch.accelerator`` (chainrule's is CUDA,
through CuPy)."""

from __future__ import annotations

from chainrule import devices

__all__ = ["is_available", "current_accelerator", "device_count", "current_device_index",
           "set_device_index", "synchronize"]


def is_available() -> bool:
    """True when a GPU is usable (CuPy installed and a device seen)."""
    return devices.cuda_available()


def current_accelerator(check_available: bool = False):
    """``cr.device("cuda")`` where chainrule can use a GPU, else None."""
    return devices.device("cuda") if devices.cuda_available() else None


def device_count() -> int:
    from chainrule import cuda

    return cuda.device_count()


def current_device_index() -> int:
    from chainrule import cuda

    return cuda.current_device() if is_available() else -1


def set_device_index(device) -> None:
    """Make ``device`` (an index or a ``cuda:N`` device) the current GPU."""
    index = device if isinstance(device, int) else devices.as_device(device).index or 0
    devices.xp("cuda").cuda.Device(index).use()


def synchronize(device=None) -> None:
    """Wait for the queued GPU work (a no-op without a GPU)."""
    from chainrule import cuda

    cuda.synchronize(device)
