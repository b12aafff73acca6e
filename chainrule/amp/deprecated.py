"""``cr.cuda.amp`` and ``cr.cpu.amp``: torch's older, device-bound spellings of ``cr.amp``
(deprecated in torch, with the same FutureWarnings here)."""

from __future__ import annotations

import warnings

from chainrule.amp import autocast_mode, grad_scaler


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"`{old}(args...)` is deprecated. Please use `{new}` instead.", FutureWarning,
                  stacklevel=3)


class CudaAutocast(autocast_mode.autocast):
    """``cr.cuda.amp.autocast(enabled=True, dtype=cr.float16, cache_enabled=True)``."""

    def __init__(self, enabled: bool = True, dtype=None, cache_enabled: bool = True) -> None:
        _deprecated("torch.cuda.amp.autocast", "torch.amp.autocast('cuda', args...)")
        from chainrule import dtypes

        super().__init__("cuda", dtype=dtype or dtypes.float16, enabled=enabled,
                         cache_enabled=cache_enabled)


class CpuAutocast(autocast_mode.autocast):
    """``cr.cpu.amp.autocast(enabled=True, dtype=cr.bfloat16, cache_enabled=True)``."""

    def __init__(self, enabled: bool = True, dtype=None, cache_enabled: bool = True) -> None:
        _deprecated("torch.cpu.amp.autocast", "torch.amp.autocast('cpu', args...)")
        from chainrule import dtypes

        super().__init__("cpu", dtype=dtype or dtypes.bfloat16, enabled=enabled,
                         cache_enabled=cache_enabled)


class CudaGradScaler(grad_scaler.GradScaler):
    """``cr.cuda.amp.GradScaler(init_scale=2.**16, ...)``: ``cr.amp.GradScaler("cuda", ...)``."""

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000,
                 enabled: bool = True) -> None:
        _deprecated("torch.cuda.amp.GradScaler", "torch.amp.GradScaler('cuda', args...)")
        super().__init__("cuda", init_scale, growth_factor, backoff_factor, growth_interval,
                         enabled)


class CpuGradScaler(grad_scaler.GradScaler):
    """``cr.cpu.amp.GradScaler(init_scale=2.**16, ...)``: ``cr.amp.GradScaler("cpu", ...)``."""

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000,
                 enabled: bool = True) -> None:
        _deprecated("torch.cpu.amp.GradScaler", "torch.amp.GradScaler('cpu', args...)")
        super().__init__("cpu", init_scale, growth_factor, backoff_factor, growth_interval,
                         enabled)


def namespace(device: str):
    """The module object ``cr.<device>.amp`` (registered in sys.modules, so that
    ``import chainrule.cuda.amp`` and ``from chainrule.cuda.amp import GradScaler`` work)."""
    import sys
    import types

    name = f"chainrule.{device}.amp"
    if name not in sys.modules:
        mod = types.ModuleType(name, f"``cr.{device}.amp``: deprecated aliases of ``cr.amp``.")
        mod.autocast = CudaAutocast if device == "cuda" else CpuAutocast
        mod.GradScaler = CudaGradScaler if device == "cuda" else CpuGradScaler
        mod.custom_fwd, mod.custom_bwd = autocast_mode.custom_fwd, autocast_mode.custom_bwd
        mod.__all__ = ["autocast", "GradScaler", "custom_fwd", "custom_bwd"]
        sys.modules[name] = mod
    return sys.modules[name]
