"""DataParallel: PyTorch's single-process multi-device wrapper. chainrule runs the wrapped
module on its own device (as PyTorch does when no GPUs are listed); the ``module.`` prefix of
its ``state_dict`` keys is PyTorch's."""

from __future__ import annotations

from typing import Any

from chainrule.nn.module import Module

__all__ = ["DataParallel"]


class DataParallel(Module):
    """Calls ``module`` on the whole batch (no scattering to replicas)."""

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None,
                 dim: int = 0) -> None:
        super().__init__()
        self.module = module
        self.device_ids = [] if device_ids is None else list(device_ids)
        self.output_device = output_device
        self.dim = dim

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        """module(*inputs, **kwargs)."""
        return self.module(*inputs, **kwargs)
