"""HalfCauchy(scale) = |Cauchy(0, scale)|."""

from __future__ import annotations

import math

from chainrule import full
from chainrule.distributions.cauchy import Cauchy
from chainrule.distributions.half_normal import _Folded
from chainrule.distributions.transforms import AbsTransform
from chainrule.tensor import Tensor

__all__ = ["HalfCauchy"]


class HalfCauchy(_Folded):
    """p(x) = 2/(πγ(1 + (x/γ)²)) on x ≥ 0."""

    def __init__(self, scale: Tensor | float, validate_args: bool | None = None) -> None:
        super().__init__(Cauchy(0, scale, validate_args=False), AbsTransform(),
                         validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return full(self._extended_shape(), math.inf, dtype=self.scale.dtype,
                    device=self.scale.device)

    @property
    def variance(self) -> Tensor:
        return self.base_dist.variance

    def log_prob(self, value: Tensor) -> Tensor:
        from chainrule import as_tensor

        value = as_tensor(value, dtype=self.scale.dtype, device=self.scale.device)
        return super().log_prob(value)
