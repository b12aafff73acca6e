"""Wishart(df, covariance_matrix | precision_matrix | scale_tril)."""

from __future__ import annotations

import math
import warnings
from numbers import Number

from chainrule import Size, arange, broadcast_shapes, eye, tensor, where
from chainrule.distributions import _sampling, constraints
from chainrule.distributions._linalg import cholesky, solve_triangular
from chainrule.distributions._special import digamma, mvlgamma
from chainrule.distributions.chi2 import Chi2
from chainrule.distributions.exp_family import ExponentialFamily
from chainrule.distributions.multivariate_normal import _diagonal, _precision_to_scale_tril
from chainrule.distributions.utils import finfo, lazy_property
from chainrule.tensor import Tensor

__all__ = ["Wishart"]

_LOG_2 = math.log(2)


def _mvdigamma(x: Tensor, p: int) -> Tensor:
    """Σⱼ₌₀ᵖ⁻¹ ψ(x - j/2)."""
    return digamma(x.unsqueeze(-1) - arange(p, dtype=x.dtype, device=x.device) / 2).sum(-1)


def _cholesky_solve(b: Tensor, low: Tensor) -> Tensor:
    """(LLᵀ)⁻¹ b."""
    return solve_triangular(low.mT, solve_triangular(low, b, upper=False), upper=True)


def _logdet_pd(a: Tensor) -> Tensor:
    """log det of positive-definite matrices, through their Cholesky factors."""
    return 2 * _diagonal(cholesky(a)).log().sum(-1)


class Wishart(ExponentialFamily):
    """p(X) ∝ |X|^((ν-p-1)/2) e^(-tr(Σ⁻¹X)/2); rsample by Bartlett's decomposition."""

    support = constraints.positive_definite
    has_rsample = True
    _mean_carrier_measure = 0

    @property
    def arg_constraints(self) -> dict:
        return {"covariance_matrix": constraints.positive_definite,
                "precision_matrix": constraints.positive_definite,
                "scale_tril": constraints.lower_cholesky,
                "df": constraints.greater_than(self.event_shape[-1] - 1)}

    def __init__(self, df: Tensor | Number, covariance_matrix: Tensor | None = None,
                 precision_matrix: Tensor | None = None, scale_tril: Tensor | None = None,
                 validate_args: bool | None = None) -> None:
        given = [m for m in (covariance_matrix, precision_matrix, scale_tril) if m is not None]
        if len(given) != 1:
            raise AssertionError("Exactly one of covariance_matrix or precision_matrix or "
                                 "scale_tril may be specified.")
        param = given[0]
        if param.dim() < 2:
            raise ValueError("scale_tril must be at least two-dimensional, with optional "
                             "leading batch dimensions")
        if isinstance(df, Number):
            batch_shape = Size(param.shape[:-2])
            self.df = tensor(df, dtype=param.dtype, device=param.device)
        else:
            batch_shape = Size(broadcast_shapes(param.shape[:-2], df.shape))
            self.df = df.expand(batch_shape)
        event_shape = param.shape[-2:]
        p = event_shape[-1]
        if bool((self.df <= p - 1).any()):
            raise ValueError(f"Value of df={df} expected to be greater than ndim - 1 = {p - 1}.")
        for name, m in (("scale_tril", scale_tril), ("covariance_matrix", covariance_matrix),
                        ("precision_matrix", precision_matrix)):
            if m is not None:
                setattr(self, name, param.expand(batch_shape + (-1, -1)))
        if bool((self.df < p).any()):
            warnings.warn("Low df values detected. Singular samples are highly likely to occur "
                          "for ndim - 1 < df < ndim.", stacklevel=2)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)
        self._batch_dims = [-(x + 1) for x in range(len(self._batch_shape))]
        if scale_tril is not None:
            self._unbroadcasted_scale_tril = scale_tril
        elif covariance_matrix is not None:
            self._unbroadcasted_scale_tril = cholesky(covariance_matrix)
        else:
            self._unbroadcasted_scale_tril = _precision_to_scale_tril(precision_matrix)
        self._dist_chi2 = self._chi2(batch_shape)

    def _chi2(self, batch_shape: tuple) -> Chi2:
        low = self._unbroadcasted_scale_tril
        steps = arange(self._event_shape[-1], dtype=low.dtype, device=low.device)
        return Chi2(df=self.df.unsqueeze(-1) - steps.expand(tuple(batch_shape) + (-1,)))

    def expand(self, batch_shape: tuple, _instance=None) -> Wishart:
        new = self._get_checked_instance(Wishart, _instance)
        batch_shape = Size(batch_shape)
        cov_shape = batch_shape + self.event_shape
        new._unbroadcasted_scale_tril = self._unbroadcasted_scale_tril.expand(cov_shape)
        new.df = self.df.expand(batch_shape)
        new._batch_dims = [-(x + 1) for x in range(len(batch_shape))]
        for name in ("covariance_matrix", "scale_tril", "precision_matrix"):
            if name in self.__dict__:
                setattr(new, name, getattr(self, name).expand(cov_shape))
        ExponentialFamily.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._dist_chi2 = new._chi2(batch_shape)
        new._validate_args = self._validate_args
        return new

    def _matrix_shape(self) -> Size:
        return self._batch_shape + self._event_shape

    @lazy_property
    def scale_tril(self) -> Tensor:
        return self._unbroadcasted_scale_tril.expand(self._matrix_shape())

    @lazy_property
    def covariance_matrix(self) -> Tensor:
        low = self._unbroadcasted_scale_tril
        return (low @ low.transpose(-2, -1)).expand(self._matrix_shape())

    @lazy_property
    def precision_matrix(self) -> Tensor:
        low = self._unbroadcasted_scale_tril
        identity = eye(self._event_shape[-1], dtype=low.dtype, device=low.device)
        return _cholesky_solve(identity, low).expand(self._matrix_shape())

    @property
    def mean(self) -> Tensor:
        return self.df.view(self._batch_shape + (1, 1)) * self.covariance_matrix

    @property
    def mode(self) -> Tensor:
        factor = self.df - self.covariance_matrix.shape[-1] - 1
        factor = where(factor <= 0, math.nan, factor)
        return factor.view(self._batch_shape + (1, 1)) * self.covariance_matrix

    @property
    def variance(self) -> Tensor:
        V = self.covariance_matrix
        diag_V = _diagonal(V)
        return self.df.view(self._batch_shape + (1, 1)) * (
            V.pow(2) + diag_V.unsqueeze(-1) * diag_V.unsqueeze(-2))

    def _bartlett_sampling(self, sample_shape: tuple = Size()) -> Tensor:
        p = self._event_shape[-1]
        diag = self._dist_chi2.rsample(sample_shape).sqrt().clamp(min=float(finfo(self.df).eps))
        rows, cols = arange(p).unsqueeze(-1), arange(p)
        below = _sampling.standard_normal(
            tuple(sample_shape) + tuple(self._batch_shape) + (p * (p - 1) // 2,), diag)
        # the normals fill the strictly lower triangle row by row, as torch.tril_indices does
        from chainrule.distributions.utils import vec_to_tril_matrix

        noise = vec_to_tril_matrix(below, diag=-1) + where(rows == cols, 1.0, 0.0) * (
            diag.unsqueeze(-1))
        chol = self._unbroadcasted_scale_tril @ noise
        return chol @ chol.transpose(-2, -1)

    def rsample(self, sample_shape: tuple = Size(), max_try_correction: int | None = None
                ) -> Tensor:
        max_try_correction = 10 if max_try_correction is None else max_try_correction
        sample_shape = Size(sample_shape)
        sample = self._bartlett_sampling(sample_shape)
        singular = ~self.support.check(sample.detach())
        if bool(singular.any()):
            warnings.warn("Singular sample detected.", stacklevel=2)
            for _ in range(max_try_correction):  # redraw the singular ones
                fresh = self._bartlett_sampling(sample_shape)
                mask = singular.view(tuple(singular.shape) + (1, 1))
                sample = where(mask, fresh, sample)
                singular = ~self.support.check(sample.detach())
                if not bool(singular.any()):
                    break
        return sample

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        nu = self.df
        p = self._event_shape[-1]
        low = self._unbroadcasted_scale_tril
        return (-nu * (p * _LOG_2 / 2 + _diagonal(low).log().sum(-1)) - mvlgamma(nu / 2, p)
                + (nu - p - 1) / 2 * _logdet_pd(value)
                - _diagonal(_cholesky_solve(value, low)).sum(-1) / 2)

    def entropy(self) -> Tensor:
        nu = self.df
        p = self._event_shape[-1]
        low = self._unbroadcasted_scale_tril
        return ((p + 1) * (p * _LOG_2 / 2 + _diagonal(low).log().sum(-1)) + mvlgamma(nu / 2, p)
                - (nu - p - 1) / 2 * _mvdigamma(nu / 2, p) + nu * p / 2)

    @property
    def _natural_params(self) -> tuple[Tensor, Tensor]:
        p = self._event_shape[-1]
        return (-self.precision_matrix / 2, (self.df - p - 1) / 2)

    def _log_normalizer(self, x: Tensor, y: Tensor) -> Tensor:
        p = self._event_shape[-1]
        return ((y + (p + 1) / 2) * (-_logdet_pd(-2 * x) + _LOG_2 * p)
                + mvlgamma(y + (p + 1) / 2, p))
