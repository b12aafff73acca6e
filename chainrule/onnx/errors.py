"""``cr.onnx.errors`` (PyTorch's ``torch.onnx.errors``): what an export raises."""

from __future__ import annotations

__all__ = ["UnsupportedOperatorError"]


class UnsupportedOperatorError(RuntimeError):
    """A gate in the model has no ONNX mapping (the message names it and where it was made)."""
