"""``cr.cuda``: GPU availability and control (CuPy underneath)."""

from __future__ import annotations

from chainrule import devices

__all__ = ["is_available", "device_count", "synchronize", "manual_seed", "manual_seed_all",
           "current_device", "get_device_name", "amp"]


def is_available() -> bool:
    """True when CuPy is installed and sees a GPU."""
    return devices.cuda_available()


def device_count() -> int:
    if not is_available():
        return 0
    return devices.xp("cuda").cuda.runtime.getDeviceCount()


def current_device() -> int:
    return devices.xp("cuda").cuda.Device().id


def get_device_name(device=None) -> str:
    cp = devices.xp("cuda")
    idx = 0 if device is None else devices.as_device(device).index or 0
    return cp.cuda.runtime.getDeviceProperties(idx)["name"].decode()


def synchronize(device=None) -> None:
    """Wait for all queued GPU work (a no-op without a GPU)."""
    if is_available():
        devices.xp("cuda").cuda.Device().synchronize()


def manual_seed(seed: int) -> None:
    """Seed the GPU random generator."""
    if is_available():
        devices.xp("cuda").random.seed(int(seed) % 2**32)


manual_seed_all = manual_seed


from chainrule.amp.deprecated import namespace as _amp_namespace  # noqa: E402

amp = _amp_namespace("cuda")  # cr.cuda.amp.autocast / GradScaler, as torch.cuda.amp
