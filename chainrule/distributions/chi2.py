"""Chi2(df) = Gamma(df/2, 1/2)."""

from __future__ import annotations

from chainrule.distributions import constraints
from chainrule.distributions.gamma import Gamma
from chainrule.tensor import Tensor

__all__ = ["Chi2"]


class Chi2(Gamma):
    """χ²(k): the sum of k squared standard normals, Gamma(k/2, 1/2)."""

    arg_constraints = {"df": constraints.positive}

    def __init__(self, df: Tensor | float, validate_args: bool | None = None) -> None:
        super().__init__(0.5 * df, 0.5, validate_args=validate_args)

    def expand(self, batch_shape: tuple, _instance=None) -> Chi2:
        new = self._get_checked_instance(Chi2, _instance)
        return super().expand(batch_shape, new)

    @property
    def df(self) -> Tensor:
        return self.concentration * 2
