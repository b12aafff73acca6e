"""``Parameter``: a leaf Tensor that a Module registers as one of its learnable weights."""

from __future__ import annotations

from typing import Any

from chainrule.tensor import Tensor, init_leaf
from chainrule.creation import to_array
from chainrule.dtypes import get_default_dtype

__all__ = ["Parameter", "Buffer"]


class Parameter(Tensor):
    """A Tensor that is a module parameter: assigning it to a Module attribute registers it."""

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            arr = to_array([], get_default_dtype(), None)
        elif isinstance(data, Tensor):
            arr = data._data  # shares memory, like torch.nn.Parameter(t)
        else:
            arr = to_array(data, None, None)
        init_leaf(self, arr)
        if isinstance(data, Tensor):  # ... and its version counter, as torch's
            self._vholder = data._version_holder()
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Buffer(Tensor):
    """Marks a tensor to be registered as a buffer when assigned to a Module attribute."""

    __slots__ = ()

    def __init__(self, data: Any = None, *, persistent: bool = True) -> None:
        init_leaf(self, data._data if isinstance(data, Tensor) else to_array(
            [] if data is None else data, None, None))
        if isinstance(data, Tensor):  # the same memory and version counter, as torch's
            self._vholder = data._version_holder()
        self.__dict__["persistent"] = persistent
