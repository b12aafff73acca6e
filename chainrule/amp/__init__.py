"""``cr.amp``: automatic mixed precision, as ``torch.amp``.

``cr.autocast(device_type, dtype=None, enabled=True, cache_enabled=None)`` runs matrix products
and convolutions in lower precision (bfloat16 on the CPU, float16 on CUDA) and precision-hungry
ops in float32; ``GradScaler`` scales the loss so float16 gradients do not underflow, skips the
steps whose gradients overflowed and adapts the scale (torch's trajectory, step for step).
"""

from chainrule.amp.autocast_mode import (
    autocast, custom_bwd, custom_fwd, get_autocast_dtype, is_autocast_available,
    is_autocast_enabled,
)
from chainrule.amp.grad_scaler import GradScaler, OptState

__all__ = ["autocast", "GradScaler", "OptState", "custom_fwd", "custom_bwd",
           "is_autocast_available", "is_autocast_enabled", "get_autocast_dtype"]
