"""Geometric(probs | logits): failures before the first success."""

from __future__ import annotations

from numbers import Number

from chainrule import Size, where, zeros_like
from chainrule.autograd.grad_mode import no_grad
from chainrule.distributions import _sampling, constraints
from chainrule.distributions._params import ProbsOrLogits
from chainrule.distributions.distribution import Distribution
from chainrule.distributions.utils import broadcast_all, finfo
from chainrule.nn.functional import binary_cross_entropy_with_logits
from chainrule.tensor import Tensor

__all__ = ["Geometric"]


class Geometric(ProbsOrLogits, Distribution):
    """P(k) = (1-p)ᵏ p for k = 0, 1, …; sample = ⌊log U / log(1-p)⌋."""

    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.nonnegative_integer

    def __init__(self, probs: Tensor | Number | None = None, logits: Tensor | Number | None = None,
                 validate_args: bool | None = None) -> None:
        self._check_one(probs, logits)
        given = probs if probs is not None else logits
        (self._param,) = broadcast_all(given)
        setattr(self, "probs" if probs is not None else "logits", self._param)
        batch_shape = Size() if isinstance(given, Number) else self._param.size()
        super().__init__(batch_shape, validate_args=validate_args)
        if self._validate_args and probs is not None:
            value = self.probs
            valid = value > 0
            if not bool(valid.all()):
                raise ValueError(
                    f"Expected parameter probs ({type(value).__name__} of shape "
                    f"{tuple(value.shape)}) of distribution {repr(self)} to be positive but "
                    f"found invalid values:\n{value.detach()[~valid]}")

    def expand(self, batch_shape: tuple, _instance=None) -> Geometric:
        new = self._get_checked_instance(Geometric, _instance)
        self._expand_param(new, Size(batch_shape))
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        return 1.0 / self.probs - 1.0

    @property
    def mode(self) -> Tensor:
        return zeros_like(self.probs)

    @property
    def variance(self) -> Tensor:
        return (1.0 / self.probs - 1.0) / self.probs

    def sample(self, sample_shape: tuple = Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        with no_grad():
            u = _sampling.uniform(shape, self.probs, float(finfo(self.probs).tiny), 1)
            return (u.log() / (-self.probs).log1p()).floor()

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        value, probs = broadcast_all(value, self.probs)
        probs = where((probs == 1) & (value == 0), 0.0, probs)  # 0·log 0 = 0 at p = 1
        return value * (-probs).log1p() + self.probs.log()

    def entropy(self) -> Tensor:
        return binary_cross_entropy_with_logits(self.logits, self.probs,
                                                reduction="none") / self.probs
