"""Gamma(concentration, rate)."""

from __future__ import annotations

from numbers import Number

from chainrule import Size
from chainrule.devices import np
from chainrule.distributions import constraints
from chainrule.distributions._special import digamma, gammainc, lgamma, standard_gamma
from chainrule.distributions.exp_family import ExponentialFamily
from chainrule.distributions.utils import broadcast_all, finfo
from chainrule.tensor import Tensor

__all__ = ["Gamma"]


def clamp_tiny_(value: Tensor) -> Tensor:
    """Raise draws that underflowed to 0 to the smallest normal number, in place (the gradient
    stays the sample's)."""
    d = value.detach()._data
    if d.shape == ():
        value._data = np.maximum(d, finfo(value).tiny)
    else:
        np.maximum(d, finfo(value).tiny, out=d)
    return value


class Gamma(ExponentialFamily):
    """p(x) = βᵅ x^(α-1) e^(-βx) / Γ(α); rsample = G/β with G ~ Gamma(α, 1), differentiable in
    α through the implicit reparameterization."""

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True
    _mean_carrier_measure = 0

    def __init__(self, concentration: Tensor | float, rate: Tensor | float,
                 validate_args: bool | None = None) -> None:
        self.concentration, self.rate = broadcast_all(concentration, rate)
        scalar = isinstance(concentration, Number) and isinstance(rate, Number)
        batch_shape = Size() if scalar else self.concentration.size()
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape: tuple, _instance=None) -> Gamma:
        return self._expand_params(Gamma, batch_shape, _instance, ("concentration", "rate"))

    @property
    def mean(self) -> Tensor:
        return self.concentration / self.rate

    @property
    def mode(self) -> Tensor:
        return ((self.concentration - 1) / self.rate).clamp(min=0)

    @property
    def variance(self) -> Tensor:
        return self.concentration / self.rate.pow(2)

    def rsample(self, sample_shape: tuple = Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        value = standard_gamma(self.concentration.expand(shape)) / self.rate.expand(shape)
        return clamp_tiny_(value)

    def log_prob(self, value: Tensor) -> Tensor:
        from chainrule import as_tensor

        value = as_tensor(value, dtype=self.rate.dtype, device=self.rate.device)
        if self._validate_args:
            self._validate_sample(value)
        return (self.concentration.xlogy(self.rate) + (self.concentration - 1).xlogy(value)
                - self.rate * value - lgamma(self.concentration))

    def entropy(self) -> Tensor:
        return (self.concentration - self.rate.log() + lgamma(self.concentration)
                + (1.0 - self.concentration) * digamma(self.concentration))

    @property
    def _natural_params(self) -> tuple[Tensor, Tensor]:
        return (self.concentration - 1, -self.rate)

    def _log_normalizer(self, x: Tensor, y: Tensor) -> Tensor:
        return lgamma(x + 1) + (x + 1) * (-y.reciprocal()).log()

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return gammainc(self.concentration, self.rate * value)
