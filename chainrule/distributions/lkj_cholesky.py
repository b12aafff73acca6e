"""LKJCholesky(dim, concentration): Cholesky factors of LKJ-distributed correlation matrices."""

from __future__ import annotations

import math

from chainrule import Size, arange, cat, eye, zeros
from chainrule.autograd.grad_mode import no_grad
from chainrule.distributions import _sampling, constraints
from chainrule.distributions._special import lgamma, mvlgamma
from chainrule.distributions.beta import Beta
from chainrule.distributions.distribution import Distribution
from chainrule.distributions.multivariate_normal import _diagonal
from chainrule.distributions.utils import broadcast_all, finfo
from chainrule.tensor import Tensor

__all__ = ["LKJCholesky"]


class LKJCholesky(Distribution):
    """L with LLᵀ ~ LKJ(η): p(L) ∝ Πᵢ Lᵢᵢ^(dim - i + 2η - 2); sampled by the onion method (a
    Beta draw per row for its squared norm below the diagonal, a uniform direction)."""

    arg_constraints = {"concentration": constraints.positive}
    support = constraints.corr_cholesky

    def __init__(self, dim: int, concentration: Tensor | float = 1.0,
                 validate_args: bool | None = None) -> None:
        if dim < 2:
            raise ValueError("Expected dim to be an integer greater than or equal to 2. "
                             f"Found dim={dim}.")
        self.dim = dim
        (self.concentration,) = broadcast_all(concentration)
        marginal_conc = self.concentration + 0.5 * (self.dim - 2)
        offset = arange(self.dim - 1, dtype=self.concentration.dtype,
                        device=self.concentration.device)
        offset = cat([zeros(1, dtype=offset.dtype, device=offset.device), offset])
        self._beta = Beta(offset + 0.5, marginal_conc.unsqueeze(-1) - 0.5 * offset)
        super().__init__(self.concentration.size(), Size((dim, dim)), validate_args)

    def expand(self, batch_shape: tuple, _instance=None) -> LKJCholesky:
        new = self._get_checked_instance(LKJCholesky, _instance)
        batch_shape = Size(batch_shape)
        new.dim = self.dim
        new.concentration = self.concentration.expand(batch_shape)
        new._beta = self._beta.expand(batch_shape + (self.dim,))
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape: tuple = Size()) -> Tensor:
        with no_grad():
            y = self._beta.sample(sample_shape).unsqueeze(-1)
            u_normal = _sampling.standard_normal(self._extended_shape(sample_shape), y).tril(-1)
            u_hypersphere = u_normal / u_normal.norm(dim=-1, keepdim=True)
            first_row = arange(self.dim, device=y.device) == 0
            u_hypersphere = u_hypersphere.masked_fill(first_row.unsqueeze(-1), 0.0)
            w = y.sqrt() * u_hypersphere
            diag = (1 - (w**2).sum(-1)).clamp(min=float(finfo(w).tiny)).sqrt()
            return w + diag.unsqueeze(-1) * eye(self.dim, dtype=w.dtype, device=w.device)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        diag_elems = _diagonal(value)[..., 1:]
        order = arange(2, self.dim + 1, device=self.concentration.device)
        order = 2 * (self.concentration - 1).unsqueeze(-1) + self.dim - order
        unnormalized_log_pdf = (order * diag_elems.log()).sum(-1)
        dm1 = self.dim - 1
        alpha = self.concentration + 0.5 * dm1
        normalize_term = (0.5 * dm1 * math.log(math.pi) + mvlgamma(alpha - 0.5, dm1)
                          - lgamma(alpha) * dm1)
        return unnormalized_log_pdf - normalize_term
