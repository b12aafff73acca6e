"""Samplers the distributions need, and the special functions they use (from ``cr.special``).

``standard_gamma``, ``poisson`` and ``binomial`` draw with NumPy's samplers from a generator
seeded by chainrule's stream (so ``cr.manual_seed`` makes them reproducible), not with torch's
own algorithms.
"""

from __future__ import annotations


from chainrule.devices import np
from chainrule.autograd.function import Op
from chainrule.creation import randint
from chainrule.tensor import Tensor, wrap
from chainrule.ops.special import (  # noqa: F401  (the distributions import them from here)
    _cpu, _like, digamma, digamma_array, erfinv, gammainc, lgamma, mvlgamma, trigamma,
)

__all__ = ["lgamma", "digamma", "trigamma", "erfinv", "gammainc", "mvlgamma", "standard_gamma",
           "poisson", "binomial", "gamma_grad"]


# ---- sampling -----------------------------------------------------------------------------------
def _numpy_rng() -> np.random.Generator:
    """A NumPy generator seeded from chainrule's stream (reproducible under cr.manual_seed)."""
    return np.random.default_rng(int(randint(0, 2**62, (1,)).item()))


def gamma_grad(alpha, x):
    """dx/dα of a Gamma(α, 1) sample x held at its quantile: -∂P(α, x)/∂α / p(x; α), with the
    regularized incomplete gamma P(α, x) = xᵅe⁻ˣ/Γ(α) Σₙ xⁿ/(α(α+1)…(α+n)) differentiated
    term by term (exact, where torch uses approximations)."""
    a = _cpu(alpha).astype(np.float64)
    z = _cpu(x).astype(np.float64)
    a, z = np.broadcast_arrays(a, z)
    term = 1 / a  # xⁿ / (α…(α+n))
    harmonic = 1 / a  # Σₖ 1/(α+k)
    s, ds = term.copy(), -(term * harmonic)
    n = 0
    while True:
        n += 1
        term = term * z / (a + n)
        harmonic = harmonic + 1 / (a + n)
        s += term
        ds -= term * harmonic
        if np.all(term <= 1e-17 * s) or n > 100000:
            break
    with np.errstate(all="ignore"):
        log_x = np.log(z)
        # ∂P/∂α = xᵅe⁻ˣ/Γ(α)·(S(ln x - ψ(α)) + ∂S/∂α);  p(x) = x^(α-1)e⁻ˣ/Γ(α)
        grad = -z * (s * (log_x - digamma_array(a)) + ds)
    grad = np.where(np.isfinite(grad), grad, 0.0)
    return _like(grad, _cpu(x))


def draw_standard_gamma(alpha):
    """Gamma(α, 1) draws (float64 NumPy) for a float64 NumPy array of α."""
    return _numpy_rng().standard_gamma(alpha)


class StandardGamma(Op):
    """x ~ Gamma(α, 1);  dx/dα = -∂P(α, x)/∂α / p(x; α) (implicit reparameterization)"""

    @staticmethod
    def forward(ctx, alpha):
        x = _like(draw_standard_gamma(_cpu(alpha).astype(np.float64)), alpha)
        ctx.alpha, ctx.x = alpha, x  # constants for the backward (no graph through them)
        return x

    @staticmethod
    def backward(ctx, g):
        return g * _like(gamma_grad(ctx.alpha, ctx.x), ctx.x)


def standard_gamma(concentration: Tensor) -> Tensor:
    """Gamma(concentration, 1) samples, differentiable in ``concentration``."""
    return StandardGamma.apply(concentration)


def poisson(rate: Tensor) -> Tensor:
    """Poisson(rate) counts, as floats of ``rate``'s dtype (no gradient)."""
    r = rate._data
    return wrap(_like(_numpy_rng().poisson(_cpu(r).astype(np.float64)), r))


def binomial(count: Tensor, prob: Tensor) -> Tensor:
    """Binomial(count, prob) counts, as floats of ``prob``'s dtype (no gradient)."""
    n, p = np.broadcast_arrays(_cpu(count._data), _cpu(prob._data))
    draw = _numpy_rng().binomial(n.astype(np.int64), np.clip(p.astype(np.float64), 0, 1))
    return wrap(_like(draw, prob._data))


