"""Argument checks shared by the functional forms (``nn/activations.py``, ``nn/linear.py``,
``nn/normalization.py``, ``nn/embedding.py``, ``nn/losses.py``)."""

from __future__ import annotations

from typing import Any

from chainrule import devices
from chainrule._state import state
from chainrule.tensor import Tensor


def check_tensor(x: Any, fn: str, arg: str = "input") -> None:
    """TypeError naming ``fn`` and ``arg`` unless ``x`` is a Tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}(): argument '{arg}' must be Tensor, not {type(x).__name__}")


def shape_of(x: Any) -> tuple:
    """The shape of a Tensor or an array as a tuple (for error messages and comparisons)."""
    return tuple(x.shape)


def gpu_unchecked(a) -> bool:
    """Range checks of GPU indices read the GPU back (a sync every step), so they run only
    under ``detect_anomaly``; elsewhere an out-of-range index reads a wrapped-around row."""
    return devices.is_gpu_array(a) and not state.anomaly
