"""Dropout layers: active in training mode, the identity in eval mode."""

from __future__ import annotations

from chainrule.nn import functional as F
from chainrule.nn.module import Module
from chainrule.tensor import Tensor

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"]


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero elements with probability p in training, scaling the rest by 1/(1-p)."""

    def forward(self, input: Tensor) -> Tensor:
        """dropout(x) in training mode, x in eval mode."""
        return F.dropout(input, self.p, self.training, self.inplace)


class Dropout1d(_DropoutNd):
    """Zero whole channels of (N, C, L) inputs with probability p in training."""

    def forward(self, input: Tensor) -> Tensor:
        """dropout1d(x) in training mode, x in eval mode."""
        return F.dropout1d(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Zero whole channels of (N, C, H, W) inputs with probability p in training."""

    def forward(self, input: Tensor) -> Tensor:
        """dropout2d(x) in training mode, x in eval mode."""
        return F.dropout2d(input, self.p, self.training, self.inplace)


class Dropout3d(_DropoutNd):
    """Zero whole channels of (N, C, D, H, W) inputs with probability p in training."""

    def forward(self, input: Tensor) -> Tensor:
        """dropout3d(x) in training mode, x in eval mode."""
        return F.dropout3d(input, self.p, self.training, self.inplace)


class AlphaDropout(_DropoutNd):
    """Alpha dropout (keeps SELU's zero mean and unit variance) in training."""

    def forward(self, input: Tensor) -> Tensor:
        """alpha_dropout(x) in training mode, x in eval mode."""
        return F.alpha_dropout(input, self.p, self.training)  # torch's ignores inplace


class FeatureAlphaDropout(_DropoutNd):
    """Alpha dropout of whole channels in training."""

    def forward(self, input: Tensor) -> Tensor:
        """feature_alpha_dropout(x) in training mode, x in eval mode."""
        return F.feature_alpha_dropout(input, self.p, self.training)  # torch's ignores inplace


__all__ += ["AlphaDropout", "FeatureAlphaDropout"]
