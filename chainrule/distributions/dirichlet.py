"""Dirichlet(concentration)."""

from __future__ import annotations

from chainrule.distributions import constraints
from chainrule.distributions._special import digamma, lgamma, standard_gamma
from chainrule.distributions.exp_family import ExponentialFamily
from chainrule.distributions.gamma import clamp_tiny_
from chainrule.tensor import Tensor

__all__ = ["Dirichlet"]


class Dirichlet(ExponentialFamily):
    """p(x) = Γ(Σα)/ΠΓ(αᵢ) Π xᵢ^(αᵢ-1) on the simplex; rsample = G/ΣG with Gᵢ ~ Gamma(αᵢ, 1)
    (gradients through the Gamma draws' implicit reparameterization)."""

    arg_constraints = {"concentration": constraints.independent(constraints.positive, 1)}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, concentration: Tensor, validate_args: bool | None = None) -> None:
        if concentration.dim() < 1:
            raise ValueError("`concentration` parameter must be at least one-dimensional.")
        self.concentration = concentration
        super().__init__(concentration.shape[:-1], concentration.shape[-1:],
                         validate_args=validate_args)

    def expand(self, batch_shape: tuple, _instance=None) -> Dirichlet:
        return self._expand_params(Dirichlet, batch_shape, _instance, ("concentration",),
                                   event_shape=self._event_shape)

    def rsample(self, sample_shape: tuple = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        gammas = clamp_tiny_(standard_gamma(self.concentration.expand(shape)))
        return clamp_tiny_(gammas / gammas.sum(-1, keepdim=True))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return ((self.concentration - 1.0).xlogy(value).sum(-1)
                + lgamma(self.concentration.sum(-1)) - lgamma(self.concentration).sum(-1))

    @property
    def mean(self) -> Tensor:
        return self.concentration / self.concentration.sum(-1, True)

    @property
    def mode(self) -> Tensor:
        import chainrule.nn.functional as F
        from chainrule import where

        cm1 = (self.concentration - 1).clamp(min=0.0)
        mode = cm1 / cm1.sum(-1, True)
        mask = (self.concentration < 1).all(-1, keepdim=True)
        corner = F.one_hot(mode.argmax(-1), cm1.shape[-1]).type_as(mode)
        return where(mask, corner, mode)

    @property
    def variance(self) -> Tensor:
        con0 = self.concentration.sum(-1, True)
        return self.concentration * (con0 - self.concentration) / (con0.pow(2) * (con0 + 1))

    def entropy(self) -> Tensor:
        k = self.concentration.size(-1)
        a0 = self.concentration.sum(-1)
        return (lgamma(self.concentration).sum(-1) - lgamma(a0) - (k - a0) * digamma(a0)
                - ((self.concentration - 1.0) * digamma(self.concentration)).sum(-1))

    @property
    def _natural_params(self) -> tuple[Tensor]:
        return (self.concentration,)

    def _log_normalizer(self, x: Tensor) -> Tensor:
        return lgamma(x).sum(-1) - lgamma(x.sum(-1))
