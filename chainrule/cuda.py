"""``cr.cuda``: GPU availability and control (CuPy underneath)."""

from __future__ import annotations

from chainrule import backend

__all__ = ["is_available", "device_count", "synchronize", "manual_seed", "manual_seed_all",
           "current_device", "get_device_name", "amp"]


def is_available() -> bool:
    """True when CuPy is installed and sees a GPU."""
    return backend.cuda_available()


def device_count() -> int:
    if not is_available():
        return 0
    return backend.xp("cuda").cuda.runtime.getDeviceCount()


def current_device() -> int:
    return backend.xp("cuda").cuda.Device().id


def get_device_name(device=None) -> str:
    cp = backend.xp("cuda")
    idx = 0 if device is None else backend.as_device(device).index or 0
    return cp.cuda.runtime.getDeviceProperties(idx)["name"].decode()


def synchronize(device=None) -> None:
    """Wait for all queued GPU work (a no-op without a GPU)."""
    if is_available():
        backend.xp("cuda").cuda.Device().synchronize()


def manual_seed(seed: int) -> None:
    """Seed the GPU random generator."""
    if is_available():
        backend.xp("cuda").random.seed(int(seed) % 2**32)


manual_seed_all = manual_seed


from chainrule.amp.deprecated import namespace as _amp_namespace  # noqa: E402

amp = _amp_namespace("cuda")  # cr.cuda.amp.autocast / GradScaler, as torch.cuda.amp
